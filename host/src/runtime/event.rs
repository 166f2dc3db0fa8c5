//! The events an object receives, and how an event can fail.

use tokio::sync::oneshot;

use crate::bindings::{AiEvent, ConnectOutcome, Message, Request, Response};

/// One event for one object. Replies are sent only after the event's writes are durable.
pub enum Event {
    Request {
        request: Request,
        reply: oneshot::Sender<Result<Response, EventError>>,
    },
    Connect {
        socket: u64,
        request: Request,
        reply: oneshot::Sender<Result<ConnectOutcome, EventError>>,
    },
    Message {
        socket: u64,
        message: Message,
    },
    Close {
        socket: u64,
        code: u16,
        reason: String,
    },
    /// The alarm that was due at `due_ms` fired.
    Alarm {
        due_ms: u64,
        done: oneshot::Sender<AlarmOutcome>,
    },
    Ai {
        stream: u64,
        event: AiEvent,
    },
}

impl Event {
    /// The index of this kind in [`super::EVENT_KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Event::Request { .. } => 0,
            Event::Connect { .. } => 1,
            Event::Message { .. } => 2,
            Event::Close { .. } => 3,
            Event::Alarm { .. } => 4,
            Event::Ai { .. } => 5,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Request { .. } => "request",
            Event::Connect { .. } => "connect",
            Event::Message { .. } => "message",
            Event::Close { .. } => "close",
            Event::Alarm { .. } => "alarm",
            Event::Ai { .. } => "ai",
        }
    }
}

/// What became of an alarm delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmOutcome {
    /// `on-alarm` succeeded and its writes (and the alarm's clearing) are durable.
    Handled,
    /// `on-alarm` failed; a retry is scheduled (or the alarm was dropped).
    Failed,
    /// The alarm had been changed or deleted meanwhile.
    Stale,
}

/// Why an event did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    /// The guest trapped or hit a limit; its writes were discarded.
    #[error("the object {object} failed: {message}")]
    Trap { object: String, message: String },
    /// The object's mailbox is full, or no live slot could be freed.
    #[error("the object {object} is overloaded: {message}")]
    Overloaded { object: String, message: String },
    /// Storage failed; the event's writes are not durable.
    #[error("the object {object} could not commit: {message}")]
    Storage { object: String, message: String },
    /// The class's component could not be instantiated.
    #[error("the object {object} could not start: {message}")]
    Activation { object: String, message: String },
    #[error("the host is shutting down")]
    ShuttingDown,
}
