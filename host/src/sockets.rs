//! The WebSockets of one object. They belong to the host, not to the instance, so they
//! survive eviction (hibernation): the table lives as long as the object's entry, which
//! lives as long as any socket is open. Its own module, below both the runtime (which
//! owns each object's table) and the bindings (which queue the guest's frames in it).

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A frame on its way to a client. Cloning one (a broadcast to many sockets) shares its
/// payload: no socket copies it before the WebSocket encoder does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Text(Text),
    Binary(Bytes),
}

/// UTF-8 text in shared bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(Bytes);

impl Text {
    /// The UTF-8 bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Text {
    /// Takes the string's buffer, without copying it.
    fn from(text: String) -> Text {
        Text(Bytes::from(text.into_bytes()))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl Frame {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the socket's connection task is told to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    /// Close with this code and reason (the object asked, or the host shuts down).
    Close(u16, String),
    /// The object failed on a message of this socket: the server tells the client why in
    /// its error frame, then closes with 1011 and `reason`. (The wire format of that
    /// frame is the server's business.)
    Failed {
        message: String,
        reason: String,
    },
}

/// Where a socket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `on-connect` is running; the upgrade has not been answered yet.
    Connecting,
    Open,
    /// The connection ended; `on-close` is pending or running.
    Closed,
}

/// One socket as the host keeps it.
#[derive(Debug)]
pub struct SocketState {
    pub tags: Vec<String>,
    pub attachment: Vec<u8>,
    pub phase: Phase,
    outbound: mpsc::Sender<Outbound>,
}

/// A text frame answered by the host without waking the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoResponse {
    pub request: String,
    pub response: String,
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such socket, or it is closed.
    Gone,
    /// The client reads too slowly; the socket has been cut off.
    Overflow,
}

/// The sockets of one object.
#[derive(Debug, Default)]
pub struct SocketTable {
    sockets: HashMap<u64, SocketState>,
    pub auto_response: Option<AutoResponse>,
    /// The socket whose `on-connect` is running: the only connecting socket listed, so
    /// no other event broadcasts to a socket its object has not accepted yet.
    pub connecting: Option<u64>,
}

impl SocketTable {
    /// Registers a socket being connected; returns the receiving end for its task.
    pub fn insert(&mut self, id: u64, queue: usize) -> mpsc::Receiver<Outbound> {
        let (tx, rx) = mpsc::channel(queue);
        self.sockets.insert(
            id,
            SocketState {
                tags: Vec::new(),
                attachment: Vec::new(),
                phase: Phase::Connecting,
                outbound: tx,
            },
        );
        rx
    }

    /// Sockets that count against the per-object limit.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether no socket exists at all (not even one closing).
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&SocketState> {
        self.sockets.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut SocketState> {
        self.sockets.get_mut(&id)
    }

    /// A socket the guest may address: connecting or open, not closed.
    pub fn live(&self, id: u64) -> Option<&SocketState> {
        self.sockets.get(&id).filter(|s| s.phase != Phase::Closed)
    }

    /// Live sockets, only those carrying `tag` if given, in id order.
    pub fn list(&self, tag: Option<&str>) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .sockets
            .iter()
            .filter(|(id, s)| {
                s.phase == Phase::Open
                    || (s.phase == Phase::Connecting && self.connecting == Some(**id))
            })
            .filter(|(_, s)| tag.is_none_or(|t| s.tags.iter().any(|x| x == t)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Marks the connection as gone; the socket stays readable until `remove`.
    pub fn mark_closed(&mut self, id: u64) {
        if let Some(s) = self.sockets.get_mut(&id) {
            s.phase = Phase::Closed;
        }
    }

    pub fn remove(&mut self, id: u64) -> Option<SocketState> {
        self.sockets.remove(&id)
    }

    /// Queues a frame or a close for a live socket without waiting. A full queue means
    /// the client is not reading: the socket is cut off rather than buffered without
    /// bound (its task sees the channel close and ends the connection).
    pub fn push(&mut self, id: u64, out: Outbound) -> Result<(), SendError> {
        let Some(socket) = self.sockets.get_mut(&id) else {
            return Err(SendError::Gone);
        };
        if socket.phase == Phase::Closed {
            return Err(SendError::Gone);
        }
        match socket.outbound.try_send(out) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Replace the sender so the task's receiver sees the channel end.
                let (dead, _) = mpsc::channel(1);
                socket.outbound = dead;
                socket.phase = Phase::Closed;
                Err(SendError::Overflow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Gone),
        }
    }

    /// Every socket, for shutdown.
    pub fn ids(&self) -> Vec<u64> {
        self.sockets.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_skip_closed_and_filter_tags() {
        let mut t = SocketTable::default();
        let _a = t.insert(1, 4);
        let _b = t.insert(2, 4);
        t.get_mut(1).unwrap().phase = Phase::Open;
        t.get_mut(2).unwrap().phase = Phase::Open;
        t.get_mut(2).unwrap().tags = vec!["red".into()];
        assert_eq!(t.list(None), [1, 2]);
        assert_eq!(t.list(Some("red")), [2]);
        t.mark_closed(1);
        assert_eq!(t.list(None), [2]);
        assert!(t.get(1).is_some());
    }

    #[test]
    fn only_the_socket_being_connected_is_listed_while_connecting() {
        let mut t = SocketTable::default();
        let _a = t.insert(1, 4);
        let _b = t.insert(2, 4);
        t.get_mut(1).unwrap().phase = Phase::Open;
        assert_eq!(t.list(None), [1], "2 has not been accepted yet");
        t.connecting = Some(2);
        assert_eq!(t.list(None), [1, 2]);
    }

    #[test]
    fn a_full_queue_cuts_the_socket_off() {
        let mut t = SocketTable::default();
        let mut rx = t.insert(1, 1);
        let frame = || Outbound::Frame(Frame::Text("x".into()));
        assert_eq!(t.push(1, frame()), Ok(()));
        assert_eq!(t.push(1, frame()), Err(SendError::Overflow));
        assert_eq!(t.push(1, frame()), Err(SendError::Gone));
        assert!(rx.try_recv().is_ok());
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
