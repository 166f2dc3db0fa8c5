//! Storage faults against a running host whose data lives on a small real file system (a
//! tmpfs mounted for the test): a nearly full disk refuses new data early with a clear
//! error; a disk that fills up under the database fails commits cleanly (no output of a
//! failed write is released, the writer's socket gets an error frame, `/readyz` says why)
//! and storage recovers by itself once space returns, with every acknowledged write kept.
//!
//! Mounting needs root (or CAP_SYS_ADMIN), which the test machines have; without it the
//! tests fail and say so rather than pass without testing anything.
//!
//! These are the redb engine's faults (its file is on the data disk); under
//! `LODGE_TEST_ENGINE=postgres` they have nothing to test and return at once. The
//! PostgreSQL engine's faults (the database stopped under load, a commit that times out)
//! are in `postgres.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use lodge_tests::postgres::{Engine, engine};
use lodge_tests::{HostConfig, Ws, eventually, get, http};
use serde_json::Value;

/// A tmpfs of a fixed size, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "these tests mount a small tmpfs and need root (or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes a filler file until the file system is full, or until only `leave` bytes
    /// are free.
    fn fill(&self, leave: u64) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if leave > 0 && free(self.path()) <= leave + chunk.len() as u64 {
                break;
            }
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = file.sync_all();
    }

    fn unfill(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

async fn readyz(host: &lodge_tests::Host) -> (u16, Value) {
    let reply = get(&host.admin_url("/readyz")).await.unwrap();
    (reply.status, reply.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_refuses_new_data_with_a_clear_error_until_space_returns() {
    if engine() == Engine::Postgres {
        return;
    }
    let disk = Tmpfs::mount(64);
    let host = HostConfig::new()
        .class("counter", "counter")
        .data_dir(disk.path().join("data"))
        .toml("storage", "min_free_bytes = 16777216")
        .start()
        .await
        .unwrap();
    let put = |key: &str, value: &str| {
        let url = host.url(&format!("/counter/room/kv?key={key}"));
        let value = value.to_owned();
        async move { http("PUT", &url, &value).await.unwrap() }
    };
    assert_eq!(put("kept", "before").await.status, 200);

    disk.fill(8 << 20); // below the 16 MiB reserve
    // Refused at the guest's `put` (the guest answers 400 with the host's message) or, when
    // the host had not measured the disk since it filled, at the commit (503): either way
    // the client is told why and nothing is stored.
    let refused = put("new", "after").await;
    assert!(
        [400, 503].contains(&refused.status),
        "{} {}",
        refused.status,
        refused.json()
    );
    let text = refused.json().to_string();
    assert!(text.contains("min_free_bytes"), "{text}");
    host.log
        .wait_for(&["writes that add data are refused"], 1)
        .await
        .unwrap();
    // Reads still work (the operator's inspect reads committed keys without waking the
    // object, whose activation counter could not be written now), nothing of the refused
    // put is stored, and the host stays ready: nothing is broken, writes wait for room.
    let inspect = host
        .admin("GET", "/classes/counter/objects/room", vec![])
        .await
        .unwrap()
        .json();
    let entries = inspect["entries"].to_string();
    assert!(
        entries.contains("kv:kept") && entries.contains("before"),
        "{inspect}"
    );
    assert!(!entries.contains("kv:new"), "{inspect}");
    assert_eq!(readyz(&host).await.0, 200);

    disk.unfill();
    eventually("puts are accepted once space is freed", || async {
        Ok((put("new", "after").await.status == 200).then_some(()))
    })
    .await
    .unwrap();
    let new = get(&host.url("/counter/room/kv?key=new")).await.unwrap();
    assert_eq!(new.json()["value"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_fails_commits_cleanly_and_storage_recovers_without_a_restart() {
    if engine() == Engine::Postgres {
        return;
    }
    let disk = Tmpfs::mount(64);
    let mut host = HostConfig::new()
        .class("counter", "counter")
        .data_dir(disk.path().join("data"))
        // No reserve: let the database itself hit the full disk.
        .toml("storage", "min_free_bytes = 0")
        .start()
        .await
        .unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/room/ws?name=w"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();

    disk.fill(0);
    // Values of 256 KiB make the database grow: one of them must fail.
    let mut acknowledged = Vec::new();
    let mut failed = None;
    for i in 0..64 {
        let value = format!("{i}:{}", "x".repeat(256 * 1024));
        let reply = http(
            "PUT",
            &host.url(&format!("/counter/room/kv?key=big{i}")),
            &value,
        )
        .await
        .unwrap();
        match reply.status {
            200 => acknowledged.push(i),
            503 => {
                let error = reply.json()["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(error.contains("disk is full"), "{error}");
                failed = Some(i);
                break;
            }
            other => panic!("PUT big{i}: {other} {}", reply.json()),
        }
    }
    let failed = failed.expect("a put failed once the disk was full");

    // Nothing of the failed write is ever shown.
    let read = get(&host.url(&format!("/counter/room/kv?key=big{failed}")))
        .await
        .unwrap();
    assert!(
        !read.json().to_string().contains(&format!("{failed}:x")),
        "a value whose write failed was read back"
    );
    // Not ready, and it says why.
    let (status, body) = readyz(&host).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap_or_default().contains("full"),
        "{body}"
    );
    // A socket whose message's write fails is told, then closed.
    ws.send("store viasocket 262144").await.unwrap();
    let error = ws.recv_type("error").await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("commit"),
        "{error}"
    );
    assert_eq!(ws.closed().await.unwrap().code, 1011);

    disk.unfill();
    eventually("the host is ready again once space returns", || async {
        Ok((readyz(&host).await.0 == 200).then_some(()))
    })
    .await
    .unwrap();
    host.log.wait_for(&["storage recovered"], 1).await.unwrap();
    let again = http("PUT", &host.url("/counter/room/kv?key=after"), "fine")
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.json());

    // Every acknowledged write is there, and stays there across a crash.
    for round in 0..2 {
        for &i in &acknowledged {
            let read = get(&host.url(&format!("/counter/room/kv?key=big{i}")))
                .await
                .unwrap();
            let value = read.json()["value"].as_str().unwrap_or_default().to_owned();
            assert!(
                value.starts_with(&format!("{i}:"))
                    && value.len() == 256 * 1024 + format!("{i}:").len(),
                "round {round}: big{i} lost"
            );
        }
        let read = get(&host.url(&format!("/counter/room/kv?key=big{failed}")))
            .await
            .unwrap();
        assert_eq!(read.json()["value"], Value::Null, "round {round}");
        let after = get(&host.url("/counter/room/kv?key=after")).await.unwrap();
        assert_eq!(after.json()["value"], "fine");
        if round == 0 {
            host.kill();
            host.restart().await.unwrap();
        }
    }
}
