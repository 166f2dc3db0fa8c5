//! The PostgreSQL engine: the same objects in the operator's own database.
//!
//! Four tables (`lodge_data`, `lodge_objects`, `lodge_alarms`, and the schema's version
//! in `lodge_schema`) hold what the redb file holds, with the same key order (`bytea`
//! compares bytewise). The registry's manifest and component bytes live beside them
//! (`lodge_registry`, `lodge_components`), so any host on the database can load a class
//! another one deployed.
//!
//! A group commit is one transaction sent as one pipeline: `BEGIN` and the two reads it
//! needs (the sizes of the values being replaced, the objects' records) in one round trip,
//! then every write as one statement per kind over arrays (`UNNEST`) and `COMMIT` in a
//! second. So a group of a thousand events costs two round trips and one WAL flush.
//!
//! Connections: the writer has its own (a transaction must not interleave with reads);
//! reads share a few, each pipelining whatever is asked of it concurrently. A connection
//! that breaks is replaced at its next use; while the writer's cannot be replaced the
//! engine is unhealthy (`/readyz` says so) and the writer retries every second.
//!
//! Trade-off: a commit that times out is abandoned by dropping its connection. The server
//! then rolls it back, unless its `COMMIT` had already been processed: its events were
//! reported failed (nothing of theirs was released) but their writes may be durable. That
//! is the ambiguity every client of a remote database lives with; what lodge promises is
//! that nothing acknowledged is lost, and that an object restarts from what is durable.

use std::collections::HashMap;
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
use tokio_postgres::{Client, NoTls, Statement};

use super::{
    Alarm, AlarmChange, Engine, Entries, KeyRange, ObjectChanges, ObjectMeta, Read,
    RegistryRecords, StorageError,
};
use crate::config::StorageConfig;
use crate::object::ObjectId;

/// Connections shared by readers.
const READ_CONNECTIONS: usize = 4;

/// How much longer than the server's `statement_timeout` lodge waits for an answer.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema changes, in order; entry `i` takes the schema from version `i` to `i + 1`.
/// Released entries are never edited: a change is a new entry. Fill factors leave room
/// in each page, so that rewriting a value or an object's usage is a HOT update (no
/// index entry to add).
const MIGRATIONS: &[&str] = &[
    // 1: objects, their keys and alarms.
    "CREATE TABLE lodge_data (
         object bytea NOT NULL,
         key bytea NOT NULL,
         value bytea NOT NULL,
         PRIMARY KEY (object, key)
     ) WITH (fillfactor = 90);
     CREATE TABLE lodge_objects (
         object bytea PRIMARY KEY,
         class text NOT NULL,
         name text NOT NULL,
         usage bigint NOT NULL
     ) WITH (fillfactor = 50);
     CREATE TABLE lodge_alarms (
         object bytea PRIMARY KEY,
         at_ms bigint NOT NULL,
         retry integer NOT NULL
     );
     CREATE INDEX lodge_alarms_due ON lodge_alarms (at_ms, object);",
    // 2: the class registry and component versions, so that any host can load them.
    "CREATE TABLE lodge_registry (
         id integer PRIMARY KEY CHECK (id = 1),
         manifest text NOT NULL
     );
     CREATE TABLE lodge_components (
         hash text PRIMARY KEY,
         bytes bytea NOT NULL
     );",
];

/// A key for `pg_advisory_xact_lock`: hosts starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6c6f_6467_6500_0001;

fn pg_error(e: tokio_postgres::Error) -> StorageError {
    if e.is_closed() {
        return StorageError::Io(format!("the connection to PostgreSQL was lost ({e})"));
    }
    match e.as_db_error() {
        Some(db) => StorageError::Engine(format!("PostgreSQL: {}", db.message())),
        // No answer from the server: the connection is gone or broken.
        None => StorageError::Io(format!("PostgreSQL: {e}")),
    }
}

