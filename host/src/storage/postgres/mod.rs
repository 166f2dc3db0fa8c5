//! The PostgreSQL engine: the same objects in the operator's own database.
//!
//! Four tables (`lodge_data`, `lodge_objects`, `lodge_alarms`, and the schema's version
//! in `lodge_schema`) hold what the redb file holds, with the same key order (`bytea`
//! compares bytewise). The registry's manifest and component bytes live beside them
//! (`lodge_registry`, `lodge_components`), so any host on the database can load a class
//! another one deployed.
//!
//! - `schema.rs`: the tables and their versioned migrations.
//! - `commit.rs`: a group commit as one transaction in two round trips.
//! - `connection.rs`: connections, replaced when they break.
//!
//! Connections: the writer has its own (a transaction must not interleave with reads);
//! reads share a few, each pipelining whatever is asked of it concurrently. A read or
//! commit that loses its connection marks the engine unhealthy (`/readyz` says why); a
//! watchdog tries a new connection every second and clears it, and the writer reopens its
//! own before its next commit.
//!
//! Trade-off: a commit is bounded by the server's `statement_timeout` (the server ends a
//! stuck statement, the transaction rolls back, its pipelined `COMMIT` does nothing), and
//! by a client-side timeout a second longer for a server that does not answer, after which
//! the connection is dropped. In that last case, or if the connection breaks while its
//! `COMMIT` is in flight, the commit may have landed although its events were reported
//! failed (nothing of theirs was released): the ambiguity every client of a remote
//! database lives with. What lodge promises holds: nothing acknowledged is lost, and an
//! object restarts from what is durable.

mod commit;
mod connection;
mod schema;

use std::future::Future;
use std::ops::Bound;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, pin_mut};
use tokio::runtime::Handle;
use tokio_postgres::types::{ToSql, Type};

use super::{
    Alarm, Engine, Entries, KeyRange, ObjectChanges, ObjectMeta, Read, RegistryRecords,
    StorageError,
};
use crate::config::StorageConfig;
use crate::object::ObjectId;
use connection::{CONNECT_TIMEOUT, Connection, Slot, describe_url, pg_error};
use schema::migrate;

/// Connections shared by readers.
const READ_CONNECTIONS: usize = 4;

/// How much longer than the server's `statement_timeout` lodge waits for an answer.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// The PostgreSQL engine.
pub(super) struct PostgresEngine {
    config: tokio_postgres::Config,
    described: String,
    /// Drives the writer's round trips from the writer thread.
    runtime: Handle,
    timeout: Duration,
    writer: Slot,
    readers: Vec<Slot>,
    next_reader: AtomicUsize,
    /// Whether the database can be reached, for `/readyz`.
    health: Arc<Health>,
}

/// Why the database cannot be used now (`None`: healthy), set by any read or commit
/// that lost its connection and cleared by the watchdog (or the writer) once a new
/// connection works, so readiness comes back by itself even with no traffic.
#[derive(Default)]
struct Health {
    problem: Mutex<Option<String>>,
    wake: tokio::sync::Notify,
}

impl Health {
    fn get(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, why: Option<String>) {
        let unhealthy = why.is_some();
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = why;
        if unhealthy {
            self.wake.notify_one();
        }
    }

    /// Tries a fresh connection every second while there is a problem.
    async fn watch(self: Arc<Self>, config: tokio_postgres::Config) {
        loop {
            self.wake.notified().await;
            while self.get().is_some() {
                tokio::time::sleep(super::writer::RETRY).await;
                let Ok(conn) = Connection::open(&config).await else {
                    continue;
                };
                if conn.client.simple_query("SELECT 1").await.is_ok() {
                    tracing::warn!("storage recovered: PostgreSQL answers again");
                    self.set(None);
                }
            }
        }
    }
}

