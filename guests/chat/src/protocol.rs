//! The chat wire protocol (shared/protocols/chat.md) as pure functions: parsing and
//! validating what clients send, and building what the room sends. Nothing here touches
//! the host, so all of it is unit-tested natively.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How many entries a joiner receives in its `history` frame.
pub const JOIN_HISTORY: u32 = 50;
/// `GET /history` without `limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// The largest `limit` `GET /history` honours; larger values are clamped.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

/// Who wrote an entry.
pub const ROLE_USER: &str = "user";
/// The room's AI wrote the entry.
pub const ROLE_ASSISTANT: &str = "assistant";

/// One stored chat entry (the protocol's ENTRY).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Increases by one per stored entry in the room, with no gaps.
    pub id: u64,
    /// The user's name, or the AI's name for assistant entries.
    pub name: String,
    /// `user` or `assistant`.
    pub role: String,
    pub text: String,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// An AI reply stopped by a participant: `text` is what had been written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl Entry {
    /// Whether the room's AI wrote this entry.
    pub fn is_assistant(&self) -> bool {
        self.role == ROLE_ASSISTANT
    }
}

/// The storage key of entry `id`: zero-padded so that keys sort by id.
pub fn entry_key(id: u64) -> String {
    format!("{ENTRY_PREFIX}{id:020}")
}

/// The prefix every entry key starts with.
pub const ENTRY_PREFIX: &str = "msg:";

/// A frame a client may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// A chat message; the text is trimmed and within the length limit.
    Message(String),
    /// A heartbeat that reached the room (normally the host answers it).
    Heartbeat,
    /// Stop the AI reply with this response id.
    AiStop(u64),
    /// Send `ai_partial` for every reply being written.
    Resume,
}

/// Parses and validates one text frame. The error is the text of the `error` frame sent
/// back: it says what was wrong.
pub fn parse_client_frame(raw: &str, max_text_len: usize) -> Result<ClientFrame, String> {
    // The frames clients send nearly always have this shape: read it straight into borrowed
    // fields. Anything else (wrong types, duplicate keys, an unknown type) takes the slower
    // path below, whose errors say what is wrong.
    if let Ok(frame) = serde_json::from_str::<IncomingFrame>(raw) {
        match (frame.kind.as_ref(), frame.text) {
            ("message", Some(text)) => {
                return validate_text(&text, max_text_len).map(ClientFrame::Message);
            }
            ("heartbeat", _) => return Ok(ClientFrame::Heartbeat),
            _ => {}
        }
    }
    parse_client_value(raw, max_text_len)
}

/// The well-formed shape of a client frame (other fields are ignored).
#[derive(Deserialize)]
struct IncomingFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// [`parse_client_frame`] through a generic JSON value, for the precise error.
fn parse_client_value(raw: &str, max_text_len: usize) -> Result<ClientFrame, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("a frame must be a JSON object with a \"type\" field".into());
    };
    let kind = match map.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err("the \"type\" field must be a string".into()),
        None => return Err("missing \"type\" field".into()),
    };
    match kind {
        "message" => {
            let text = match map.get("text") {
                Some(Value::String(text)) => text,
                Some(_) => return Err("the \"text\" field must be a string".into()),
                None => return Err("a message needs a \"text\" field".into()),
            };
            validate_text(text, max_text_len).map(ClientFrame::Message)
        }
        "heartbeat" => Ok(ClientFrame::Heartbeat),
        "resume" => Ok(ClientFrame::Resume),
        "ai_stop" => match map.get("response_id").and_then(Value::as_u64) {
            Some(id) => Ok(ClientFrame::AiStop(id)),
            None => Err("ai_stop needs the \"response_id\" of the reply to stop".into()),
        },
        other => Err(format!(
            "unknown frame type {}: send \"message\", \"ai_stop\", \"resume\" or \"heartbeat\"",
            Value::String(truncate_chars(other, 40))
        )),
    }
}

/// Trims a message and checks it is non-empty and at most `max_len` characters.
pub fn validate_text(text: &str, max_len: usize) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the message is empty".into());
    }
    let len = text.chars().count();
    if len > max_len {
        return Err(format!(
            "the message is too long: {len} characters, at most {max_len} are allowed"
        ));
    }
    Ok(text.to_string())
}

