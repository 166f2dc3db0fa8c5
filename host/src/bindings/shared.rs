//! What the parts of one object share: [`ObjectShared`], the one owner of the object's
//! mutable state outside its instance.
//!
//! Four kinds of task touch an object: its actor (runs events, and the host calls they
//! make), its output gate (releases outputs after commits), its sockets' connection tasks
//! (auto-responses, closes) and its AI streams' tasks. Each piece of state has its own lock
//! so that a socket task answering a ping never waits for a guest's storage read:
//!
//! | lock        | what                                  | held during                    |
//! |-------------|---------------------------------------|--------------------------------|
//! | `sockets`   | the socket table (hibernation-proof)  | table edits, queueing frames   |
//! | `overlay`   | writes handed to the writer, not durable yet | a storage read (one redb read transaction, never an fsync) |
//! | `streams`   | AI streams in flight                  | table edits, starting a task   |
//! | `usage`     | the bound on the object's storage use | arithmetic                     |
//! | `logs`      | the guest's log allowance             | arithmetic                     |
//!
//! **Lock order**: the runtime's directory lock, then `sockets`, `overlay`, `streams`,
//! `usage`, `logs`. A task holding one may take a later one, never an earlier one. None is held
//! across an `.await` (the guards are not `Send`). Debug builds check the order on every
//! acquisition ([`lock`]), so a test that takes them the wrong way round panics at once
//! instead of deadlocking once in a while.
//!
//! Trade-off: four small locks and a written order, rather than one lock for the object
//! (which would make every socket task wait behind guest storage reads) or message passing
//! through the actor (which would wake an evicted object to answer a ping).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use super::logs::LogBudget;
use crate::ai::AiService;
use crate::config::Limits;
use crate::object::ObjectRef;
use crate::sockets::SocketTable;
use crate::storage::{Overlay, Store};

/// The locks of an object, in the order they may be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// The runtime's directory of objects (host-wide).
    Directory = 0,
    Sockets = 1,
    Overlay = 2,
    Streams = 3,
    Usage = 4,
    Logs = 5,
}

thread_local! {
    /// The ranks this thread holds, as a bit set (checked in debug builds only).
    static HELD: Cell<u8> = const { Cell::new(0) };
}

/// A lock guard that checks, in debug builds, that locks are taken in [`Rank`] order.
pub struct Ranked<'a, T> {
    guard: MutexGuard<'a, T>,
    #[cfg(debug_assertions)]
    rank: Rank,
}

/// Takes `mutex`, which has rank `rank`. Panics (debug builds) if this thread holds a lock
/// of the same or a later rank: that order can deadlock against another task.
pub fn lock<T>(mutex: &Mutex<T>, rank: Rank) -> Ranked<'_, T> {
    #[cfg(debug_assertions)]
    HELD.with(|held| {
        let bits = held.get();
        assert!(
            bits >> rank as u8 == 0,
            "lock order violated: taking {rank:?} while holding a lock of the same or a later \
             rank (held: {bits:#07b}); see bindings/shared.rs"
        );
        held.set(bits | 1 << rank as u8);
    });
    // Poisoning is ignored: a panic in a critical section here is a host bug that the
    // panic itself reports, and every section leaves its state usable.
    let guard = mutex.lock().unwrap_or_else(|p| p.into_inner());
    Ranked {
        guard,
        #[cfg(debug_assertions)]
        rank,
    }
}

impl<T> Drop for Ranked<'_, T> {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        HELD.with(|held| held.set(held.get() & !(1 << self.rank as u8)));
    }
}

impl<T> Deref for Ranked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Ranked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// The AI streams of one object that have not delivered their final event, by the id the
/// guest was given. The runtime starts and cancels them; the bindings count them against
/// the class's `max_ai_streams`.
#[derive(Debug, Default)]
pub struct Streams {
    running: HashMap<u64, tokio::task::AbortHandle>,
}

impl Streams {
    /// Streams in flight.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether none is in flight.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether `id` is in flight.
    pub fn contains(&self, id: u64) -> bool {
        self.running.contains_key(&id)
    }

    /// Records a started stream's task.
    pub fn insert(&mut self, id: u64, task: tokio::task::AbortHandle) {
        self.running.insert(id, task);
    }

