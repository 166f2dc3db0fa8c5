//! The host's own pages: the landing page at `/` (what this host serves, each class with
//! a link to its app and its docs) and the guides bundled into the binary, rendered from
//! Markdown at `/_lodge/docs/{guide}`. `_lodge` cannot be a class name (a class name
//! starts with a letter), so these paths never shadow an object.
//!
//! The guides are compiled in rather than read from disk: the binary serves the docs of
//! its own version wherever it runs, and no request can name a file.

use lodge_core::config::ClassAbout;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
use serde::Serialize;

/// Where the bundled guides are served.
pub const DOCS_PREFIX: &str = "/_lodge/docs/";

/// A guide bundled into the binary.
pub struct Guide {
    pub name: &'static str,
    pub title: &'static str,
    markdown: &'static str,
}

/// Every bundled guide.
pub const GUIDES: [Guide; 5] = [
    Guide {
        name: "plugin-guide",
        title: "Writing a class (plugin guide)",
        markdown: include_str!("../../../docs/plugin-guide.md"),
    },
    Guide {
        name: "operator-guide",
        title: "Running lodge (operator guide)",
        markdown: include_str!("../../../docs/operator-guide.md"),
    },
    Guide {
        name: "chat",
        title: "The chat room class",
        markdown: include_str!("../../../docs/chat.md"),
    },
    Guide {
        name: "document",
        title: "The collaborative document class",
        markdown: include_str!("../../../docs/document.md"),
    },
    Guide {
        name: "game-protocol",
        title: "The game class and its protocol",
        markdown: include_str!("../../../docs/game-protocol.md"),
    },
];

/// One class as the landing page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCard {
    pub class: String,
    pub title: String,
    pub description: Option<String>,
    pub version: u64,
    /// The app's page, e.g. `/chat/lobby`.
    pub open: String,
    /// The class's docs (a bundled guide's path or a URL), if any.
    pub docs: Option<String>,
}

impl ClassCard {
    /// The card of `class` serving `version`, from its landing-page keys.
    pub fn new(class: &str, version: u64, about: &ClassAbout) -> ClassCard {
        let start = about.start.as_deref().unwrap_or("lobby");
        let docs = about.docs.as_deref().and_then(|d| {
            if d.starts_with("https://") || d.starts_with("http://") {
                Some(d.to_string())
            } else {
                guide(d).map(|g| format!("{DOCS_PREFIX}{}", g.name))
            }
        });
        ClassCard {
            class: class.to_string(),
            title: about.title.clone().unwrap_or_else(|| class.to_string()),
            description: about.description.clone(),
            version,
            open: format!(
                "/{class}/{}",
                percent_encoding::utf8_percent_encode(start, percent_encoding::NON_ALPHANUMERIC)
            ),
            docs,
        }
    }
}

/// The landing page as JSON (for `Accept: application/json`).
#[derive(Debug, Serialize)]
pub struct Index<'a> {
    pub service: &'static str,
    pub version: &'static str,
    pub routes: &'static str,
    pub classes: &'a [ClassCard],
    pub docs: Vec<String>,
}

impl Index<'_> {
    pub fn new(classes: &[ClassCard]) -> Index<'_> {
        Index {
            service: "lodge",
            version: env!("CARGO_PKG_VERSION"),
            routes: "/{class}/{name}/...",
            classes,
            docs: GUIDES
                .iter()
                .map(|g| format!("{DOCS_PREFIX}{}", g.name))
                .collect(),
        }
    }
}

/// The bundled guide called `name`.
pub fn guide(name: &str) -> Option<&'static Guide> {
    GUIDES.iter().find(|g| g.name == name)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --bg: #f6f5f2; --card: #fff; --ink: #1d1d1f; --muted: #5b5b63;
  --line: #dcdad5; --accent: #2456c7; --accent-ink: #fff; }
@media (prefers-color-scheme: dark) { :root { --bg: #151518; --card: #1f1f24; --ink: #ececf1;
  --muted: #a5a5b0; --line: #34343c; --accent: #7ea2ff; --accent-ink: #0d1020; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif;
  background: var(--bg); color: var(--ink); }
main { max-width: 60rem; margin: 0 auto; padding: 2.5rem 1.25rem 3rem; }
header h1 { margin: 0; font-size: 2rem; letter-spacing: -0.02em; }
header p { margin: .35rem 0 0; color: var(--muted); }
.grid { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(16.5rem, 1fr));
  margin: 2rem 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 14px;
  padding: 1.25rem; display: flex; flex-direction: column; gap: .6rem; min-width: 0; }
