//! The layers an object's reads see: the current event's own writes, then the writes of
//! its earlier events that are queued for commit but not yet durable (the overlay), then
//! what the engine has committed. This is what lets event N+1 run while event N's batch
//! is still being fsynced, and what lets a trap discard an event's writes by dropping
//! them.
//!
//! The overlay also keeps a small cache of committed values (what the object read, and
//! its own writes once durable), as Durable Objects do: an object is the only writer of
//! its keys, so while it is live the cache cannot go stale, and a read it answers costs
//! no trip to the engine (a network round trip on PostgreSQL). Trade-off: up to
//! [`CACHE_BYTES`] per object while it is live, dropped when its instance is (eviction,
//! a trap, a failed commit), against a read of the engine per cold key.

use std::collections::{BTreeMap, HashMap};

use super::{Entries, KeyRange, StorageError, Store};
use crate::object::ObjectId;

/// The writes of one event, not yet handed to the writer.
#[derive(Debug, Default)]
pub struct EventWrites {
    /// `delete-all` was called: nothing below this layer is visible.
    pub clear: bool,
    /// Key -> new value (`None` deletes).
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl EventWrites {
    /// Whether the event wrote nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear && self.writes.is_empty()
    }
}

/// Writes of an object's earlier events that are queued for commit, tagged with the
/// sequence number of the batch that carries them.
#[derive(Debug, Default)]
pub struct Overlay {
    entries: BTreeMap<Vec<u8>, (Option<Vec<u8>>, u64)>,
    /// The batch that last cleared the object, while it is not durable.
    cleared: Option<u64>,
    next_seq: u64,
    /// The newest batch known to be durable (or abandoned).
    done_seq: u64,
    /// Committed values (`None`: known absent) while the object is live.
    cache: HashMap<Vec<u8>, Option<Vec<u8>>>,
    cache_bytes: usize,
}

/// The most one object's cache of committed values holds (keys, values and a little
/// bookkeeping per entry); past it, new entries are not kept.
pub const CACHE_BYTES: usize = 256 << 10;

fn cached_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + 32
}

impl Overlay {
    /// Layers an event's writes on top; returns the batch's sequence number.
    pub fn push(&mut self, event: &EventWrites) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        if event.clear {
            self.entries.clear();
            self.cleared = Some(seq);
        }
        for (k, v) in &event.writes {
            self.entries.insert(k.clone(), (v.clone(), seq));
        }
        seq
    }

    /// Batch `seq` (and every earlier one) is durable: the engine now shows its writes,
    /// and the cache keeps them.
    pub fn committed(&mut self, seq: u64) {
        self.done_seq = self.done_seq.max(seq);
        if self.cleared.is_some_and(|c| c <= seq) {
            self.cleared = None;
            self.forget_cache();
        }
        let durable: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, (_, s))| *s <= seq)
            .map(|(k, _)| k.clone())
            .collect();
        for key in durable {
            if let Some((value, _)) = self.entries.remove(&key) {
                self.cache_put(key, value);
            }
        }
    }

    /// Forgets everything (a commit failed: these writes will never be durable).
    pub fn reset(&mut self) {
        self.entries.clear();
        self.cleared = None;
        self.done_seq = self.next_seq;
        self.forget_cache();
    }

    /// Keeps a value just read from the engine (`None`: absent), unless a pending write
    /// already decides the key.
    pub fn remember(&mut self, key: &[u8], value: Option<&[u8]>) {
        if self.cleared.is_none() && !self.entries.contains_key(key) {
            self.cache_put(key.to_vec(), value.map(<[u8]>::to_vec));
        }
    }

    /// Drops the cache of committed values (the object's instance is going away).
    pub fn forget_cache(&mut self) {
        self.cache = HashMap::new();
        self.cache_bytes = 0;
    }

    fn cache_put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(old) = self.cache.remove(&key) {
            self.cache_bytes -= cached_size(&key, &old);
        }
        let size = cached_size(&key, &value);
        if self.cache_bytes + size <= CACHE_BYTES {
            self.cache_bytes += size;
            self.cache.insert(key, value);
        }
    }

    /// Bytes of keys and values the pending writes add at most.
    pub fn pending_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|(k, (v, _))| v.as_ref().map_or(0, |v| (k.len() + v.len()) as u64))
            .sum()
    }

    /// Whether nothing is pending: no write, and no batch (not even one that only
    /// changes the alarm) still on its way to disk.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.cleared.is_none() && self.done_seq == self.next_seq
    }
}

