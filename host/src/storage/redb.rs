//! The embedded engine: one redb file in the data dir.
//!
//! Reads are redb MVCC snapshots taken on the calling thread (concurrent with the writer,
//! microseconds, no I/O wait beyond the page cache); a group commit is one redb write
//! transaction with `Durability::Immediate` (fsync). Recovery after an I/O error is in
//! `database.rs`.

use std::ops::Bound;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::database::OpenDatabase;
use super::{
    Alarm, AlarmChange, Engine, Entries, KeyRange, ObjectChanges, ObjectMeta, Read, StorageError,
    keys,
};
use crate::object::ObjectId;

/// Object keys and values: `object id ++ key -> value`.
pub(super) const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
/// Every object that ever committed a write: `object id -> ObjectMeta (JSON)`.
pub(super) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
/// One alarm per object: `object id -> (due ms, retry) as 12 bytes`.
pub(super) const ALARMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarms");
/// Alarms by due time: `due ms (BE) ++ object id -> ()`.
pub(super) const ALARM_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("alarm_index");

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

/// The redb engine.
pub(super) struct RedbEngine {
    db: OpenDatabase,
    path: std::path::PathBuf,
}

impl RedbEngine {
    /// Opens (or creates) `dir/lodge.redb`.
    pub fn open(dir: &Path) -> Result<RedbEngine, StorageError> {
        let path = dir.join("lodge.redb");
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Open {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(RedbEngine {
            db: OpenDatabase::open(&path)?,
            path,
        })
    }

    fn get_now(&self, object: ObjectId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(DATA)?;
        let value = table.get(keys::data_key(object, key).as_slice())?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan_now(
        &self,
        object: ObjectId,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Entries, StorageError> {
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

    fn object_meta_now(&self, object: ObjectId) -> Result<Option<ObjectMeta>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let Some(raw) = table.get(object.0.as_slice())? else {
            return Ok(None);
        };
        serde_json::from_slice(raw.value())
            .map(Some)
            .map_err(|e| StorageError::Engine(format!("object record of {object}: {e}")))
    }

    fn objects_now(&self) -> Result<Vec<(ObjectId, ObjectMeta)>, StorageError> {
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

    fn alarm_now(&self, object: ObjectId) -> Result<Option<Alarm>, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(ALARMS)?;
        let value = table.get(object.0.as_slice())?;
        Ok(value.and_then(|v| decode_alarm(object, v.value())))
    }

    fn alarm_count_now(&self) -> Result<u64, StorageError> {
        let txn = self.db.get()?.begin_read()?;
        use redb::ReadableTableMetadata;
        Ok(txn.open_table(ALARMS)?.len()?)
    }

    fn next_alarms_now(&self, limit: usize) -> Result<Vec<Alarm>, StorageError> {
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

/// A read that is already done: redb answers on the calling thread.
fn ready<'a, T: Send + 'a>(result: Result<T, StorageError>) -> Read<'a, T> {
    Box::pin(std::future::ready(result))
}

impl Engine for RedbEngine {
    fn describe(&self) -> String {
        format!("redb at {}", self.path.display())
    }

    fn get<'a>(&'a self, object: ObjectId, key: &'a [u8]) -> Read<'a, Option<Vec<u8>>> {
        ready(self.get_now(object, key))
    }

    fn scan<'a>(
        &'a self,
        object: ObjectId,
        range: &'a KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Read<'a, Entries> {
        ready(self.scan_now(object, range, reverse, limit, max_bytes))
    }

    fn object_meta(&self, object: ObjectId) -> Read<'_, Option<ObjectMeta>> {
        ready(self.object_meta_now(object))
    }

    fn objects(&self) -> Read<'_, Vec<(ObjectId, ObjectMeta)>> {
        ready(self.objects_now())
    }

    fn alarm(&self, object: ObjectId) -> Read<'_, Option<Alarm>> {
        ready(self.alarm_now(object))
    }

    fn alarm_count(&self) -> Read<'_, u64> {
        ready(self.alarm_count_now())
    }

    fn next_alarms(&self, limit: usize) -> Read<'_, Vec<Alarm>> {
        ready(self.next_alarms_now(limit))
    }

    fn commit(&self, group: &[ObjectChanges<'_>]) -> Result<(), StorageError> {
        let db = self.db.get()?;
        commit_group(&db, group)
    }

    fn health(&self) -> Result<(), String> {
        self.db.health()
    }

    fn failed(&self, error: &StorageError) -> bool {
        // redb refuses every later commit after an I/O error until it is opened again.
        let broken = matches!(error, StorageError::Io(_) | StorageError::DiskFull(_));
        if broken {
            self.db.failed(error);
        }
        broken
    }

    fn reopen(&self) -> Result<(), StorageError> {
        self.db.reopen()
    }

    fn is_local(&self) -> bool {
        true
    }

    /// One MVCC snapshot copied into a new file while the writer keeps committing.
    fn backup_to(&self, path: &Path) -> Result<usize, StorageError> {
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

fn commit_group(db: &Database, group: &[ObjectChanges<'_>]) -> Result<(), StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StorageError::Engine(e.to_string()))?;
    {
        let mut data = txn.open_table(DATA)?;
        let mut objects = txn.open_table(OBJECTS)?;
        let mut alarms = txn.open_table(ALARMS)?;
        let mut index = txn.open_table(ALARM_INDEX)?;
        for changes in group {
            let id = changes.object;
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
            for (key, value) in &changes.writes {
                let table_key = keys::data_key(id, key);
                let old = match value {
                    Some(v) => data.insert(table_key.as_slice(), *v)?,
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
    use super::super::writer::merge_batches;
    use super::super::writer::tests::{id, scenario};
    use super::super::{Batch, ObjectMeta};
    use super::*;

    fn commit(db: &Database, batches: Vec<Batch>) {
        commit_group(db, &merge_batches(batches.iter())).unwrap();
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