/// One connection and the statements prepared on it.
struct Connection {
    client: Client,
    /// Prepared by SQL text, on first use.
    statements: Mutex<HashMap<String, Statement>>,
}

impl Connection {
    async fn open(config: &tokio_postgres::Config) -> Result<Connection, StorageError> {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| {
                StorageError::Io(format!(
                    "PostgreSQL did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(pg_error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a PostgreSQL connection ended");
            }
        });
        Ok(Connection {
            client,
            statements: Mutex::new(HashMap::new()),
        })
    }

    async fn statement(&self, sql: &str, types: &[Type]) -> Result<Statement, StorageError> {
        if let Some(s) = self.statements.lock().expect("statements").get(sql) {
            return Ok(s.clone());
        }
        let prepared = self
            .client
            .prepare_typed(sql, types)
            .await
            .map_err(pg_error)?;
        self.statements
            .lock()
            .expect("statements")
            .insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }
}

/// A connection that is replaced when it breaks.
#[derive(Default)]
struct Slot {
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Slot {
    async fn get(&self, config: &tokio_postgres::Config) -> Result<Arc<Connection>, StorageError> {
        let mut current = self.current.lock().await;
        if let Some(c) = &*current
            && !c.client.is_closed()
        {
            return Ok(c.clone());
        }
        *current = None;
        let fresh = Arc::new(Connection::open(config).await?);
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    async fn drop_current(&self) {
        *self.current.lock().await = None;
    }
}

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

/// `user@host:port/db`, never the password.
pub fn describe_url(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    format!(
        "PostgreSQL at {}@{}/{}",
        config.get_user().unwrap_or("?"),
        hosts.join(","),
        config.get_dbname().unwrap_or("?")
    )
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
        let work = commit_group(&conn, group);
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

/// Brings the schema to the newest version this lodge knows, or refuses a newer one.
pub(super) async fn migrate(client: &Client) -> Result<(), StorageError> {
    client.batch_execute("BEGIN").await.map_err(pg_error)?;
    let result = async {
        // A migration (or waiting for another host's) may take longer than a commit.
        client
            .batch_execute("SET LOCAL statement_timeout = 0")
            .await
            .map_err(pg_error)?;
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error)?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS lodge_schema (version integer NOT NULL)")
            .await
            .map_err(pg_error)?;
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM lodge_schema", &[])
            .await
            .map_err(pg_error)?;
        let version: i32 = row.get(0);
        let known = MIGRATIONS.len() as i32;
        if version > known {
            return Err(StorageError::Unsupported(format!(
                "this database was written by a newer lodge (schema version {version}; this \
                 lodge knows versions up to {known}): run that lodge, or a newer one"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            client.batch_execute(sql).await.map_err(pg_error)?;
            tracing::info!(version = i + 1, "PostgreSQL schema migrated");
        }
        client
            .execute("DELETE FROM lodge_schema", &[])
            .await
            .map_err(pg_error)?;
        client
            .execute("INSERT INTO lodge_schema (version) VALUES ($1)", &[&known])
            .await
            .map_err(pg_error)?;
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(pg_error)?;
    result
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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

/// The writes of one group, as columns for `UNNEST`.
#[derive(Default)]
struct Columns<'a> {
    cleared: Vec<&'a [u8]>,
    insert_objects: Vec<&'a [u8]>,
    insert_keys: Vec<&'a [u8]>,
    insert_values: Vec<&'a [u8]>,
    update_objects: Vec<&'a [u8]>,
    update_keys: Vec<&'a [u8]>,
    update_values: Vec<&'a [u8]>,
    delete_objects: Vec<&'a [u8]>,
    delete_keys: Vec<&'a [u8]>,
    alarm_changed: Vec<&'a [u8]>,
    alarm_objects: Vec<&'a [u8]>,
    alarm_at: Vec<i64>,
    alarm_retry: Vec<i32>,
    new_objects: Vec<&'a [u8]>,
    new_classes: Vec<&'a str>,
    new_names: Vec<&'a str>,
    new_usages: Vec<i64>,
    kept_objects: Vec<&'a [u8]>,
    kept_usages: Vec<i64>,
    gone: Vec<&'a [u8]>,
    emptied: Vec<&'a [u8]>,
}

const OLD_SIZES: &str = "SELECT d.object, d.key, octet_length(d.value)
     FROM lodge_data d JOIN unnest($1::bytea[], $2::bytea[]) AS w(object, key)
     ON d.object = w.object AND d.key = w.key";
const OLD_RECORDS: &str =
    "SELECT object, usage FROM lodge_objects WHERE object = ANY($1::bytea[])";
const CLEAR: &str = "DELETE FROM lodge_data WHERE object = ANY($1::bytea[])";
const DELETE: &str =
    "DELETE FROM lodge_data d USING unnest($1::bytea[], $2::bytea[]) AS w(object, key)
     WHERE d.object = w.object AND d.key = w.key";
// The writer knows which keys and records exist (it read them in the same transaction,
// and it is their only writer), so rows are inserted or updated, never upserted: an
// upsert costs a speculative insertion per row.
const INSERT: &str = "INSERT INTO lodge_data (object, key, value)
     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[])";
const UPDATE: &str = "UPDATE lodge_data d SET value = w.value
     FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS w(object, key, value)
     WHERE d.object = w.object AND d.key = w.key";
const ALARMS_CLEAR: &str = "DELETE FROM lodge_alarms WHERE object = ANY($1::bytea[])";
const ALARMS_SET: &str = "INSERT INTO lodge_alarms (object, at_ms, retry)
     SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int4[])";
const RECORDS_NEW: &str = "INSERT INTO lodge_objects (object, class, name, usage)
     SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::int8[])";
const RECORDS_KEPT: &str = "UPDATE lodge_objects o SET usage = w.usage
     FROM unnest($1::bytea[], $2::int8[]) AS w(object, usage) WHERE o.object = w.object";
const RECORDS_GONE: &str = "DELETE FROM lodge_objects WHERE object = ANY($1::bytea[])";
/// Objects left with nothing stored whose alarm the group did not change: their record
/// goes unless they have an alarm (asked here, only for them).
const RECORDS_GONE_UNLESS_ALARM: &str = "DELETE FROM lodge_objects o
     WHERE o.object = ANY($1::bytea[])
     AND NOT EXISTS (SELECT 1 FROM lodge_alarms a WHERE a.object = o.object)";

type Params<'p, const N: usize> = [&'p (dyn ToSql + Sync); N];

/// One group in one transaction, in two round trips.
async fn commit_group(conn: &Connection, group: &[ObjectChanges<'_>]) -> Result<(), StorageError> {
    use Type as T;
    let client = &conn.client;
    let bytea2 = [T::BYTEA_ARRAY, T::BYTEA_ARRAY];
    let old_sizes = conn.statement(OLD_SIZES, &bytea2).await?;
    let old_records = conn.statement(OLD_RECORDS, &[T::BYTEA_ARRAY]).await?;
    let clear = conn.statement(CLEAR, &[T::BYTEA_ARRAY]).await?;
    let delete = conn.statement(DELETE, &bytea2).await?;
    let insert = conn
        .statement(INSERT, &[T::BYTEA_ARRAY, T::BYTEA_ARRAY, T::BYTEA_ARRAY])
        .await?;
    let update = conn
        .statement(UPDATE, &[T::BYTEA_ARRAY, T::BYTEA_ARRAY, T::BYTEA_ARRAY])
        .await?;
    let alarms_clear = conn.statement(ALARMS_CLEAR, &[T::BYTEA_ARRAY]).await?;
    let alarms_set = conn
        .statement(ALARMS_SET, &[T::BYTEA_ARRAY, T::INT8_ARRAY, T::INT4_ARRAY])
        .await?;
    let records_new = conn
        .statement(
            RECORDS_NEW,
            &[T::BYTEA_ARRAY, T::TEXT_ARRAY, T::TEXT_ARRAY, T::INT8_ARRAY],
        )
        .await?;
    let records_kept = conn
        .statement(RECORDS_KEPT, &[T::BYTEA_ARRAY, T::INT8_ARRAY])
        .await?;
    let records_gone = conn.statement(RECORDS_GONE, &[T::BYTEA_ARRAY]).await?;
    let records_emptied = conn
        .statement(RECORDS_GONE_UNLESS_ALARM, &[T::BYTEA_ARRAY])
        .await?;

    // Round trip 1: begin, and what the writes replace.
    let ids: Vec<&[u8]> = group.iter().map(|c| c.object.0.as_slice()).collect();
    let (mut read_objects, mut read_keys) = (Vec::new(), Vec::new());
    for c in group.iter().filter(|c| !c.clear) {
        for key in c.writes.keys() {
            read_objects.push(c.object.0.as_slice());
            read_keys.push(*key);
        }
    }
    let size_params: [&(dyn ToSql + Sync); 2] = [&read_objects, &read_keys];
    let record_params: [&(dyn ToSql + Sync); 1] = [&ids];
    let begin = client.batch_execute("BEGIN");
    let sizes = client.query(&old_sizes, &size_params);
    let records = client.query(&old_records, &record_params);
    let (begun, sizes, records) = tokio::join!(begin, sizes, records);
    let outcome = async {
        begun.map_err(pg_error)?;
        let sizes = sizes.map_err(pg_error)?;
        let records = records.map_err(pg_error)?;
        let by_id: HashMap<&[u8], &ObjectChanges<'_>> =
            group.iter().map(|c| (c.object.0.as_slice(), c)).collect();
        let mut old_size: HashMap<(&[u8], &[u8]), i64> = HashMap::new();
        for row in &sizes {
            let object: &[u8] = row.get(0);
            let key: &[u8] = row.get(1);
            // Keyed by the group's own slices, which outlive the rows.
            if let Some(c) = by_id.get(object)
                && let Some((k, _)) = c.writes.get_key_value(key)
            {
                old_size.insert((c.object.0.as_slice(), *k), row.get::<_, i32>(2) as i64);
            }
        }
        let mut old_record: HashMap<&[u8], i64> = HashMap::new();
        for row in &records {
            let object: &[u8] = row.get(0);
            if let Some(c) = by_id.get(object) {
                old_record.insert(c.object.0.as_slice(), row.get(1));
            }
        }

        let mut cols = Columns::default();
        for c in group {
            let id = c.object.0.as_slice();
            let old_usage = old_record.get(id).copied().unwrap_or(0);
            let mut usage = if c.clear { 0 } else { old_usage };
            if c.clear {
                cols.cleared.push(id);
            }
            for (key, value) in &c.writes {
                // A cleared object's keys are all gone by the time its writes apply.
                let old = old_size.get(&(id, *key)).filter(|_| !c.clear);
                if let Some(old) = old {
                    usage -= key.len() as i64 + old;
                }
                match (value, old) {
                    (Some(v), None) => {
                        usage += (key.len() + v.len()) as i64;
                        cols.insert_objects.push(id);
                        cols.insert_keys.push(key);
                        cols.insert_values.push(v);
                    }
                    (Some(v), Some(_)) => {
                        usage += (key.len() + v.len()) as i64;
                        cols.update_objects.push(id);
                        cols.update_keys.push(key);
                        cols.update_values.push(v);
                    }
                    (None, Some(_)) => {
                        cols.delete_objects.push(id);
                        cols.delete_keys.push(key);
                    }
                    // Deleting a key that is not there changes nothing.
                    (None, None) => {}
                }
            }
            let usage = usage.max(0);
            // `Some(has_alarm)` when the group changed it.
            let alarm = c.alarm.map(|change| {
                cols.alarm_changed.push(id);
                if let AlarmChange::Set { at_ms, retry } = change {
                    cols.alarm_objects.push(id);
                    cols.alarm_at.push(i64_of(at_ms));
                    cols.alarm_retry
                        .push(i32::try_from(retry).unwrap_or(i32::MAX));
                }
                matches!(change, AlarmChange::Set { .. })
            });
            // An object that stores nothing and has no alarm is not recorded at all (and
            // one with an alarm always is).
            let recorded = old_record.contains_key(id);
            match (usage, alarm, recorded) {
                (0, Some(false), true) => cols.gone.push(id),
                (0, Some(false) | None, false) => {}
                (0, None, true) => {
                    if old_usage != 0 {
                        cols.kept_objects.push(id);
                        cols.kept_usages.push(0);
                    }
                    cols.emptied.push(id);
                }
                (_, _, true) => {
                    if usage != old_usage {
                        cols.kept_objects.push(id);
                        cols.kept_usages.push(usage);
                    }
                }
                (_, _, false) => {
                    cols.new_objects.push(id);
                    cols.new_classes.push(c.class);
                    cols.new_names.push(c.name);
                    cols.new_usages.push(usage);
                }
            }
        }

        // Round trip 2: every write, one statement per kind that has rows, then the
        // commit. They run in this order (a clear before the group's inserts).
        let c = &cols;
        let p_clear: Params<1> = [&c.cleared];
        let p_delete: Params<2> = [&c.delete_objects, &c.delete_keys];
        let p_insert: Params<3> = [&c.insert_objects, &c.insert_keys, &c.insert_values];
        let p_update: Params<3> = [&c.update_objects, &c.update_keys, &c.update_values];
        let p_alarms_clear: Params<1> = [&c.alarm_changed];
        let p_alarms_set: Params<3> = [&c.alarm_objects, &c.alarm_at, &c.alarm_retry];
        let p_new: Params<4> = [&c.new_objects, &c.new_classes, &c.new_names, &c.new_usages];
        let p_kept: Params<2> = [&c.kept_objects, &c.kept_usages];
        let p_gone: Params<1> = [&c.gone];
        let p_emptied: Params<1> = [&c.emptied];
        let statements: [(&Statement, &[&(dyn ToSql + Sync)], bool); 10] = [
            (&clear, &p_clear, c.cleared.is_empty()),
            (&delete, &p_delete, c.delete_objects.is_empty()),
            (&insert, &p_insert, c.insert_objects.is_empty()),
            (&update, &p_update, c.update_objects.is_empty()),
            (&alarms_clear, &p_alarms_clear, c.alarm_changed.is_empty()),
            (&alarms_set, &p_alarms_set, c.alarm_objects.is_empty()),
            (&records_new, &p_new, c.new_objects.is_empty()),
            (&records_kept, &p_kept, c.kept_objects.is_empty()),
            (&records_gone, &p_gone, c.gone.is_empty()),
            (&records_emptied, &p_emptied, c.emptied.is_empty()),
        ];
        let writes = futures_util::future::try_join_all(
            statements
                .iter()
                .filter(|(_, _, empty)| !empty)
                .map(|(statement, params, _)| client.execute(*statement, params)),
        );
        let (written, committed) = tokio::join!(writes, client.batch_execute("COMMIT"));
        written.map_err(pg_error)?;
        committed.map_err(pg_error)
    }
    .await;
    if outcome.is_err() && !client.is_closed() {
        // A failed statement aborted the transaction: end it before the next group.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    outcome
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

    #[test]
    fn a_described_url_never_shows_the_password() {
        let config =
            tokio_postgres::Config::from_str("postgres://lodge:s3cret@db.example:6543/objects")
                .unwrap();
        let text = describe_url(&config);
        assert_eq!(text, "PostgreSQL at lodge@db.example:6543/objects");
        assert!(!text.contains("s3cret"));
    }
}