.card h2 { margin: 0; font-size: 1.2rem; }
.card .meta { color: var(--muted); font-size: .85rem; }
.card p { margin: 0; }
.card form { display: flex; gap: .5rem; margin-top: auto; flex-wrap: wrap; }
.card input { flex: 1 1 7rem; min-width: 0; font: inherit; padding: .45rem .6rem;
  border: 1px solid var(--line); border-radius: 8px; background: var(--bg); color: var(--ink); }
.button { display: inline-block; font: inherit; font-weight: 600; padding: .45rem .9rem;
  border-radius: 8px; border: 0; background: var(--accent); color: var(--accent-ink);
  text-decoration: none; cursor: pointer; }
.links { display: flex; gap: 1rem; flex-wrap: wrap; font-size: .95rem; }
a { color: var(--accent); }
code { font: .9em ui-monospace, "SFMono-Regular", Menlo, monospace; }
footer { color: var(--muted); font-size: .9rem; border-top: 1px solid var(--line);
  padding-top: 1rem; }
.doc { background: var(--card); border: 1px solid var(--line); border-radius: 14px;
  padding: .5rem 1.5rem 1.5rem; overflow-wrap: anywhere; }
.doc pre { overflow-x: auto; padding: .8rem; border-radius: 8px; background: var(--bg); }
.doc table { border-collapse: collapse; display: block; overflow-x: auto; }
.doc td, .doc th { border: 1px solid var(--line); padding: .3rem .5rem; vertical-align: top; }
nav { margin-bottom: 1rem; }
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        escape(title)
    )
}

/// The landing page.
pub fn index_html(classes: &[ClassCard]) -> String {
    let mut body = String::new();
    body.push_str(
        "<header><h1>lodge</h1><p>A durable-object host: every room, document or game below \
is one object that keeps its own state and sockets, and sleeps when idle.</p></header>",
    );
    if classes.is_empty() {
        body.push_str(
            "<p>This host serves no class yet. Deploy one with \
<code>lodge deploy NAME class.wasm</code>.</p>",
        );
    }
    body.push_str("<section class=\"grid\">");
    for card in classes {
        let class = escape(&card.class);
        body.push_str(&format!(
            "<article class=\"card\" data-class=\"{class}\"><h2>{}</h2>\
<div class=\"meta\"><code>/{class}/…</code> · version {}</div>",
            escape(&card.title),
            card.version
        ));
        if let Some(d) = &card.description {
            body.push_str(&format!("<p>{}</p>", escape(d)));
        }
        let start = card
            .open
            .rsplit('/')
            .next()
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
            .unwrap_or_default();
        // The form opens any object of the class (script); the link below needs none.
        body.push_str(&format!(
            "<form data-class=\"{class}\" onsubmit=\"event.preventDefault();\
var n=this.elements.name.value.trim();if(n)location.href='/{class}/'+encodeURIComponent(n);\">\
<input name=\"name\" aria-label=\"name of the {class} object to open\" value=\"{start}\">\
<button class=\"button\" type=\"submit\">Open</button></form>",
            start = escape(&start),
        ));
        body.push_str("<div class=\"links\">");
        body.push_str(&format!(
            "<a href=\"{}\">{}</a>",
            escape(&card.open),
            escape(&card.open)
        ));
        if let Some(docs) = &card.docs {
            body.push_str(&format!("<a href=\"{}\">Docs</a>", escape(docs)));
        }
        body.push_str("</div></article>");
    }
    body.push_str("</section><footer><div class=\"links\">");
    for g in &GUIDES[..2] {
        body.push_str(&format!(
            "<a href=\"{DOCS_PREFIX}{}\">{}</a>",
            g.name,
            escape(g.title)
        ));
    }
    body.push_str(&format!(
        "<a href=\"{DOCS_PREFIX}\">All guides</a></div><p>lodge {} · any path \
<code>/{{class}}/{{name}}/…</code> reaches the object <code>name</code> of that class.</p></footer>",
        env!("CARGO_PKG_VERSION")
    ));
    page("lodge", &body)
}

/// The list of bundled guides.
pub fn docs_index_html() -> String {
    let mut body = String::from("<nav><a href=\"/\">← this host</a></nav><h1>Guides</h1><ul>");
    for g in &GUIDES {
        body.push_str(&format!(
            "<li><a href=\"{DOCS_PREFIX}{}\">{}</a></li>",
            g.name,
            escape(g.title)
        ));
    }
    body.push_str("</ul>");
    page("lodge guides", &body)
}

