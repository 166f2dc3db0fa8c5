//! The commit handshake between an object's actor and its output gate.
//!
//! The actor runs events ahead of their commits (event N+1 runs while N is being fsynced);
//! the gate learns each commit's fate and releases outputs. Three facts cross between them,
//! and all three live here, in one small state behind one lock:
//!
//! - **A commit failed.** Every event that ran in the same *epoch* (after the last restart)
//!   may have read the failed writes, so none of their outputs or replies may be released,
//!   even those of read-only events with no batch of their own. The gate drops them; the
//!   actor, before its next event, starts over from durable state in a new epoch.
//! - **The first batch from durable state.** The storage writer fences an object whose commit
//!   failed: it refuses the object's later batches (they were built on the failed writes)
//!   until one arrives marked as built from durable state. That is the first batch of an
//!   actor, and the first after a restart.
//! - **The last commit landed.** An actor with nothing left to do retires only once no
//!   commit is in flight; if one is, it asks to be woken when the last one lands.
//!
//! Trade-off: one uncontended mutex taken a few times per event, instead of atomics spread
//! over the actor and the gate; the whole protocol is this file and its tests.

use std::sync::Mutex;

/// The commits of one object's actor.
#[derive(Debug)]
pub(super) struct Commits {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Batches handed to the writer whose fate the gate has not seen.
    in_flight: usize,
    /// Bumped by each failed commit; events of older epochs are never released.
    epoch: u64,
    /// A commit failed since the actor last began an event.
    failed: bool,
    /// The next batch is the first built from durable state only.
    from_durable: bool,
    /// The actor waits to retire: wake it when `in_flight` reaches zero.
    wake_when_idle: bool,
}

/// The epoch an event ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Epoch(u64);

/// What the actor must do before running an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Begin {
    pub epoch: Epoch,
    /// A commit failed: drop the instance and what it built, and read durable state again.
    pub restart: bool,
}

/// What the gate must do with one event's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settled {
    /// Release the outputs and the reply; otherwise drop them and fail the reply.
    pub release: bool,
    /// The actor asked to be woken and no commit is in flight any more.
    pub wake: bool,
}

impl Default for Commits {
    fn default() -> Self {
        Commits {
            state: Mutex::new(State {
                in_flight: 0,
                epoch: 0,
                failed: false,
                // A new actor reads only durable state.
                from_durable: true,
                wake_when_idle: false,
            }),
        }
    }
}

impl Commits {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section below leaves the state consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor is about to run an event.
    pub fn begin(&self) -> Begin {
        let mut s = self.state();
        let restart = std::mem::take(&mut s.failed);
        if restart {
            s.from_durable = true;
        }
        Begin {
            epoch: Epoch(s.epoch),
            restart,
        }
    }

    /// The actor hands a batch to the writer. Returns whether the batch is built from
    /// durable state only (which lifts the writer's fence on the object).
    pub fn submitted(&self) -> bool {
        let mut s = self.state();
        s.in_flight += 1;
        std::mem::take(&mut s.from_durable)
    }

