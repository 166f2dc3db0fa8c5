//! The y-websocket wire protocol (y-protocols `sync` and `awareness` inside one binary
//! frame per message). Every message starts with a varuint message type:
//!
//! - `0` sync: a varuint sub-type (`0` step 1 = state vector, `1` step 2 = update, `2`
//!   update) followed by a length-prefixed payload;
//! - `1` awareness: a length-prefixed awareness update (`count`, then `client`, `clock`,
//!   `state` as a JSON string per entry; state `null` means the client left);
//! - `3` query awareness: no payload; the answer is an awareness message with every
//!   known state.
//!
//! Type `2` (auth) only ever flows from a server to a client, so here it is unknown.
//!
//! lodge adds one server-to-client type, `100` restored: a length-prefixed JSON string
//! `{seq, version, label, by, ts}` describing the newest restore of a version. It follows
//! the update that restored the text, and is sent on connect once a document was ever
//! restored. The editor page clears its undo history on it (a restore may reuse
//! characters an editor typed; undoing those would cut them out of the restored text)
//! and tells its user. Other y-websocket clients ignore it (they log that they cannot
//! handle it).

use crate::codec::{DecodeError, Reader, Writer};

pub const MSG_SYNC: u64 = 0;
pub const MSG_AWARENESS: u64 = 1;
pub const MSG_QUERY_AWARENESS: u64 = 3;
/// Server to client: a version was restored (see the module doc).
pub const MSG_RESTORED: u64 = 100;

pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// Awareness updates with more entries than this are refused as malformed.
const MAX_AWARENESS_ENTRIES: u64 = 1_000;

/// One decoded message from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The client's state vector: answer with the updates it is missing.
    SyncStep1(&'a [u8]),
    /// The updates we were missing, in answer to our step 1.
    SyncStep2(&'a [u8]),
    /// A live edit.
    Update(&'a [u8]),
    /// An awareness update (the payload, without the message type).
    Awareness(&'a [u8]),
    /// Asks for every awareness state we know.
    QueryAwareness,
}

/// Why a message was refused; each maps to one close code (see `docs/document.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The bytes do not decode (close 4400).
    Malformed(String),
    /// The message is larger than `max_update_bytes` (close 4413).
    TooLarge(String),
    /// A message type or sync sub-type this server does not speak (close 4415).
    Unsupported(String),
}

impl From<DecodeError> for ProtocolError {
    fn from(e: DecodeError) -> Self {
        ProtocolError::Malformed(e.0)
    }
}

impl ProtocolError {
    /// The WebSocket close code and reason for this error.
    pub fn close(&self) -> (u16, String) {
        match self {
            ProtocolError::Malformed(m) => (crate::CLOSE_MALFORMED, format!("malformed: {m}")),
            ProtocolError::TooLarge(m) => (crate::CLOSE_TOO_LARGE, format!("too large: {m}")),
            ProtocolError::Unsupported(m) => {
                (crate::CLOSE_UNSUPPORTED, format!("unsupported: {m}"))
            }
        }
    }
}

/// Decodes one binary frame. `max_update` bounds the payload of sync and awareness
/// messages. Bytes after the message are ignored, as the reference implementation does.
pub fn parse(frame: &[u8], max_update: usize) -> Result<Incoming<'_>, ProtocolError> {
    // A cheap bound before reading anything: the payload plus a few header bytes.
    if frame.len() > max_update.saturating_add(32) {
        return Err(ProtocolError::TooLarge(format!(
            "message of {} bytes; the limit is {max_update}",
            frame.len()
        )));
    }
    let mut r = Reader::new(frame);
    let kind = r.var_uint()?;
    match kind {
        MSG_SYNC => {
            let sub = r.var_uint()?;
            if sub > SYNC_UPDATE {
                return Err(ProtocolError::Unsupported(format!(
                    "sync message type {sub}"
                )));
            }
            let payload = bounded(&mut r, max_update)?;
            Ok(match sub {
                SYNC_STEP1 => Incoming::SyncStep1(payload),
                SYNC_STEP2 => Incoming::SyncStep2(payload),
                _ => Incoming::Update(payload),
            })
        }
        MSG_AWARENESS => Ok(Incoming::Awareness(bounded(&mut r, max_update)?)),
        MSG_QUERY_AWARENESS => Ok(Incoming::QueryAwareness),
        other => Err(ProtocolError::Unsupported(format!("message type {other}"))),
    }
}

fn bounded<'a>(r: &mut Reader<'a>, max: usize) -> Result<&'a [u8], ProtocolError> {
    let payload = r.var_bytes()?;
    if payload.len() > max {
        return Err(ProtocolError::TooLarge(format!(
            "update of {} bytes; the limit is {max}",
            payload.len()
        )));
    }
    Ok(payload)
}