impl PostgresEngine {
    /// Connects, creates or migrates the schema, and checks the writer's connection.
    pub async fn open(url: &str, settings: &StorageConfig) -> Result<PostgresEngine, StorageError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| StorageError::Open {
            // The URL did not parse: quote nothing of it, it may hold a password.
            what: "the PostgreSQL URL in [storage] url / --storage / LODGE_STORAGE".into(),
            reason: format!("{e} (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)"),
        })?;
        // The server ends a statement that runs past the timeout itself, so a commit
        // stuck behind a lock is rolled back there (its pipelined COMMIT then does
        // nothing) instead of committing later, after lodge reported it failed. The
        // client-side timeout, a second longer, is for a server that does not answer.
        let timeout_ms = settings.timeout_ms.max(1);
        // Generic plans: the statements are prepared once per connection, and a plan
        // chosen for one group's array sizes (a hash join over a whole table for a large
        // group) would be wrong for the next; the generic one probes the primary key.
        let options = format!(
            "{} -c statement_timeout={timeout_ms} -c plan_cache_mode=force_generic_plan",
            config.get_options().unwrap_or_default()
        );
        config
            .application_name("lodge")
            .connect_timeout(CONNECT_TIMEOUT)
            .options(options.trim());
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        let described = describe_url(&config);
        let open_err = |e: StorageError| StorageError::Open {
            what: described.clone(),
            reason: match e {
                StorageError::Io(why) | StorageError::Engine(why) => why,
                other => other.to_string(),
            },
        };
        let engine = PostgresEngine {
            config,
            described: described.clone(),
            runtime: Handle::current(),
            timeout: Duration::from_millis(timeout_ms) + CLIENT_GRACE,
            writer: Slot::default(),
            readers: (0..READ_CONNECTIONS).map(|_| Slot::default()).collect(),
            next_reader: AtomicUsize::new(0),
            health: Arc::default(),
        };
        let conn = engine.writer.get(&engine.config).await.map_err(open_err)?;
        tokio::spawn(engine.health.clone().watch(engine.config.clone()));
        migrate(&conn.client).await.map_err(|e| match e {
            refused @ StorageError::Unsupported(_) => StorageError::Open {
                what: described.clone(),
                reason: refused.to_string(),
            },
            other => open_err(other),
        })?;
        Ok(engine)
    }

    async fn reader(&self) -> Result<Arc<Connection>, StorageError> {
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[n].get(&self.config).await
    }

    /// Runs a read with the engine's timeout.
    async fn read<T>(
        &self,
        f: impl AsyncFnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let result = match self.reader().await {
            Ok(conn) => match tokio::time::timeout(self.timeout, f(&conn)).await {
                Ok(result) => result,
                Err(_) => Err(StorageError::Unavailable(format!(
                    "PostgreSQL did not answer a read within {} ms",
                    self.timeout.as_millis()
                ))),
            },
            Err(e) => Err(e),
        };
        if let Err(e @ StorageError::Io(_)) = &result {
            self.set_problem(Some(format!("{}: {e}", self.described)));
        }
        result
    }

    fn set_problem(&self, why: Option<String>) {
        self.health.set(why);
    }

    async fn commit_async(&self, group: &[ObjectChanges<'_>]) -> Result<(), StorageError> {
        let conn = self.writer.get(&self.config).await?;
        let work = commit::commit_group(&conn, group);
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                // Dropping the connection makes the server roll back whatever it has not
                // committed yet.
                self.writer.drop_current().await;
                Err(StorageError::Io(format!(
                    "the commit did not finish within {} ms",
                    self.timeout.as_millis()
                )))
            }
        }
    }
}

fn object_of(raw: &[u8]) -> Option<ObjectId> {
    <[u8; 16]>::try_from(raw).ok().map(ObjectId)
}

const GET: &str = "SELECT value FROM lodge_data WHERE object = $1 AND key = $2";
const META: &str = "SELECT class, name, usage FROM lodge_objects WHERE object = $1";
const ALARM: &str = "SELECT at_ms, retry FROM lodge_alarms WHERE object = $1";

