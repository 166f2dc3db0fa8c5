//! The writer thread: group commit, the fence, the free-space watermark and recovery
//! after a failed commit, the same for every engine.
//!
//! Trade-off: one OS thread drains a std channel and calls the engine's blocking
//! `commit`, so a group's transaction never waits for an async worker (nor holds one);
//! the PostgreSQL engine drives its round trips from this thread with the runtime's
//! handle. The cost is one thread and a channel hop per batch.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::space::Space;
use super::{AlarmChange, Batch, Engine, StorageError, WriterStats};
use crate::object::ObjectId;

/// Batches drained into one transaction at most (bounds commit latency).
const MAX_BATCHES_PER_COMMIT: usize = 4096;

/// How often a failed reopen is tried again.
pub(super) const RETRY: Duration = Duration::from_secs(1);

/// A batch (or, with `None`, a flush marker) and where to report its commit.
pub(super) type Pending = (Option<Batch>, oneshot::Sender<Result<(), StorageError>>);

pub(super) struct Writer {
    engine: Arc<dyn Engine>,
    space: Arc<Space>,
    stats: Arc<WriterStats>,
    fence: Fence,
    /// While the engine is unhealthy: when to try reopening it next.
    retry_at: Option<Instant>,
    /// The last reopen, so that a database that keeps failing is not reopened per commit.
    reopened_at: Option<Instant>,
    /// The disk filled up: reopen only once it has room again.
    waiting_for_room: bool,
}

impl Writer {
    /// Starts the writer thread; batches go in through the returned sender.
    pub fn start(
        engine: Arc<dyn Engine>,
        space: Arc<Space>,
        stats: Arc<WriterStats>,
    ) -> std::io::Result<std_mpsc::Sender<Pending>> {
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            engine,
            space,
            stats,
            fence: Fence::default(),
            retry_at: None,
            reopened_at: None,
            waiting_for_room: false,
        };
        std::thread::Builder::new()
            .name("lodge-storage-writer".into())
            .spawn(move || writer.run(&rx))?;
        Ok(tx)
    }

    fn run(mut self, rx: &std_mpsc::Receiver<Pending>) {
        loop {
            // While the engine is unhealthy it is reopened on time even with no traffic,
            // so readiness comes back by itself.
            let first = match self.retry_at {
                None => match rx.recv() {
                    Ok(first) => first,
                    Err(_) => return,
                },
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(first) => first,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        let _ = self.recover();
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                },
            };
            let mut group = vec![first];
            while group.len() < MAX_BATCHES_PER_COMMIT {
                match rx.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Pending>) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Err(why) = self.recover() {
            self.fence.failed(&group);
            let error = StorageError::Unavailable(why);
            for (_, done) in group {
                let _ = done.send(Err(error.clone()));
            }
            return;
        }
        let (group, fenced) = self.fence.sort(group);
        for (_, done) in fenced {
            let _ = done.send(Err(StorageError::Fenced));
        }
        let (group, refused) = self.space.sort(group);
        if !refused.is_empty() {
            self.fence.failed(&refused);
            let error = StorageError::Full(self.space.low().unwrap_or_default());
            for (_, done) in refused {
                let _ = done.send(Err(error.clone()));
            }
        }
        let started = Instant::now();
        let merged = merge_batches(group.iter().filter_map(|(b, _)| b.as_ref()));
        let result = self.engine.commit(&merged);
        drop(merged);
        self.stats.commits.fetch_add(1, Relaxed);
        self.stats.batches.fetch_add(group.len() as u64, Relaxed);
        self.stats
            .commit_latency
            .observe(started.elapsed().as_secs_f64());
        self.stats.batch_size.observe(group.len() as f64);
        tracing::trace!(batches = group.len(), elapsed = ?started.elapsed(), "group commit");
        if let Err(e) = &result {
            tracing::error!(error = %e, batches = group.len(), "group commit failed");
            self.fence.failed(&group);
            if self.engine.failed(e) {
                self.waiting_for_room = matches!(e, StorageError::DiskFull(_));
                let now = Instant::now();
                let next = self.reopened_at.map_or(now, |t| (t + RETRY).max(now));
                self.retry_at = Some(next);
            }
        }
        for (_, done) in group {
            let _ = done.send(result.clone());
        }
    }

    /// Reopens an unhealthy engine when a retry is due; `Err(why)` while it stays
    /// unusable.
    fn recover(&mut self) -> Result<(), String> {
        let Some(at) = self.retry_at else {
            return Ok(());
        };
        if Instant::now() < at {
            return self.engine.health();
        }
        if self.waiting_for_room {
            if let Err(why) = self.space.room_to_recover() {
                self.engine.failed(&StorageError::DiskFull(why.clone()));
                self.retry_at = Some(Instant::now() + RETRY);
                return Err(why);
            }
            self.waiting_for_room = false;
        }
        self.reopened_at = Some(Instant::now());
        match self.engine.reopen() {
            Ok(()) => {
                tracing::warn!(engine = %self.engine.describe(), "storage recovered: the database was reopened");
                self.retry_at = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "storage is still unavailable; retrying in a second");
                self.retry_at = Some(Instant::now() + RETRY);
                Err(e.to_string())
            }
        }
    }
}

/// The objects whose last commit failed: their later batches may build on writes that
/// are lost, so they are refused until a batch built from durable state arrives.
#[derive(Debug, Default)]
pub(super) struct Fence {
    objects: HashSet<ObjectId>,
}