    /// The gate knows the fate of an event of `epoch`: `None` when it had no batch,
    /// otherwise whether its batch committed.
    pub fn settle(&self, epoch: Epoch, committed: Option<bool>) -> Settled {
        let mut s = self.state();
        if committed.is_some() {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        let current = epoch.0 >= s.epoch;
        if committed == Some(false) && current {
            s.epoch = epoch.0 + 1;
            s.failed = true;
        }
        // A batch of an older epoch cannot commit (the writer fences it); if it did, its
        // outputs were still computed from writes that never became durable.
        let release = current && committed != Some(false);
        let wake = s.in_flight == 0 && std::mem::take(&mut s.wake_when_idle);
        Settled { release, wake }
    }

    /// The actor has nothing to do: true when no commit is in flight (it may retire now);
    /// otherwise the gate wakes it when the last one lands.
    pub fn idle_or_wake_later(&self) -> bool {
        let mut s = self.state();
        s.wake_when_idle = s.in_flight > 0;
        s.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: Settled = Settled {
        release: true,
        wake: false,
    };
    const DROP: Settled = Settled {
        release: false,
        wake: false,
    };

    #[test]
    fn committed_events_are_released_in_one_epoch() {
        let c = Commits::default();
        let first = c.begin();
        assert!(!first.restart);
        assert!(
            c.submitted(),
            "an actor's first batch is built from durable state"
        );
        let second = c.begin();
        assert!(!c.submitted(), "later ones build on pending writes");
        assert_eq!(first.epoch, second.epoch);
        assert_eq!(c.settle(first.epoch, Some(true)), RELEASE);
        assert_eq!(c.settle(second.epoch, None), RELEASE);
        assert_eq!(c.settle(second.epoch, Some(true)), RELEASE);
    }

    #[test]
    fn a_failed_commit_drops_every_event_of_its_epoch_even_read_only_ones() {
        let c = Commits::default();
        let write = c.begin();
        c.submitted();
        let read = c.begin(); // ran on the pending write
        let write2 = c.begin();
        c.submitted();
        assert_eq!(c.settle(write.epoch, Some(false)), DROP);
        assert_eq!(c.settle(read.epoch, None), DROP, "a read of a failed write");
        // Fenced by the writer, so it fails too; even if it had not, it is dropped.
        assert_eq!(c.settle(write2.epoch, Some(true)), DROP);

        let next = c.begin();
        assert!(next.restart, "the actor starts over once");
        assert!(next.epoch > write.epoch);
        assert!(c.submitted(), "and its next batch lifts the fence");
        assert!(!c.begin().restart);
        assert_eq!(c.settle(next.epoch, Some(true)), RELEASE);
    }

    #[test]
    fn a_late_failure_of_an_old_epoch_does_not_restart_again() {
        let c = Commits::default();
        let a = c.begin();
        c.submitted();
        let b = c.begin();
        c.submitted();
        c.settle(a.epoch, Some(false));
        let restarted = c.begin();
        assert!(restarted.restart);
        // b fails as well (same group, or fenced): the actor already started over.
        assert_eq!(c.settle(b.epoch, Some(false)), DROP);
        let after = c.begin();
        assert!(!after.restart);
        assert_eq!(after.epoch, restarted.epoch);
    }

    #[test]
    fn a_restart_with_no_write_keeps_the_next_batch_marked() {
        let c = Commits::default();
        let a = c.begin();
        c.submitted();
        c.settle(a.epoch, Some(false));
        assert!(c.begin().restart);
        // A read-only event, then a write: the write is still the first from durable state.
        assert!(c.submitted());
    }

    #[test]
    fn an_actor_waiting_to_retire_is_woken_by_the_last_commit() {
        let c = Commits::default();
        assert!(c.idle_or_wake_later(), "nothing in flight: retire now");
        let a = c.begin();
        c.submitted();
        c.submitted();
        assert!(!c.idle_or_wake_later());
        assert!(
            !c.settle(a.epoch, Some(true)).wake,
            "one commit is still in flight"
        );
        assert!(
            c.settle(a.epoch, Some(true)).wake,
            "the last one wakes the actor"
        );
        assert!(!c.settle(a.epoch, None).wake, "once");
        assert!(c.idle_or_wake_later());
    }

    #[test]
    fn a_failed_last_commit_wakes_the_actor_too() {
        let c = Commits::default();
        let a = c.begin();
        c.submitted();
        assert!(!c.idle_or_wake_later());
        let settled = c.settle(a.epoch, Some(false));
        assert!(!settled.release);
        assert!(settled.wake);
    }

    #[test]
    fn no_wake_unless_asked() {
        let c = Commits::default();
        let a = c.begin();
        c.submitted();
        assert!(!c.settle(a.epoch, Some(true)).wake);
    }
}
