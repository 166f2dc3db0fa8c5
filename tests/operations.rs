//! End-to-end tests of the operator's tools against a running host: listing and
//! inspecting objects, evicting and deleting one, and a backup taken while the host
//! serves that restores into a fresh data dir with nothing lost.

use std::process::Command;

use lodge_tests::postgres::{Engine, engine};
use lodge_tests::{HostConfig, Ws, get, http, lodge_bin, post, raw_http};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_can_be_listed_inspected_evicted_and_deleted() {
    let host = HostConfig::new()
        .class("counter", "counter")
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        post(&host.url("/counter/alpha/increment"), "")
            .await
            .unwrap();
    }
    http("PUT", &host.url("/counter/alpha/kv?key=greeting"), "hello")
        .await
        .unwrap();
    http("PUT", &host.url("/counter/beta/alarm?in=600000"), "")
        .await
        .unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/alpha/ws?name=w"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();

    let list = host
        .admin("GET", "/classes/counter/objects", vec![])
        .await
        .unwrap()
        .json();
    let find = |name: &str| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .cloned()
            .unwrap()
    };
    let alpha = find("alpha");
    assert_eq!(alpha["live"], true);
    assert_eq!(alpha["sockets"], 1);
    assert!(alpha["storage_bytes"].as_u64().unwrap() > 0);
    assert!(find("beta")["next_alarm_ms"].as_u64().is_some());

    let (ok, out, err) = host.cli(&["inspect", "counter", "alpha"]);
    assert!(ok, "{err}");
    assert!(out.contains("count = 3"), "{out}");
    assert!(out.contains("kv:greeting = \"hello\""), "{out}");

    let (ok, out, err) = host.cli(&["evict", "counter", "alpha"]);
    assert!(ok, "{err}");
    assert!(out.contains("evicted"), "{out}");
    host.log
        .wait_for(&["evicted", "why=\"requested\"", "name=alpha"], 1)
        .await
        .unwrap();
    // The socket survived the eviction.
    ws.send("echo still here").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), "still here");

    // Deleting asks first; --yes skips the question.
    let (ok, _, _) = host.cli(&["delete", "counter", "alpha"]);
    assert!(!ok, "no confirmation on an empty stdin");
    assert_eq!(
        get(&host.url("/counter/alpha/")).await.unwrap().json()["count"],
        3
    );
    let (ok, out, err) = host.cli(&["delete", "counter", "alpha", "--yes"]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted"));
    assert_eq!(ws.closed().await.unwrap().code, 1000);
    assert_eq!(
        get(&host.url("/counter/alpha/")).await.unwrap().json()["count"],
        0
    );
    // Its data is gone (what is there now was written by the events after the delete).
    let (ok, out, _) = host.cli(&["inspect", "counter", "alpha"]);
    assert!(ok);
    assert!(!out.contains("kv:greeting"), "{out}");

    let (ok, _, err) = host.cli(&["objects", "nope"]);
    assert!(!ok);
    assert!(err.contains("no class named"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_host_restores_into_a_fresh_data_dir() {
    let mut host = HostConfig::new()
        .class("counter", "counter")
        .start()
        .await
        .unwrap();
    for i in 0..20 {
        post(&host.url(&format!("/counter/obj{}/increment", i % 4)), "")
            .await
            .unwrap();
    }
    http("PUT", &host.url("/counter/obj0/alarm?in=600000"), "")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    // Writes keep going while the backup is taken.
    let writer = tokio::spawn({
        let url = host.url("/counter/busy/increment");
        async move {
            for _ in 0..50 {
                post(&url, "").await.unwrap();
            }
        }
    });
    if engine() == Engine::Postgres {
        // The database is the operator's: lodge points at its tools, and makes nothing.
        let (ok, _, err) = host.cli(&["backup", backup.to_str().unwrap()]);
        assert!(!ok);
        assert!(err.contains("pg_dump") && err.contains("WAL"), "{err}");
        assert!(!backup.exists(), "no folder is left behind");
        writer.await.unwrap();
        return;
    }
    let (ok, out, err) = host.cli(&["backup", backup.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("backed up"), "{out}");
    writer.await.unwrap();
    // A second backup into the same folder is refused.
    let (ok, _, err) = host.cli(&["backup", backup.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");

    // Lose the data dir, restore the backup into it, start again.
    host.kill();
    let data = host.data_dir().to_path_buf();
    let out = Command::new(lodge_bin())
        .args([
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "refuses to overwrite without --force"
    );
    std::fs::remove_dir_all(&data).unwrap();
    let out = Command::new(lodge_bin())
        .args([
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.restart().await.unwrap();
    for i in 0..4 {
        let v = get(&host.url(&format!("/counter/obj{i}/")))
            .await
            .unwrap()
            .json();
        assert_eq!(v["count"], 5, "obj{i}");
    }
    let alarm = get(&host.url("/counter/obj0/alarm")).await.unwrap().json();
    assert!(
        alarm["alarm"].as_u64().is_some(),
        "the alarm came back: {alarm}"
    );
    // The busy object's count is whatever the snapshot caught: a consistent prefix.
    let busy = get(&host.url("/counter/busy/")).await.unwrap().json()["count"]
        .as_i64()
        .unwrap();
    assert!((0..=50).contains(&busy));
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_at_rest_is_private_and_backups_uploads_and_restores_are_checked() {
    let mut host = HostConfig::new()
        .class("counter", "counter")
        .toml("admin", "upload_timeout_ms = 300")
        .start()
        .await
        .unwrap();
    post(&host.url("/counter/kept/increment"), "")
        .await
        .unwrap();
    // Nobody but the operator reads the data: the dir is 0700, what is in it 0600/0700.
    let data = host.data_dir().to_path_buf();
    assert_eq!(mode(&data), 0o700);
    let mut checked = 0;
    for entry in walk(&data) {
        assert_eq!(
            mode(&entry) & 0o077,
            0,
            "{} is {:o}",
            entry.display(),
            mode(&entry)
        );
        checked += 1;
    }
    let expected = match engine() {
        Engine::Redb => 5,     // lodge.redb, registry.json, admin.token, components/...
        Engine::Postgres => 3, // admin.token, the artifact cache, alive
    };
    assert!(checked >= expected, "{checked} files checked");

    // Names and queries that are not UTF-8 are refused, never decoded lossily (which
    // would make `%FF` and `%FE` the same object).
    for path in [
        "/classes/counter/objects/%FF",
        "/classes/counter/objects/%FF/evict",
        "/classes/counter/versions?label=%FF",
    ] {
        let method = if path.ends_with("evict") || path.contains("label") {
            "POST"
        } else {
            "GET"
        };
        let r = host.admin(method, path, Vec::new()).await.unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("UTF-8"), "{path}: {}", r.body);
    }

    // A backup folder that climbs with `..` is refused.
    let tmp = tempfile::tempdir().unwrap();
    let climbing = format!("{}/a/../b", tmp.path().display());
    let (ok, _, err) = host.cli(&["backup", &climbing]);
    assert!(!ok);
    assert!(err.contains("climbs with '..'"), "{err}");

    // An upload that trickles its body gets 408 once the upload timeout passes.
    let request = format!(
        "POST /classes/counter/versions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 100000\r\n\r\nonly the start",
        host.admin_token()
    );
    let raw = raw_http(host.admin_addr, request.as_bytes()).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert!(raw.contains("upload_timeout_ms"), "{raw}");

    // A restore takes component sources only after checking their hash, and never a
    // compiled artifact (native code the host would load). (redb's backups: on
    // PostgreSQL `lodge backup` refuses, see the test above.)
    let backup = tmp.path().join("backup");
    if engine() == Engine::Redb {
        let (ok, _, err) = host.cli(&["backup", backup.to_str().unwrap()]);
        assert!(ok, "{err}");
        std::fs::write(backup.join("components/planted.cwasm"), b"native code?").unwrap();
        let restore = |into: &std::path::Path| {
            Command::new(lodge_bin())
                .args(["restore", backup.to_str().unwrap(), "--data-dir"])
                .arg(into)
                .output()
                .unwrap()
        };
        let fresh = tmp.path().join("fresh");
        let out = restore(&fresh);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!fresh.join("components/planted.cwasm").exists());
        let wasm = std::fs::read_dir(backup.join("components"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "wasm"))
            .unwrap();
        let mut bytes = std::fs::read(&wasm).unwrap();
        bytes.push(0);
        std::fs::write(&wasm, bytes).unwrap();
        let damaged = tmp.path().join("damaged");
        let out = restore(&damaged);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("do not match its name"), "{err}");
        assert!(
            !damaged.join("lodge.redb").exists(),
            "nothing restored from it"
        );
    }

    // A token file others can read is refused at start, with what to do.
    host.kill();
    let token = data.join("admin.token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = Command::new(lodge_bin())
        .args(["serve", "--config"])
        .arg(host.config_path())
        .env("RUST_LOG", "off")
        .env_remove("LODGE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can be read by other users") && err.contains("chmod 600"),
        "{err}"
    );
}

/// Every file and folder under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
