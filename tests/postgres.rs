//! The PostgreSQL engine against a real server of its own (a private one per test, from
//! Debian's package, run as the `postgres` user): what the shared suite cannot show by
//! running on it. The database unreachable at start, a schema migrated forward and a
//! newer one refused, the database stopped and started again under load (no acknowledged
//! write lost, `/readyz` says why meanwhile, lodge reconnects by itself), a commit that
//! times out, the registry shared through the database, and a password that never
//! reaches the logs.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lodge_tests::postgres::Server;
use lodge_tests::{HostConfig, eventually, get, guest, post};
use serde_json::Value;

const PASSWORD: &str = "hunter2-never-logged";

/// The URL with a password in it (the private server trusts loopback, so it is not
/// checked: what matters is that lodge never prints it).
fn with_password(url: &str) -> String {
    url.replacen("lodge@", &format!("lodge:{PASSWORD}@"), 1)
}

async fn server() -> Arc<Server> {
    Arc::new(
        tokio::task::spawn_blocking(Server::start)
            .await
            .unwrap()
            .unwrap(),
    )
}

async fn readyz(host: &lodge_tests::Host) -> (u16, Value) {
    let reply = get(&host.admin_url("/readyz")).await.unwrap();
    (reply.status, reply.json())
}

async fn count(host: &lodge_tests::Host, name: &str) -> i64 {
    let r = get(&host.url(&format!("/counter/{name}/"))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["count"].as_i64().unwrap()
}

fn assert_no_password(host: &lodge_tests::Host) {
    for line in host.log.all() {
        assert!(!line.contains(PASSWORD), "the password was logged: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_stops_the_start_with_a_clear_error_and_no_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://lodge:{PASSWORD}@127.0.0.1:{port}/objects");
    let err = HostConfig::new()
        .class("counter", "counter")
        .storage(&url)
        .start()
        .await
        .err()
        .expect("no host starts without its database")
        .to_string();
    assert!(
        err.contains(&format!(
            "cannot open PostgreSQL at lodge@127.0.0.1:{port}/objects"
        )),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");

    // A URL that does not parse is quoted nowhere (it may hold a password).
    let err = HostConfig::new()
        .class("counter", "counter")
        .storage(&format!("postgres://lodge:{PASSWORD}@127.0.0.1:notaport/x"))
        .start()
        .await
        .err()
        .expect("a bad URL is refused")
        .to_string();
    assert!(err.contains("expected postgres://USER"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_created_migrated_forward_and_a_newer_one_is_refused() {
    let server = server().await;
    let url = server.create_database("schema").unwrap();
    let mut host = HostConfig::new()
        .class("counter", "counter")
        .storage(&url)
        .start()
        .await
        .unwrap();
    host.log
        .wait_for(&["PostgreSQL schema migrated", "version=2"], 1)
        .await
        .unwrap();
    for _ in 0..3 {
        post(&host.url("/counter/kept/increment"), "")
            .await
            .unwrap();
    }
    host.terminate().unwrap();
    assert_eq!(
        server
            .sql("schema", "SELECT version FROM lodge_schema")
            .unwrap(),
        "2"
    );

    // A database an older lodge made (schema 1: no registry tables) is taken forward,
    // its objects untouched.
    server
        .sql(
            "schema",
            "DROP TABLE lodge_registry, lodge_components; UPDATE lodge_schema SET version = 1",
        )
        .unwrap();
    host.restart().await.unwrap();
    host.log
        .wait_for(&["PostgreSQL schema migrated", "version=2"], 1)
        .await
        .unwrap();
    assert_eq!(count(&host, "kept").await, 3);
    host.terminate().unwrap();

    // A database a newer lodge wrote is refused, saying so.
    server
        .sql("schema", "UPDATE lodge_schema SET version = 99")
        .unwrap();
    let err = host.restart().await.expect_err("refused").to_string();
    assert!(
        err.contains(
            "written by a newer lodge (schema version 99; this lodge knows versions up to 2)"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_under_load_loses_no_acknowledged_write_and_service_returns() {
    let server = server().await;
    let url = server.create_database("load").unwrap();
    let host = HostConfig::new()
        .class("counter", "counter")
        .storage(&with_password(&url))
        .start()
        .await
        .unwrap();

    // Writers on eight objects; each keeps the counts it was told (acknowledged).
    let stop = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(AtomicU64::new(0));
    let failed_total = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let url = host.url(&format!("/counter/load{w}/increment"));
        let (stop, acked_total, failed_total) =
            (stop.clone(), acked_total.clone(), failed_total.clone());
        writers.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let reply = post(&url, "").await.unwrap();
                match reply.status {
                    200 => {
                        acked.push(reply.json()["count"].as_i64().unwrap());
                        acked_total.fetch_add(1, Ordering::Relaxed);
                    }
                    503 => {
                        assert!(reply.json()["error"].is_string(), "{}", reply.body);
                        failed += 1;
                        failed_total.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    other => panic!("increment: {other} {}", reply.body),
                }
            }
            (acked, failed)
        }));
    }
    let acked_at = |n: u64| {
        let acked_total = acked_total.clone();
        async move {
            eventually(&format!("{n} acknowledged increments"), || async {
                Ok((acked_total.load(Ordering::Relaxed) >= n).then_some(()))
            })
            .await
            .unwrap()
        }
    };
    acked_at(200).await;

    // The operator restarts the database: lodge notices, says so, and refuses writes.
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    eventually(
        "the host is not ready while the database is down",
        || async {
            let (status, body) = readyz(&host).await;
            Ok(
                (status == 503 && body["reason"].as_str().unwrap_or("").contains("PostgreSQL"))
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap();
    let failed_during = failed_total.load(Ordering::Relaxed);
    eventually("writes fail while the database is down", || async {
        Ok((failed_total.load(Ordering::Relaxed) > failed_during + 5).then_some(()))
    })
    .await
    .unwrap();

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.start_again())
        .await
        .unwrap()
        .unwrap();
    eventually("the host is ready again by itself", || async {
        Ok((readyz(&host).await.0 == 200).then_some(()))
    })
    .await
    .unwrap();
    host.log.wait_for(&["storage recovered"], 1).await.unwrap();
    let before = acked_total.load(Ordering::Relaxed);
    acked_at(before + 200).await;
    stop.store(true, Ordering::Relaxed);

    for (w, writer) in writers.into_iter().enumerate() {
        let (acked, failed) = writer.await.unwrap();
        // Acknowledged counts only grow, and every one of them is stored.
        assert!(acked.windows(2).all(|p| p[0] < p[1]), "load{w}: {acked:?}");
        let stored = count(&host, &format!("load{w}")).await;
        let last = *acked.last().unwrap();
        assert!(
            stored >= last,
            "load{w}: acknowledged {last}, stored {stored}"
        );
        // A failed increment is at most one that was reported failed but landed.
        assert!(
            stored <= acked.len() as i64 + failed as i64,
            "load{w}: stored {stored} of {} acknowledged + {failed} failed",
            acked.len()
        );
    }
    assert_no_password(&host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_times_out_fails_its_event_and_the_next_ones_succeed() {
    let server = server().await;
    let url = server.create_database("slow").unwrap();
    let host = HostConfig::new()
        .class("counter", "counter")
        .toml("storage", "timeout_ms = 300")
        .storage(&url)
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            post(&host.url("/counter/slow/increment"), "")
                .await
                .unwrap()
                .status,
            200
        );
    }

    // Another session holds a lock that makes lodge's next commit wait (reads still go).
    let psql = lodge_tests::postgres::bin_dir().unwrap().join("psql");
    let mut holder = Command::new(psql)
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "lodge", "-d", "slow"])
        .arg("-p")
        .arg(server.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(stdin, "BEGIN; LOCK TABLE lodge_data IN EXCLUSIVE MODE;").unwrap();
    stdin.flush().unwrap();
    let s = server.clone();
    eventually("the other session holds the lock", || {
        let s = s.clone();
        async move {
            let held = tokio::task::spawn_blocking(move || {
                s.sql(
                    "slow",
                    "SELECT count(*) FROM pg_locks WHERE relation = 'lodge_data'::regclass \
                     AND mode = 'ExclusiveLock' AND granted",
                )
            })
            .await??;
            Ok((held == "1").then_some(()))
        }
    })
    .await
    .unwrap();

    let reply = post(&host.url("/counter/slow/increment"), "")
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.json()["error"].is_string(), "{}", reply.body);

    writeln!(stdin, "ROLLBACK;").unwrap();
    drop(stdin);
    holder.wait().unwrap();
    let next = eventually("increments succeed again", || async {
        let reply = post(&host.url("/counter/slow/increment"), "").await?;
        Ok((reply.status == 200).then(|| reply.json()["count"].as_i64().unwrap()))
    })
    .await
    .unwrap();
    // The timed-out increment was rolled back: the count goes on from the third.
    assert_eq!(next, 4);
    assert_eq!(count(&host, "slow").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_deployed_through_one_host_is_served_by_the_next_from_the_database() {
    let server = server().await;
    let url = server.create_database("registry").unwrap();
    let mut first = HostConfig::new()
        .class("counter", "counter")
        .storage(&url)
        .start()
        .await
        .unwrap();
    let bytes = std::fs::read(guest("counter")).unwrap();
    let reply = first
        .admin("POST", "/classes/tally/versions?label=one", bytes)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    for _ in 0..2 {
        post(&first.url("/tally/x/increment"), "").await.unwrap();
    }
    first.terminate().unwrap();

    // A new host with a fresh data dir and no word of `tally` in its config serves it,
    // from the component kept in the database, with its objects.
    let second = HostConfig::new()
        .class("counter", "counter")
        .storage(&url)
        .start()
        .await
        .unwrap();
    assert_ne!(second.data_dir(), first.data_dir());
    let reply = post(&second.url("/tally/x/increment"), "").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["count"], 3);
    let versions = second
        .admin("GET", "/classes/tally/versions", vec![])
        .await
        .unwrap()
        .json();
    assert_eq!(versions["current"], 1, "{versions}");
}
