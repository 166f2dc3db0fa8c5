//! The guestbook's rules as plain functions: no lodge imports, so `cargo test` runs them
//! natively, without a host. Keep the logic of a class here and the lodge calls in
//! `lib.rs`, and most of it is tested in milliseconds.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The key holding the number of entries.
pub const COUNT_KEY: &str = "count";
/// Every entry is stored under this prefix (see [`entry_key`]).
pub const ENTRY_PREFIX: &str = "entry:";
/// Entries returned when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = 500;
/// The longest entry, in characters, unless the operator sets `max_text_len`.
pub const DEFAULT_MAX_TEXT: usize = 500;
/// The longest name, in characters.
pub const MAX_NAME: usize = 32;

/// One signature in the book.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 1 for the first entry, then counting up without gaps.
    pub n: u64,
    pub name: String,
    pub text: String,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub at: u64,
}

/// The storage key of entry `n`. Storage keys sort bytewise, so the number is
/// zero-padded: `entry:00000000000000000010` sorts after `entry:00000000000000000009`.
pub fn entry_key(n: u64) -> String {
    format!("{ENTRY_PREFIX}{n:020}")
}

/// A name as given (trimmed): 1 to [`MAX_NAME`] characters, no control characters.
pub fn clean_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("give a name (?name=... on the WebSocket URL)".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("a name is at most {MAX_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("a name may not contain control characters".into());
    }
    Ok(name.to_string())
}

/// An entry's text (trimmed): not empty, at most `max_chars` characters.
pub fn clean_text(raw: &str, max_chars: usize) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("the text is empty".into());
    }
    if text.chars().count() > max_chars {
        return Err(format!("an entry is at most {max_chars} characters"));
    }
    Ok(text.to_string())
}

/// The `limit` query parameter: absent means [`DEFAULT_LIMIT`]; larger than
/// [`MAX_LIMIT`] is clamped.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, String> {
    match raw {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<u32>() {
            Ok(0) => Err("limit must be at least 1".into()),
            Ok(n) => Ok(n.min(MAX_LIMIT)),
            Err(_) => Err(format!("limit must be a whole number, not {s:?}")),
        },
    }
}

/// The body of `POST /entries`.
#[derive(Debug, Deserialize)]
pub struct SignRequest {
    pub name: String,
    pub text: String,
}

/// Parses the body of `POST /entries`.
pub fn parse_sign_request(body: &[u8]) -> Result<SignRequest, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("the body must be JSON {{\"name\": ..., \"text\": ...}}: {e}"))
}

/// What a client may send over its WebSocket.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// `{"type":"sign","text":"..."}`
    Sign { text: String },
}

/// Parses a client's text frame.
pub fn parse_frame(text: &str) -> Result<ClientFrame, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("expected {{\"type\":\"sign\",\"text\":\"...\"}}: {e}"))
}

/// The frame every socket gets for a new entry.
pub fn entry_frame(entry: &Entry) -> Value {
    json!({ "type": "entry", "entry": entry })
}

/// The frame a client gets when its frame was refused.
pub fn error_frame(message: &str) -> Value {
    json!({ "type": "error", "error": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_like_their_numbers() {
        let mut keys: Vec<String> = [10, 9, 100, 1].into_iter().map(entry_key).collect();
        keys.sort();
        assert_eq!(keys, [1, 9, 10, 100].map(entry_key));
        assert!(entry_key(7).starts_with(ENTRY_PREFIX));
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(clean_name("  ada "), Ok("ada".into()));
        assert!(clean_name("   ").is_err());
        assert!(clean_name("a\u{7}b").is_err());
        assert!(clean_name(&"é".repeat(MAX_NAME)).is_ok());
        assert!(clean_name(&"é".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn text_length_counts_characters_not_bytes() {
        assert_eq!(clean_text(" hi ", 2), Ok("hi".into()));
        assert!(clean_text("", 10).is_err());
        assert!(clean_text("ééé", 3).is_ok());
        assert!(clean_text("éééé", 3).is_err());
    }

    #[test]
    fn limits_default_clamp_and_refuse_nonsense() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("3")), Ok(3));
        assert_eq!(parse_limit(Some("100000")), Ok(MAX_LIMIT));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("-1")).is_err());
        assert!(parse_limit(Some("lots")).is_err());
    }

    #[test]
    fn frames_and_bodies_parse_or_say_why_not() {
        assert_eq!(
            parse_frame(r#"{"type":"sign","text":"hi"}"#),
            Ok(ClientFrame::Sign { text: "hi".into() })
        );
        assert!(
            parse_frame(r#"{"type":"shout"}"#)
                .unwrap_err()
                .contains("sign")
        );
        assert!(parse_frame("not json").is_err());
        let body = parse_sign_request(br#"{"name":"ada","text":"hi"}"#).unwrap();
        assert_eq!((body.name.as_str(), body.text.as_str()), ("ada", "hi"));
        assert!(parse_sign_request(b"{}").is_err());
    }

    #[test]
    fn frames_have_a_type() {
        let entry = Entry {
            n: 1,
            name: "ada".into(),
            text: "hi".into(),
            at: 5,
        };
        assert_eq!(entry_frame(&entry)["type"], "entry");
        assert_eq!(entry_frame(&entry)["entry"]["n"], 1);
        assert_eq!(error_frame("no")["error"], "no");
    }
}
