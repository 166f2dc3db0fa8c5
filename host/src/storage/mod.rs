//! Durable storage: a key space per object, alarms, and the group-committing writer,
//! over one of two engines behind the [`Engine`] trait.
//!
//! - **redb** (`redb.rs`, the embedded default): one file in the data dir. Reads are
//!   local MVCC snapshots, answered on the calling thread.
//! - **PostgreSQL** (`postgres.rs`, `[storage] url = "postgres://…"`): the operator's
//!   database, which they replicate and back up with its own tools. Reads are network
//!   round trips on a few shared connections.
//!
//! Writes arrive as one [`Batch`] per event. One writer thread (`writer.rs`) drains every
//! batch waiting, merges them per object and hands the engine one group to commit in one
//! transaction (redb: `Durability::Immediate`, an fsync; PostgreSQL: one `COMMIT` with
//! `synchronous_commit` on), then completes each batch's ticket. Many objects' events
//! share one commit, which is what lets durable events per second exceed commits per
//! second on either engine. Nothing here knows about WASM: callers hand over plain keys
//! and values.
//!
//! Trade-off: reads go through a boxed future per call so that the engine is one trait
//! object rather than a type parameter on everything above storage; for redb the future
//! is already complete (an allocation, tens of nanoseconds), for PostgreSQL it is the
//! round trip that dominates.

pub use lodge_core::keys;
mod database;
mod postgres;
mod redb;
mod space;
mod txn;
mod writer;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use keys::KeyRange;

/// Keys and values of one object, in key order (or reversed).
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;
pub use txn::{EventWrites, Layers, ListPlan, Lookup, Overlay, UsagePlan};
pub use writer::ObjectChanges;

use crate::config::StorageConfig;
use crate::object::ObjectId;
use space::Space;

/// What went wrong in storage.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StorageError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    /// The engine could not be opened at start (`what` names the file or the database,
    /// never a password).
    #[error("cannot open {what}: {reason}")]
    Open { what: String, reason: String },
    /// An earlier commit of the object failed and this batch was built on its writes.
    #[error("an earlier commit of this object failed, and this event depended on it")]
    Fenced,
    /// The disk failed under the database (EIO), or the connection to it was lost; it is
    /// reopened.
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
    /// The engine does not do this (e.g. `lodge backup` on PostgreSQL).
    #[error("{0}")]
    Unsupported(String),
}

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

