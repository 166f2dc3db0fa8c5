//! The lobby's matchmaking, pure: who is waiting and who gets paired with whom.
//!
//! The queue is not stored as a list: a host restart closes every socket, and a stored list
//! of socket ids would then name sockets that no longer exist. Instead each socket's
//! attachment says whether it waits and its place in line (a sequence number from a stored
//! counter), and the queue is rebuilt from the open sockets whenever it is needed. Closed
//! sockets leave the line by themselves.

use serde::{Deserialize, Serialize};

/// What the lobby keeps on each socket (its attachment).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The name the player goes by.
    pub name: String,
    /// Place in line while waiting to be paired; `None` while only watching or after
    /// being matched.
    #[serde(default)]
    pub queued: Option<u64>,
}

/// A socket waiting in line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub socket: u64,
    pub name: String,
    pub seq: u64,
}

/// Pairs the waiters first come, first served: the two who waited longest form the first
/// pair, and so on. An odd one out keeps waiting (it is not returned).
pub fn pair(mut waiting: Vec<Waiter>) -> Vec<(Waiter, Waiter)> {
    waiting.sort_by_key(|w| (w.seq, w.socket));
    let mut pairs = Vec::new();
    let mut it = waiting.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        pairs.push((a, b));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(socket: u64, seq: u64) -> Waiter {
        Waiter {
            socket,
            name: format!("p{socket}"),
            seq,
        }
    }

    #[test]
    fn pairs_in_arrival_order() {
        let pairs = pair(vec![w(10, 3), w(11, 1), w(12, 2), w(13, 4)]);
        let ids: Vec<(u64, u64)> = pairs.iter().map(|(a, b)| (a.socket, b.socket)).collect();
        assert_eq!(ids, vec![(11, 12), (10, 13)]);
    }

    #[test]
    fn odd_one_waits() {
        assert!(pair(vec![w(1, 1)]).is_empty());
        assert!(pair(Vec::new()).is_empty());
        let pairs = pair(vec![w(1, 5), w(2, 6), w(3, 7)]);
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].0.socket, pairs[0].1.socket), (1, 2));
    }

    #[test]
    fn ticket_defaults_to_not_waiting() {
        let t: Ticket = serde_json::from_str(r#"{"name":"a"}"#).unwrap();
        assert_eq!(t.queued, None);
    }
}