    /// The stream's final event is being delivered: it no longer counts. Returns whether
    /// it was in flight.
    pub fn finish(&mut self, id: u64) -> bool {
        self.running.remove(&id).is_some()
    }

    /// Stops a stream: its task ends and nothing more of it is delivered (events it had
    /// queued are dropped, as the stream is no longer in the table).
    pub fn cancel(&mut self, id: u64) -> bool {
        match self.running.remove(&id) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Stops every stream (the object was deleted).
    pub fn cancel_all(&mut self) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
    }
}

/// The state an object's actor, gate, socket tasks and AI tasks share; it lives as long
/// as the object's entry on this host. See the module docs for the lock order. Its
/// immutable part ([`ObjectSetup`]) is reached through `Deref`.
pub struct ObjectShared {
    setup: ObjectSetup,
    sockets: Mutex<SocketTable>,
    overlay: Mutex<Overlay>,
    streams: Mutex<Streams>,
    /// An upper bound of the object's storage usage (committed, pending and written
    /// since), once a write needed it: only this object writes its keys, and deletes or
    /// discarded writes only lower the real figure, so it stays a bound without a read.
    usage_bound: Mutex<Option<u64>>,
    log_budget: Mutex<LogBudget>,
}

/// The immutable parts of an [`ObjectShared`].
pub struct ObjectSetup {
    pub object: ObjectRef,
    pub settings: Arc<BTreeMap<String, String>>,
    pub limits: Limits,
    pub store: Store,
    pub ai: AiService,
    /// Host-wide source of AI stream ids: one id names a stream in logs, metrics and to
    /// the guest.
    pub stream_ids: Arc<AtomicU64>,
    /// The host's last outage `(from, to)` in ms since the epoch, if it knows one.
    pub host_outage: Option<(u64, u64)>,
}

impl Deref for ObjectShared {
    type Target = ObjectSetup;
    fn deref(&self) -> &ObjectSetup {
        &self.setup
    }
}

impl ObjectShared {
    /// The shared state of an object with no sockets, pending writes or streams.
    pub fn new(setup: ObjectSetup) -> ObjectShared {
        ObjectShared {
            setup,
            sockets: Mutex::default(),
            overlay: Mutex::default(),
            streams: Mutex::default(),
            usage_bound: Mutex::default(),
            log_budget: Mutex::default(),
        }
    }

    /// The socket table (rank [`Rank::Sockets`]).
    pub fn sockets(&self) -> Ranked<'_, SocketTable> {
        lock(&self.sockets, Rank::Sockets)
    }

    /// Writes on their way to disk (rank [`Rank::Overlay`]).
    pub fn overlay(&self) -> Ranked<'_, Overlay> {
        lock(&self.overlay, Rank::Overlay)
    }

    /// AI streams in flight (rank [`Rank::Streams`]).
    pub fn streams(&self) -> Ranked<'_, Streams> {
        lock(&self.streams, Rank::Streams)
    }

    /// The storage usage bound (rank [`Rank::Usage`]).
    pub fn usage_bound(&self) -> Ranked<'_, Option<u64>> {
        lock(&self.usage_bound, Rank::Usage)
    }

    /// The guest's log allowance (rank [`Rank::Logs`]).
    pub fn log_budget(&self) -> Ranked<'_, LogBudget> {
        lock(&self.log_budget, Rank::Logs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes a lock of rank `first`, then, holding it, one of rank `second`.
    fn nested(first: Rank, second: Rank) {
        let (a, b) = (Mutex::new(1), Mutex::new(2));
        let _first = lock(&a, first);
        let _second = lock(&b, second);
    }

    #[test]
    fn locks_in_order_are_fine_and_released_on_drop() {
        nested(Rank::Directory, Rank::Sockets);
        nested(Rank::Sockets, Rank::Overlay);
        nested(Rank::Overlay, Rank::Streams);
        nested(Rank::Streams, Rank::Usage);
        // All released: taking an early rank again is fine.
        nested(Rank::Directory, Rank::Usage);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order violated")]
    fn an_earlier_lock_under_a_later_one_panics() {
        nested(Rank::Overlay, Rank::Sockets);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order violated")]
    fn two_locks_of_one_rank_panic() {
        // Two objects' socket tables at once could deadlock against the reverse order.
        nested(Rank::Sockets, Rank::Sockets);
    }
}
