//! One group commit as one PostgreSQL transaction, in two round trips: `BEGIN` and the
//! reads the group needs (the sizes of the values it replaces, the objects' records),
//! then every write as one statement per kind over arrays (`UNNEST`) and `COMMIT`. A
//! group of a thousand events costs two round trips and one WAL flush.

use std::collections::HashMap;

use tokio_postgres::Statement;
use tokio_postgres::types::{ToSql, Type};

use super::super::{AlarmChange, ObjectChanges, StorageError};
use super::connection::{Connection, pg_error};

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
const OLD_RECORDS: &str = "SELECT object, usage FROM lodge_objects WHERE object = ANY($1::bytea[])";
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
pub(super) async fn commit_group(
    conn: &Connection,
    group: &[ObjectChanges<'_>],
) -> Result<(), StorageError> {
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