/// A read in progress.
pub type Read<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A storage engine: committed reads, and group commits for the writer thread.
///
/// Reads see only committed state (the layers above, in `txn.rs`, add what is pending).
/// `commit` is called on the writer thread only, one group at a time, and may block.
pub trait Engine: Send + Sync + 'static {
    /// What `/readyz`, logs and errors call this engine ("redb at ./data/lodge.redb",
    /// "PostgreSQL at 127.0.0.1:5432/lodge"): never a password.
    fn describe(&self) -> String;
    /// One committed value.
    fn get<'a>(&'a self, object: ObjectId, key: &'a [u8]) -> Read<'a, Option<Vec<u8>>>;
    /// Committed entries of `object` in `range`, in key order or reversed, at most `limit`
    /// and at most `max_bytes` of keys and values (else `ReadBudget`).
    fn scan<'a>(
        &'a self,
        object: ObjectId,
        range: &'a KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Read<'a, Entries>;
    /// What the host knows about an object, if it ever stored anything.
    fn object_meta(&self, object: ObjectId) -> Read<'_, Option<ObjectMeta>>;
    /// Every object stored, with its metadata.
    fn objects(&self) -> Read<'_, Vec<(ObjectId, ObjectMeta)>>;
    /// The object's pending alarm.
    fn alarm(&self, object: ObjectId) -> Read<'_, Option<Alarm>>;
    /// Pending alarms.
    fn alarm_count(&self) -> Read<'_, u64>;
    /// The earliest alarms, at most `limit`, in due order.
    fn next_alarms(&self, limit: usize) -> Read<'_, Vec<Alarm>>;
    /// Makes one group's changes durable in one transaction: all of them or none.
    fn commit(&self, group: &[ObjectChanges<'_>]) -> Result<(), StorageError>;
    /// `Err(why)` while the engine cannot commit.
    fn health(&self) -> Result<(), String>;
    /// A commit failed with `error`: `true` if the engine is now unusable (a lost
    /// connection, a disk error) and the writer must [`reopen`](Engine::reopen) it.
    fn failed(&self, error: &StorageError) -> bool;
    /// Opens the database again after a failure; on success the engine is healthy.
    fn reopen(&self) -> Result<(), StorageError>;
    /// Whether the engine's data sit on the local disk under `data_dir` (so the free-space
    /// watermark applies).
    fn is_local(&self) -> bool;
    /// Writes a consistent copy of every object to `path`; returns the objects copied.
    fn backup_to(&self, path: &Path) -> Result<usize, StorageError>;
    /// The registry's records (the manifest and component bytes), when the engine keeps
    /// them (PostgreSQL: any host on the database can load what another deployed);
    /// `None`: they are files in the data dir, beside the redb file.
    fn registry(&self) -> Option<&dyn RegistryRecords> {
        None
    }
}

/// The class registry's record in the database. Blocking calls: deploys and start-up
/// are rare and already run off the request path.
pub trait RegistryRecords: Send + Sync {
    /// The manifest (JSON), if one was saved.
    fn load_manifest(&self) -> Result<Option<String>, StorageError>;
    /// Replaces the manifest, durably.
    fn save_manifest(&self, json: &str) -> Result<(), StorageError>;
    /// Keeps a component's bytes by hash (nothing if they are kept already).
    fn keep_component(&self, hash: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// A kept component's bytes.
    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError>;
}

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

/// The engine and its writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    space: Arc<Space>,
    writer: std_mpsc::Sender<writer::Pending>,
    stats: Arc<WriterStats>,
}

impl Store {
    /// Opens the engine `config` names (PostgreSQL when `[storage] url` is set, else
    /// `data_dir/lodge.redb`), creating or migrating its schema, and starts the writer.
    pub async fn open(data_dir: &Path, config: &StorageConfig) -> Result<Store, StorageError> {
        match &config.url {
            Some(url) => {
                let engine = postgres::PostgresEngine::open(url, config).await?;
                Store::start(Arc::new(engine), data_dir, 0)
            }
            None => Store::open_redb(data_dir, config),
        }
    }

    /// Opens (or creates) the redb file `dir/lodge.redb` and starts the writer.
    pub fn open_redb(dir: &Path, config: &StorageConfig) -> Result<Store, StorageError> {
        let engine = redb::RedbEngine::open(dir)?;
        Store::start(Arc::new(engine), dir, config.min_free_bytes)
    }

    fn start(engine: Arc<dyn Engine>, dir: &Path, min_free: u64) -> Result<Store, StorageError> {
        let min_free = if engine.is_local() { min_free } else { 0 };
        let space = Arc::new(Space::new(dir, min_free));
        let stats = Arc::new(WriterStats::default());
        let writer =
            writer::Writer::start(engine.clone(), space.clone(), stats.clone()).map_err(|e| {
                StorageError::Open {
                    what: engine.describe(),
                    reason: format!("cannot start the writer thread: {e}"),
                }
            })?;
        Ok(Store {
            engine,
            space,
            writer,
            stats,
        })
    }

    /// What the engine is, for logs ("redb at …", "PostgreSQL at …").
    pub fn describe(&self) -> String {
        self.engine.describe()
    }

    /// `Err(why)` while storage cannot commit (the database is being reopened after an
    /// I/O error, or cannot be reached): the host is not ready.
    pub fn health(&self) -> Result<(), String> {
        self.engine.health()
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
    pub async fn get(&self, object: ObjectId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(object, key).await
    }

    /// Committed entries of `object` in `range`, in key order or reversed, at most `limit`.
    pub async fn scan(
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
        self.engine
            .scan(object, range, reverse, limit, max_bytes)
            .await
    }

    /// What the host knows about an object, if it ever stored anything.
    pub async fn object_meta(&self, object: ObjectId) -> Result<Option<ObjectMeta>, StorageError> {
        self.engine.object_meta(object).await
    }

    /// Every object the store knows, with its metadata.
    pub async fn objects(&self) -> Result<Vec<(ObjectId, ObjectMeta)>, StorageError> {
        self.engine.objects().await
    }

    /// Writes a consistent copy of the whole database (one snapshot) to a new file, while
    /// the writer keeps committing. Returns the number of objects copied.
    pub fn backup_to(&self, path: &Path) -> Result<usize, StorageError> {
        self.engine.backup_to(path)
    }

    /// Where the registry keeps its records, if the engine holds them.
    pub fn registry_records(&self) -> Option<&dyn RegistryRecords> {
        self.engine.registry()
    }

    /// The object's pending alarm.
    pub async fn alarm(&self, object: ObjectId) -> Result<Option<Alarm>, StorageError> {
        self.engine.alarm(object).await
    }

    /// Pending alarms.
    pub async fn alarm_count(&self) -> Result<u64, StorageError> {
        self.engine.alarm_count().await
    }

    /// The earliest alarms, at most `limit`, in due order.
    pub async fn next_alarms(&self, limit: usize) -> Result<Vec<Alarm>, StorageError> {
        self.engine.next_alarms(limit).await
    }
}
