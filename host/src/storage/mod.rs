//! Durable storage on redb: a key space per object, alarms, and the group-committing
//! writer.
//!
//! Reads go straight to redb (MVCC snapshots, concurrent with the writer). Writes arrive
//! as one [`Batch`] per event; a single writer thread drains every batch that is waiting,
//! applies them in one redb write transaction and commits it with `Durability::Immediate`
//! (fsync), then completes each batch's ticket. Many objects' events thus share one
//! fsync, which is what lets durable events per second exceed fsyncs per second. Nothing
//! here knows about WASM: callers hand over plain keys and values.

pub use lodge_core::keys;
mod database;
mod space;
mod txn;

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use keys::KeyRange;

/// Keys and values of one object, in key order (or reversed).
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;
pub use txn::{EventWrites, Overlay, StorageView};

use crate::config::StorageConfig;
use crate::object::ObjectId;
use database::OpenDatabase;
use space::Space;

/// Object keys and values: `object id ++ key -> value`.
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
/// Every object that ever committed a write: `object id -> ObjectMeta (JSON)`.
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
/// One alarm per object: `object id -> (due ms, retry) as 12 bytes`.
const ALARMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarms");
/// Alarms by due time: `due ms (BE) ++ object id -> ()`.
const ALARM_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("alarm_index");

/// Batches drained into one write transaction at most (bounds commit latency).
const MAX_BATCHES_PER_COMMIT: usize = 4096;

/// What went wrong in storage.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StorageError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("cannot open the database at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// An earlier commit of the object failed and this batch was built on its writes.
    #[error("an earlier commit of this object failed, and this event depended on it")]
    Fenced,
    /// The disk failed under the database (EIO); it is reopened.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// The disk filled up under the database; it is reopened once there is room.
    #[error("the data disk is full: {0}")]
    DiskFull(String),
    /// The database is being reopened after an I/O error.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The disk is nearly full: writes that add data are refused.
    #[error("{0}")]
    Full(String),
    /// A scan would materialise more than the caller's byte budget.
    #[error("the entries read pass the budget of {0} bytes")]
    ReadBudget(usize),
}

impl From<redb::Error> for StorageError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
                StorageError::DiskFull(io.to_string())
            }
            redb::Error::Io(io) => StorageError::Io(io.to_string()),
            redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
                StorageError::Io(e.to_string())
            }
            other => StorageError::Engine(other.to_string()),
        }
    }
}

macro_rules! engine_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self { redb::Error::from(e).into() }
        }
    )*};
}
engine_err!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// What the host remembers about an object besides its keys.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectMeta {
    pub class: String,
    pub name: String,
    /// Bytes of keys and values stored.
    #[serde(default)]
    pub usage: u64,
}

/// A pending alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alarm {
    pub object: ObjectId,
    pub at_ms: u64,
    pub retry: u32,
}

/// How a batch changes the object's alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmChange {
    Set { at_ms: u64, retry: u32 },
    Clear,
}

/// One event's writes to one object, committed atomically.
#[derive(Debug)]
pub struct Batch {
    pub object: ObjectId,
    pub class: Arc<str>,
    pub name: Arc<str>,
    /// Delete every key of the object before applying `writes`.
    pub clear: bool,
    /// Key -> new value (`None` deletes), in key order.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub alarm: Option<AlarmChange>,
    /// The event saw only durable state (the first batch of an actor, or the first after
    /// a failed commit). After a commit of an object fails, the writer refuses the
    /// object's later batches, which may build on the lost writes, until one of these.
    pub from_durable: bool,
}

impl Batch {
    /// Whether committing this batch would change nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear && self.writes.is_empty() && self.alarm.is_none()
    }
}

/// Resolves when a batch is durable (or failed).
pub type CommitTicket = oneshot::Receiver<Result<(), StorageError>>;

/// Figures about the writer, for metrics and benchmarks.
#[derive(Debug)]
pub struct WriterStats {
    pub commits: std::sync::atomic::AtomicU64,
    pub batches: std::sync::atomic::AtomicU64,
    /// Seconds per group commit (fsync included).
    pub commit_latency: crate::metrics::Histogram,
    /// Event batches per group commit.
    pub batch_size: crate::metrics::Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        use crate::metrics::{Histogram, LATENCY_BUCKETS, SIZE_BUCKETS};
        WriterStats {
            commits: Default::default(),
            batches: Default::default(),
            commit_latency: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(SIZE_BUCKETS),
        }
    }
}

