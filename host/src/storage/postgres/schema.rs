//! lodge's tables in PostgreSQL and their versions: created at the first start, migrated
//! forward at a later one, refused when a newer lodge wrote them.

use tokio_postgres::Client;

use super::super::StorageError;
use super::connection::pg_error;

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