/// The pending layers of one object's reads: the event's own writes over the overlay.
/// Borrowed under the overlay's lock, so each method answers at once and returns owned
/// data: what is left to read from committed storage is then read without the lock (a
/// PostgreSQL read is a round trip). That order is what makes it right: a key missing
/// from the overlay now is either never written or already committed, because the
/// overlay forgets a batch only after its commit.
pub struct Layers<'a> {
    pub overlay: &'a Overlay,
    pub event: &'a EventWrites,
}

/// What the pending layers say about one key.
#[derive(Debug)]
pub enum Lookup {
    /// They decide it (a write, a delete or a clear).
    Known(Option<Vec<u8>>),
    /// Committed storage does.
    Committed,
}

/// A listing's pending changes in range, to merge with what committed storage holds.
#[derive(Debug)]
pub struct ListPlan {
    /// Everything committed is hidden by a pending clear.
    base_hidden: bool,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// What an object's usage is made of: pending writes and the committed values they replace.
#[derive(Debug)]
pub struct UsagePlan {
    /// A pending clear hides everything committed: the usage is this total.
    hidden_total: Option<u64>,
    /// Each pending key and its new value's size (`None`: deleted).
    keys: Vec<(Vec<u8>, Option<usize>)>,
}

impl Layers<'_> {
    fn base_hidden(&self) -> bool {
        self.event.clear || self.overlay.cleared.is_some()
    }

    /// The value of `key` as this event sees it, if the pending layers decide it.
    pub fn get(&self, key: &[u8]) -> Lookup {
        if let Some(v) = self.event.writes.get(key) {
            return Lookup::Known(v.clone());
        }
        if self.event.clear {
            return Lookup::Known(None);
        }
        if let Some((v, _)) = self.overlay.entries.get(key) {
            return Lookup::Known(v.clone());
        }
        if self.overlay.cleared.is_some() {
            return Lookup::Known(None);
        }
        match self.overlay.cache.get(key) {
            Some(v) => Lookup::Known(v.clone()),
            None => Lookup::Committed,
        }
    }

    /// The pending changes a listing of `range` merges in: the event's writes shadow the
    /// overlay's.
    pub fn list(&self, range: &KeyRange) -> ListPlan {
        let mut changes = BTreeMap::new();
        if !self.event.clear {
            for (k, (v, _)) in &self.overlay.entries {
                if range.contains(k) {
                    changes.insert(k.clone(), v.clone());
                }
            }
        }
        for (k, v) in &self.event.writes {
            if range.contains(k) {
                changes.insert(k.clone(), v.clone());
            }
        }
        ListPlan {
            base_hidden: self.base_hidden(),
            changes,
        }
    }

    /// What the object's usage would be made of if this event committed now.
    pub fn usage(&self) -> UsagePlan {
        let mut keys: BTreeMap<&[u8], Option<usize>> = BTreeMap::new();
        if !self.event.clear {
            for (k, (v, _)) in &self.overlay.entries {
                keys.insert(k, v.as_ref().map(Vec::len));
            }
        }
        for (k, v) in &self.event.writes {
            keys.insert(k, v.as_ref().map(Vec::len));
        }
        let hidden_total = self.base_hidden().then(|| {
            keys.iter()
                .map(|(k, v)| v.map_or(0, |v| (k.len() + v) as u64))
                .sum()
        });
        UsagePlan {
            hidden_total,
            keys: keys.into_iter().map(|(k, v)| (k.to_vec(), v)).collect(),
        }
    }
}

impl Lookup {
    /// The value, reading committed storage if the pending layers did not decide it.
    pub async fn resolve(
        self,
        store: &Store,
        object: ObjectId,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Lookup::Known(v) => Ok(v),
            Lookup::Committed => store.get(object, key).await,
        }
    }
}

