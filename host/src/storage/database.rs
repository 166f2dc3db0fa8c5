//! The open redb database, and how the host gets it back after an I/O error.
//!
//! After an I/O error (a full disk, EIO) redb refuses every later commit ("Previous I/O
//! error") until the database is opened again. So the writer, which sees every commit,
//! owns recovery: after a failed commit it marks the database unhealthy and reopens it
//! (redb's repair brings the file back to its last durable commit) right away, then at most
//! once per `writer::RETRY` while that fails. Meanwhile reads and commits fail fast with
//! `Unavailable`, and `/readyz` says why, so a load balancer stops sending traffic.
//!
//! Trade-off: every read takes a read lock and clones an `Arc` (a few nanoseconds) so that
//! the database can be swapped under running readers without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::StorageError;

/// How long a reopen waits for readers of the old database to finish.
const READERS_GONE: Duration = Duration::from_secs(5);

/// The database, swapped out and back in when it must be reopened.
pub(super) struct OpenDatabase {
    path: PathBuf,
    current: RwLock<Option<Arc<Database>>>,
    /// Why the database is not usable now (`None`: healthy).
    problem: Mutex<Option<String>>,
}

impl OpenDatabase {
    /// Opens (or creates) the file.
    pub fn open(path: &Path) -> Result<OpenDatabase, StorageError> {
        let db = open_file(path)?;
        Ok(OpenDatabase {
            path: path.to_owned(),
            current: RwLock::new(Some(Arc::new(db))),
            problem: Mutex::new(None),
        })
    }

    /// The database, unless it is being reopened after an error.
    pub fn get(&self) -> Result<Arc<Database>, StorageError> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some(db) => Ok(db.clone()),
            None => Err(StorageError::Unavailable(self.why())),
        }
    }

    fn why(&self) -> String {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the database is being reopened".into())
    }

    /// `Err(why)` while the database is unusable.
    pub fn health(&self) -> Result<(), String> {
        match &*self.problem.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    /// A commit failed with `error`: the database must be reopened before the next one.
    pub fn failed(&self, error: &StorageError) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    /// Drops the database and opens the file again. On success the database is healthy.
    pub fn reopen(&self) -> Result<(), StorageError> {
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut old) = old {
            // redb locks the file per open database: the old one must be gone first.
            // Readers hold it for one read transaction at most.
            let deadline = Instant::now() + READERS_GONE;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still_shared) => {
                        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                            Some(still_shared);
                        return Err(StorageError::Unavailable(
                            "the database could not be reopened: a reader did not finish".into(),
                        ));
                    }
                }
            }
        }
        match open_file(&self.path) {
            Ok(db) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
                *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) => {
                *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// Opens the file and makes sure every table exists, so readers never meet a missing one.
fn open_file(path: &Path) -> Result<Database, StorageError> {
    let open_err = |reason: String| StorageError::Open {
        what: path.display().to_string(),
        reason,
    };
    let db = Database::create(path).map_err(|e| open_err(e.to_string()))?;
    let txn = db.begin_write()?;
    txn.open_table(super::redb::DATA)?;
    txn.open_table(super::redb::OBJECTS)?;
    txn.open_table(super::redb::ALARMS)?;
    txn.open_table(super::redb::ALARM_INDEX)?;
    txn.commit()?;
    Ok(db)
}
