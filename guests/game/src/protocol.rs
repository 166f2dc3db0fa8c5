//! Client frames and the small helpers around them: parsing, names, tokens.
//!
//! The wire protocol is documented in `docs/game-protocol.md`. Parsing is strict about what
//! matters (the type, the column) and ignores unknown fields, so clients can grow.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest player name kept, in characters.
pub const MAX_NAME: usize = 24;

/// A frame a client sent, to the lobby or to a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// Room: drop a piece. The column is as sent (the room refuses anything not 0..=6);
    /// `None` when it is not an integer at all.
    Move { column: Option<i64> },
    /// Room: give up the current game.
    Resign,
    /// Room: ask for another game (starts when both players asked).
    Rematch,
    /// Lobby: wait to be paired, optionally under a new name.
    Play { name: Option<String> },
    /// Lobby: stop waiting.
    Cancel,
    /// Lobby: mint a new room name to share.
    Create,
    /// Either: keep-alive (normally answered by the host without waking the object).
    Heartbeat,
}

/// Parses a text frame; the error is the message for the `error` frame.
pub fn parse(text: &str) -> Result<ClientFrame, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("frame is not JSON: {e}"))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or("frame has no \"type\"")?;
    Ok(match kind {
        "move" => ClientFrame::Move {
            column: value.get("column").and_then(Value::as_i64),
        },
        "resign" => ClientFrame::Resign,
        "rematch" => ClientFrame::Rematch,
        "play" => ClientFrame::Play {
            name: value
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        "cancel" => ClientFrame::Cancel,
        "create" => ClientFrame::Create,
        "heartbeat" => ClientFrame::Heartbeat,
        other => return Err(format!("unknown frame type {other:?}")),
    })
}

/// A display name: control characters dropped, whitespace trimmed, at most [`MAX_NAME`]
/// characters, `player` when nothing is left.
pub fn clean_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_NAME)
        .collect();
    let name = name.trim_end().to_string();
    if name.is_empty() {
        "player".into()
    } else {
        name
    }
}

/// Whether a presented token has the shape of one we issue (32 lowercase hex digits).
/// Anything else is ignored rather than hashed.
pub fn is_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// SHA-256 of a token as lowercase hex: what the room stores instead of the token.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex, from the OS (wasi:random in the host). Without randomness
/// there is no safe token, so this panics and the event is rolled back.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("no random source");
    hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_frame() {
        assert_eq!(
            parse(r#"{"type":"move","column":3}"#),
            Ok(ClientFrame::Move { column: Some(3) })
        );
        assert_eq!(
            parse(r#"{"type":"move","column":-2}"#),
            Ok(ClientFrame::Move { column: Some(-2) })
        );
        assert_eq!(
            parse(r#"{"type":"move","column":"3"}"#),
            Ok(ClientFrame::Move { column: None })
        );
        assert_eq!(
            parse(r#"{"type":"move","column":2.5}"#),
            Ok(ClientFrame::Move { column: None })
        );
        assert_eq!(
            parse(r#"{"type":"move"}"#),
            Ok(ClientFrame::Move { column: None })
        );
        assert_eq!(
            parse(r#"{"type":"resign","extra":1}"#),
            Ok(ClientFrame::Resign)
        );
        assert_eq!(parse(r#"{"type":"rematch"}"#), Ok(ClientFrame::Rematch));
        assert_eq!(
            parse(r#"{"type":"play","name":"bo"}"#),
            Ok(ClientFrame::Play {
                name: Some("bo".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":"play"}"#),
            Ok(ClientFrame::Play { name: None })
        );
        assert_eq!(parse(r#"{"type":"cancel"}"#), Ok(ClientFrame::Cancel));
        assert_eq!(parse(r#"{"type":"create"}"#), Ok(ClientFrame::Create));
        assert_eq!(parse(r#"{"type":"heartbeat"}"#), Ok(ClientFrame::Heartbeat));
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        assert!(parse("nope").unwrap_err().contains("not JSON"));
        assert!(parse("{}").unwrap_err().contains("type"));
        assert!(parse(r#"{"type":7}"#).unwrap_err().contains("type"));
        assert!(parse(r#"{"type":"fly"}"#).unwrap_err().contains("fly"));
        // A seat cannot be claimed through a frame: extra fields are ignored.
        assert_eq!(
            parse(r#"{"type":"move","column":1,"color":"red","token":"x"}"#),
            Ok(ClientFrame::Move { column: Some(1) })
        );
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  alice  "), "alice");
        assert_eq!(clean_name(""), "player");
        assert_eq!(clean_name(" \n\t "), "player");
        assert_eq!(clean_name("a\u{0}b\nc"), "abc");
        assert_eq!(clean_name(&"x".repeat(100)).chars().count(), MAX_NAME);
        assert_eq!(clean_name("élodie ♥"), "élodie ♥");
    }

    #[test]
    fn tokens_are_128_bit_hex_and_stored_hashed() {
        let t = random_hex(16);
        assert!(is_token(&t), "{t}");
        assert_ne!(t, random_hex(16));
        assert!(!is_token("ABCDEF0123456789abcdef0123456789"));
        assert!(!is_token("abc"));
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(hash_token(&t), t);
    }
}