/// The scan statement for one shape of range and direction.
fn scan_sql(range: &KeyRange, reverse: bool) -> String {
    let mut sql = String::from("SELECT key, value FROM lodge_data WHERE object = $1");
    let mut n = 1;
    for (bound, incl, excl) in [(&range.lower, ">=", ">"), (&range.upper, "<=", "<")] {
        let op = match bound {
            Bound::Included(_) => incl,
            Bound::Excluded(_) => excl,
            Bound::Unbounded => continue,
        };
        n += 1;
        sql.push_str(&format!(" AND key {op} ${n}"));
    }
    let order = if reverse { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY key {order} LIMIT ${}", n + 1));
    sql
}

impl Engine for PostgresEngine {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn get<'a>(&'a self, object: ObjectId, key: &'a [u8]) -> Read<'a, Option<Vec<u8>>> {
        Box::pin(self.read(async move |c: &Connection| {
            let st = c.statement(GET, &[Type::BYTEA, Type::BYTEA]).await?;
            let row = c
                .client
                .query_opt(&st, &[&object.0.as_slice(), &key])
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        }))
    }

    fn scan<'a>(
        &'a self,
        object: ObjectId,
        range: &'a KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Read<'a, Entries> {
        Box::pin(self.read(async move |c: &Connection| {
            let sql = scan_sql(range, reverse);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![];
            let id = object.0.as_slice();
            params.push(&id);
            let mut types = vec![Type::BYTEA];
            for bound in [&range.lower, &range.upper] {
                if let Bound::Included(k) | Bound::Excluded(k) = bound {
                    params.push(k);
                    types.push(Type::BYTEA);
                }
            }
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            params.push(&limit);
            types.push(Type::INT8);
            let st = c.statement(&sql, &types).await?;
            // Streamed: the rows past the budget are never held.
            let rows = c
                .client
                .query_raw(&st, params.iter().copied())
                .await
                .map_err(pg_error)?;
            pin_mut!(rows);
            let mut out = Vec::new();
            let mut bytes = 0usize;
            while let Some(row) = rows.next().await {
                let row = row.map_err(pg_error)?;
                let key: Vec<u8> = row.get(0);
                let value: Vec<u8> = row.get(1);
                bytes = bytes.saturating_add(key.len() + value.len());
                if bytes > max_bytes {
                    return Err(StorageError::ReadBudget(max_bytes));
                }
                out.push((key, value));
            }
            Ok(out)
        }))
    }

    fn object_meta(&self, object: ObjectId) -> Read<'_, Option<ObjectMeta>> {
        Box::pin(self.read(async move |c: &Connection| {
            let st = c.statement(META, &[Type::BYTEA]).await?;
            let row = c
                .client
                .query_opt(&st, &[&object.0.as_slice()])
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| ObjectMeta {
                class: r.get(0),
                name: r.get(1),
                usage: r.get::<_, i64>(2).max(0) as u64,
            }))
        }))
    }

    fn objects(&self) -> Read<'_, Vec<(ObjectId, ObjectMeta)>> {
        Box::pin(self.read(async move |c: &Connection| {
            let rows = c
                .client
                .query(
                    "SELECT object, class, name, usage FROM lodge_objects ORDER BY object",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let id = object_of(r.get::<_, &[u8]>(0))?;
                    Some((
                        id,
                        ObjectMeta {
                            class: r.get(1),
                            name: r.get(2),
                            usage: r.get::<_, i64>(3).max(0) as u64,
                        },
                    ))
                })
                .collect())
        }))
    }

    fn alarm(&self, object: ObjectId) -> Read<'_, Option<Alarm>> {
        Box::pin(self.read(async move |c: &Connection| {
            let st = c.statement(ALARM, &[Type::BYTEA]).await?;
            let row = c
                .client
                .query_opt(&st, &[&object.0.as_slice()])
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| Alarm {
                object,
                at_ms: r.get::<_, i64>(0).max(0) as u64,
                retry: r.get::<_, i32>(1).max(0) as u32,
            }))
        }))
    }

    fn alarm_count(&self) -> Read<'_, u64> {
        Box::pin(self.read(async move |c: &Connection| {
            let row = c
                .client
                .query_one("SELECT count(*) FROM lodge_alarms", &[])
                .await
                .map_err(pg_error)?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        }))
    }

    fn next_alarms(&self, limit: usize) -> Read<'_, Vec<Alarm>> {
        Box::pin(self.read(async move |c: &Connection| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = c
                .client
                .query(
                    "SELECT object, at_ms, retry FROM lodge_alarms ORDER BY at_ms, object LIMIT $1",
                    &[&limit],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    Some(Alarm {
                        object: object_of(r.get::<_, &[u8]>(0))?,
                        at_ms: r.get::<_, i64>(1).max(0) as u64,
                        retry: r.get::<_, i32>(2).max(0) as u32,
                    })
                })
                .collect())
        }))
    }

    fn commit(&self, group: &[ObjectChanges<'_>]) -> Result<(), StorageError> {
        if group.is_empty() {
            return Ok(());
        }
        self.runtime.block_on(self.commit_async(group))
    }

    fn health(&self) -> Result<(), String> {
        match self.health.get() {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }

    fn failed(&self, error: &StorageError) -> bool {
        // Whatever failed, the transaction is gone with its connection: start over on a
        // new one, and say why until then.
        self.set_problem(Some(format!("{}: {error}", self.described)));
        self.runtime.block_on(self.writer.drop_current());
        true
    }

    fn reopen(&self) -> Result<(), StorageError> {
        let result = self
            .runtime
            .block_on(async { self.writer.get(&self.config).await.map(drop) });
        match &result {
            Ok(()) => self.set_problem(None),
            Err(e) => self.set_problem(Some(format!("{}: {e}", self.described))),
        }
        result
    }

    fn is_local(&self) -> bool {
        false
    }

    fn registry(&self) -> Option<&dyn RegistryRecords> {
        Some(self)
    }

    fn backup_to(&self, _path: &Path) -> Result<usize, StorageError> {
        Err(StorageError::Unsupported(format!(
            "lodge backup copies the redb engine's file; this host stores objects in {}. Back \
             it up with PostgreSQL's own tools: `pg_dump` for a consistent copy, or base \
             backups with WAL archiving for point-in-time recovery (docs/operator-guide.md, \
             \"Backups on PostgreSQL\")",
            self.described
        )))
    }
}

impl PostgresEngine {
    /// Runs `work` to completion from sync code: on the writer thread, a blocking-pool
    /// thread or an async worker (which hands its other tasks over meanwhile).
    fn blocking<T>(&self, work: impl Future<Output = T>) -> T {
        match Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(work)),
            Err(_) => self.runtime.block_on(work),
        }
    }
}