/// The database and its writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<OpenDatabase>,
    space: Arc<Space>,
    writer: std_mpsc::Sender<Pending>,
    stats: Arc<WriterStats>,
}

impl Store {
    /// Opens (or creates) the database file `dir/lodge.redb` and starts the writer.
    pub fn open(dir: &Path, config: &StorageConfig) -> Result<Store, StorageError> {
        let path = dir.join("lodge.redb");
        let open_err = |reason: String| StorageError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let db = Arc::new(OpenDatabase::open(&path)?);
        let space = Arc::new(Space::new(dir, config.min_free_bytes));
        let stats = Arc::new(WriterStats::default());
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            space: space.clone(),
            stats: stats.clone(),
            fence: Fence::default(),
            retry_at: None,
            reopened_at: None,
            waiting_for_room: false,
        };
        std::thread::Builder::new()
            .name("lodge-storage-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Store {
            db,
            space,
            writer: tx,
            stats,
        })
    }

    /// `Err(why)` while storage cannot commit (the database is being reopened after an
    /// I/O error): the host is not ready.
    pub fn health(&self) -> Result<(), String> {
        self.db.health()
    }

    /// Why writes that add data are refused right now (the disk is nearly full), if they
    /// are. Checked by the writer before each commit.
    pub fn space_low(&self) -> Option<String> {
        self.space.low()
    }

    /// Queues a batch for the next group commit.
    pub fn submit(&self, batch: Batch) -> CommitTicket {
        self.send(Some(batch))
    }

    /// Resolves once every batch submitted before it is durable.
    pub fn flush(&self) -> CommitTicket {
        self.send(None)
    }

    fn send(&self, batch: Option<Batch>) -> CommitTicket {
        let (done, ticket) = oneshot::channel();
        if let Err(std_mpsc::SendError((_, done))) = self.writer.send((batch, done)) {
            let _ = done.send(Err(StorageError::WriterGone));
        }
        ticket
    }

    /// Commit counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Reads one committed value.
    pub fn get(&self, object: ObjectId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(DATA)?;
        let value = table.get(keys::data_key(object, key).as_slice())?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Committed entries of `object` in `range`, in key order or reversed, at most `limit`.
    pub fn scan(
        &self,
        object: ObjectId,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Entries, StorageError> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (lower, upper) = range.to_table_range(object);
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(DATA)?;
        let bounds = (as_slice_bound(&lower), as_slice_bound(&upper));
        let iter = table.range::<&[u8]>(bounds)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        type Item<'a> = Result<
            (
                redb::AccessGuard<'a, &'static [u8]>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >;
        let mut push = |item: Item<'_>| -> Result<bool, StorageError> {
            let (k, v) = item?;
            // Checked before copying: the host never holds more than the budget.
            bytes = bytes.saturating_add(k.value().len() - 16 + v.value().len());
            if bytes > max_bytes {
                return Err(StorageError::ReadBudget(max_bytes));
            }
            out.push((k.value()[16..].to_vec(), v.value().to_vec()));
            Ok(out.len() < limit)
        };
        if reverse {
            for item in iter.rev() {
                if !push(item)? {
                    break;
                }
            }
        } else {
            for item in iter {
                if !push(item)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// What the host knows about an object, if it ever stored anything.
    pub fn object_meta(&self, object: ObjectId) -> Result<Option<ObjectMeta>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let Some(raw) = table.get(object.0.as_slice())? else {
            return Ok(None);
        };
        serde_json::from_slice(raw.value())
            .map(Some)
            .map_err(|e| StorageError::Engine(format!("object record of {object}: {e}")))
    }

    /// Every object the store knows, with its metadata.
    pub fn objects(&self) -> Result<Vec<(ObjectId, ObjectMeta)>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let Ok(id) = <[u8; 16]>::try_from(k.value()) else {
                continue;
            };
            if let Ok(meta) = serde_json::from_slice(v.value()) {
                out.push((ObjectId(id), meta));
            }
        }
        Ok(out)
    }

    /// Writes a consistent copy of the whole database (one MVCC snapshot) to a new file,
    /// while the writer keeps committing. Returns the number of objects copied.
    pub fn backup_to(&self, path: &Path) -> Result<usize, StorageError> {
        if path.exists() {
            return Err(StorageError::Engine(format!(
                "{} already exists",
                path.display()
            )));
        }
        let copy = Database::create(path)?;
        let read = self.db.get()?.begin_read()?;
        let write = copy.begin_write()?;
        let objects;
        {
            let copy_table = |def: TableDefinition<&[u8], &[u8]>| -> Result<usize, StorageError> {
                let from = read.open_table(def)?;
                let mut to = write.open_table(def)?;
                let mut n = 0;
                for item in from.iter()? {
                    let (k, v) = item?;
                    to.insert(k.value(), v.value())?;
                    n += 1;
                }
                Ok(n)
            };
            copy_table(DATA)?;
            objects = copy_table(OBJECTS)?;
            copy_table(ALARMS)?;
            let from = read.open_table(ALARM_INDEX)?;
            let mut to = write.open_table(ALARM_INDEX)?;
            for item in from.iter()? {
                let (k, _) = item?;
                to.insert(k.value(), ())?;
            }
        }
        write.commit()?;
        Ok(objects)
    }

    /// The object's pending alarm.
    pub fn alarm(&self, object: ObjectId) -> Result<Option<Alarm>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(ALARMS)?;
        let value = table.get(object.0.as_slice())?;
        Ok(value.and_then(|v| decode_alarm(object, v.value())))
    }

    /// Pending alarms.
    pub fn alarm_count(&self) -> Result<u64, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        use redb::ReadableTableMetadata;
        Ok(txn.open_table(ALARMS)?.len()?)
    }

    /// The earliest alarms, at most `limit`, in due order.
    pub fn next_alarms(&self, limit: usize) -> Result<Vec<Alarm>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let index = txn.open_table(ALARM_INDEX)?;
        let alarms = txn.open_table(ALARMS)?;
        let mut out = Vec::new();
        for item in index.iter()? {
            let (k, _) = item?;
            let Some((_, object)) = keys::parse_alarm_index_key(k.value()) else {
                continue;
            };
            if let Some(v) = alarms.get(object.0.as_slice())?
                && let Some(alarm) = decode_alarm(object, v.value())
            {
                out.push(alarm);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn as_slice_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn encode_alarm(at_ms: u64, retry: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&at_ms.to_be_bytes());
    out[8..].copy_from_slice(&retry.to_be_bytes());
    out
}

fn decode_alarm(object: ObjectId, raw: &[u8]) -> Option<Alarm> {
    Some(Alarm {
        object,
        at_ms: u64::from_be_bytes(raw.get(..8)?.try_into().ok()?),
        retry: u32::from_be_bytes(raw.get(8..12)?.try_into().ok()?),
    })
}

/// A batch (or, with `None`, a flush marker) and where to report its commit.
type Pending = (Option<Batch>, oneshot::Sender<Result<(), StorageError>>);

/// The writer thread: group commit, the fence, the free-space watermark and recovery
/// after I/O errors.
struct Writer {
    db: Arc<OpenDatabase>,
    space: Arc<Space>,
    stats: Arc<WriterStats>,
    fence: Fence,
    /// While the database is unhealthy: when to try reopening it next.
    retry_at: Option<Instant>,
    /// The last reopen, so that a disk that keeps failing is not reopened per commit.
    reopened_at: Option<Instant>,
    /// The disk filled up: reopen only once it has room again.
    waiting_for_room: bool,
}

impl Writer {
    fn run(mut self, rx: &std_mpsc::Receiver<Pending>) {
        loop {
            // While the database is unhealthy it is reopened on time even with no traffic,
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
        let result = match self.db.get() {
            Ok(db) => commit_group(&db, &group),
            Err(e) => Err(e),
        };
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
            if matches!(e, StorageError::Io(_) | StorageError::DiskFull(_)) {
                // redb refuses every later commit until it is opened again.
                self.waiting_for_room = matches!(e, StorageError::DiskFull(_));
                self.db.failed(e);
                let now = Instant::now();
                let next = self
                    .reopened_at
                    .map_or(now, |t| (t + database::RETRY).max(now));
                self.retry_at = Some(next);
            }
        }
        for (_, done) in group {
            let _ = done.send(result.clone());
        }
    }

    /// Reopens an unhealthy database when a retry is due; `Err(why)` while it stays
    /// unusable.
    fn recover(&mut self) -> Result<(), String> {
        let Some(at) = self.retry_at else {
            return Ok(());
        };
        if Instant::now() < at {
            return self.db.health();
        }
        if self.waiting_for_room {
            if let Err(why) = self.space.room_to_recover() {
                self.db.failed(&StorageError::DiskFull(why.clone()));
                self.retry_at = Some(Instant::now() + database::RETRY);
                return Err(why);
            }
            self.waiting_for_room = false;
        }
        self.reopened_at = Some(Instant::now());
        match self.db.reopen() {
            Ok(()) => {
                tracing::warn!("storage recovered: the database was reopened after an I/O error");
                self.retry_at = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "storage is still unavailable; retrying in a second");
                self.retry_at = Some(Instant::now() + database::RETRY);
                Err(e.to_string())
            }
        }
    }
}

