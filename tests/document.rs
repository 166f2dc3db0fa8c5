//! End-to-end tests of the `doc` class (guests/document) on a real `lodge` process:
//! the real npm Yjs clients (yjs + y-websocket over `ws`, tests/js/interop.mjs) editing
//! concurrently across an eviction and a host restart; the version API over HTTP; bad
//! protocol input closing only the offending socket with its documented close code;
//! and a headless Chromium session on the editor page (tests/js/browser.mjs).
//!
//! The Node packages are installed once with `npm ci` (tests/js/package-lock.json);
//! Chromium is Debian's `chromium`, installed with apt-get when missing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lodge_tests::{HostConfig, eventually, get, http, post, repo_root};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(60);

fn js_dir() -> PathBuf {
    repo_root().join("tests/js")
}

/// `npm ci` in tests/js, once, if node_modules is missing.
fn npm_ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        if js_dir().join("node_modules/y-websocket").exists() {
            return Ok(());
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(js_dir())
            .status()
            .map_err(|e| format!("cannot run npm: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("npm ci in tests/js failed: {status}"))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Debian's chromium, installed if missing.
fn chromium_ready() -> PathBuf {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let path = PathBuf::from("/usr/bin/chromium");
        if path.exists() {
            return Ok(path);
        }
        let install = || {
            std::process::Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
        };
        let ok = install().is_ok_and(|s| s.success()) || {
            let _ = std::process::Command::new("apt-get").arg("update").status();
            install().is_ok_and(|s| s.success())
        };
        if ok && path.exists() {
            Ok(path)
        } else {
            Err("chromium is missing and `apt-get install -y chromium` failed".into())
        }
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// A TCP forwarder with a stable address in front of a host whose port changes on
/// restart, as a load balancer would be: y-websocket clients reconnect to it.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let t = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let to = *t.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Proxy { addr, target, task }
    }

    fn retarget(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = to;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running Node script: its stdout lines as they come, its stdin for commands.
struct Node {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<String>,
}

impl Node {
    fn start(script: &str, args: &[String]) -> Node {
        npm_ready();
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Node {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Lines until one starts with `prefix`; returns it.
    async fn until(&mut self, prefix: &str) -> String {
        loop {
            let line = tokio::time::timeout(WAIT * 3, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{prefix}` line; so far:\n{}", self.seen.join("\n")))
                .unwrap()
                .unwrap_or_else(|| {
                    panic!(
                        "the script ended before `{prefix}`:\n{}",
                        self.seen.join("\n")
                    )
                });
            println!("[node] {line}");
            self.seen.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads to the end; asserts the summary says nothing failed and the exit is 0.
    async fn finish(mut self) -> Vec<String> {
        let summary = loop {
            let line = self.until("").await;
            if line.ends_with(" failed") && line.contains(" passed, ") {
                break line;
            }
        };
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        let failures: Vec<&String> = self
            .seen
            .iter()
            .filter(|l| l.starts_with("not ok"))
            .collect();
        assert!(
            summary.ends_with(" 0 failed") && status.success(),
            "{summary} ({status}); failures: {failures:#?}"
        );
        let passed: u32 = summary.split(' ').next().unwrap().parse().unwrap();
        assert!(passed > 0, "{summary}");
        self.seen
    }
}

/// Whether the last lifecycle line of object `name` says it was evicted.
fn evicted_now(host: &lodge_tests::Host, name: &str) -> bool {
    let tag = format!("name={name}");
    host.log
        .all()
        .iter()
        .rev()
        .find(|l| l.contains(&tag) && (l.contains("evicted") || l.contains("activated")))
        .is_some_and(|l| l.contains("evicted"))
}

fn doc_host() -> HostConfig {
    HostConfig::new()
        .class("doc", "document")
        .setting("doc", "compact_every", "10")
        .setting("doc", "version_idle_ms", "400")
        .toml("runtime", "idle_timeout_ms = 300")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yjs_clients_converge_across_eviction_and_restart() {
    let mut host = doc_host().start().await.unwrap();
    let proxy = Proxy::start(host.addr).await;
    let name = "shared-notes";
    let mut node = Node::start(
        "interop.mjs",
        &[
            "--url".into(),
            format!("http://{}", proxy.addr),
            "--doc".into(),
            name.into(),
            "--clients".into(),
            "4".into(),
            "--edits".into(),
            "25".into(),
            "--rounds".into(),
            "3".into(),
            "--control".into(),
            "--versions".into(),
            "--seed".into(),
            "7".into(),
        ],
    );
    // Round 1 done: let the object be evicted while every socket stays open.
    node.until("READY 1").await;
    eventually("the document is evicted", || async {
        Ok(evicted_now(&host, name).then_some(()))
    })
    .await
    .unwrap();
    node.send("next").await;
    // Round 2 (edits after the eviction) done: crash the host; the clients edit while it
    // is down; start it again: they reconnect through the proxy and resync.
    node.until("READY 2").await;
    host.kill();
    node.send("offline").await;
    node.until("OFFLINE-EDITED").await;
    host.restart().await.unwrap();
    proxy.retarget(host.addr);
    node.send("next").await;
    let final_line = node.until("FINAL ").await;
    let lines = node.finish().await;
    assert!(lines.iter().any(|l| l.contains("reconnected and synced")));
    assert!(lines.iter().any(|l| l.contains("saw the host go away")));
    let final_text: String =
        serde_json::from_str(final_line.strip_prefix("FINAL ").unwrap()).unwrap();

    // Everything the clients were told survives another crash.
    host.restart().await.unwrap();
    let url = host.url("/doc/shared-notes");
    let r = get(&format!("{url}/text")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, final_text);
    let stats = get(&format!("{url}/stats")).await.unwrap().json();
    assert!(
        stats["compactions"].as_u64().unwrap() > 0,
        "compacted: {stats}"
    );
    assert!(stats["stored_updates"].as_u64().unwrap() < 10, "{stats}");
}

// ---- raw y-websocket frames ----------------------------------------------------------

type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn var_uint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn var_bytes(b: &[u8], out: &mut Vec<u8>) {
    var_uint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// A Yjs update (v1) inserting `text` as one item of `client` at `clock`: after the item
/// `origin` if given, else at the start of the root text `content`.
fn insert_update(client: u64, clock: u64, origin: Option<(u64, u64)>, text: &str) -> Vec<u8> {
    let mut u = Vec::new();
    var_uint(1, &mut u); // one client
    var_uint(1, &mut u); // one struct
    var_uint(client, &mut u);
    var_uint(clock, &mut u);
    match origin {
        Some((c, k)) => {
            u.push(0x84); // has origin, content = string
            var_uint(c, &mut u);
            var_uint(k, &mut u);
        }
        None => {
            u.push(0x04);
            var_uint(1, &mut u); // parent is a root type, by name
            var_bytes(b"content", &mut u);
        }
    }
    var_bytes(text.as_bytes(), &mut u);
    var_uint(0, &mut u); // empty delete set
    u
}

/// A sync message of sub-type `sub` (0 step 1, 1 step 2, 2 update).
fn sync(sub: u64, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0];
    var_uint(sub, &mut m);
    var_bytes(payload, &mut m);
    m
}

async fn raw_ws(host: &lodge_tests::Host, path: &str) -> RawWs {
    let (ws, _) = tokio_tungstenite::connect_async(host.ws_url(path))
        .await
        .unwrap();
    ws
}

/// The next binary frame whose first bytes are `prefix`.
async fn next_frame(ws: &mut RawWs, prefix: &[u8]) -> Vec<u8> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .unwrap();
        if let Message::Binary(b) = msg
            && b.starts_with(prefix)
        {
            return b.to_vec();
        }
    }
}

/// The JSON of a restored message (type 100, then a length-prefixed string).
fn restored(frame: &[u8]) -> Value {
    assert_eq!(frame[0], 100);
    // A varuint length: one byte below 128, else continuation bytes.
    let mut at = 1;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = frame[at];
        at += 1;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b < 0x80 {
            break;
        }
    }
    assert_eq!(frame.len(), at + len, "one string and nothing else");
    serde_json::from_slice(&frame[at..]).unwrap()
}

/// Waits for the server's close frame; returns its code and reason.
async fn close_code(ws: &mut RawWs) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

async fn text_of(host: &lodge_tests::Host, doc: &str) -> String {
    let r = get(&host.url(&format!("/doc/{doc}/text"))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_list_fetch_and_restore_over_http() {
    let host = doc_host().start().await.unwrap();
    let mut ws = raw_ws(&host, "/doc/v/ws").await;
    // Our step 1 arrives on connect.
    next_frame(&mut ws, &[0, 0]).await;
    ws.send(Message::binary(sync(
        2,
        &insert_update(1001, 0, None, "hello world"),
    )))
    .await
    .unwrap();
    eventually("the edit is applied", || async {
        Ok((text_of(&host, "v").await == "hello world").then_some(()))
    })
    .await
    .unwrap();
    let base = host.url("/doc/v/versions");
    let r = post(&base, r#"{"label": "first"}"#).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let v1 = r.json();
    assert_eq!(v1["label"], "first");
    assert_eq!(v1["length"], 11);
    let id = v1["id"].as_u64().unwrap();

    // More text after it ("!" appended to the item just written).
    ws.send(Message::binary(sync(
        2,
        &insert_update(1001, 11, Some((1001, 10)), "!"),
    )))
    .await
    .unwrap();
    eventually("the second edit is applied", || async {
        Ok((text_of(&host, "v").await == "hello world!").then_some(()))
    })
    .await
    .unwrap();

    let one = get(&format!("{base}/{id}")).await.unwrap().json();
    assert_eq!(one["text"], "hello world");
    assert_eq!(one["label"], "first");
    assert_eq!(get(&format!("{base}/999")).await.unwrap().status, 404);
    assert_eq!(get(&format!("{base}/abc")).await.unwrap().status, 400);
    assert_eq!(post(&base, "{not json").await.unwrap().status, 400);
    assert_eq!(http("DELETE", &base, "").await.unwrap().status, 405);
    let unlabeled = post(&base, "").await.unwrap();
    assert_eq!(unlabeled.status, 201);
    assert_eq!(unlabeled.json()["label"], Value::Null);

    // Restore: a new edit, broadcast to the open socket, the history keeps the rest.
    let r = post(&format!("{base}/{id}/restore?by=Ada"), "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let update = next_frame(&mut ws, &[0, 2]).await;
    assert!(update.len() > 3);
    // Then the notice that ends every editor's undo history (type 100: a string of JSON).
    let notice = restored(&next_frame(&mut ws, &[100]).await);
    assert_eq!(
        (&notice["seq"], &notice["version"], &notice["by"]),
        (&Value::from(1), &Value::from(id), &Value::from("Ada"))
    );
    // An editor connecting later hears of it too, right after the server's step 1.
    let mut late = raw_ws(&host, "/doc/v/ws").await;
    next_frame(&mut late, &[0, 0]).await;
    assert_eq!(restored(&next_frame(&mut late, &[100]).await)["seq"], 1);
    assert_eq!(text_of(&host, "v").await, "hello world");
    let list = get(&base).await.unwrap().json();
    let labels: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["label"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        labels.iter().any(|l| l.starts_with("restored version 1")),
        "{labels:?}"
    );
    for v in list.as_array().unwrap() {
        for key in ["id", "ts", "label", "length"] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
    }
    // The unlabeled version (taken after "!") still has the later work.
    let later = unlabeled.json()["id"].as_u64().unwrap();
    let later_text = get(&format!("{base}/{later}")).await.unwrap().json();
    assert_eq!(later_text["text"], "hello world!");
    assert_eq!(
        post(&format!("{base}/999/restore"), "")
            .await
            .unwrap()
            .status,
        404
    );

    // Edits that settle become an automatic version.
    ws.send(Message::binary(sync(
        2,
        &insert_update(2002, 0, None, ">> "),
    )))
    .await
    .unwrap();
    let auto = eventually("an automatic version after the edits settle", || async {
        let list = get(&base).await.unwrap().json();
        Ok(list
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["auto"] == true && v["label"].is_null())
            .cloned())
    })
    .await
    .unwrap();
    let auto_text = get(&format!("{base}/{}", auto["id"])).await.unwrap().json();
    assert_eq!(
        auto_text["text"].as_str().unwrap(),
        text_of(&host, "v").await
    );
    assert!(auto_text["text"].as_str().unwrap().contains(">> "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_that_socket_and_never_touches_the_document() {
    let mut host = HostConfig::new()
        .class("doc", "document")
        .setting("doc", "max_update_bytes", "4096")
        .start()
        .await
        .unwrap();
    let mut good = raw_ws(&host, "/doc/b").await;
    next_frame(&mut good, &[0, 0]).await;
    good.send(Message::binary(sync(
        2,
        &insert_update(7, 0, None, "intact"),
    )))
    .await
    .unwrap();
    eventually("the good edit is applied", || async {
        Ok((text_of(&host, "b").await == "intact").then_some(()))
    })
    .await
    .unwrap();

    let not_json_awareness = {
        let mut payload = Vec::new();
        var_uint(1, &mut payload);
        var_uint(5, &mut payload);
        var_uint(1, &mut payload);
        var_bytes(b"{not json", &mut payload);
        let mut m = vec![1];
        var_bytes(&payload, &mut m);
        m
    };
    let big = sync(2, &insert_update(8, 0, None, &"x".repeat(8192)));
    let cases: Vec<(&str, Message, u16)> = vec![
        ("text frame", Message::text("hello"), 4415),
        ("unknown message type", Message::binary(vec![9u8]), 4415),
        ("auth from a client", Message::binary(vec![2u8, 0]), 4415),
        ("unknown sync type", Message::binary(vec![0u8, 7, 0]), 4415),
        (
            "truncated varint",
            Message::binary(vec![0u8, 2, 0x85]),
            4400,
        ),
        (
            "length past the end",
            Message::binary(vec![0u8, 2, 50, 1, 2]),
            4400,
        ),
        (
            "update that does not decode",
            Message::binary(sync(2, &[0xff, 0xff, 0xff])),
            4400,
        ),
        (
            "state vector that does not decode",
            Message::binary(sync(0, &[0x05, 0x01])),
            4400,
        ),
        (
            "awareness state that is not JSON",
            Message::binary(not_json_awareness),
            4400,
        ),
        ("update above max_update_bytes", Message::binary(big), 4413),
    ];
    for (what, msg, code) in cases {
        let mut bad = raw_ws(&host, "/doc/b/ws").await;
        next_frame(&mut bad, &[0, 0]).await;
        bad.send(msg).await.unwrap();
        let (got, reason) = close_code(&mut bad).await;
        assert_eq!(got, code, "{what}: {reason}");
        assert!(!reason.is_empty(), "{what}: a reason is given");
    }
    // Upgrades elsewhere than / and /ws are refused.
    let refused = tokio_tungstenite::connect_async(host.ws_url("/doc/b/other")).await;
    assert!(refused.is_err());

    // The good socket is still served: another client's edit reaches it.
    let mut other = raw_ws(&host, "/doc/b").await;
    next_frame(&mut other, &[0, 0]).await;
    other
        .send(Message::binary(sync(
            2,
            &insert_update(9, 0, Some((7, 5)), " still"),
        )))
        .await
        .unwrap();
    next_frame(&mut good, &[0, 2]).await;
    assert_eq!(text_of(&host, "b").await, "intact still");
    host.restart().await.unwrap();
    assert_eq!(text_of(&host, "b").await, "intact still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_edit_together_and_see_each_others_cursor() {
    let chromium = chromium_ready();
    let host = doc_host().start().await.unwrap();
    let node = Node::start(
        "browser.mjs",
        &[
            "--url".into(),
            format!("http://{}", host.addr),
            "--doc".into(),
            "browser pad".into(),
            "--chromium".into(),
            chromium.display().to_string(),
        ],
    );
    node.finish().await;
    let page = get(&host.url("/doc/browser%20pad")).await.unwrap();
    assert!(page.content_type.starts_with("text/html"));
    for id in ["editor", "status", "versions", "save-version", "name-input"] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "#{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_documents_are_chunked_compacted_and_survive_restarts() {
    let mut host = HostConfig::new()
        .class("doc", "document")
        .setting("doc", "compact_every", "2")
        .setting("doc", "chunk_bytes", "1024")
        .start()
        .await
        .unwrap();
    let mut ws = raw_ws(&host, "/doc/big").await;
    next_frame(&mut ws, &[0, 0]).await;
    let first = "0123456789".repeat(500);
    ws.send(Message::binary(sync(
        2,
        &insert_update(11, 0, None, &first),
    )))
    .await
    .unwrap();
    let second = "é".repeat(3000);
    ws.send(Message::binary(sync(
        2,
        &insert_update(11, 5000, Some((11, 4999)), &second),
    )))
    .await
    .unwrap();
    let expected = format!("{first}{second}");
    eventually("both edits are applied", || async {
        Ok((text_of(&host, "big").await == expected).then_some(()))
    })
    .await
    .unwrap();
    let stats = get(&host.url("/doc/big/stats")).await.unwrap().json();
    assert!(stats["compactions"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        stats["snapshot_bytes"].as_u64().unwrap() > 4 * 1024,
        "several chunks: {stats}"
    );
    assert_eq!(stats["stored_updates"], 0, "{stats}");
    let v = post(&host.url("/doc/big/versions"), r#"{"label":"big"}"#)
        .await
        .unwrap()
        .json();
    assert_eq!(v["length"], 8000);

    host.restart().await.unwrap();
    assert_eq!(text_of(&host, "big").await, expected);
    let one = get(&host.url(&format!("/doc/big/versions/{}", v["id"])))
        .await
        .unwrap()
        .json();
    assert_eq!(one["text"].as_str().unwrap(), expected);
    // The state endpoint gives the whole document as one Yjs update.
    let state = get(&host.url("/doc/big/state")).await.unwrap();
    assert_eq!(state.status, 200);
    assert_eq!(state.content_type, "application/octet-stream");
    assert!(state.body.len() > expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_max_versions_are_kept() {
    let host = HostConfig::new()
        .class("doc", "document")
        .setting("doc", "max_versions", "3")
        .start()
        .await
        .unwrap();
    let base = host.url("/doc/pruned/versions");
    for i in 1..=5 {
        let r = post(&base, &format!(r#"{{"label": "v{i}"}}"#))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.json()["id"], i);
    }
    let list = get(&base).await.unwrap().json();
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4, 5]);
    assert_eq!(get(&format!("{base}/1")).await.unwrap().status, 404);
    assert_eq!(
        get(&format!("{base}/3")).await.unwrap().json()["label"],
        "v3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_notices_a_dead_connection_within_seconds() {
    let chromium = chromium_ready();
    let host = doc_host().start().await.unwrap();
    let mut node = Node::start(
        "offline.mjs",
        &[
            "--url".into(),
            format!("http://{}", host.addr),
            "--chromium".into(),
            chromium.display().to_string(),
        ],
    );
    node.until("READY").await;
    // Frozen, the host keeps the connection open but answers nothing: a dropped network
    // as the page sees it.
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &host.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    node.send("frozen").await;
    let detected = node.until("DETECTED").await;
    signal("-CONT");
    let ms: u64 = detected
        .trim_start_matches("DETECTED ")
        .trim()
        .parse()
        .unwrap();
    // y-websocket alone waits 30 s (the page said "connected" for ~33 s); the probe gives up
    // after 8 s of silence, checked every 3 s.
    assert!(
        ms < 20_000,
        "the page said connected for {ms} ms after the host froze"
    );
    node.send("thawed").await;
    node.until("RECONNECTED").await;
    node.finish().await;
}
