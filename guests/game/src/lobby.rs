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
    /// The browser the socket comes from (the page's `client=` id, shared by its tabs):
    /// two sockets of one client are never paired with each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// A client id as the page sends it: 1-64 of `0-9 a-z A-Z - _`; anything else is ignored.
pub fn clean_client(raw: Option<&str>) -> Option<String> {
    raw.filter(|c| {
        !c.is_empty()
            && c.len() <= 64
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
    .map(str::to_owned)
}

/// A socket waiting in line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub socket: u64,
    pub name: String,
    pub seq: u64,
    pub client: Option<String>,
}

impl Waiter {
    /// Whether the two may play each other: not two tabs of one browser.
    fn may_play(&self, other: &Waiter) -> bool {
        self.client.is_none() || other.client.is_none() || self.client != other.client
    }
}

/// Pairs the waiters first come, first served: each, in order of arrival, plays the one who
/// has waited longest among those it may play (not another tab of its own browser). Those
/// left over keep waiting (they are not returned).
pub fn pair(mut waiting: Vec<Waiter>) -> Vec<(Waiter, Waiter)> {
    waiting.sort_by_key(|w| (w.seq, w.socket));
    let mut pairs = Vec::new();
    let mut unmatched: Vec<Waiter> = Vec::new();
    for w in waiting {
        match unmatched.iter().position(|u| u.may_play(&w)) {
            Some(i) => pairs.push((unmatched.remove(i), w)),
            None => unmatched.push(w),
        }
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
            client: None,
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
    fn two_tabs_of_one_browser_are_never_paired() {
        let from = |socket: u64, seq: u64, client: &str| Waiter {
            client: Some(client.into()),
            ..w(socket, seq)
        };
        // Two tabs of browser A wait: nobody is paired.
        assert!(pair(vec![from(1, 1, "A"), from(2, 2, "A")]).is_empty());
        // B arrives: it plays A's first tab; A's second tab keeps waiting.
        let pairs = pair(vec![from(1, 1, "A"), from(2, 2, "A"), from(3, 3, "B")]);
        let ids: Vec<(u64, u64)> = pairs.iter().map(|(a, b)| (a.socket, b.socket)).collect();
        assert_eq!(ids, vec![(1, 3)]);
        // A socket without a client id may play anyone.
        let pairs = pair(vec![from(1, 1, "A"), w(2, 2)]);
        assert_eq!(pairs.len(), 1);
        assert_eq!(clean_client(Some("a1-B_")), Some("a1-B_".into()));
        assert_eq!(clean_client(Some("no spaces")), None);
        assert_eq!(clean_client(Some("")), None);
    }

    #[test]
    fn ticket_defaults_to_not_waiting() {
        let t: Ticket = serde_json::from_str(r#"{"name":"a"}"#).unwrap();
        assert_eq!(t.queued, None);
    }
}