impl RegistryRecords for PostgresEngine {
    fn load_manifest(&self) -> Result<Option<String>, StorageError> {
        self.blocking(self.read(async |c: &Connection| {
            let row = c
                .client
                .query_opt("SELECT manifest FROM lodge_registry WHERE id = 1", &[])
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| r.get(0)))
        }))
    }

    fn save_manifest(&self, json: &str) -> Result<(), StorageError> {
        self.blocking(self.read(async |c: &Connection| {
            c.client
                .execute(
                    "INSERT INTO lodge_registry (id, manifest) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET manifest = EXCLUDED.manifest",
                    &[&json],
                )
                .await
                .map_err(pg_error)
                .map(drop)
        }))
    }

    fn keep_component(&self, hash: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.blocking(self.read(async |c: &Connection| {
            c.client
                .execute(
                    "INSERT INTO lodge_components (hash, bytes) VALUES ($1, $2)
                     ON CONFLICT (hash) DO NOTHING",
                    &[&hash, &bytes],
                )
                .await
                .map_err(pg_error)
                .map(drop)
        }))
    }

    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.blocking(self.read(async |c: &Connection| {
            let row = c
                .client
                .query_opt(
                    "SELECT bytes FROM lodge_components WHERE hash = $1",
                    &[&hash],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| r.get(0)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::redb::RedbEngine;
    use super::super::writer::merge_batches;
    use super::super::writer::tests::scenario;
    use super::super::{Alarm, Batch};
    use super::*;

    /// Everything an engine shows: records, every object's entries both ways, alarms.
    type Snapshot = (
        Vec<(ObjectId, ObjectMeta)>,
        Vec<(Entries, Entries, Entries)>,
        Vec<Alarm>,
        u64,
    );

    async fn snapshot(engine: &dyn Engine) -> Snapshot {
        let objects = engine.objects().await.unwrap();
        let mut entries = Vec::new();
        for (id, _) in &objects {
            let all = KeyRange::new(None, None, None);
            let from_b = KeyRange::new(None, Some(b"b"), None);
            entries.push((
                engine
                    .scan(*id, &all, false, 100, usize::MAX)
                    .await
                    .unwrap(),
                engine.scan(*id, &all, true, 1, usize::MAX).await.unwrap(),
                engine
                    .scan(*id, &from_b, false, 100, usize::MAX)
                    .await
                    .unwrap(),
            ));
            assert_eq!(
                engine.object_meta(*id).await.unwrap().as_ref(),
                Some(&objects.iter().find(|(o, _)| o == id).unwrap().1)
            );
        }
        let alarms = engine.next_alarms(100).await.unwrap();
        let count = engine.alarm_count().await.unwrap();
        (objects, entries, alarms, count)
    }

    /// Commits `groups` (each one merged group) on the writer's side of the engine.
    async fn commit(engine: Arc<dyn Engine>, groups: Vec<Vec<Batch>>) {
        tokio::task::spawn_blocking(move || {
            for group in groups {
                engine.commit(&merge_batches(group.iter())).unwrap();
            }
        })
        .await
        .unwrap();
    }

    /// The engines agree: the same batches, merged into one group or committed one by
    /// one, leave the same state in redb and in PostgreSQL, read back the same way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_engines_leave_the_same_state_merged_or_one_by_one() {
        let server = tokio::task::spawn_blocking(lodge_tests::postgres::Server::start)
            .await
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = StorageConfig::default();
        let mut snapshots = Vec::new();
        for (n, merged) in [(1, true), (2, false)] {
            let redb: Arc<dyn Engine> =
                Arc::new(RedbEngine::open(&dir.path().join(format!("r{n}"))).unwrap());
            let url = server.create_database(&format!("conformance{n}")).unwrap();
            let pg: Arc<dyn Engine> =
                Arc::new(PostgresEngine::open(&url, &settings).await.unwrap());
            for engine in [redb, pg] {
                let (before, group) = scenario();
                let groups = if merged {
                    vec![before, group]
                } else {
                    before.into_iter().chain(group).map(|b| vec![b]).collect()
                };
                commit(engine.clone(), groups).await;
                snapshots.push((engine.describe(), snapshot(&*engine).await));
            }
        }
        let (first_name, first) = &snapshots[0];
        for (name, other) in &snapshots[1..] {
            assert_eq!(other, first, "{name} differs from {first_name}");
        }
        // And that state is the intended one.
        let usages: Vec<(u8, u64)> = first.0.iter().map(|(o, m)| (o.0[0], m.usage)).collect();
        assert_eq!(usages, [(1, 6), (2, 2), (5, 0)]);
        let alarms: Vec<(u8, u64)> = first.2.iter().map(|a| (a.object.0[0], a.at_ms)).collect();
        assert_eq!(alarms, [(5, 70), (1, 200)]);
        assert_eq!(first.3, 2);
    }

    #[test]
    fn scans_bind_only_the_bounds_they_have() {
        let all = KeyRange::new(None, None, None);
        assert_eq!(
            scan_sql(&all, false),
            "SELECT key, value FROM lodge_data WHERE object = $1 AND key >= $2 ORDER BY key ASC LIMIT $3"
        );
        let some = KeyRange::new(Some(b"p"), None, None);
        assert_eq!(
            scan_sql(&some, true),
            "SELECT key, value FROM lodge_data WHERE object = $1 AND key >= $2 AND key < $3 ORDER BY key DESC LIMIT $4"
        );
    }
}
