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

/// The kinds of event: the one list that names them in logs and metrics and sizes the
/// per-kind metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Request,
    Connect,
    Message,
    Close,
    Alarm,
    Ai,
}

impl EventKind {
    /// How many kinds there are.
    pub const COUNT: usize = 6;
    /// Every kind, in the order of its index.
    pub const ALL: [EventKind; EventKind::COUNT] = [
        EventKind::Request,
        EventKind::Connect,
        EventKind::Message,
        EventKind::Close,
        EventKind::Alarm,
        EventKind::Ai,
    ];

    /// Its place in per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Request => "request",
            EventKind::Connect => "connect",
            EventKind::Message => "message",
            EventKind::Close => "close",
            EventKind::Alarm => "alarm",
            EventKind::Ai => "ai",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Event {
    /// What kind of event this is.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Request { .. } => EventKind::Request,
            Event::Connect { .. } => EventKind::Connect,
            Event::Message { .. } => EventKind::Message,
            Event::Close { .. } => EventKind::Close,
            Event::Alarm { .. } => EventKind::Alarm,
            Event::Ai { .. } => EventKind::Ai,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_index_and_name() {
        for (i, kind) in EventKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        let names: std::collections::BTreeSet<_> =
            EventKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), EventKind::COUNT);
    }
}

/// What became of an alarm delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmOutcome {
    /// `on-alarm` succeeded and its writes (and the alarm's clearing) are durable.
    Handled,
    /// `on-alarm` failed after `retry` earlier failures; the alarm is unchanged until
    /// the scheduler retries or drops it ([`super::Runtime::change_alarm`]).
    Failed { retry: u32 },
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
