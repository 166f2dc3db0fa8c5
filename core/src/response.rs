//! What of a guest's response head reaches the wire. The host owns the framing of each
//! message and the connection itself: a guest that set `content-length` or
//! `transfer-encoding` could end a response early and have its body read as a second,
//! forged response by the client or a proxy in between; one that answered 101 would leave
//! the connection in a state only the host may put it in. So informational statuses are
//! refused, host-owned and malformed headers are dropped (and named, for one log line),
//! and everything kept is a header any HTTP/1.1 or HTTP/2 encoder accepts as it is.

/// Response headers the host owns: the framing of the message and the connection.
pub const HOST_OWNED_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

/// The most of a dropped header's name that is kept for the log.
const NAME_IN_LOG: usize = 64;

/// A guest's response head, made safe to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Lower-case names, values as given, in the guest's order.
    pub headers: Vec<(String, String)>,
    /// What was dropped (names, cut to 64 characters), for the log.
    pub dropped: Vec<String>,
}

/// The guest answered with a status the host does not send for it (1xx, or outside
/// 100-599).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the object answered with an invalid status {0}")]
pub struct InvalidStatus(pub u16);

/// `tchar` of RFC 9110: the characters of a header name.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field value of RFC 9110 without obs-text: visible ASCII, spaces and tabs (never CR,
/// LF or NUL, which would end the line or the head).
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b)
}

/// Checks a guest's status and headers; see the module comment.
pub fn sanitize(
    status: u16,
    headers: impl IntoIterator<Item = (String, String)>,
) -> Result<Head, InvalidStatus> {
    if !(200..=599).contains(&status) {
        return Err(InvalidStatus(status));
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (name, value) in headers {
        let valid_name = !name.is_empty() && name.bytes().all(is_token_char);
        let name_lower = name.to_ascii_lowercase();
        if !valid_name
            || HOST_OWNED_HEADERS.contains(&name_lower.as_str())
            || !value.bytes().all(is_value_byte)
        {
            dropped.push(name.chars().take(NAME_IN_LOG).collect());
            continue;
        }
        kept.push((name_lower, value));
    }
    Ok(Head {
        status,
        headers: kept,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn framing_and_malformed_headers_are_dropped_and_named() {
        let head = sanitize(
            200,
            [
                h("Content-Type", "text/plain"),
                h("Content-Length", "0"),
                h("transfer-encoding", "chunked"),
                h("bad name", "x"),
                h("x-split", "a\r\nset-cookie: y"),
                h("x-ok", "tab\tand spaces"),
            ],
        )
        .unwrap();
        assert_eq!(
            head.headers,
            [
                h("content-type", "text/plain"),
                h("x-ok", "tab\tand spaces")
            ]
        );
        assert_eq!(
            head.dropped,
            ["Content-Length", "transfer-encoding", "bad name", "x-split"]
        );
    }

    #[test]
    fn informational_and_impossible_statuses_are_refused() {
        for status in [0, 100, 101, 199, 600, 999] {
            assert_eq!(sanitize(status, []), Err(InvalidStatus(status)));
        }
        assert!(sanitize(204, []).is_ok());
    }
}
