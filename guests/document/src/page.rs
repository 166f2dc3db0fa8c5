//! The editor page (`GET /`) and its script (`GET /app.js`): CodeMirror 6 bound to the
//! shared text with y-codemirror.next, bundled by esbuild from `web/src/main.js` into
//! `web/dist/app.js`, which is embedded here. The page loads nothing else.

use lodge_sdk::{Response, object};

const PAGE: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/dist/app.js");
const LICENSES: &str = include_str!("../web/dist/THIRD_PARTY_LICENSES.txt");

/// Characters left as they are in a path segment.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// FNV-1a 32 of the script, so a new build gets a new URL.
fn script_version() -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in APP_JS.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The page for this document.
pub fn html() -> Response {
    let class = object::class_name();
    let name = object::name();
    let base = format!("/{}/{}", encode_segment(&class), encode_segment(&name));
    // JSON inside a <script> element: `<` is escaped so no `</script>` can end it.
    let settings = crate::Settings::read();
    let config = serde_json::json!({
        "class": class,
        "name": name,
        "room": encode_segment(&name),
        "base": base,
        "text": crate::store::TEXT_NAME,
        // One edit's update is a little larger than its text: half the limit leaves room.
        "maxEditBytes": settings.max_update_bytes / 2,
        "maxUpdateBytes": settings.max_update_bytes,
    })
    .to_string()
    .replace('<', "\\u003c");
    let body = PAGE
        .replace("{{TITLE}}", &escape_html(&name))
        .replace("{{CONFIG}}", &config)
        .replace(
            "{{SCRIPT}}",
            &format!("{}/app.js?v={}", escape_html(&base), script_version()),
        );
    Response::html(body)
        .header("cache-control", "no-cache")
        .header("content-security-policy", "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; script-src 'self'")
}

/// The bundled editor script.
pub fn app_js() -> Response {
    Response::with_body(200, "text/javascript; charset=utf-8", APP_JS)
        .header("cache-control", "public, max-age=86400")
}

/// The licenses of the bundled packages.
pub fn licenses() -> Response {
    Response::text(200, LICENSES).header("cache-control", "public, max-age=86400")
}