/// One entry of an awareness update.
#[derive(Debug, Clone, PartialEq)]
pub struct AwarenessEntry {
    pub client: u64,
    pub clock: u64,
    /// The state; `None` for `null` (the client is gone).
    pub state: Option<serde_json::Value>,
}

/// Decodes an awareness update payload; every state must be JSON.
pub fn parse_awareness(payload: &[u8]) -> Result<Vec<AwarenessEntry>, ProtocolError> {
    let mut r = Reader::new(payload);
    let count = r.var_uint()?;
    if count > MAX_AWARENESS_ENTRIES {
        return Err(ProtocolError::Malformed(format!(
            "awareness update with {count} entries"
        )));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client = r.var_uint()?;
        let clock = r.var_uint()?;
        let json = r.var_string()?;
        let state: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            ProtocolError::Malformed(format!(
                "awareness state of client {client} is not JSON: {e}"
            ))
        })?;
        let state = (!state.is_null()).then_some(state);
        out.push(AwarenessEntry {
            client,
            clock,
            state,
        });
    }
    Ok(out)
}

/// A whole awareness message (type 1) carrying these entries.
pub fn awareness_message(entries: &[AwarenessEntry]) -> Vec<u8> {
    let mut payload = Writer::new();
    payload.var_uint(entries.len() as u64);
    for e in entries {
        let json = match &e.state {
            Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "null".into()),
            None => "null".into(),
        };
        payload
            .var_uint(e.client)
            .var_uint(e.clock)
            .var_string(&json);
    }
    let payload = payload.finish();
    Writer::new()
        .var_uint(MSG_AWARENESS)
        .var_bytes(&payload)
        .finish()
}

/// A sync message (type 0) of sub-type `sub` with `payload`.
pub fn sync_message(sub: u64, payload: &[u8]) -> Vec<u8> {
    Writer::new()
        .var_uint(MSG_SYNC)
        .var_uint(sub)
        .var_bytes(payload)
        .finish()
}

/// A restored message carrying `json`.
pub fn restored_message(json: &str) -> Vec<u8> {
    Writer::new()
        .var_uint(MSG_RESTORED)
        .var_string(json)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_message_is_the_type_then_a_string() {
        let m = restored_message("{\"seq\":1}");
        let mut r = Reader::new(&m);
        assert_eq!(r.var_uint().unwrap(), MSG_RESTORED);
        assert_eq!(r.var_string().unwrap(), "{\"seq\":1}");
        assert!(r.is_empty());
    }

    #[test]
    fn parses_every_message_kind() {
        let step1 = sync_message(SYNC_STEP1, &[0]);
        assert_eq!(parse(&step1, 100).unwrap(), Incoming::SyncStep1(&[0]));
        let upd = sync_message(SYNC_UPDATE, &[0, 0]);
        assert_eq!(parse(&upd, 100).unwrap(), Incoming::Update(&[0, 0]));
        let step2 = sync_message(SYNC_STEP2, &[0, 0]);
        assert_eq!(parse(&step2, 100).unwrap(), Incoming::SyncStep2(&[0, 0]));
        assert_eq!(parse(&[3], 100).unwrap(), Incoming::QueryAwareness);
        let aw = awareness_message(&[AwarenessEntry {
            client: 7,
            clock: 2,
            state: Some(serde_json::json!({"user": {"name": "a"}})),
        }]);
        let Incoming::Awareness(payload) = parse(&aw, 100).unwrap() else {
            panic!("not awareness")
        };
        let entries = parse_awareness(payload).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].client, 7);
        assert_eq!(entries[0].state.as_ref().unwrap()["user"]["name"], "a");
    }

    #[test]
    fn refuses_bad_messages_with_the_right_error() {
        assert!(matches!(parse(&[], 100), Err(ProtocolError::Malformed(_))));
        assert!(matches!(
            parse(&[0, 2, 9, 1], 100),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            parse(&[0, 7, 0], 100),
            Err(ProtocolError::Unsupported(_))
        ));
        assert!(matches!(
            parse(&[2, 0], 100),
            Err(ProtocolError::Unsupported(_))
        ));
        assert!(matches!(
            parse(&[9], 100),
            Err(ProtocolError::Unsupported(_))
        ));
        let big = sync_message(SYNC_UPDATE, &[0; 50]);
        assert!(matches!(parse(&big, 10), Err(ProtocolError::TooLarge(_))));
        let huge = sync_message(SYNC_UPDATE, &[0; 500]);
        assert!(matches!(parse(&huge, 10), Err(ProtocolError::TooLarge(_))));
        let not_json = {
            let mut w = Writer::new();
            w.var_uint(1).var_uint(1).var_uint(1).var_string("{nope");
            w.finish()
        };
        assert!(matches!(
            parse_awareness(&not_json),
            Err(ProtocolError::Malformed(_))
        ));
    }
}