/// Trims a user name and checks it is 1..=`max_len` characters without control characters.
pub fn validate_name(name: Option<&str>, max_len: usize) -> Result<String, String> {
    let Some(name) = name else {
        return Err("a name is required: connect to /ws?name=YOUR_NAME".into());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name must not contain control characters".into());
    }
    let len = name.chars().count();
    if len > max_len {
        return Err(format!(
            "the name is too long: {len} characters, at most {max_len} are allowed"
        ));
    }
    Ok(name.to_string())
}

/// Whether a message asks the AI: its text starts with `@ai` (any case) followed by the end
/// of the text or something that is not part of a word (so `@aiden` does not).
pub fn mentions_ai(text: &str) -> bool {
    let text = text.trim_start();
    let Some(head) = text.get(..3) else {
        return false;
    };
    if !head.eq_ignore_ascii_case("@ai") {
        return false;
    }
    match text[3..].chars().next() {
        None => true,
        Some(c) => !(c.is_alphanumeric() || c == '_'),
    }
}

/// The first `max` characters of `s`.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Parses `GET /history`'s `limit`: absent means the default, larger values are clamped.
pub fn parse_history_limit(raw: Option<&str>) -> Result<u32, String> {
    match raw.map(str::trim) {
        None | Some("") => Ok(DEFAULT_HISTORY_LIMIT),
        Some(raw) => raw
            .parse::<u64>()
            .map(|n| n.min(u64::from(MAX_HISTORY_LIMIT)) as u32)
            .map_err(|_| format!("limit must be a whole number from 0 to {MAX_HISTORY_LIMIT}")),
    }
}

/// `before=ID` of `GET /history`: only entries with a smaller id (for paging back).
pub fn parse_history_before(raw: Option<&str>) -> Result<Option<u64>, String> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => raw
            .parse::<u64>()
            .map(Some)
            .map_err(|_| "before must be an entry id (a whole number)".to_string()),
    }
}

/// What the room keeps in a socket's attachment (it survives hibernation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
}

// ---- frames the room sends -------------------------------------------------------

/// `{"type":KIND, ENTRY..., "response_id"?}`: typed, so a broadcast costs one pass of the
/// serializer and no map of values.
#[derive(Serialize)]
struct EntryFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    name: &'a str,
    role: &'a str,
    text: &'a str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_id: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stopped: bool,
}

impl<'a> EntryFrame<'a> {
    fn new(kind: &'static str, entry: &'a Entry, response_id: Option<u64>) -> Self {
        EntryFrame {
            kind,
            id: entry.id,
            name: &entry.name,
            role: &entry.role,
            text: &entry.text,
            ts: entry.ts,
            response_id,
            stopped: entry.stopped,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an entry always serializes")
    }
}

/// `{"type":"message", ENTRY...}`.
pub fn message_frame(entry: &Entry) -> String {
    EntryFrame::new("message", entry, None).to_json()
}

/// `{"type":"ai_response", ENTRY..., "response_id":R}`.
pub fn ai_response_frame(entry: &Entry, response_id: u64) -> String {
    EntryFrame::new("ai_response", entry, Some(response_id)).to_json()
}

/// `{"type":"history","data":[ENTRY...]}` with entries oldest first.
pub fn history_frame(entries: &[Entry]) -> String {
    json!({ "type": "history", "data": entries }).to_string()
}

/// `{"type":"presence","users":[...],"count":N}`: `count` people are here, of whom `users`
/// lists the first (all of them unless the room is large).
pub fn presence_frame(users: &[String], count: usize) -> String {
    json!({ "type": "presence", "users": users, "count": count }).to_string()
}

/// `{"type":"user_joined"|"user_left","name":...,"timestamp":...}`.
pub fn user_frame(joined: bool, name: &str, timestamp: u64) -> String {
    let kind = if joined { "user_joined" } else { "user_left" };
    json!({ "type": kind, "name": name, "timestamp": timestamp }).to_string()
}

/// `{"type":"ai_stream","response_id":R,"content":...,"timestamp":...}`.
pub fn ai_stream_frame(response_id: u64, content: &str, timestamp: u64) -> String {
    json!({ "type": "ai_stream", "response_id": response_id, "content": content, "timestamp": timestamp })
        .to_string()
}

/// `{"type":"ai_partial","response_id":R,"content":...,"name":...,"started_at":MILLIS}`:
/// a reply being written, as far as it got (protocol v2).
pub fn ai_partial_frame(response_id: u64, content: &str, name: &str, started_at: u64) -> String {
    json!({
        "type": "ai_partial",
        "response_id": response_id,
        "content": content,
        "name": name,
        "started_at": started_at,
    })
    .to_string()
}

/// `{"type":"ai_error","response_id":R,"error":...}`.
pub fn ai_error_frame(response_id: u64, error: &str) -> String {
    json!({ "type": "ai_error", "response_id": response_id, "error": error }).to_string()
}

/// `{"type":"error","error":...}`: the client's last frame was refused.
pub fn error_frame(error: &str) -> String {
    json!({ "type": "error", "error": error }).to_string()
}

/// `{"type":"pong"}`.
pub const PONG: &str = r#"{"type":"pong"}"#;
/// The heartbeat the host answers with [`PONG`] on its own.
pub const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> Entry {
        Entry {
            id,
            name: "alice".into(),
            role: ROLE_USER.into(),
            text: "hi".into(),
            ts: 5,
            stopped: false,
        }
    }

