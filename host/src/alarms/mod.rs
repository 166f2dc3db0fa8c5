//! The alarm scheduler. Alarms live in redb (see `storage`), indexed by due time, so a
//! pending alarm costs no live instance: this loop reads the earliest few, sleeps until
//! the first is due (or until a commit sets an earlier one), and delivers due alarms
//! through the runtime like any other event. Alarms that fell due while the host was
//! down are simply due at start-up.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::object::{ObjectId, ObjectRef};
use crate::runtime::{AlarmOutcome, EventError, Runtime};
use crate::storage::{AlarmChange, Batch};

/// Alarms read per pass; more due ones are picked up by the next pass.
const BATCH: usize = 256;
/// The longest the scheduler sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the scheduler until the runtime shuts down.
pub async fn run(runtime: Runtime) {
    let wake = runtime.alarm_wake();
    let in_flight: Arc<Mutex<HashSet<ObjectId>>> = Arc::default();
    loop {
        let next_due = match dispatch_due(&runtime, &in_flight) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "cannot read alarms");
                Some(now_ms() + 1_000)
            }
        };
        let sleep = next_due
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Starts delivery of every due alarm not already in flight; returns when the next
/// not-yet-due alarm is due.
fn dispatch_due(
    runtime: &Runtime,
    in_flight: &Arc<Mutex<HashSet<ObjectId>>>,
) -> Result<Option<u64>, crate::storage::StorageError> {
    let now = now_ms();
    let busy = in_flight.lock().expect("in-flight lock").len();
    let alarms = runtime.store().next_alarms(BATCH + busy)?;
    for alarm in alarms {
        if alarm.at_ms > now {
            return Ok(Some(alarm.at_ms));
        }
        if !in_flight
            .lock()
            .expect("in-flight lock")
            .insert(alarm.object)
        {
            continue;
        }
        let Some(meta) = runtime.store().object_meta(alarm.object)? else {
            continue;
        };
        let runtime = runtime.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            deliver(&runtime, alarm.object, meta.class, meta.name, alarm.at_ms).await;
            in_flight
                .lock()
                .expect("in-flight lock")
                .remove(&alarm.object);
            runtime.alarm_wake().notify_one();
        });
    }
    Ok(None)
}

async fn deliver(runtime: &Runtime, id: ObjectId, class: String, name: String, due_ms: u64) {
    let object = ObjectRef {
        class: class.as_str().into(),
        name: name.as_str().into(),
        id,
    };
    if runtime.registry().class(&class).is_none() {
        // Nobody can ever handle it: drop it rather than spin on it.
        tracing::error!(object = %object, "alarm for a class that is not served; dropping it");
        let ticket = runtime.store().submit(Batch {
            object: id,
            class: object.class.clone(),
            name: object.name.clone(),
            clear: false,
            writes: Vec::new(),
            alarm: Some(AlarmChange::Clear),
        });
        let _ = ticket.await;
        return;
    }
    match runtime.fire_alarm(&object, due_ms).await {
        Ok(AlarmOutcome::Handled) => tracing::debug!(object = %object, "alarm handled"),
        Ok(AlarmOutcome::Stale) => {}
        Ok(AlarmOutcome::Failed) => {}
        Err(EventError::ShuttingDown) => {}
        Err(e) => {
            tracing::warn!(object = %object, error = %e, "alarm not delivered; trying again shortly");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