/// A bundled guide as HTML. Links to sibling guides (`chat.md`) become their pages here;
/// links out of the docs folder, which the binary does not carry, lose their target.
/// Raw HTML in the Markdown is shown as text.
pub fn guide_html(guide: &Guide) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_HEADING_ATTRIBUTES);
    // Links do not nest, so one flag pairs a dropped link's start with its end.
    let mut dropping = false;
    let events = Parser::new_ext(guide.markdown, options).filter_map(move |event| {
        Some(match event {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => match rewrite_link(&dest_url) {
                Some(dest_url) => Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                }),
                None => {
                    dropping = true;
                    return None;
                }
            },
            Event::End(pulldown_cmark::TagEnd::Link) if dropping => {
                dropping = false;
                return None;
            }
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            other => other,
        })
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, with_heading_ids(events));
    let body = format!(
        "<nav><a href=\"/\">← this host</a> · <a href=\"{DOCS_PREFIX}\">all guides</a></nav>\
<article class=\"doc\">{html}</article>"
    );
    page(guide.title, &body)
}

/// Headings get the GitHub-style ids the guides' tables of contents link to.
fn with_heading_ids<'a>(
    events: impl Iterator<Item = Event<'a>>,
) -> impl Iterator<Item = Event<'a>> {
    let events: Vec<Event<'a>> = events.collect();
    let mut out = Vec::with_capacity(events.len());
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading {
            level,
            id: None,
            classes,
            attrs,
        }) = &events[i]
        {
            let mut text = String::new();
            for e in &events[i + 1..] {
                match e {
                    Event::End(_) => break,
                    Event::Text(t) | Event::Code(t) => text.push_str(t),
                    _ => {}
                }
            }
            out.push(Event::Start(Tag::Heading {
                level: *level,
                id: Some(CowStr::from(slug(&text))),
                classes: classes.clone(),
                attrs: attrs.clone(),
            }));
        } else {
            out.push(events[i].clone());
        }
        i += 1;
    }
    out.into_iter()
}

fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Where a guide's link goes on this host; `None` for targets the binary does not carry.
fn rewrite_link(dest: &str) -> Option<CowStr<'static>> {
    if dest.starts_with('#') || dest.starts_with("https://") || dest.starts_with("http://") {
        return Some(CowStr::from(dest.to_string()));
    }
    let (file, anchor) = dest.split_once('#').unwrap_or((dest, ""));
    let stem = file.strip_suffix(".md").unwrap_or(file);
    match guide(stem) {
        Some(g) if !file.contains('/') => {
            let anchor = if anchor.is_empty() {
                String::new()
            } else {
                format!("#{anchor}")
            };
            Some(CowStr::from(format!("{DOCS_PREFIX}{}{anchor}", g.name)))
        }
        // Outside the bundled docs: the text stays, the link goes.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_link_to_the_app_and_to_docs_that_exist() {
        let about = ClassAbout {
            title: Some("AI chat".into()),
            description: None,
            start: Some("my room".into()),
            docs: Some("chat".into()),
        };
        let card = ClassCard::new("chat", 3, &about);
        assert_eq!(card.open, "/chat/my%20room");
        assert_eq!(card.docs.as_deref(), Some("/_lodge/docs/chat"));
        let plain = ClassCard::new("guestbook", 1, &ClassAbout::default());
        assert_eq!(plain.title, "guestbook");
        assert_eq!(plain.open, "/guestbook/lobby");
        assert_eq!(plain.docs, None);
        let unknown = ClassAbout {
            docs: Some("../../etc/passwd".into()),
            ..ClassAbout::default()
        };
        assert_eq!(ClassCard::new("x", 1, &unknown).docs, None);
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let about = ClassAbout {
            title: Some("<script>alert(1)</script>".into()),
            ..ClassAbout::default()
        };
        let html = index_html(&[ClassCard::new("x", 1, &about)]);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }

    #[test]
    fn guides_render_with_working_links() {
        let html = guide_html(guide("operator-guide").unwrap());
        assert!(
            html.contains("<h2 id=\"configuration\">"),
            "headings get ids"
        );
        assert!(html.contains("href=\"#configuration\""));
        assert!(html.contains("href=\"/_lodge/docs/plugin-guide\""));
        assert!(
            !html.contains("lodge.toml\""),
            "no link to a file the binary lacks"
        );
        assert!(!html.contains("href=\"\""));
        assert_eq!(
            rewrite_link("chat.md#routes"),
            Some("/_lodge/docs/chat#routes".into())
        );
        assert_eq!(rewrite_link("../../shared/protocols/chat.md"), None);
    }
}
