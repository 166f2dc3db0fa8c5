//! Awareness (who is here, their cursor, name and color), relayed between sockets.
//!
//! Each awareness client id is *owned* by the socket that first announced it (a
//! y-websocket client also re-sends the states it hears from others, so "which socket
//! sent it" is not enough). The owning socket's attachment keeps the id, its last clock
//! and (when it fits) its last state: the attachment survives eviction, so the socket's
//! close can announce that its clients left (`null` with a bumped clock), and a newcomer
//! or a `queryAwareness` gets the last-known states, even from a fresh instance.
//!
//! Like y-protocols, an entry is taken (and relayed) only if its clock is newer than the
//! known one, or it is a removal at the same clock: echoes of states everyone already
//! has are dropped.

use std::collections::BTreeMap;

use lodge_sdk::{Socket, sockets};
use serde::{Deserialize, Serialize};

use crate::protocol::AwarenessEntry;

/// Awareness entries kept per socket (a y-websocket client owns one).
const MAX_PER_SOCKET: usize = 16;
/// Attachments above this are stored without the states (ids and clocks only).
const MAX_ATTACHMENT_JSON: usize = 1_900;

/// What a socket's attachment holds.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct Attachment {
    #[serde(default)]
    pub aw: Vec<Slot>,
}

/// One awareness client a socket owns.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Slot {
    /// Awareness client id.
    pub c: u64,
    /// Its last clock.
    pub k: u64,
    /// Its last state, unless it did not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<serde_json::Value>,
}

fn attachment(socket: Socket) -> Attachment {
    socket.attachment().unwrap_or_default()
}

fn store(socket: Socket, slots: Vec<Slot>) {
    let mut att = Attachment { aw: slots };
    let fits =
        |a: &Attachment| serde_json::to_string(a).map_or(0, |s| s.len()) <= MAX_ATTACHMENT_JSON;
    if !fits(&att) {
        for slot in &mut att.aw {
            slot.s = None;
        }
    }
    if socket.set_attachment(&att).is_err() {
        eprintln!(
            "document: cannot store awareness for socket {}",
            socket.id()
        );
    }
}

/// The owner, clock and state of every awareness client of the open sockets: a cache of
/// their attachments, rebuilt from them after an eviction.
#[derive(Default)]
pub struct Awareness {
    loaded: bool,
    clients: BTreeMap<u64, (Socket, Slot)>,
}

impl Awareness {
    fn load(&mut self) {
        if self.loaded {
            return;
        }
        self.clients.clear();
        for socket in sockets::all() {
            for slot in attachment(socket).aw {
                self.clients.insert(slot.c, (socket, slot));
            }
        }
        self.loaded = true;
    }

    fn slots_of(&self, socket: Socket) -> Vec<Slot> {
        self.clients
            .values()
            .filter(|(s, _)| *s == socket)
            .map(|(_, slot)| slot.clone())
            .collect()
    }

    /// Takes an awareness update from `socket`; returns the entries that are new, to relay.
    pub fn update(&mut self, socket: Socket, entries: Vec<AwarenessEntry>) -> Vec<AwarenessEntry> {
        self.load();
        let mut fresh = Vec::new();
        let mut touched: Vec<Socket> = Vec::new();
        for e in entries {
            let known = self.clients.get(&e.client);
            let is_fresh = match known {
                None => e.state.is_some(),
                Some((_, slot)) => e.clock > slot.k || (e.clock == slot.k && e.state.is_none()),
            };
            if !is_fresh {
                continue;
            }
            if let Some((owner, _)) = known {
                touched.push(*owner);
            }
            match &e.state {
                Some(state) => {
                    let owned = self.clients.values().filter(|(s, _)| *s == socket).count();
                    let already = known.is_some_and(|(s, _)| *s == socket);
                    if already || owned < MAX_PER_SOCKET {
                        let slot = Slot {
                            c: e.client,
                            k: e.clock,
                            s: Some(state.clone()),
                        };
                        self.clients.insert(e.client, (socket, slot));
                        touched.push(socket);
                    }
                }
                None => {
                    self.clients.remove(&e.client);
                }
            }
            fresh.push(e);
        }
        touched.sort();
        touched.dedup();
        for s in touched {
            store(s, self.slots_of(s));
        }
        fresh
    }

    /// A socket closed: the removals to announce for the clients it owned.
    pub fn closed(&mut self, socket: Socket) -> Vec<AwarenessEntry> {
        // The closed socket is no longer listed, so a fresh load would miss it: its own
        // attachment (still readable) says what it owned.
        let owned = attachment(socket).aw;
        self.load();
        let mut removals = Vec::new();
        for slot in owned {
            let still_ours = match self.clients.get(&slot.c) {
                Some((owner, _)) => *owner == socket,
                None => true,
            };
            if still_ours {
                self.clients.remove(&slot.c);
                removals.push(AwarenessEntry {
                    client: slot.c,
                    clock: slot.k + 1,
                    state: None,
                });
            }
        }
        // Drop anything else the cache still had for it.
        self.clients.retain(|_, (s, _)| *s != socket);
        removals
    }

    /// Every known state (for a newcomer or a query).
    pub fn known(&mut self) -> Vec<AwarenessEntry> {
        self.load();
        self.clients
            .values()
            .filter_map(|(_, slot)| {
                slot.s.as_ref().map(|state| AwarenessEntry {
                    client: slot.c,
                    clock: slot.k,
                    state: Some(state.clone()),
                })
            })
            .collect()
    }
}