impl ListPlan {
    /// Entries in `range` as the event sees them, in key order or reversed, at most
    /// `limit` of them and `max_bytes` of keys and values read.
    pub async fn run(
        self,
        store: &Store,
        object: ObjectId,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Entries, StorageError> {
        // Each change can hide at most one committed entry, so reading `limit + changes`
        // committed entries is always enough to fill `limit` after merging.
        let base = if self.base_hidden {
            Vec::new()
        } else {
            let want = limit.saturating_add(self.changes.len());
            store.scan(object, range, reverse, want, max_bytes).await?
        };
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        for (k, v) in self.changes {
            match v {
                Some(v) => merged.insert(k, v),
                None => merged.remove(&k),
            };
        }
        let out: Vec<_> = if reverse {
            merged.into_iter().rev().take(limit).collect()
        } else {
            merged.into_iter().take(limit).collect()
        };
        Ok(out)
    }
}

impl UsagePlan {
    /// Bytes of keys and values the object would store if the event committed now,
    /// given its committed usage.
    pub async fn run(
        self,
        store: &Store,
        object: ObjectId,
        committed_usage: u64,
    ) -> Result<u64, StorageError> {
        if let Some(total) = self.hidden_total {
            return Ok(total);
        }
        let mut usage = committed_usage as i64;
        for (k, v) in self.keys {
            if let Some(old) = store.get(object, &k).await? {
                usage -= (k.len() + old.len()) as i64;
            }
            if let Some(v) = v {
                usage += (k.len() + v) as i64;
            }
        }
        Ok(usage.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Batch, Store};
    use super::*;
    use std::sync::Arc;

    fn put(w: &mut EventWrites, k: &str, v: Option<&str>) {
        w.writes
            .insert(k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
    }

    async fn commit(store: &Store, id: ObjectId, w: &EventWrites) {
        store
            .submit(Batch {
                object: id,
                class: Arc::from("c"),
                name: Arc::from("n"),
                clear: w.clear,
                writes: w.writes.clone().into_iter().collect(),
                alarm: None,
                from_durable: false,
            })
            .await
            .unwrap()
            .unwrap();
    }

    struct View<'a> {
        store: &'a Store,
        object: ObjectId,
        overlay: &'a Overlay,
        event: &'a EventWrites,
    }

    impl View<'_> {
        fn layers(&self) -> Layers<'_> {
            Layers {
                overlay: self.overlay,
                event: self.event,
            }
        }

        async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            let lookup = self.layers().get(key);
            lookup.resolve(self.store, self.object, key).await
        }

        async fn list(
            &self,
            range: &KeyRange,
            reverse: bool,
            limit: usize,
            max_bytes: usize,
        ) -> Result<Entries, StorageError> {
            let plan = self.layers().list(range);
            plan.run(self.store, self.object, range, reverse, limit, max_bytes)
                .await
        }

