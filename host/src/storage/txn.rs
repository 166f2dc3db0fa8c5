//! The layers an object's reads see: the current event's own writes, then the writes of
//! its earlier events that are queued for commit but not yet durable (the overlay), then
//! what redb has committed. This is what lets event N+1 run while event N's batch is
//! still being fsynced, and what lets a trap discard an event's writes by dropping them.

use std::collections::BTreeMap;

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

    /// Batch `seq` (and every earlier one) is durable: redb now shows its writes.
    pub fn committed(&mut self, seq: u64) {
        self.done_seq = self.done_seq.max(seq);
        self.entries.retain(|_, (_, s)| *s > seq);
        if self.cleared.is_some_and(|c| c <= seq) {
            self.cleared = None;
        }
    }

    /// Forgets everything (a commit failed: these writes will never be durable).
    pub fn reset(&mut self) {
        self.entries.clear();
        self.cleared = None;
        self.done_seq = self.next_seq;
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

/// A read view of one object through all three layers.
pub struct StorageView<'a> {
    pub store: &'a Store,
    pub object: ObjectId,
    pub overlay: &'a Overlay,
    pub event: &'a EventWrites,
}

impl StorageView<'_> {
    fn base_hidden(&self) -> bool {
        self.event.clear || self.overlay.cleared.is_some()
    }

    /// The value of `key` as this event sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = self.event.writes.get(key) {
            return Ok(v.clone());
        }
        if self.event.clear {
            return Ok(None);
        }
        if let Some((v, _)) = self.overlay.entries.get(key) {
            return Ok(v.clone());
        }
        if self.overlay.cleared.is_some() {
            return Ok(None);
        }
        self.store.get(self.object, key)
    }

    /// Entries in `range` as this event sees them, in key order or reversed, at most
    /// `limit` of them and `max_bytes` of keys and values read.
    pub fn list(
        &self,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Entries, StorageError> {
        // Pending changes in range: the event's writes shadow the overlay's.
        let mut changes: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        if !self.event.clear {
            for (k, (v, _)) in &self.overlay.entries {
                if range.contains(k) {
                    changes.insert(k, v.as_deref());
                }
            }
        }
        for (k, v) in &self.event.writes {
            if range.contains(k) {
                changes.insert(k, v.as_deref());
            }
        }
        // Each change can hide at most one committed entry, so reading `limit + changes`
        // committed entries is always enough to fill `limit` after merging.
        let base = if self.base_hidden() {
            Vec::new()
        } else {
            let want = limit.saturating_add(changes.len());
            self.store
                .scan(self.object, range, reverse, want, max_bytes)?
        };
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        for (k, v) in changes {
            match v {
                Some(v) => merged.insert(k.to_vec(), v.to_vec()),
                None => merged.remove(k),
            };
        }
        let out: Vec<_> = if reverse {
            merged.into_iter().rev().take(limit).collect()
        } else {
            merged.into_iter().take(limit).collect()
        };
        Ok(out)
    }

    /// Bytes of keys and values the object would store if this event committed now.
    pub fn usage(&self, committed_usage: u64) -> Result<u64, StorageError> {
        if self.base_hidden() {
            // Everything committed is going away: count only what is pending.
            let mut total = 0u64;
            let mut seen = std::collections::BTreeSet::new();
            for (k, v) in &self.event.writes {
                seen.insert(k.as_slice());
                if let Some(v) = v {
                    total += (k.len() + v.len()) as u64;
                }
            }
            if !self.event.clear {
                for (k, (v, _)) in &self.overlay.entries {
                    if !seen.contains(k.as_slice())
                        && let Some(v) = v
                    {
                        total += (k.len() + v.len()) as u64;
                    }
                }
            }
            return Ok(total);
        }
        let mut usage = committed_usage as i64;
        let mut keys: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for (k, (v, _)) in &self.overlay.entries {
            keys.insert(k, v.as_deref());
        }
        for (k, v) in &self.event.writes {
            keys.insert(k, v.as_deref());
        }
        for (k, v) in keys {
            if let Some(old) = self.store.get(self.object, k)? {
                usage -= (k.len() + old.len()) as i64;
            }
            if let Some(v) = v {
                usage += (k.len() + v.len()) as i64;
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

    #[tokio::test]
    async fn layers_shadow_each_other_and_lists_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
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
        let view = StorageView {
            store: &store,
            object: id,
            overlay: &overlay,
            event: &event,
        };
        assert_eq!(view.get(b"a").unwrap().as_deref(), Some(&b"event"[..]));
        assert_eq!(view.get(b"b").unwrap(), None);
        assert_eq!(view.get(b"e").unwrap().as_deref(), Some(&b"overlay"[..]));
        let all = KeyRange::new(None, None, None);
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| {
            v.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(view.list(&all, false, 10, usize::MAX).unwrap()),
            ["a", "d", "e"]
        );
        assert_eq!(
            keys(view.list(&all, true, 2, usize::MAX).unwrap()),
            ["e", "d"]
        );
        assert_eq!(keys(view.list(&all, false, 1, usize::MAX).unwrap()), ["a"]);

        // Once the overlay's batch is durable, redb answers for it.
        commit(&store, id, &pending).await;
        overlay.committed(seq);
        assert!(overlay.is_empty());
        let view = StorageView {
            store: &store,
            object: id,
            overlay: &overlay,
            event: &event,
        };
        assert_eq!(
            keys(view.list(&all, false, 10, usize::MAX).unwrap()),
            ["a", "d", "e"]
        );
    }

    #[tokio::test]
    async fn clear_hides_committed_data_and_usage_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        let id = ObjectId([2; 16]);
        let mut w = EventWrites::default();
        put(&mut w, "k1", Some("12345"));
        commit(&store, id, &w).await;
        assert_eq!(store.object_meta(id).unwrap().unwrap().usage, 7);

        let overlay = Overlay::default();
        let mut event = EventWrites {
            clear: true,
            ..Default::default()
        };
        put(&mut event, "k2", Some("x"));
        let view = StorageView {
            store: &store,
            object: id,
            overlay: &overlay,
            event: &event,
        };
        assert_eq!(view.get(b"k1").unwrap(), None);
        assert_eq!(view.usage(7).unwrap(), 3);
        commit(&store, id, &event).await;
        assert_eq!(store.get(id, b"k1").unwrap(), None);
        assert_eq!(store.object_meta(id).unwrap().unwrap().usage, 3);
    }
}
