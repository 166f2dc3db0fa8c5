//! HTTP helpers: building responses, reading requests, answering WebSocket upgrades.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::exports::lodge::object::events::{Accept, ConnectOutcome};
use crate::bindings::lodge::object::types::{Header, Request, Response};

impl Response {
    /// A response with a body and a content type.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![Header {
                name: "content-type".into(),
                value: content_type.into(),
            }],
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Response::with_body(status, "application/json", body)
    }

    /// A plain-text response.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::with_body(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }

    /// An HTML page.
    pub fn html(html: impl Into<String>) -> Response {
        Response::with_body(200, "text/html; charset=utf-8", html.into().into_bytes())
    }

    /// A JSON error body `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.into(),
        });
        self
    }
}

impl Request {
    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The first value of a header (names are matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Decodes `%XX` escapes and `+` (as space) in a query component.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The answer to a WebSocket upgrade.
pub struct Connect(ConnectOutcome);

impl Connect {
    /// Accepts the socket with no tags and an empty attachment.
    pub fn accept() -> Connect {
        Connect(ConnectOutcome::Accept(Accept {
            tags: Vec::new(),
            attachment: Vec::new(),
        }))
    }

    /// Refuses the upgrade with an HTTP response.
    pub fn reject(response: Response) -> Connect {
        Connect(ConnectOutcome::Reject(response))
    }

    /// Adds tags the socket can be addressed by (`sockets::broadcast_to_tag`).
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Connect {
        if let ConnectOutcome::Accept(a) = &mut self.0 {
            a.tags.extend(tags.into_iter().map(Into::into));
        }
        self
    }

    /// Sets the socket's attachment to a JSON value.
    pub fn attachment<T: Serialize + ?Sized>(mut self, value: &T) -> Connect {
        if let ConnectOutcome::Accept(a) = &mut self.0 {
            a.attachment = serde_json::to_vec(value).unwrap_or_default();
        }
        self
    }

    pub(crate) fn into_outcome(self) -> ConnectOutcome {
        self.0
    }
}
