//! End-to-end tests of durable alarms over a real `lodge` process: they fire while the
//! object is evicted and after a restart, failed handlers are retried with a growing
//! retry count and then dropped, a new alarm replaces the old one, delete cancels, and
//! an alarm never interleaves with other events of its object.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lodge_tests::{HostConfig, get, http, post};
use serde_json::Value;

fn host() -> HostConfig {
    HostConfig::new()
        .class("counter", "counter")
        .toml("alarms", "retry_base_ms = 50")
        .toml("alarms", "max_retries = 3")
}

async fn alarm_state(host: &lodge_tests::Host, name: &str) -> Value {
    get(&host.url(&format!("/counter/{name}/alarm")))
        .await
        .unwrap()
        .json()
}

async fn set_alarm(host: &lodge_tests::Host, name: &str, query: &str) -> u64 {
    let r = http(
        "PUT",
        &host.url(&format!("/counter/{name}/alarm?{query}")),
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["alarm"].as_u64().unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_fires_while_the_object_is_evicted() {
    let host = host()
        .toml("runtime", "idle_timeout_ms = 100")
        .start()
        .await
        .unwrap();
    set_alarm(&host, "sleepy", "in=600").await;
    let activations = |v: Value| v["activations"].as_i64().unwrap();
    let before = activations(
        get(&host.url("/counter/sleepy/activations"))
            .await
            .unwrap()
            .json(),
    );
    host.log
        .wait_for(&["evicted", "name=sleepy"], 1)
        .await
        .unwrap();
    host.log
        .wait_for(&["alarm handled", "counter/sleepy"], 1)
        .await
        .unwrap();
    host.log
        .wait_for(&["evicted", "name=sleepy"], 2)
        .await
        .unwrap();
    let after = activations(
        get(&host.url("/counter/sleepy/activations"))
            .await
            .unwrap()
            .json(),
    );
    // One activation for the alarm, one for this read.
    assert_eq!(after, before + 2);
    let state = alarm_state(&host, "sleepy").await;
    assert_eq!(state["alarm"], Value::Null, "the fired alarm is cleared");
    assert_eq!(state["fired"].as_array().unwrap().len(), 1);
    assert_eq!(state["fired"][0]["retry"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_due_while_the_host_was_down_fires_at_start_up() {
    let mut host = host().start().await.unwrap();
    let due = set_alarm(&host, "down", "in=800").await;
    host.kill();
    // Let the due time pass while no host runs.
    let wait = due.saturating_sub(now_ms()) + 100;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    host.restart().await.unwrap();
    host.log
        .wait_for(&["alarm handled", "counter/down"], 1)
        .await
        .unwrap();
    let state = alarm_state(&host, "down").await;
    assert_eq!(state["fired"].as_array().unwrap().len(), 1);
    assert!(state["fired"][0]["at"].as_u64().unwrap() >= due);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_with_backoff_then_dropped() {
    let host = host().start().await.unwrap();
    // Fails on retries 0 and 1, succeeds on retry 2.
    set_alarm(&host, "flaky", "in=0&fail=2").await;
    host.log
        .wait_for(&["alarm handled", "counter/flaky"], 1)
        .await
        .unwrap();
    let retries = host
        .log
        .wait_for(&["on-alarm failed; retrying", "name=flaky"], 2)
        .await
        .unwrap();
    assert!(
        retries[0].contains("retry=1") && retries[1].contains("retry=2"),
        "{retries:?}"
    );
    let state = alarm_state(&host, "flaky").await;
    // The failed attempts' writes were rolled back: only the successful one is stored.
    let fired = state["fired"].as_array().unwrap();
    assert_eq!(fired.len(), 1, "{state}");
    assert_eq!(fired[0]["retry"], 2);

    // Always failing: retried max_retries (3) times, then dropped with an error.
    set_alarm(&host, "broken", "in=0&fail=100").await;
    host.log
        .wait_for(&["after the last retry", "name=broken"], 1)
        .await
        .unwrap();
    let attempts = host
        .log
        .wait_for(&["on-alarm failed; retrying", "name=broken"], 3)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 3);
    let state = alarm_state(&host, "broken").await;
    assert_eq!(state["alarm"], Value::Null, "the alarm is dropped");
    assert_eq!(state["fired"].as_array().unwrap().len(), 0);
    // And the operator sees it in the metrics, not only in a log line.
    let metrics = host.admin("GET", "/metrics", vec![]).await.unwrap().body;
    assert!(
        metrics.contains("lodge_alarms_dropped_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_alarm_replaces_the_old_and_delete_cancels() {
    let host = host().start().await.unwrap();
    set_alarm(&host, "replaced", "in=100000").await;
    let due = set_alarm(&host, "replaced", "in=200").await;
    assert_eq!(alarm_state(&host, "replaced").await["alarm"], due);

    set_alarm(&host, "cancelled", "in=300").await;
    http("DELETE", &host.url("/counter/cancelled/alarm"), "")
        .await
        .unwrap();
    assert_eq!(alarm_state(&host, "cancelled").await["alarm"], Value::Null);
    // A control alarm due after the cancelled one would have been.
    set_alarm(&host, "control", "in=600").await;

    host.log
        .wait_for(&["alarm handled", "counter/control"], 1)
        .await
        .unwrap();
    let replaced = alarm_state(&host, "replaced").await;
    assert_eq!(
        replaced["fired"].as_array().unwrap().len(),
        1,
        "fired once: {replaced}"
    );
    assert_eq!(replaced["alarm"], Value::Null);
    let cancelled = alarm_state(&host, "cancelled").await;
    assert_eq!(
        cancelled["fired"].as_array().unwrap().len(),
        0,
        "{cancelled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_waits_for_the_event_in_progress() {
    let host = host().start().await.unwrap();
    set_alarm(&host, "busy", "in=200").await;
    // This event runs across the alarm's due time; the alarm must wait for it.
    let slow = post(&host.url("/counter/busy/slow?ms=700"), "")
        .await
        .unwrap()
        .json();
    host.log
        .wait_for(&["alarm handled", "counter/busy"], 1)
        .await
        .unwrap();
    let state = alarm_state(&host, "busy").await;
    let fired_at = state["fired"][0]["at"].as_u64().unwrap();
    assert!(
        fired_at >= slow["ended_at"].as_u64().unwrap(),
        "the alarm ran after the slow event ended: {state} {slow}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_of_a_class_not_served_waits_for_it_and_fires_when_it_is_deployed() {
    let data = tempfile::tempdir().unwrap();
    let mut first = host()
        .data_dir(data.path().join("data"))
        .start()
        .await
        .unwrap();
    set_alarm(&first, "kept", "in=1000").await;
    first.kill();
    // The same data, served by a host that does not serve `counter`.
    let host = HostConfig::new()
        .class("other", "counter")
        .data_dir(data.path().join("data"))
        .start()
        .await
        .unwrap();
    host.log
        .wait_for(&["kept until the class is served", "name=kept"], 1)
        .await
        .unwrap();
    // Deploying the class serves it again: the alarm fires (it used to be deleted).
    let bytes = std::fs::read(lodge_tests::guest("counter")).unwrap();
    let deployed = host
        .admin("POST", "/classes/counter/versions", bytes)
        .await
        .unwrap();
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    host.log
        .wait_for(&["alarm handled", "counter/kept"], 1)
        .await
        .unwrap();
    let state = alarm_state(&host, "kept").await;
    assert_eq!(state["fired"].as_array().unwrap().len(), 1);
}
