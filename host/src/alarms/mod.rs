//! The alarm scheduler. Alarms live in redb (see `storage`), indexed by due time, so a
//! pending alarm costs no live instance: this loop reads the earliest few, sleeps until
//! the first is due (or until a commit sets an earlier one), and delivers due alarms
//! through the runtime like any other event. Alarms that fell due while the host was
//! down are simply due at start-up.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use crate::config::AlarmConfig;
use crate::object::{ObjectId, ObjectRef};
use crate::runtime::{AlarmOutcome, EventError, Runtime};
use crate::storage::AlarmChange;
use lodge_core::time::now_ms;

/// Alarms read per pass; more due ones are picked up by the next pass.
const BATCH: usize = 256;
/// The longest the scheduler sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs the scheduler until the runtime shuts down.
pub async fn run(runtime: Runtime) {
    let wake = runtime.alarm_wake();
    let in_flight: Arc<Mutex<HashSet<ObjectId>>> = Arc::default();
    let mut unserved = HashMap::new();
    loop {
        let next_due = match dispatch_due(&runtime, &in_flight, &mut unserved).await {
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
/// not-yet-due alarm is due. A due alarm whose class this host does not serve (removed
/// from the config, or not deployed yet) is kept, not dropped: it waits in `unserved` and
/// fires once the class is served again (a deploy wakes the scheduler).
async fn dispatch_due(
    runtime: &Runtime,
    in_flight: &Arc<Mutex<HashSet<ObjectId>>>,
    unserved: &mut HashMap<ObjectId, String>,
) -> Result<Option<u64>, crate::storage::StorageError> {
    let now = now_ms();
    unserved.retain(|_, class| runtime.registry().class(class).is_none());
    let busy = in_flight.lock().expect("in-flight lock").len();
    let alarms = runtime
        .store()
        .next_alarms(BATCH + busy + unserved.len())
        .await?;
    for alarm in alarms {
        if unserved.contains_key(&alarm.object) {
            continue;
        }
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
        let Some(meta) = runtime.store().object_meta(alarm.object).await? else {
            in_flight
                .lock()
                .expect("in-flight lock")
                .remove(&alarm.object);
            continue;
        };
        if runtime.registry().class(&meta.class).is_none() {
            in_flight
                .lock()
                .expect("in-flight lock")
                .remove(&alarm.object);
            tracing::warn!(
                class = %meta.class, id = %alarm.object, name = %meta.name, due_ms = alarm.at_ms,
                "alarm of a class this host does not serve: kept until the class is served"
            );
            unserved.insert(alarm.object, meta.class);
            continue;
        }
        let runtime = runtime.clone();
        let in_flight = in_flight.clone();
        let span = tracing::info_span!("object", class = %meta.class, id = %alarm.object, name = %meta.name);
        tokio::spawn(async move {
            deliver(&runtime, alarm.object, meta.class, meta.name, alarm.at_ms)
                .instrument(span)
                .await;
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
    match runtime.fire_alarm(&object, due_ms).await {
        Ok(AlarmOutcome::Handled) => tracing::debug!(object = %object, "alarm handled"),
        Ok(AlarmOutcome::Stale) => {}
        Ok(AlarmOutcome::Failed { retry }) => {
            let next = after_failure(runtime.alarm_config(), retry, now_ms());
            match next {
                AlarmChange::Set { at_ms, retry } => tracing::warn!(
                    retry,
                    max = runtime.alarm_config().max_retries,
                    due_ms,
                    at_ms,
                    "on-alarm failed; retrying"
                ),
                AlarmChange::Clear => {
                    runtime
                        .metrics()
                        .alarms_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(
                        retries = retry,
                        due_ms,
                        "on-alarm failed after the last retry; the alarm is dropped"
                    );
                }
            }
            change(runtime, &object, due_ms, next).await;
        }
        Err(EventError::ShuttingDown) => {}
        Err(e) => {
            tracing::warn!(error = %e, "alarm not delivered; trying again shortly");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Changes the alarm that was due at `due_ms` (unless an event changed it meanwhile).
async fn change(runtime: &Runtime, object: &ObjectRef, due_ms: u64, change: AlarmChange) {
    match runtime.change_alarm(object, due_ms, change).await {
        Ok(_) | Err(EventError::ShuttingDown) => {}
        Err(e) => {
            // It stays due: the next pass tries again.
            tracing::warn!(error = %e, "cannot change the alarm");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// What becomes of an alarm whose handler failed after `retry` earlier failures: another
/// try after an exponential backoff (`retry_base_ms` doubled per failure), or, past
/// `max_retries`, nothing (it is dropped).
pub fn after_failure(config: &AlarmConfig, retry: u32, now_ms: u64) -> AlarmChange {
    if retry >= config.max_retries {
        return AlarmChange::Clear;
    }
    let backoff = config.retry_base_ms.saturating_mul(1u64 << retry.min(30));
    AlarmChange::Set {
        at_ms: now_ms.saturating_add(backoff),
        retry: retry + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_alarms_back_off_exponentially_then_drop() {
        let config = AlarmConfig {
            max_retries: 3,
            retry_base_ms: 100,
        };
        let at = |retry| after_failure(&config, retry, 1_000);
        assert_eq!(
            at(0),
            AlarmChange::Set {
                at_ms: 1_100,
                retry: 1
            }
        );
        assert_eq!(
            at(1),
            AlarmChange::Set {
                at_ms: 1_200,
                retry: 2
            }
        );
        assert_eq!(
            at(2),
            AlarmChange::Set {
                at_ms: 1_400,
                retry: 3
            }
        );
        assert_eq!(at(3), AlarmChange::Clear);
        let huge = AlarmConfig {
            max_retries: u32::MAX,
            retry_base_ms: u64::MAX / 2,
        };
        assert_eq!(
            after_failure(&huge, 40, u64::MAX - 5),
            AlarmChange::Set {
                at_ms: u64::MAX,
                retry: 41
            }
        );
    }
}
