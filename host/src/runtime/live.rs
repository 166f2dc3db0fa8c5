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
    by_tick: BTreeMap<u64, ObjectId>,
    by_id: HashMap<ObjectId, (u64, mpsc::UnboundedSender<Envelope>)>,
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
        let mut asked = Vec::new();
        for _ in 0..MAX_VICTIMS {
            let victim = {
                let lru = self.order.lock().expect("lru lock");
                lru.by_tick
                    .values()
                    .find(|id| **id != me && !asked.contains(*id))
                    .and_then(|id| lru.by_id.get(id).map(|(_, tx)| (*id, tx.clone())))
            };
            if let Some((id, tx)) = victim {
                let _ = tx.send(Envelope::Evict);
                asked.push(id);
            }
            if let Ok(Ok(p)) =
                tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned()).await
            {
                return Some(p);
            }
        }
        None
    }

    /// Records that `id` ran an event now.
    pub fn touch(&self, id: ObjectId, control: &mpsc::UnboundedSender<Envelope>) {
        let mut lru = self.order.lock().expect("lru lock");
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((old, _)) = lru.by_id.insert(id, (tick, control.clone())) {
            lru.by_tick.remove(&old);
        }
        lru.by_tick.insert(tick, id);
    }

    /// Forgets `id` (its instance was dropped).
    pub fn remove(&self, id: ObjectId) {
        let mut lru = self.order.lock().expect("lru lock");
        if let Some((tick, _)) = lru.by_id.remove(&id) {
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
