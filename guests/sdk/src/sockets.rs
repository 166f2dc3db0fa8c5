//! The object's WebSockets. They belong to the host and outlive the instance; frames
//! sent during an event leave only after its writes are durable.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::lodge::object::sockets as raw;
use crate::bindings::lodge::object::types::Message;
pub use raw::{AutoResponse, SocketError};

/// One of this object's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Socket(pub u64);

impl Socket {
    /// The host's id for this socket.
    pub fn id(self) -> u64 {
        self.0
    }

    /// Sends a text frame.
    pub fn send_text(self, text: &str) -> Result<(), SocketError> {
        raw::send(self.0, &Message::Text(text.to_string()))
    }

    /// Sends a value as a JSON text frame.
    pub fn send_json<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SocketError> {
        self.send_text(&to_json(value))
    }

    /// Sends a binary frame.
    pub fn send_binary(self, data: &[u8]) -> Result<(), SocketError> {
        raw::send(self.0, &Message::Binary(data.to_vec()))
    }

    /// Closes the socket once this event's outputs are released.
    pub fn close(self, code: u16, reason: &str) -> Result<(), SocketError> {
        raw::close(self.0, code, reason)
    }

    /// The tags the socket was accepted with.
    pub fn tags(self) -> Vec<String> {
        raw::tags(self.0).unwrap_or_default()
    }

    /// The attachment decoded as JSON (`None` if absent or not this type).
    pub fn attachment<T: DeserializeOwned>(self) -> Option<T> {
        let bytes = raw::attachment(self.0).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Replaces the attachment with a JSON value.
    pub fn set_attachment<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SocketError> {
        raw::set_attachment(self.0, to_json(value).as_bytes())
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Every open socket of this object.
pub fn all() -> Vec<Socket> {
    raw::list(None).into_iter().map(Socket).collect()
}

/// The open sockets that carry `tag`.
pub fn tagged(tag: &str) -> Vec<Socket> {
    raw::list(Some(tag)).into_iter().map(Socket).collect()
}

/// Sends a text frame to every open socket except those in `except`; returns how many.
pub fn broadcast_text(text: &str, except: &[Socket]) -> u32 {
    let except: Vec<u64> = except.iter().map(|s| s.0).collect();
    raw::broadcast(&Message::Text(text.to_string()), None, &except).unwrap_or(0)
}

/// Sends a value as JSON to every open socket except those in `except`.
pub fn broadcast_json<T: Serialize + ?Sized>(value: &T, except: &[Socket]) -> u32 {
    broadcast_text(&to_json(value), except)
}

/// Sends a value as JSON to every open socket carrying `tag`.
pub fn broadcast_json_to_tag<T: Serialize + ?Sized>(value: &T, tag: &str) -> u32 {
    raw::broadcast(&Message::Text(to_json(value)), Some(tag), &[]).unwrap_or(0)
}

/// Lets the host answer `request` with `response` without waking this object.
pub fn set_auto_response(request: &str, response: &str) {
    raw::set_auto_response(Some(&AutoResponse {
        request: request.into(),
        response: response.into(),
    }));
}