/// The objects whose last commit failed: their later batches may build on writes that
/// are lost, so they are refused until a batch built from durable state arrives.
#[derive(Debug, Default)]
struct Fence {
    objects: HashSet<ObjectId>,
}

impl Fence {
    /// Splits a group into the batches to commit and those refused, in order.
    fn sort(&mut self, group: Vec<Pending>) -> (Vec<Pending>, Vec<Pending>) {
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
    fn failed(&mut self, group: &[Pending]) {
        self.objects.extend(
            group
                .iter()
                .filter_map(|(b, _)| b.as_ref().map(|b| b.object)),
        );
    }
}

/// What a group's batches do to one object, merged in the order they were submitted.
struct ObjectChanges<'a> {
    class: &'a str,
    name: &'a str,
    /// A batch cleared the object: every key stored before the group goes.
    clear: bool,
    /// Each key's last write in the group (`None` deletes), in key order.
    writes: BTreeMap<&'a [u8], Option<&'a [u8]>>,
    /// The last alarm change in the group.
    alarm: Option<AlarmChange>,
}

/// Merges a group's batches per object, objects in id order. One commit makes all of them
/// durable or none, so applying each object's net change is the same as applying its batches
/// one by one, with one read and write of its record instead of one per event, a key written
/// by several events written once, and inserts in key order.
fn merge_batches<'a>(
    batches: impl Iterator<Item = &'a Batch>,
) -> BTreeMap<ObjectId, ObjectChanges<'a>> {
    let mut objects: BTreeMap<ObjectId, ObjectChanges<'a>> = BTreeMap::new();
    for batch in batches {
        let changes = objects
            .entry(batch.object)
            .or_insert_with(|| ObjectChanges {
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
    objects
}

fn commit_group(db: &Database, group: &[Pending]) -> Result<(), StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StorageError::Engine(e.to_string()))?;
    {
        let mut data = txn.open_table(DATA)?;
        let mut objects = txn.open_table(OBJECTS)?;
        let mut alarms = txn.open_table(ALARMS)?;
        let mut index = txn.open_table(ALARM_INDEX)?;
        let merged = merge_batches(group.iter().filter_map(|(b, _)| b.as_ref()));
        for (id, changes) in merged {
            let fresh = || ObjectMeta {
                class: changes.class.to_string(),
                name: changes.name.to_string(),
                usage: 0,
            };
            let mut meta = match objects.get(id.0.as_slice())? {
                Some(raw) => serde_json::from_slice(raw.value()).unwrap_or_else(|_| fresh()),
                None => fresh(),
            };
            let mut usage = meta.usage as i64;
            if changes.clear {
                let (lo, hi) = KeyRange::new(None, None, None).to_table_range(id);
                data.retain_in::<&[u8], _>((as_slice_bound(&lo), as_slice_bound(&hi)), |_, _| {
                    false
                })?;
                usage = 0;
            }
            for (key, value) in changes.writes {
                let table_key = keys::data_key(id, key);
                let old = match value {
                    Some(v) => data.insert(table_key.as_slice(), v)?,
                    None => data.remove(table_key.as_slice())?,
                };
                if let Some(old) = old {
                    usage -= (key.len() + old.value().len()) as i64;
                }
                if let Some(v) = value {
                    usage += (key.len() + v.len()) as i64;
                }
            }
            meta.usage = usage.max(0) as u64;

            let has_alarm = match changes.alarm {
                Some(change) => {
                    if let Some(old) = alarms.remove(id.0.as_slice())?
                        && let Some(old) = decode_alarm(id, old.value())
                    {
                        index.remove(keys::alarm_index_key(old.at_ms, id).as_slice())?;
                    }
                    if let AlarmChange::Set { at_ms, retry } = change {
                        alarms.insert(id.0.as_slice(), encode_alarm(at_ms, retry).as_slice())?;
                        index.insert(keys::alarm_index_key(at_ms, id).as_slice(), ())?;
                    }
                    matches!(change, AlarmChange::Set { .. })
                }
                // Only asked when it decides whether the record stays.
                None => meta.usage == 0 && alarms.get(id.0.as_slice())?.is_some(),
            };
            // An object that stores nothing and has no alarm is not recorded at all.
            if meta.usage == 0 && !has_alarm {
                objects.remove(id.0.as_slice())?;
            } else {
                let encoded = serde_json::to_vec(&meta).expect("object meta serializes");
                objects.insert(id.0.as_slice(), encoded.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 16])
    }

    fn batch(
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

    fn commit(db: &Database, batches: Vec<Batch>) {
        let group: Vec<Pending> = batches
            .into_iter()
            .map(|b| (Some(b), oneshot::channel().0))
            .collect();
        commit_group(db, &group).unwrap();
    }

    /// Every table, as sorted (key, value) pairs.
    fn dump(db: &Database) -> Vec<Entries> {
        let txn = db.begin_read().unwrap();
        let mut out = Vec::new();
        for def in [DATA, OBJECTS, ALARMS] {
            let table = txn.open_table(def).unwrap();
            out.push(
                table
                    .iter()
                    .unwrap()
                    .map(|kv| {
                        let (k, v) = kv.unwrap();
                        (k.value().to_vec(), v.value().to_vec())
                    })
                    .collect(),
            );
        }
        let index = txn.open_table(ALARM_INDEX).unwrap();
        out.push(
            index
                .iter()
                .unwrap()
                .map(|kv| (kv.unwrap().0.value().to_vec(), Vec::new()))
                .collect(),
        );
        out
    }

    fn scenario() -> (Vec<Batch>, Vec<Batch>) {
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

    #[test]
    fn a_merged_group_leaves_what_one_commit_per_batch_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let merged = Database::create(dir.path().join("merged.redb")).unwrap();
        let one_by_one = Database::create(dir.path().join("one-by-one.redb")).unwrap();

        let (before, group) = scenario();
        commit(&merged, before);
        commit(&merged, group);
        let (before, group) = scenario();
        for b in before.into_iter().chain(group) {
            commit(&one_by_one, vec![b]);
        }

        let tables = dump(&merged);
        assert_eq!(tables, dump(&one_by_one));

        // And that state is the intended one.
        let data: Vec<(Vec<u8>, Vec<u8>)> = [(1, "a", "v3"), (1, "b", "v4"), (2, "y", "2")]
            .iter()
            .map(|(o, k, v)| (keys::data_key(id(*o), k.as_bytes()), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(tables[0], data);
        let metas: Vec<(u8, ObjectMeta)> = tables[1]
            .iter()
            .map(|(k, v)| (k[0], serde_json::from_slice(v).unwrap()))
            .collect();
        let usages: Vec<(u8, u64)> = metas.iter().map(|(o, m)| (*o, m.usage)).collect();
        assert_eq!(usages, [(1, 6), (2, 2), (5, 0)]);
        let alarms: Vec<u8> = tables[2].iter().map(|(k, _)| k[0]).collect();
        assert_eq!(alarms, [1, 5]);
        assert_eq!(tables[3].len(), 2, "one index entry per alarm");
    }
}
