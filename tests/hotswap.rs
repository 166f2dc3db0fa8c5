//! End-to-end tests of hot swap through the admin API: deploys and rollbacks switch a
//! class atomically while hundreds of WebSockets stay connected, state carries over,
//! no message is lost during a burst, bad components are refused with a clear message
//! while the old version keeps serving, and the registry survives restarts.

use futures_util::future::join_all;
use lodge_tests::{HostConfig, Ws, admin_call, get, guest_variant, post};
use serde_json::json;

fn host() -> HostConfig {
    HostConfig::new().class("counter", "counter")
}

async fn deploy(host: &lodge_tests::Host, bytes: Vec<u8>) -> serde_json::Value {
    let r = host
        .admin("POST", "/classes/counter/versions?label=test", bytes)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn version_of(ws: &mut Ws) -> String {
    ws.send("version").await.unwrap();
    ws.recv_type("version").await.unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_sockets_stay_connected_through_deploy_and_rollback() {
    let host = host().start().await.unwrap();
    let v2 = std::fs::read(guest_variant("counter", "v2")).unwrap();
    let mut sockets = join_all((0..300).map(|i| {
        let url = host.ws_url(&format!("/counter/big/ws?name=u{i}"));
        async move {
            let mut ws = Ws::connect(&url).await.unwrap();
            ws.recv_type("hello").await.unwrap();
            ws
        }
    }))
    .await;
    for _ in 0..5 {
        post(&host.url("/counter/big/increment"), "").await.unwrap();
    }
    assert_eq!(version_of(&mut sockets[0]).await, "v1");

    let deployed = deploy(&host, v2.clone()).await;
    assert_eq!(deployed["version"], 2);
    assert_eq!(deployed["unchanged"], false);
    // Every socket is still open and its next message runs on the new version.
    for ws in sockets.iter_mut() {
        assert_eq!(version_of(ws).await, "v2");
    }
    // State carried over.
    let count = get(&host.url("/counter/big/")).await.unwrap().json();
    assert_eq!(count["count"], 5);
    // Tags and attachments carried over too.
    sockets[7].send("whoami").await.unwrap();
    let who = sockets[7].recv_type("whoami").await.unwrap();
    assert_eq!(who["attachment"], json!({ "name": "u7" }));

    // The same bytes again change nothing.
    let again = deploy(&host, v2).await;
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["version"], 2);

    let r = host
        .admin("POST", "/classes/counter/rollback", vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 1);
    for ws in sockets.iter_mut() {
        assert_eq!(version_of(ws).await, "v1");
    }
    let versions = host
        .admin("GET", "/classes/counter/versions", vec![])
        .await
        .unwrap()
        .json();
    assert_eq!(versions["current"], 1);
    let listed = versions["versions"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["source"], "config");
    assert_eq!(listed[1]["source"], "deploy");
    assert_eq!(listed[1]["label"], "test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_during_a_burst_loses_nothing() {
    let host = host().start().await.unwrap();
    let v2 = std::fs::read(guest_variant("counter", "v2")).unwrap();
    const CLIENTS: usize = 8;
    const EACH: usize = 100;
    let mut clients = join_all((0..CLIENTS).map(|i| {
        let url = host.ws_url(&format!("/counter/burst/ws?name=b{i}"));
        async move {
            let mut ws = Ws::connect(&url).await.unwrap();
            ws.recv_type("hello").await.unwrap();
            ws
        }
    }))
    .await;
    let tasks: Vec<_> = clients
        .drain(..)
        .map(|mut ws| {
            tokio::spawn(async move {
                for _ in 0..EACH {
                    ws.send("inc").await.unwrap();
                }
                // Each client's acknowledgements come back in the order it sent them.
                let mut last = 0;
                for _ in 0..EACH {
                    let n = ws.recv_type("count").await.unwrap()["count"]
                        .as_i64()
                        .unwrap();
                    assert!(n > last, "reordered: {n} after {last}");
                    last = n;
                }
                ws
            })
        })
        .collect();
    let deployed = deploy(&host, v2).await;
    assert_eq!(deployed["version"], 2);
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    let count = get(&host.url("/counter/burst/")).await.unwrap().json();
    assert_eq!(
        count["count"],
        (CLIENTS * EACH) as i64,
        "every increment was applied once"
    );
    for ws in clients.iter_mut() {
        assert_eq!(version_of(ws).await, "v2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_refused_and_the_old_version_keeps_serving() {
    let host = host().start().await.unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/safe/ws?name=s"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not wasm",
            b"hello, I am not wasm".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "a core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            // The smallest valid component: it exports nothing of our world.
            "another world",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "does not fit the lodge:object/object-class world",
        ),
        (
            "filesystem imports",
            std::fs::read(guest_variant("counter", "fs")).unwrap(),
            "wasi:filesystem",
        ),
        (
            // Its initialiser traps while the component is instantiated.
            "a start function that traps",
            std::fs::read(guest_variant("counter", "start-trap")).unwrap(),
            "fails while starting: the guest trapped",
        ),
    ];
    for (what, bytes, expected) in cases {
        let r = host
            .admin("POST", "/classes/counter/versions", bytes)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(expected), "{what}: {msg}");
    }
    assert_eq!(version_of(&mut ws).await, "v1");
    let versions = host
        .admin("GET", "/classes/counter/versions", vec![])
        .await
        .unwrap()
        .json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    // A refused deploy of a new class creates nothing; unknown classes and versions are
    // clear errors too.
    let r = host
        .admin("POST", "/classes/nope/versions", b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = host
        .admin("GET", "/classes/nope/versions", vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let trap = std::fs::read(guest_variant("counter", "start-trap")).unwrap();
    let r = host
        .admin("POST", "/classes/trapper/versions", trap)
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("fails while starting"), "{}", r.body);
    assert_eq!(get(&host.url("/trapper/x/")).await.unwrap().status, 404);
    let r = host
        .admin("POST", "/classes/counter/rollback?version=9", vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = host
        .admin("POST", "/classes/counter/rollback", vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 400, "nothing to roll back to: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_does_not_start_on_a_configured_version_that_cannot_start() {
    // The start-up load passes the same probe as a deploy: one clear line, no host.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lodge.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n[classes.counter]\ncomponent = {:?}\n",
            dir.path().join("data").display().to_string(),
            guest_variant("counter", "start-trap").display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(lodge_tests::lodge_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the component for 'counter' fails while starting: the guest trapped"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it never listened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_token_and_limits_uploads() {
    let host = host()
        .toml("admin", "max_upload_bytes = 1000")
        .start()
        .await
        .unwrap();
    let url = host.admin_url("/classes/counter/versions");
    let r = admin_call(&url, "GET", None, vec![]).await.unwrap();
    assert_eq!(r.status, 401);
    let r = admin_call(&url, "GET", Some("wrong"), vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = admin_call(&url, "GET", Some(&host.admin_token()), vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = host
        .admin("POST", "/classes/counter/versions", vec![0; 5000])
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    // Health checks need no token; metrics do.
    let r = admin_call(&host.admin_url("/healthz"), "GET", None, vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = host.admin("GET", "/metrics", vec![]).await.unwrap();
    assert!(r.body.contains("lodge_live_objects"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_version_survives_a_restart_and_the_cli_works() {
    let mut host = host().start().await.unwrap();
    let v2 = guest_variant("counter", "v2");
    // The operator's CLI, against the running host.
    let (ok, out, err) = host.cli(&[
        "deploy",
        "counter",
        v2.to_str().unwrap(),
        "--label",
        "from the cli",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("deployed version 2"), "{out}");

    host.restart().await.unwrap();
    // What was deployed later wins over the unchanged config.
    let v = get(&host.url("/counter/x/version")).await.unwrap().json();
    assert_eq!(v["version"], "v2");
    let (ok, out, _) = host.cli(&["versions", "counter"]);
    assert!(ok);
    assert!(out.contains("from the cli"), "{out}");

    let (ok, _, err) = host.cli(&["rollback", "counter", "1"]);
    assert!(ok, "{err}");
    let v = get(&host.url("/counter/x/version")).await.unwrap().json();
    assert_eq!(v["version"], "v1");

    let out = std::process::Command::new(lodge_tests::lodge_bin())
        .args(["versions", "counter", "--admin-url", &host.admin_url("")])
        .args(["--token", "wrong"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