        async fn usage(&self, committed: u64) -> Result<u64, StorageError> {
            let plan = self.layers().usage();
            plan.run(self.store, self.object, committed).await
        }
    }

    #[tokio::test]
    async fn layers_shadow_each_other_and_lists_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_redb(dir.path(), &Default::default()).unwrap();
        let id = ObjectId([1; 16]);
        let mut committed = EventWrites::default();
        for k in ["a", "b", "c", "d"] {
            put(&mut committed, k, Some("base"));
        }
        commit(&store, id, &committed).await;

        let mut overlay = Overlay::default();
        let mut pending = EventWrites::default();
        put(&mut pending, "b", None);
        put(&mut pending, "e", Some("overlay"));
        let seq = overlay.push(&pending);

        let mut event = EventWrites::default();
        put(&mut event, "a", Some("event"));
        put(&mut event, "c", None);
        let view = View {
            store: &store,
            object: id,
            overlay: &overlay,
            event: &event,
        };
        assert_eq!(
            view.get(b"a").await.unwrap().as_deref(),
            Some(&b"event"[..])
        );
        assert_eq!(view.get(b"b").await.unwrap(), None);
        assert_eq!(
            view.get(b"e").await.unwrap().as_deref(),
            Some(&b"overlay"[..])
        );
        let all = KeyRange::new(None, None, None);
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| {
            v.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(view.list(&all, false, 10, usize::MAX).await.unwrap()),
            ["a", "d", "e"]
        );
        assert_eq!(
            keys(view.list(&all, true, 2, usize::MAX).await.unwrap()),
            ["e", "d"]
        );
        assert_eq!(
            keys(view.list(&all, false, 1, usize::MAX).await.unwrap()),
            ["a"]
        );

        // Once the overlay's batch is durable, redb answers for it.
        commit(&store, id, &pending).await;
        overlay.committed(seq);
        assert!(overlay.is_empty());
        let view = View {
            store: &store,
            object: id,
            overlay: &overlay,
            event: &event,
        };
        assert_eq!(
            keys(view.list(&all, false, 10, usize::MAX).await.unwrap()),
            ["a", "d", "e"]
        );
    }

    #[tokio::test]
    async fn the_cache_answers_for_committed_values_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_redb(dir.path(), &Default::default()).unwrap();
        let id = ObjectId([3; 16]);
        let mut overlay = Overlay::default();
        let event = EventWrites::default();
        let layers = |o: &Overlay, key: &[u8]| match (Layers {
            overlay: o,
            event: &event,
        })
        .get(key)
        {
            Lookup::Known(v) => Some(v),
            Lookup::Committed => None,
        };

        // The object's own write, once durable, is answered from the cache.
        let mut w = EventWrites::default();
        put(&mut w, "own", Some("1"));
        let seq = overlay.push(&w);
        commit(&store, id, &w).await;
        overlay.committed(seq);
        assert_eq!(layers(&overlay, b"own"), Some(Some(b"1".to_vec())));
        // A value read from the engine is kept, absent ones too; a pending key is not.
        assert_eq!(layers(&overlay, b"read"), None);
        overlay.remember(b"read", Some(b"r"));
        overlay.remember(b"missing", None);
        assert_eq!(layers(&overlay, b"read"), Some(Some(b"r".to_vec())));
        assert_eq!(layers(&overlay, b"missing"), Some(None));
        let mut pending = EventWrites::default();
        put(&mut pending, "p", Some("new"));
        let p_seq = overlay.push(&pending);
        overlay.remember(b"p", Some(b"old"));
        assert_eq!(layers(&overlay, b"p"), Some(Some(b"new".to_vec())));

        // A clear that becomes durable empties it; so does a reset or eviction.
        let clear = EventWrites {
            clear: true,
            ..Default::default()
        };
        let c_seq = overlay.push(&clear);
        overlay.committed(p_seq);
        assert_eq!(layers(&overlay, b"own"), Some(None), "hidden by the clear");
        overlay.committed(c_seq);
        assert_eq!(layers(&overlay, b"own"), None, "asks the engine again");
        overlay.remember(b"k", Some(b"v"));
        overlay.reset();
        assert_eq!(layers(&overlay, b"k"), None);
        overlay.remember(b"k", Some(b"v"));
        overlay.forget_cache();
        assert_eq!(layers(&overlay, b"k"), None);

        // It stays within its bound.
        let big = vec![0u8; 100 << 10];
        for i in 0..8u8 {
            overlay.remember(&[i], Some(&big));
        }
        let kept = (0..8u8)
            .filter(|i| layers(&overlay, &[*i]).is_some())
            .count();
        assert_eq!(kept, CACHE_BYTES / (big.len() + 33));
    }

    #[tokio::test]
    async fn clear_hides_committed_data_and_usage_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_redb(dir.path(), &Default::default()).unwrap();
        let id = ObjectId([2; 16]);
        let mut w = EventWrites::default();
        put(&mut w, "k1", Some("12345"));
        commit(&store, id, &w).await;
        assert_eq!(store.object_meta(id).await.unwrap().unwrap().usage, 7);

        let overlay = Overlay::default();
        let mut event = EventWrites {
            clear: true,
            ..Default::default()
        };
        put(&mut event, "k2", Some("x"));
        let view = View {
            store: &store,
            object: id,
            overlay: &overlay,
            event: &event,
        };
        assert_eq!(view.get(b"k1").await.unwrap(), None);
        assert_eq!(view.usage(7).await.unwrap(), 3);
        commit(&store, id, &event).await;
        assert_eq!(store.get(id, b"k1").await.unwrap(), None);
        assert_eq!(store.object_meta(id).await.unwrap().unwrap().usage, 3);
    }
}
