//! The cap on live instances. A permit is held by every live instance; when none is
//! free, the least recently used object is asked to evict itself. Sizing the pooling
//! allocator from the same number keeps the cap, not the allocator, the limit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Envelope;
use crate::object::ObjectId;

/// How long an activation waits for an evicted object's slot before trying the next.
const EVICTION_WAIT: Duration = Duration::from_millis(200);
/// How many victims an activation asks before giving up.
const MAX_VICTIMS: usize = 16;

/// Live instances in least-recently-used order.
pub struct LiveSet {
    permits: Arc<Semaphore>,
    order: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    /// Live objects that may be chosen as a victim, oldest first.
    by_tick: BTreeMap<u64, ObjectId>,
    by_id: HashMap<ObjectId, Live>,
}

struct Live {
    /// Its place in `by_tick`; `None` once an activation has asked it to evict itself,
    /// so that activations running at the same time each ask a different object.
    tick: Option<u64>,
    control: mpsc::UnboundedSender<Envelope>,
}

impl LiveSet {
    /// A set allowing `cap` live instances.
    pub fn new(cap: u32) -> LiveSet {
        LiveSet {
            permits: Arc::new(Semaphore::new(cap as usize)),
            order: Mutex::new(Lru::default()),
        }
    }

    /// Waits for a slot, evicting least recently used objects if needed. `None` when no
    /// slot frees up (every live object is busy and refuses eviction).
    pub async fn acquire(&self, me: ObjectId) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        for _ in 0..MAX_VICTIMS {
            // The victim leaves the LRU order as it is chosen: an eviction frees one
            // slot, so one waiting activation must not share its victim with another.
            // A victim that refuses (it is running an event or an AI stream) comes back
            // with its next event.
            if let Some(control) = self.claim_victim(me) {
                let _ = control.send(Envelope::Evict);
            }
            if let Ok(Ok(p)) =
                tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned()).await
            {
                return Some(p);
            }
        }
        None
    }

    /// Takes the least recently used object other than `me` out of the LRU order and
    /// returns its control channel.
    fn claim_victim(&self, me: ObjectId) -> Option<mpsc::UnboundedSender<Envelope>> {
        let mut lru = self.order.lock().expect("lru lock");
        let (&tick, &id) = lru.by_tick.iter().find(|(_, id)| **id != me)?;
        lru.by_tick.remove(&tick);
        let live = lru.by_id.get_mut(&id)?;
        live.tick = None;
        Some(live.control.clone())
    }

    /// Records that `id` ran an event now.
    pub fn touch(&self, id: ObjectId, control: &mpsc::UnboundedSender<Envelope>) {
        let mut lru = self.order.lock().expect("lru lock");
        lru.tick += 1;
        let tick = lru.tick;
        let old = lru.by_id.insert(
            id,
            Live {
                tick: Some(tick),
                control: control.clone(),
            },
        );
        if let Some(Live {
            tick: Some(old), ..
        }) = old
        {
            lru.by_tick.remove(&old);
        }
        lru.by_tick.insert(tick, id);
    }

    /// Forgets `id` (its instance was dropped).
    pub fn remove(&self, id: ObjectId) {
        let mut lru = self.order.lock().expect("lru lock");
        if let Some(Live {
            tick: Some(tick), ..
        }) = lru.by_id.remove(&id)
        {
            lru.by_tick.remove(&tick);
        }
    }

    /// Whether `id` has a live instance.
    pub fn contains(&self, id: ObjectId) -> bool {
        self.order.lock().expect("lru lock").by_id.contains_key(&id)
    }

    /// Live instances now.
    pub fn len(&self) -> usize {
        self.order.lock().expect("lru lock").by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 16])
    }

    #[tokio::test]
    async fn concurrent_activations_at_the_cap_each_evict_a_different_object() {
        let live = Arc::new(LiveSet::new(2));
        let mut victims = Vec::new();
        for n in [1, 2] {
            let (tx, rx) = mpsc::unbounded_channel();
            let permit = live.acquire(id(n)).await.expect("a free slot");
            live.touch(id(n), &tx);
            victims.push((n, Some(permit), rx));
        }
        let waiting: Vec<_> = [3, 4]
            .into_iter()
            .map(|n| {
                let live = live.clone();
                tokio::spawn(async move { live.acquire(id(n)).await })
            })
            .collect();
        // Each live object is asked once, and evicts itself: its slot goes to a waiter.
        for (n, permit, rx) in &mut victims {
            assert!(matches!(rx.recv().await, Some(Envelope::Evict)), "{n}");
            live.remove(id(*n));
            drop(permit.take());
        }
        for task in waiting {
            assert!(task.await.unwrap().is_some());
        }
        for (n, _, rx) in &mut victims {
            assert!(
                rx.try_recv().is_err(),
                "object {n} was asked to evict twice"
            );
        }
        assert_eq!(live.len(), 0);
    }

    #[tokio::test]
    async fn a_victim_that_ran_an_event_is_back_in_the_order() {
        let live = LiveSet::new(1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let permit = live.acquire(id(1)).await.unwrap();
        live.touch(id(1), &tx);
        assert!(live.claim_victim(id(2)).is_some());
        // Claimed: not offered twice, but still live.
        assert!(live.claim_victim(id(3)).is_none());
        assert!(live.contains(id(1)));
        // It refused (say, busy) and ran another event: it can be chosen again.
        live.touch(id(1), &tx);
        assert!(live.claim_victim(id(2)).is_some());
        assert!(rx.try_recv().is_err());
        drop(permit);
    }
}