    #[test]
    fn entry_keys_sort_by_id() {
        let mut keys: Vec<String> = [10, 9, 100, 1, 2].iter().map(|&i| entry_key(i)).collect();
        keys.sort();
        assert_eq!(
            keys,
            [1, 2, 9, 10, 100]
                .iter()
                .map(|&i| entry_key(i))
                .collect::<Vec<_>>()
        );
        assert_eq!(entry_key(7), "msg:00000000000000000007");
        assert_eq!(entry_key(u64::MAX).len(), 4 + 20);
    }

    #[test]
    fn parses_messages_and_heartbeats() {
        assert_eq!(
            parse_client_frame(r#"{"type":"message","text":"  hello  "}"#, 10),
            Ok(ClientFrame::Message("hello".into()))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"heartbeat"}"#, 10),
            Ok(ClientFrame::Heartbeat)
        );
        // Extra fields are ignored.
        assert_eq!(
            parse_client_frame(r#"{"type":"message","text":"x","nonce":3}"#, 10),
            Ok(ClientFrame::Message("x".into()))
        );
    }

    #[test]
    fn the_fast_path_agrees_with_the_precise_one() {
        let frames = [
            r#"{"type":"message","text":"hi"}"#,
            r#"{"text":" hi ","type":"message","extra":[1,{"a":2}]}"#,
            r#"{"type":"message","text":"esc\"aped \u00e9"}"#,
            r#"{"type":"message","text":null}"#,
            r#"{"type":"message","text":"a","text":"b"}"#,
            r#"{"type":"message","type":"heartbeat"}"#,
            r#"{"type":"heartbeat","text":7}"#,
            r#"{"type":"heartbeat"}"#,
            r#"{"type":"message","text":"abcdef"}"#,
            r#"{"type":"message","text":"   "}"#,
            r#"{"type":"mess\u0061ge","text":"x"}"#,
            r#"{"type":"shout","text":"x"}"#,
        ];
        for raw in frames {
            assert_eq!(
                parse_client_frame(raw, 5),
                parse_client_value(raw, 5),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_bad_frames_with_a_reason() {
        let err = |raw: &str| parse_client_frame(raw, 5).unwrap_err();
        assert!(err("not json").starts_with("invalid JSON"));
        assert!(err("[1,2]").contains("JSON object"));
        assert!(err(r#"{"text":"x"}"#).contains("missing \"type\""));
        assert!(err(r#"{"type":7}"#).contains("must be a string"));
        assert_eq!(
            err(r#"{"type":"shout"}"#),
            "unknown frame type \"shout\": send \"message\", \"ai_stop\", \"resume\" or \"heartbeat\""
        );
        assert!(err(r#"{"type":"message"}"#).contains("\"text\""));
        assert!(err(r#"{"type":"message","text":5}"#).contains("must be a string"));
        assert_eq!(
            err(r#"{"type":"message","text":"   "}"#),
            "the message is empty"
        );
        assert_eq!(
            err(r#"{"type":"message","text":"abcdef"}"#),
            "the message is too long: 6 characters, at most 5 are allowed"
        );
    }

    #[test]
    fn text_length_counts_characters_not_bytes() {
        assert_eq!(validate_text("ééééé", 5), Ok("ééééé".into()));
        assert!(validate_text("éééééé", 5).is_err());
        // The limit applies to the trimmed text.
        assert_eq!(validate_text("  abcde \n", 5), Ok("abcde".into()));
    }

    #[test]
    fn validates_names() {
        assert_eq!(validate_name(Some("  bob "), 32), Ok("bob".into()));
        assert_eq!(validate_name(Some("Zoë 🦊"), 5), Ok("Zoë 🦊".into()));
        assert!(validate_name(None, 32).unwrap_err().contains("required"));
        assert!(
            validate_name(Some("   "), 32)
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            validate_name(Some("a\u{7}b"), 32)
                .unwrap_err()
                .contains("control")
        );
        assert!(
            validate_name(Some("a\nb"), 32)
                .unwrap_err()
                .contains("control")
        );
        assert!(
            validate_name(Some("abcdef"), 5)
                .unwrap_err()
                .contains("too long")
        );
        assert_eq!(validate_name(Some("abcde"), 5), Ok("abcde".into()));
    }

    #[test]
    fn detects_ai_mentions() {
        assert!(mentions_ai("@ai what is rust?"));
        assert!(mentions_ai("@ai"));
        assert!(mentions_ai("  @AI, hello"));
        assert!(mentions_ai("@ai: hi"));
        assert!(!mentions_ai("@aiden hi"));
        assert!(!mentions_ai("hello @ai"));
        assert!(!mentions_ai("@a"));
        assert!(!mentions_ai("é"));
        assert!(!mentions_ai("@é"));
    }

    #[test]
    fn history_limit() {
        assert_eq!(parse_history_limit(None), Ok(50));
        assert_eq!(parse_history_limit(Some("")), Ok(50));
        assert_eq!(parse_history_limit(Some("7")), Ok(7));
        assert_eq!(parse_history_limit(Some("0")), Ok(0));
        assert_eq!(
            parse_history_limit(Some("999999999999")),
            Ok(MAX_HISTORY_LIMIT)
        );
        assert!(parse_history_limit(Some("-1")).is_err());
        assert!(parse_history_limit(Some("ten")).is_err());
    }

    #[test]
    fn frames_match_the_protocol() {
        let v = |s: String| serde_json::from_str::<Value>(&s).unwrap();
        assert_eq!(
            v(message_frame(&entry(3))),
            json!({"type":"message","id":3,"name":"alice","role":"user","text":"hi","ts":5})
        );
        assert_eq!(
            v(ai_response_frame(&entry(4), 9)),
            json!({"type":"ai_response","id":4,"name":"alice","role":"user","text":"hi","ts":5,"response_id":9})
        );
        assert_eq!(
            v(history_frame(&[entry(1)])),
            json!({"type":"history","data":[{"id":1,"name":"alice","role":"user","text":"hi","ts":5}]})
        );
        assert_eq!(
            v(presence_frame(&["a".into()], 1)),
            json!({"type":"presence","users":["a"],"count":1})
        );
        assert_eq!(
            v(user_frame(true, "a", 1)),
            json!({"type":"user_joined","name":"a","timestamp":1})
        );
        assert_eq!(
            v(user_frame(false, "a", 1)),
            json!({"type":"user_left","name":"a","timestamp":1})
        );
        assert_eq!(
            v(ai_stream_frame(2, "to", 1)),
            json!({"type":"ai_stream","response_id":2,"content":"to","timestamp":1})
        );
        assert_eq!(
            v(ai_error_frame(0, "no provider")),
            json!({"type":"ai_error","response_id":0,"error":"no provider"})
        );
        assert_eq!(v(error_frame("bad")), json!({"type":"error","error":"bad"}));
        assert_eq!(v(PONG.into()), json!({"type":"pong"}));
    }

    #[test]
    fn truncates_by_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
    }
}
