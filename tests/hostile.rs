//! A guest that attacks its host on purpose (`guests/hostile`), against a real host: every
//! host call that could make the host materialise or queue memory on the guest's behalf is
//! bounded per event, the guest gets an error naming the limit, the host's memory stays
//! flat and other objects keep being served; and a client cannot wake fresh objects (each
//! one able to store data) without end. Every refusal is counted in the metrics.

use lodge_tests::{HostConfig, Ws, post};
use serde_json::Value;

async fn attack(host: &lodge_tests::Host, path: &str) -> Value {
    let reply = post(&host.url(&format!("/hostile/h{path}")), "")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    reply.json()
}

fn refused(answer: &Value, limit: &str) {
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("TooLarge") && error.contains(limit),
        "expected a refusal naming {limit}: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_are_bounded_per_event_and_the_host_stays_flat() {
    let host = HostConfig::new()
        .class("hostile", "hostile")
        .class("counter", "counter")
        .start()
        .await
        .unwrap();
    // 96 MiB stored, in events under the 64 MiB write budget.
    for from in [0, 32, 64] {
        let answer = attack(&host, &format!("/fill?from={from}&count=32")).await;
        assert_eq!(answer["ok"], Value::Null, "{answer}");
    }
    // One event writing 80 MiB is refused at the call that passes the budget.
    refused(
        &attack(&host, "/fill?from=100&count=80").await,
        "max_write_bytes_per_event",
    );
    let mut ws = Ws::connect(&host.ws_url("/hostile/h/ws")).await.unwrap();
    let before = host.proc_status_kib("VmHWM");

    // Every entry at once (96 MiB): refused before the host holds more than the budget.
    refused(
        &attack(&host, "/list-all").await,
        "max_read_bytes_per_event",
    );
    // 1,500 copies of a 1 MiB key in one call would be 1.5 GiB in the host.
    refused(
        &attack(&host, "/get-many?copies=1500").await,
        "max_read_bytes_per_event",
    );
    // 100 frames of 1 MiB queued in one event.
    refused(
        &attack(&host, "/flood?count=100").await,
        "max_send_bytes_per_event",
    );
    // Others are served meanwhile, and after.
    let counted = post(&host.url("/counter/other/increment"), "")
        .await
        .unwrap();
    assert_eq!(counted.json()["count"], 1);

    let after = host.proc_status_kib("VmHWM");
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 400,
        "the host's peak RSS grew by {grown_mib} MiB during the attacks"
    );
    // What the flood did queue within its budget reaches the socket, which stays open.
    let first = ws.recv().await.unwrap();
    assert_eq!(first.len(), 1 << 20);
    host.log
        .wait_for(&["limit refused", "max_read_bytes_per_event"], 1)
        .await
        .unwrap();
    // The operator sees each refusal counted under the key that made it.
    let metrics = host.admin("GET", "/metrics", vec![]).await.unwrap().body;
    assert_eq!(
        refusals(&metrics, "max_write_bytes_per_event"),
        1,
        "{metrics}"
    );
    assert_eq!(refusals(&metrics, "max_read_bytes_per_event"), 2);
    assert_eq!(refusals(&metrics, "max_send_bytes_per_event"), 1);
    assert_eq!(refusals(&metrics, "storage_bytes"), 0);
}

/// `lodge_limit_refusals_total{limit="KEY"}` in a metrics page.
fn refusals(metrics: &str, key: &str) -> u64 {
    let series = format!("lodge_limit_refusals_total{{limit=\"{key}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_printing_in_a_loop_cannot_flood_the_log() {
    let host = HostConfig::new()
        .class("hostile", "hostile")
        .start()
        .await
        .unwrap();
    let answer = attack(&host, "/log?lines=20000").await;
    assert_eq!(answer["ok"], 20000);
    // The next line after the flood says how many were dropped.
    attack(&host, "/log?lines=1").await;
    let dropped = host
        .log
        .wait_for(&["guest log lines dropped"], 1)
        .await
        .unwrap();
    assert!(dropped[0].contains("dropped="), "{}", dropped[0]);
    let kept = host
        .log
        .all()
        .iter()
        .filter(|l| l.contains("hostile log line"))
        .count();
    // The burst (200) and what the refill allows during the run, far from 20,000.
    assert!(
        (200..1000).contains(&kept),
        "{kept} guest lines were logged"
    );
    let metrics = host.admin("GET", "/metrics", vec![]).await.unwrap().body;
    let dropped = refusals(&metrics, "guest_log_lines");
    assert!(
        dropped as usize + kept >= 20000,
        "{dropped} lines counted as refused, {kept} logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_wake_fresh_objects_without_end() {
    let host = HostConfig::new()
        .class("counter", "counter")
        .toml("connections", "max_wakes_per_minute = 3")
        .start()
        .await
        .unwrap();
    for name in ["a", "b", "c"] {
        let reply = post(&host.url(&format!("/counter/{name}/increment")), "")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // A fourth fresh name in the same minute: refused, saying which key and when.
    let refused = post(&host.url("/counter/d/increment"), "").await.unwrap();
    assert_eq!(refused.status, 429, "{}", refused.body);
    let error = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("max_wakes_per_minute"), "{error}");
    assert!(error.contains("retry in"), "{error}");
    // So is a WebSocket to one.
    let ws = Ws::connect(&host.ws_url("/counter/e/ws?name=w")).await;
    assert!(
        ws.is_err(),
        "the upgrade to a fifth fresh object was refused"
    );
    // Objects that are live are not charged: their clients go on.
    let again = post(&host.url("/counter/a/increment"), "").await.unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["count"], 2);
    let metrics = host.admin("GET", "/metrics", vec![]).await.unwrap().body;
    assert_eq!(refusals(&metrics, "max_wakes_per_minute"), 2);
}