impl Fence {
    /// Splits a group into the batches to commit and those refused, in order.
    pub fn sort(&mut self, group: Vec<Pending>) -> (Vec<Pending>, Vec<Pending>) {
        if self.objects.is_empty() {
            return (group, Vec::new());
        }
        group.into_iter().partition(|(batch, _)| match batch {
            None => true,
            Some(b) if b.from_durable => {
                self.objects.remove(&b.object);
                true
            }
            Some(b) => !self.objects.contains(&b.object),
        })
    }

    /// A group failed: none of its writes are durable.
    pub fn failed(&mut self, group: &[Pending]) {
        self.objects.extend(
            group
                .iter()
                .filter_map(|(b, _)| b.as_ref().map(|b| b.object)),
        );
    }
}

/// What a group's batches do to one object, merged in the order they were submitted.
#[derive(Debug)]
pub struct ObjectChanges<'a> {
    pub object: ObjectId,
    pub class: &'a str,
    pub name: &'a str,
    /// A batch cleared the object: every key stored before the group goes.
    pub clear: bool,
    /// Each key's last write in the group (`None` deletes), in key order.
    pub writes: BTreeMap<&'a [u8], Option<&'a [u8]>>,
    /// The last alarm change in the group.
    pub alarm: Option<AlarmChange>,
}

/// Merges a group's batches per object, objects in id order. One commit makes all of them
/// durable or none, so applying each object's net change is the same as applying its batches
/// one by one, with one read and write of its record instead of one per event, a key written
/// by several events written once, and inserts in key order.
pub(super) fn merge_batches<'a>(
    batches: impl Iterator<Item = &'a Batch>,
) -> Vec<ObjectChanges<'a>> {
    let mut objects: BTreeMap<ObjectId, ObjectChanges<'a>> = BTreeMap::new();
    for batch in batches {
        let changes = objects
            .entry(batch.object)
            .or_insert_with(|| ObjectChanges {
                object: batch.object,
                class: &batch.class,
                name: &batch.name,
                clear: false,
                writes: BTreeMap::new(),
                alarm: None,
            });
        if batch.clear {
            changes.clear = true;
            changes.writes.clear();
        }
        for (key, value) in &batch.writes {
            changes.writes.insert(key, value.as_deref());
        }
        if batch.alarm.is_some() {
            changes.alarm = batch.alarm;
        }
    }
    objects.into_values().collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn id(n: u8) -> ObjectId {
        ObjectId([n; 16])
    }

    pub fn batch(
        object: u8,
        clear: bool,
        writes: &[(&str, Option<&str>)],
        alarm: Option<AlarmChange>,
    ) -> Batch {
        Batch {
            object: id(object),
            class: "c".into(),
            name: format!("o{object}").into(),
            clear,
            writes: writes
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
                .collect(),
            alarm,
            from_durable: false,
        }
    }

    /// Batches before a group, and a group whose merge exercises every rule; the engines'
    /// tests commit both and compare with one commit per batch.
    pub fn scenario() -> (Vec<Batch>, Vec<Batch>) {
        let set = |at_ms| Some(AlarmChange::Set { at_ms, retry: 0 });
        let before = vec![
            batch(
                1,
                false,
                &[("a", Some("old")), ("gone", Some("x"))],
                set(50),
            ),
            batch(4, false, &[("k", Some("v"))], None),
            batch(5, false, &[("k", Some("v"))], set(70)),
        ];
        let group = vec![
            // Overwrites, a delete, two alarm changes: the last one wins.
            batch(1, false, &[("a", Some("v1")), ("b", Some("v2"))], set(100)),
            batch(2, false, &[("x", Some("1"))], None),
            batch(1, false, &[("a", Some("v3")), ("gone", None)], set(200)),
            // A clear between two batches of one object.
            batch(2, true, &[("y", Some("2"))], None),
            // Written then deleted, alarm cleared: no record is left.
            batch(3, false, &[("z", Some("1"))], set(10)),
            batch(3, false, &[("z", None)], Some(AlarmChange::Clear)),
            // Cleared with nothing left and no alarm: its record goes.
            batch(4, true, &[], None),
            // Cleared, but its alarm keeps the record.
            batch(5, true, &[], None),
            batch(1, false, &[("b", Some("v4"))], None),
        ];
        (before, group)
    }

    #[test]
    fn a_failed_object_is_fenced_until_a_batch_from_durable_state() {
        let mut fence = Fence::default();
        let pending = |object: u8, from_durable: bool| -> Pending {
            let mut b = batch(object, false, &[("k", Some("v"))], None);
            b.from_durable = from_durable;
            (Some(b), oneshot::channel().0)
        };
        let objects = |group: &[Pending]| -> Vec<u8> {
            group
                .iter()
                .map(|(b, _)| b.as_ref().map_or(0, |b| b.object.0[0]))
                .collect()
        };
        fence.failed(&[pending(1, false), pending(2, false)]);
        let (commit, refused) = fence.sort(vec![
            pending(1, false), // built on the failed write
            pending(3, false), // another object
            (None, oneshot::channel().0),
            pending(2, true), // object 2 started over
            pending(2, false),
            pending(1, false),
        ]);
        assert_eq!(objects(&commit), vec![3, 0, 2, 2]);
        assert_eq!(objects(&refused), vec![1, 1]);
        let (commit, refused) = fence.sort(vec![pending(1, true), pending(1, false)]);
        assert_eq!(objects(&commit), vec![1, 1]);
        assert!(refused.is_empty());
        assert!(fence.objects.is_empty());
    }
}
