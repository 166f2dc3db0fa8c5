//! Isolation, limits and fault tolerance over a real `lodge` process on loopback: every
//! test pushes one object (or one client) past a limit, or kills the host, and checks
//! that the offender gets a clear refusal while a healthy neighbour keeps answering.
//!
//! - storage: quota, key and value size limits, a guest that panics on a refused write
//! - backpressure: a WebSocket reader that stops reading, a flooded mailbox, oversized
//!   bodies and header blocks, a client that never sends its request
//! - crash safety: rounds of writes cut by SIGKILL, an alarm due during an outage
//! - bad WebSocket input: hand-made frames (invalid UTF-8, fragments, protocol errors,
//!   huge lengths, binary) and refused upgrades
//!
//! Malformed frames are written by hand on a raw TCP stream ([`RawWs`]): a WebSocket
//! library will not send them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use lodge_tests::{Host, HostConfig, WAIT, Ws, eventually, get, http, post, raw_http};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

fn counter_host() -> HostConfig {
    HostConfig::new().class("counter", "counter")
}

async fn count(host: &Host, name: &str) -> i64 {
    let r = get(&host.url(&format!("/counter/{name}/"))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["count"].as_i64().unwrap()
}

/// Increments `name` and returns the new count: the healthy neighbour's heartbeat.
async fn increment(host: &Host, name: &str) -> i64 {
    let r = post(&host.url(&format!("/counter/{name}/increment")), "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{name}: {}", r.body);
    r.json()["count"].as_i64().unwrap()
}

async fn put_kv(host: &Host, name: &str, route: &str, key: &str, value: &str) -> (u16, Value) {
    let r = http(
        "PUT",
        &host.url(&format!("/counter/{name}/{route}?key={key}")),
        value,
    )
    .await
    .unwrap();
    let body = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, body)
}

async fn socket_count(host: &Host, name: &str) -> i64 {
    let r = get(&host.url(&format!("/counter/{name}/sockets")))
        .await
        .unwrap();
    r.json().as_i64().unwrap()
}

/// The close codes the object recorded in `on-close`, by socket name.
async fn closes(host: &Host, name: &str) -> HashMap<String, u64> {
    let v = get(&host.url(&format!("/counter/{name}/closes")))
        .await
        .unwrap()
        .json();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = e[0]
                .as_str()
                .unwrap()
                .trim_start_matches("close:")
                .to_string();
            (key, e[1]["code"].as_u64().unwrap())
        })
        .collect()
}

async fn wait_for_close(host: &Host, object: &str, socket: &str) -> u64 {
    eventually(
        &format!("on-close of {socket} reaches {object}"),
        || async { Ok(closes(host, object).await.get(socket).copied()) },
    )
    .await
    .unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------------------
// A WebSocket client that writes frames byte by byte.

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// One frame from the server.
#[derive(Debug)]
struct RawFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A frame as a client sends it: masked unless `masked` is false.
fn encode_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A WebSocket over a plain TCP stream: the upgrade and the frames are written by hand.
struct RawWs {
    tcp: TcpStream,
    /// Bytes read but not parsed yet.
    buf: Vec<u8>,
}

impl RawWs {
    async fn connect(addr: SocketAddr, path: &str) -> Result<RawWs> {
        RawWs::upgrade(TcpStream::connect(addr).await?, path).await
    }

    /// Connects with a tiny receive buffer, so that a client that stops reading stalls
    /// the server's writes after a few frames rather than a few megabytes.
    async fn connect_small_buffer(addr: SocketAddr, path: &str) -> Result<RawWs> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        RawWs::upgrade(socket.connect(addr).await?, path).await
    }

    async fn upgrade(mut tcp: TcpStream, path: &str) -> Result<RawWs> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: lodge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut ws = RawWs {
            tcp,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(i) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            ws.fill().await?;
        };
        let head = String::from_utf8_lossy(&ws.buf[..end]).into_owned();
        ws.buf.drain(..end);
        if !head.starts_with("HTTP/1.1 101") {
            bail!("the upgrade of {path} was refused: {head}");
        }
        // RFC 6455's own example key and answer.
        if !head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
            bail!("wrong Sec-WebSocket-Accept: {head}");
        }
        Ok(ws)
    }

    /// Reads more bytes; an error at EOF.
    async fn fill(&mut self) -> Result<()> {
        let mut chunk = vec![0u8; 64 << 10];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .map_err(|_| anyhow!("nothing from the server within {WAIT:?}"))??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.tcp.write_all(bytes).await?;
        Ok(())
    }

    /// Sends one masked frame; `first` is the FIN bit, RSV bits and opcode.
    async fn send_frame(&mut self, first: u8, payload: &[u8]) -> Result<()> {
        self.send_raw(&encode_frame(first, payload, true)).await
    }

    async fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_frame(FIN | OP_TEXT, text.as_bytes()).await
    }

    /// The next frame from the server (which never masks).
    async fn frame(&mut self) -> Result<RawFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// The next text or binary frame, skipping pings and pongs.
    async fn data(&mut self) -> Result<RawFrame> {
        loop {
            let f = self.frame().await?;
            match f.opcode {
                OP_PING | OP_PONG => continue,
                OP_CLOSE => bail!("closed with {:?}", close_of(&f.payload)),
                _ => return Ok(f),
            }
        }
    }

    /// The next text frame, as a string.
    async fn text(&mut self) -> Result<String> {
        let f = self.data().await?;
        if f.opcode != OP_TEXT {
            bail!("expected a text frame, got opcode {}", f.opcode);
        }
        Ok(String::from_utf8(f.payload)?)
    }

    /// Reads until the server's close frame; returns its code and reason.
    async fn close_frame(&mut self) -> Result<(u16, String)> {
        loop {
            let f = self.frame().await?;
            if f.opcode == OP_CLOSE {
                return Ok(close_of(&f.payload));
            }
        }
    }

    /// Whether the server ended the TCP connection, reading (and dropping) whatever
    /// comes first.
    async fn wait_eof(&mut self) -> Result<()> {
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await {
                Err(_) => bail!("the connection stayed open for {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn close_of(payload: &[u8]) -> (u16, String) {
    if payload.len() < 2 {
        return (1005, String::new());
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

/// Parses one frame at the start of `buf`: `None` when it is not complete yet.
fn parse_server_frame(buf: &[u8]) -> Result<Option<(RawFrame, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
        bail!("the server masked a frame");
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    let frame = RawFrame {
        fin: buf[0] & FIN != 0,
        opcode: buf[0] & 0x0f,
        payload: buf[at..at + len].to_vec(),
    };
    at += len;
    Ok(Some((frame, at)))
}

/// A raw WebSocket, with a small receive buffer if asked.
async fn raw_connect(host: &Host, path: &str, small_buffer: bool) -> RawWs {
    let ws = if small_buffer {
        RawWs::connect_small_buffer(host.addr, path).await
    } else {
        RawWs::connect(host.addr, path).await
    };
    ws.unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

/// A raw WebSocket to a counter that got past its hello frame.
async fn raw_counter_socket(host: &Host, object: &str, name: &str) -> RawWs {
    let mut ws = raw_connect(host, &format!("/counter/{object}/ws?name={name}"), false).await;
    let hello: Value = serde_json::from_str(&ws.text().await.unwrap()).unwrap();
    assert_eq!(hello["type"], "hello");
    ws
}

// ---------------------------------------------------------------------------------------
// Storage limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_quota_and_size_limits_refuse_writes_and_a_panicking_writer_rolls_back() {
    let mut host = counter_host()
        .toml("limits", "storage_bytes = 4096")
        .toml("limits", "max_key_bytes = 64")
        .toml("limits", "max_value_bytes = 3500")
        .start()
        .await
        .unwrap();
    let big = "x".repeat(3000);
    let half = "y".repeat(1500);
    assert_eq!(increment(&host, "neighbour").await, 1);
    // A socket on the object that will trap: it must live through the traps.
    let mut q_socket = Ws::connect(&host.ws_url("/counter/q/ws?name=keep"))
        .await
        .unwrap();
    q_socket.recv_type("hello").await.unwrap();

    // 3000 characters store as a 3002-byte JSON string: most of the 4096 bytes.
    let (status, _) = put_kv(&host, "q", "kv", "a", &big).await;
    assert_eq!(status, 200);

    // The next 1.5 kB do not fit: a clear refusal the guest can handle (it answers 400).
    let (status, body) = put_kv(&host, "q", "kv", "b", &half).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("quota exceeded") && error.contains("the quota is 4096"),
        "{error}"
    );
    // The operator sees it too, with the object.
    let logged = host
        .log
        .wait_for(&["limit refused", "storage_bytes", "name=q"], 1)
        .await
        .unwrap();
    assert!(logged[0].contains("the quota is 4096"), "{logged:?}");
    assert_eq!(increment(&host, "neighbour").await, 2);

    // A guest that unwraps the refused write traps: the event's earlier write (its count
    // bump) is rolled back along with it, and the client gets a 500 naming the object.
    let (status, body) = put_kv(&host, "q", "kv-unwrap", "b", &half).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["object"], "counter/q");
    assert!(
        body["error"].as_str().unwrap().contains("trapped"),
        "{body}"
    );
    assert_eq!(
        count(&host, "q").await,
        0,
        "the trapped event's write is gone"
    );
    let list = get(&host.url("/counter/q/list")).await.unwrap().json();
    assert_eq!(list, json!([["kv:a", big]]), "the stored data is unchanged");
    assert_eq!(increment(&host, "neighbour").await, 3);

    // Small writes still fit, and overwriting a value with a smaller one frees room.
    assert_eq!(put_kv(&host, "q", "kv", "c", "small").await.0, 200);
    assert_eq!(put_kv(&host, "q", "kv", "a", "tiny").await.0, 200);
    let (status, body) = put_kv(&host, "q", "kv-unwrap", "b", &half).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&host, "q").await, 1);

    // The usage is durable: after a restart the quota still counts what is stored.
    q_socket.send("echo alive").await.unwrap();
    assert_eq!(q_socket.recv().await.unwrap(), "alive");
    drop(q_socket);
    host.restart().await.unwrap();
    let (status, body) = put_kv(&host, "q", "kv", "d", &big).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("quota exceeded"));
    let list = get(&host.url("/counter/q/list")).await.unwrap().json();
    assert_eq!(
        list,
        json!([["kv:a", "tiny"], ["kv:b", half], ["kv:c", "small"]])
    );

    let mut keys_socket = Ws::connect(&host.ws_url("/counter/keys/ws?name=keep"))
        .await
        .unwrap();
    keys_socket.recv_type("hello").await.unwrap();
    // Keys: "kv:" + 61 bytes is exactly the 64-byte limit; one more is refused.
    let at_limit = "k".repeat(61);
    assert_eq!(put_kv(&host, "keys", "kv", &at_limit, "v").await.0, 200);
    let over = "k".repeat(62);
    let (status, body) = put_kv(&host, "keys", "kv", &over, "v").await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("too large") && error.contains("key of 65 bytes; the limit is 64"),
        "{error}"
    );
    // Values: 3498 characters are a 3500-byte JSON string; one more is refused.
    assert_eq!(
        put_kv(&host, "values", "kv", "v", &"z".repeat(3498))
            .await
            .0,
        200
    );
    let (status, body) = put_kv(&host, "values", "kv", "w", &"z".repeat(3499)).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("value of 3501 bytes; the limit is 3500"),
        "{error}"
    );
    // A guest that unwraps an oversized key traps and keeps nothing of the event.
    let (status, _) = put_kv(&host, "keys", "kv-unwrap", &over, "v").await;
    assert_eq!(status, 500);
    assert_eq!(count(&host, "keys").await, 0);
    let list = get(&host.url("/counter/keys/list")).await.unwrap().json();
    assert_eq!(list, json!([[format!("kv:{at_limit}"), "v"]]));

    assert_eq!(increment(&host, "neighbour").await, 4);
    // The sockets of the trapping objects lived through it all.
    keys_socket.send("echo alive").await.unwrap();
    assert_eq!(keys_socket.recv().await.unwrap(), "alive");
}

// ---------------------------------------------------------------------------------------
// Backpressure

/// Has the host logged that it cut a slow reader off?
fn cut_off_logged(host: &Host) -> bool {
    host.log
        .all()
        .iter()
        .any(|l| l.contains("disconnecting the slow reader"))
}

/// Floods `object`'s sockets with 64 kB broadcasts sent by `good` until the host cuts a
/// socket off for reading too slowly; `good` must receive every one of them. Returns
/// the number of broadcasts.
async fn flood_until_cut_off(host: &Host, good: &mut Ws) -> usize {
    let pad = "p".repeat(64 << 10);
    for i in 0..2000 {
        good.send(&format!("broadcast {i:05} {pad}")).await.unwrap();
        let frame = good.recv_type("broadcast").await.unwrap();
        let text = frame["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("{i:05} ")),
            "broadcast {i} in order"
        );
        if cut_off_logged(host) {
            return i + 1;
        }
    }
    panic!("2000 broadcasts of 64 kB never overflowed the slow reader's queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_reader_is_cut_off_with_1008_while_others_keep_receiving() {
    let host = counter_host()
        .toml("runtime", "socket_send_queue = 4")
        .start()
        .await
        .unwrap();
    let mut good = Ws::connect(&host.ws_url("/counter/fan/ws?name=good"))
        .await
        .unwrap();
    good.recv_type("hello").await.unwrap();
    // Completes the handshake, then reads nothing while the object broadcasts.
    let mut slow = raw_connect(&host, "/counter/fan/ws?name=slow", true).await;
    assert_eq!(socket_count(&host, "fan").await, 2);

    let sent = flood_until_cut_off(&host, &mut good).await;
    // The object no longer sees the slow socket; the good one is untouched.
    eventually("the slow socket leaves the object's list", || async {
        Ok((socket_count(&host, "fan").await == 1).then_some(()))
    })
    .await
    .unwrap();
    good.send("broadcast after the cut").await.unwrap();
    assert_eq!(
        good.recv_type("broadcast").await.unwrap()["text"],
        "after the cut"
    );
    good.send("echo still here").await.unwrap();
    assert_eq!(good.recv().await.unwrap(), "still here");
    assert_eq!(increment(&host, "elsewhere").await, 1);

    // When the slow client reads at last, it finds an in-order prefix of the
    // broadcasts, nothing after the cut, then close 1008.
    let hello: Value = serde_json::from_str(&slow.text().await.unwrap()).unwrap();
    assert_eq!(hello["type"], "hello");
    let mut received = 0;
    let (code, reason) = loop {
        let f = slow.frame().await.unwrap();
        match f.opcode {
            OP_TEXT => {
                let v: Value = serde_json::from_slice(&f.payload).unwrap();
                let text = v["text"].as_str().unwrap();
                assert!(
                    text.starts_with(&format!("{received:05} ")),
                    "frame {received} of the slow reader is in order"
                );
                received += 1;
            }
            OP_CLOSE => break close_of(&f.payload),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    assert!(
        received < sent,
        "the slow reader lost the frames after the cut"
    );
    // The client completes the close handshake; the host hangs up and tells the object.
    slow.send_frame(FIN | OP_CLOSE, &1008u16.to_be_bytes())
        .await
        .unwrap();
    slow.wait_eof().await.unwrap();
    assert_eq!(wait_for_close(&host, "fan", "slow").await, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_reader_that_never_reads_again_is_let_go() {
    let host = counter_host()
        .toml("runtime", "socket_send_queue = 4")
        .toml("limits", "max_sockets = 2")
        .start()
        .await
        .unwrap();
    let mut good = Ws::connect(&host.ws_url("/counter/fan/ws?name=good"))
        .await
        .unwrap();
    good.recv_type("hello").await.unwrap();
    let _slow = raw_connect(&host, "/counter/fan/ws?name=slow", true).await;
    flood_until_cut_off(&host, &mut good).await;
    // Without the slow client reading a byte, the object learns the socket is gone and
    // its slot is free for another client.
    assert_eq!(wait_for_close(&host, "fan", "slow").await, 1008);
    let mut next = Ws::connect(&host.ws_url("/counter/fan/ws?name=next"))
        .await
        .unwrap();
    next.recv_type("hello").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_object_answers_503_while_another_answers_normally() {
    let host = counter_host()
        .toml("runtime", "mailbox_capacity = 2")
        .start()
        .await
        .unwrap();
    // A socket connected before the flood: its frames wait for room, never refused.
    let mut ws = Ws::connect(&host.ws_url("/counter/busy/ws?name=w"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    // A trap throws the instance away, so the next event activates a fresh one and the
    // log tells when it starts: the slow event below is then running, its mailbox empty,
    // and the actor takes no other event for seconds.
    assert_eq!(
        post(&host.url("/counter/busy/trap"), "")
            .await
            .unwrap()
            .status,
        500
    );
    let slow = tokio::spawn({
        let url = host.url("/counter/busy/slow?ms=4000");
        async move { post(&url, "").await.unwrap() }
    });
    host.log
        .wait_for(&["activated", "name=busy"], 2)
        .await
        .unwrap();
    let burst: Vec<_> = (0..12)
        .map(|_| {
            let url = host.url("/counter/busy/increment");
            tokio::spawn(async move { post(&url, "").await.unwrap() })
        })
        .collect();
    for _ in 0..3 {
        ws.send("inc").await.unwrap();
    }
    // Meanwhile another object answers at once.
    assert_eq!(increment(&host, "calm").await, 1);

    let mut ok = 0;
    let mut refused = 0;
    for r in burst {
        let r = r.await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                refused += 1;
                assert!(r.content_type.starts_with("application/json"));
                let body = r.json();
                assert_eq!(body["object"], "counter/busy");
                let error = body["error"].as_str().unwrap();
                assert!(error.contains("overloaded"), "{error}");
            }
            other => panic!("unexpected status {other}: {}", r.body),
        }
    }
    // Two slots in the mailbox: the burst and the socket's frames share them while the
    // slow event runs, and everything past them is refused.
    assert!(refused >= 10, "{refused} refused, {ok} ok");
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200, "{}", slow.body);
    // The socket's frames waited their turn and were all delivered.
    for _ in 0..3 {
        ws.recv_type("count").await.unwrap();
    }
    // Refused requests left no trace: the slow event, the accepted increments and the
    // socket's three are all that counted.
    assert_eq!(count(&host, "busy").await, 1 + ok + 3);
    assert_eq!(increment(&host, "calm").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_header_blocks_are_refused_and_the_host_keeps_serving() {
    let host = counter_host()
        .toml("limits", "max_body_bytes = 1024")
        .start()
        .await
        .unwrap();
    // Exactly at the limit: accepted (1024 bytes of body).
    let (status, _) = put_kv(&host, "b", "kv", "exact", &"e".repeat(1024)).await;
    assert_eq!(status, 200);
    let r = http(
        "PUT",
        &host.url("/counter/b/kv?key=over"),
        &"o".repeat(1025),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.content_type.starts_with("application/json"));
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("larger than 1024 bytes"),
        "{}",
        r.body
    );
    // A chunked body has no length up front: it is cut off as it passes the limit.
    let chunk = "c".repeat(600);
    let chunked = format!(
        "PUT /counter/b/kv?key=chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let resp = raw_http(host.addr, chunked.as_bytes()).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    let v = get(&host.url("/counter/b/list")).await.unwrap().json();
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "only the first body was stored: {v}"
    );

    // A header block over the 64 kB limit gets an error, not a hang or a crash.
    let long_head = format!(
        "GET /counter/b/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(200 << 10)
    );
    let resp = raw_http(host.addr, long_head.as_bytes()).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.200}");
    // So does a header block of many small headers (hyper allows 100).
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_heads =
        format!("GET /counter/b/ HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let resp = raw_http(host.addr, many_heads.as_bytes()).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.200}");
    // A request line longer than the limit too.
    let long_line = format!(
        "GET /counter/b/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "l".repeat(200 << 10)
    );
    let resp = raw_http(host.addr, long_line.as_bytes()).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 4"), "{resp:.200}");

    assert_eq!(increment(&host, "b").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_its_request_is_dropped_after_the_header_timeout() {
    let host = counter_host().start().await.unwrap();
    let mut silent = TcpStream::connect(host.addr).await.unwrap();
    // Another trickles half a request head and stops (slowloris).
    let mut partial = TcpStream::connect(host.addr).await.unwrap();
    partial
        .write_all(b"GET /counter/healthy/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Neither holds anything up.
    for i in 1..=5 {
        assert_eq!(increment(&host, "healthy").await, i);
    }
    let mut ws = Ws::connect(&host.ws_url("/counter/healthy/ws?name=w"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    ws.send("echo fine").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), "fine");

    // After the header read timeout (10 s) the host hangs up on both. Whatever it
    // writes first (a 408, or nothing) is fine; the connection must end.
    for (what, tcp) in [("silent", &mut silent), ("partial", &mut partial)] {
        let mut out = Vec::new();
        let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "the {what} client was still connected after {WAIT:?}"
        );
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{what}: {text}"
        );
    }
    assert_eq!(increment(&host, "healthy").await, 6);
    ws.send("echo still fine").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), "still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_has_at_most_max_sockets() {
    let host = counter_host()
        .toml("limits", "max_sockets = 2")
        .start()
        .await
        .unwrap();
    let mut a = Ws::connect(&host.ws_url("/counter/full/ws?name=a"))
        .await
        .unwrap();
    a.recv_type("hello").await.unwrap();
    let mut b = Ws::connect(&host.ws_url("/counter/full/ws?name=b"))
        .await
        .unwrap();
    b.recv_type("hello").await.unwrap();
    let (status, body) = Ws::connect_refused(&host.ws_url("/counter/full/ws?name=c"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("sockets"),
        "{body}"
    );
    // Another object has its own allowance.
    let mut other = Ws::connect(&host.ws_url("/counter/roomy/ws?name=c"))
        .await
        .unwrap();
    other.recv_type("hello").await.unwrap();
    // Once a socket's close has reached the object, its slot is free again.
    a.close(1000).await.unwrap();
    wait_for_close(&host, "full", "a").await;
    let mut c = Ws::connect(&host.ws_url("/counter/full/ws?name=c"))
        .await
        .unwrap();
    c.recv_type("hello").await.unwrap();
    b.send("echo b").await.unwrap();
    assert_eq!(b.recv().await.unwrap(), "b");
}

// ---------------------------------------------------------------------------------------
// Crash safety

/// Acknowledged counts, per object: the highest count a client was told.
type Acks = Arc<Mutex<HashMap<String, i64>>>;
/// Increments attempted, per object (acknowledged or not).
type Attempts = Arc<Mutex<HashMap<String, i64>>>;

fn record(map: &Mutex<HashMap<String, i64>>, object: &str, value: i64, max: bool) {
    let mut map = map.lock().unwrap();
    let entry = map.entry(object.to_string()).or_insert(0);
    *entry = if max {
        (*entry).max(value)
    } else {
        *entry + value
    };
}

/// Increments over HTTP until the host goes away, one ack on `tick` per answer.
async fn http_writer(
    base: String,
    object: String,
    acks: Acks,
    attempts: Attempts,
    tick: mpsc::UnboundedSender<()>,
) {
    let url = format!("{base}/counter/{object}/increment");
    loop {
        record(&attempts, &object, 1, false);
        match post(&url, "").await {
            Ok(r) if r.status == 200 => {
                record(&acks, &object, r.json()["count"].as_i64().unwrap(), true);
                let _ = tick.send(());
            }
            // A refusal is not an acknowledgement; the client may go on.
            Ok(_) => {}
            // The host is gone.
            Err(_) => return,
        }
    }
}

/// Increments over a WebSocket with a window of eight in flight until the host goes
/// away.
async fn ws_writer(
    url: String,
    object: String,
    acks: Acks,
    attempts: Attempts,
    tick: mpsc::UnboundedSender<()>,
) {
    let Ok(mut ws) = Ws::connect(&url).await else {
        return;
    };
    if ws.recv_type("hello").await.is_err() {
        return;
    }
    for _ in 0..8 {
        record(&attempts, &object, 1, false);
        if ws.send("inc").await.is_err() {
            return;
        }
    }
    while let Ok(v) = ws.recv_type("count").await {
        record(&acks, &object, v["count"].as_i64().unwrap(), true);
        let _ = tick.send(());
        record(&attempts, &object, 1, false);
        if ws.send("inc").await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_sigkill_and_a_missed_alarm_fires() {
    const ROUNDS: usize = 5;
    const OBJECTS: [&str; 3] = ["crash-a", "crash-b", "crash-c"];
    let mut host = counter_host().start().await.unwrap();
    let acks: Acks = Arc::default();
    let attempts: Attempts = Arc::default();
    let mut alarm_due = None;
    for round in 0..ROUNDS {
        // Each round starts from what the previous host left on disk.
        let (tick, mut ticks) = mpsc::unbounded_channel();
        let mut writers = Vec::new();
        for object in OBJECTS {
            writers.push(tokio::spawn(http_writer(
                host.url(""),
                object.to_string(),
                acks.clone(),
                attempts.clone(),
                tick.clone(),
            )));
            writers.push(tokio::spawn(ws_writer(
                host.ws_url(&format!("/counter/{object}/ws?name=r{round}")),
                object.to_string(),
                acks.clone(),
                attempts.clone(),
                tick.clone(),
            )));
        }
        drop(tick);
        if round == 2 {
            // An alarm that comes due while the host is down.
            let r = http("PUT", &host.url("/counter/crash-alarm/alarm?in=300"), "")
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            alarm_due = Some(r.json()["alarm"].as_u64().unwrap());
        }
        // Kill mid-stream, once the writers have had 60 answers this round.
        for _ in 0..60 {
            ticks
                .recv()
                .await
                .expect("the writers stopped before the kill");
        }
        host.kill();
        for w in writers {
            w.await.unwrap();
        }
        if round == 2 {
            let due = alarm_due.unwrap();
            // Let the alarm come due while no host runs.
            let wait = due.saturating_sub(now_ms()) + 50;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }

        host.restart().await.unwrap();
        // The database opened (the host answers) and reports no trouble.
        for object in OBJECTS {
            let stored = count(&host, object).await;
            let acked = acks.lock().unwrap().get(object).copied().unwrap_or(0);
            let tried = attempts.lock().unwrap()[object];
            assert!(
                stored >= acked,
                "round {round}: {object} acknowledged {acked} but stored {stored}"
            );
            assert!(
                stored <= tried,
                "round {round}: {object} stored {stored} of {tried} attempts"
            );
        }
        let trouble: Vec<String> = host
            .log
            .all()
            .into_iter()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect();
        assert!(trouble.is_empty(), "round {round}: {trouble:?}");
        if round == 2 {
            host.log
                .wait_for(&["alarm handled", "counter/crash-alarm"], 1)
                .await
                .unwrap();
        }
    }
    let acks = acks.lock().unwrap().clone();
    for object in OBJECTS {
        assert!(
            acks[object] >= 60,
            "{object}: only {} acknowledged over {ROUNDS} rounds",
            acks[object]
        );
    }
    // The missed alarm fired once, after the restart, and is cleared.
    let state = get(&host.url("/counter/crash-alarm/alarm"))
        .await
        .unwrap()
        .json();
    assert_eq!(state["alarm"], Value::Null, "{state}");
    let fired = state["fired"].as_array().unwrap();
    assert_eq!(fired.len(), 1, "{state}");
    assert!(fired[0]["at"].as_u64().unwrap() >= alarm_due.unwrap());
}

// ---------------------------------------------------------------------------------------
// Bad WebSocket input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_the_right_close_codes_and_others_are_untouched() {
    let host = counter_host()
        .toml("limits", "max_message_bytes = 1024")
        .start()
        .await
        .unwrap();
    let mut witness = raw_counter_socket(&host, "bad", "witness").await;

    // (socket name, frames to send, expected close code)
    let cases: Vec<(&str, Vec<Vec<u8>>, u16)> = vec![
        (
            "utf8",
            vec![encode_frame(FIN | OP_TEXT, b"echo \xff\xfe", true)],
            1007,
        ),
        (
            // Valid pieces that end inside a character.
            "utf8-fragments",
            vec![
                encode_frame(OP_TEXT, b"echo h", true),
                encode_frame(FIN | OP_CONT, b"\xc3", true),
            ],
            1007,
        ),
        (
            "orphan-continuation",
            vec![encode_frame(FIN | OP_CONT, b"echo x", true)],
            1002,
        ),
        (
            "interrupted-fragments",
            vec![
                encode_frame(OP_TEXT, b"echo a", true),
                encode_frame(FIN | OP_TEXT, b"echo b", true),
            ],
            1002,
        ),
        (
            "unmasked",
            vec![encode_frame(FIN | OP_TEXT, b"echo x", false)],
            1002,
        ),
        (
            "rsv1",
            vec![encode_frame(FIN | 0x40 | OP_TEXT, b"echo x", true)],
            1002,
        ),
        (
            "reserved-opcode",
            vec![encode_frame(FIN | 0x3, b"x", true)],
            1002,
        ),
        (
            "fragmented-ping",
            vec![encode_frame(OP_PING, b"x", true)],
            1002,
        ),
        (
            "long-ping",
            vec![encode_frame(FIN | OP_PING, &[b'p'; 126], true)],
            1002,
        ),
        (
            "bad-close-code",
            vec![encode_frame(FIN | OP_CLOSE, &999u16.to_be_bytes(), true)],
            1002,
        ),
        (
            // One frame past max_message_bytes.
            "big-frame",
            vec![encode_frame(FIN | OP_TEXT, &[b'x'; 1025], true)],
            1009,
        ),
        (
            // A header that announces 2^62 bytes and sends none of them.
            "huge-length",
            vec![{
                let mut h = vec![FIN | OP_BINARY, 0x80 | 127];
                h.extend_from_slice(&(1u64 << 62).to_be_bytes());
                h.extend_from_slice(&[1, 2, 3, 4]);
                h
            }],
            1009,
        ),
        (
            // Fragments each under the limit that add up past it.
            "big-message",
            vec![
                encode_frame(OP_TEXT, &[b'x'; 600], true),
                encode_frame(FIN | OP_CONT, &[b'x'; 600], true),
            ],
            1009,
        ),
    ];
    for (name, frames, expected) in &cases {
        let mut ws = raw_counter_socket(&host, "bad", name).await;
        for f in frames {
            ws.send_raw(f).await.unwrap();
        }
        let (code, reason) = ws.close_frame().await.unwrap();
        assert_eq!(code, *expected, "{name}: closed with {code} {reason:?}");
        ws.wait_eof().await.unwrap();
        // The object hears of it, and the other socket goes on as if nothing happened.
        assert_eq!(
            wait_for_close(&host, "bad", name).await,
            u64::from(*expected),
            "{name}"
        );
        witness
            .send_text(&format!("echo after {name}"))
            .await
            .unwrap();
        assert_eq!(witness.text().await.unwrap(), format!("after {name}"));
    }
    assert_eq!(increment(&host, "bad").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_and_binary_messages_are_reassembled_and_delivered() {
    let host = counter_host().start().await.unwrap();
    let mut ws = raw_counter_socket(&host, "frag", "f").await;

    // Three fragments with a ping between them: the ping is answered at once, the
    // message arrives whole.
    ws.send_frame(OP_TEXT, b"echo hel").await.unwrap();
    ws.send_frame(OP_CONT, b"lo wor").await.unwrap();
    ws.send_frame(FIN | OP_PING, b"mid").await.unwrap();
    ws.send_frame(FIN | OP_CONT, b"ld").await.unwrap();
    let pong = ws.frame().await.unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (OP_PONG, &b"mid"[..])
    );
    assert_eq!(ws.text().await.unwrap(), "hello world");

    // A character split across fragments is put back together.
    ws.send_frame(OP_TEXT, b"echo h\xc3").await.unwrap();
    ws.send_frame(OP_CONT, b"\xa9llo \xe2\x98").await.unwrap();
    ws.send_frame(FIN | OP_CONT, b"\x83").await.unwrap();
    assert_eq!(ws.text().await.unwrap(), "h\u{e9}llo \u{2603}");

    // The counter is binary-tolerant: it echoes a binary message back as binary, bytes
    // that are not UTF-8 included.
    let bytes: Vec<u8> = (0..=255u8).collect();
    ws.send_frame(FIN | OP_BINARY, &bytes).await.unwrap();
    let f = ws.data().await.unwrap();
    assert_eq!(f.opcode, OP_BINARY);
    assert!(f.fin);
    assert_eq!(f.payload, bytes);
    // A fragmented binary message comes back in one piece.
    ws.send_frame(OP_BINARY, &bytes[..100]).await.unwrap();
    ws.send_frame(FIN | OP_CONT, &bytes[100..]).await.unwrap();
    let f = ws.data().await.unwrap();
    assert_eq!((f.opcode, f.payload), (OP_BINARY, bytes.clone()));
    // An empty binary message too.
    ws.send_frame(FIN | OP_BINARY, b"").await.unwrap();
    let f = ws.data().await.unwrap();
    assert_eq!((f.opcode, f.payload.len()), (OP_BINARY, 0));

    // A clean close is answered with the same code, and the object hears it.
    ws.send_frame(FIN | OP_CLOSE, &4321u16.to_be_bytes())
        .await
        .unwrap();
    assert_eq!(ws.close_frame().await.unwrap().0, 4321);
    assert_eq!(wait_for_close(&host, "frag", "f").await, 4321);
}

/// Sends a WebSocket upgrade with these extra header lines; returns the raw response.
async fn upgrade_with(host: &Host, method: &str, path: &str, headers: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         {headers}Content-Length: 0\r\n\r\n"
    );
    raw_http(host.addr, req.as_bytes()).await.unwrap()
}

fn status_of(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn json_body_of(resp: &str) -> Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrades_and_hostile_names_are_refused_with_json() {
    let host = counter_host().start().await.unwrap();
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let close = "Connection: close\r\n";

    // Only version 13 is spoken: 426 with the version to use.
    for version in ["Sec-WebSocket-Version: 8\r\n", ""] {
        let resp = upgrade_with(
            &host,
            "GET",
            "/counter/u/ws",
            &format!("{key}{version}{close}"),
        )
        .await;
        assert_eq!(status_of(&resp), 426, "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("sec-websocket-version: 13"),
            "{resp}"
        );
        assert!(
            json_body_of(&resp)["error"]
                .as_str()
                .unwrap()
                .contains("version 13")
        );
    }
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    // No key, or not a GET: 400.
    let resp = upgrade_with(&host, "GET", "/counter/u/ws", &format!("{v13}{close}")).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(
        json_body_of(&resp)["error"]
            .as_str()
            .unwrap()
            .contains("Key")
    );
    let resp = upgrade_with(
        &host,
        "POST",
        "/counter/u/ws",
        &format!("{key}{v13}{close}"),
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    // An unknown class: 404 before any object is involved.
    let (status, body) = Ws::connect_refused(&host.ws_url("/nosuch/u/ws"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("no class named 'nosuch'"), "{body}");

    // Hostile names on the upgrade path (tests/objects.rs covers plain GETs of the
    // same): 400 JSON, and no socket is created.
    let long = "n".repeat(10_000);
    for name in ["..", "a%2Fb", "a%2fb", "a%00b", "%2e%2E", long.as_str()] {
        let resp = upgrade_with(
            &host,
            "GET",
            &format!("/counter/{name}/ws"),
            &format!("{key}{v13}{close}"),
        )
        .await;
        assert_eq!(status_of(&resp), 400, "{name:.20}: {resp}");
        assert!(
            json_body_of(&resp)["error"]
                .as_str()
                .unwrap()
                .contains("invalid object name")
        );
    }
    // Names over plain HTTP that objects.rs does not try: backslashes, other control
    // characters, and the length limit exactly.
    for name in ["a%5Cb", "a\\b", "a%0Ab", "a%7Fb", "a%1Bb", "tab%09"] {
        let req = format!("GET /counter/{name}/ HTTP/1.1\r\nHost: x\r\n{close}\r\n");
        let resp = raw_http(host.addr, req.as_bytes()).await.unwrap();
        assert_eq!(status_of(&resp), 400, "{name}: {resp}");
        assert!(
            json_body_of(&resp)["error"]
                .as_str()
                .unwrap()
                .contains("invalid object name")
        );
    }
    let at_limit = "m".repeat(256);
    assert_eq!(
        get(&host.url(&format!("/counter/{at_limit}/")))
            .await
            .unwrap()
            .status,
        200
    );
    // 256 bytes after decoding: three-byte characters written as %XX escapes.
    let encoded = "%E2%98%83".repeat(85) + "m";
    assert_eq!(
        get(&host.url(&format!("/counter/{encoded}/")))
            .await
            .unwrap()
            .status,
        200
    );
    let over = "m".repeat(257);
    let r = get(&host.url(&format!("/counter/{over}/"))).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("257 bytes"), "{}", r.body);

    // None of it disturbed a real socket.
    let mut ws = Ws::connect(&host.ws_url("/counter/u/ws?name=ok"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    assert_eq!(
        get(&host.url("/counter/u/sockets")).await.unwrap().json(),
        json!(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_just_went_idle_still_takes_the_next_request() {
    let host = counter_host().start().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let base = host.url("");
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..150 {
                // A fresh object: its actor starts with an empty mailbox.
                let r = get(&format!("{base}/counter/fresh-{t}-{i}/"))
                    .await
                    .unwrap();
                if r.status != 200 {
                    failures.push(format!("fresh-{t}-{i}: {} {}", r.status, r.body));
                }
                // A trap drops the instance: the actor may retire right after it.
                let r = post(&format!("{base}/counter/trap-{t}/trap"), "")
                    .await
                    .unwrap();
                if r.status != 500 {
                    failures.push(format!("trap-{t} trap #{i}: {} {}", r.status, r.body));
                }
                let r = get(&format!("{base}/counter/trap-{t}/")).await.unwrap();
                if r.status != 200 {
                    failures.push(format!("trap-{t} #{i}: {} {}", r.status, r.body));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_the_close_handshake_is_let_go() {
    let host = counter_host().start().await.unwrap();
    let mut mute = raw_counter_socket(&host, "hush", "mute").await;
    // The object closes the socket; the client reads the close frame and never answers.
    mute.send_text("close").await.unwrap();
    assert_eq!(mute.close_frame().await.unwrap().0, 4000);
    // The host does not wait for the answer forever: the object hears of the close.
    assert_eq!(wait_for_close(&host, "hush", "mute").await, 4000);
    mute.wait_eof().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_sends_its_declared_body_is_not_held_forever() {
    let host = counter_host()
        .toml("limits", "max_body_bytes = 1024")
        .start()
        .await
        .unwrap();
    // A declared length over the limit can be refused before any of the body arrives.
    let mut huge = TcpStream::connect(host.addr).await.unwrap();
    huge.write_all(
        b"PUT /counter/b/kv?key=huge HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    .await
    .unwrap();
    // A body within the limit that stops after ten bytes.
    let mut stalled = TcpStream::connect(host.addr).await.unwrap();
    stalled
        .write_all(b"PUT /counter/b/kv?key=stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n0123456789")
        .await
        .unwrap();
    assert_eq!(increment(&host, "b").await, 1);
    for (what, tcp, answer) in [
        ("huge", &mut huge, "HTTP/1.1 413"),
        ("stalled", &mut stalled, "HTTP/1.1 408"),
    ] {
        let mut out = Vec::new();
        let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "the {what} request was still held after {WAIT:?}"
        );
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with(answer),
            "{what}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_just_over_64_kb_is_refused() {
    let host = counter_host().start().await.unwrap();
    let head = format!(
        "GET /counter/h/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(70 << 10)
    );
    let resp = raw_http(host.addr, head.as_bytes()).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.200}");
}

/// The responses in raw HTTP/1.1 output, each body cut at its `content-length`, as a
/// client (or a proxy) on that connection would read them.
fn responses(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = &rest[..end];
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let body_start = end + 4;
        let body_end = (body_start + length).min(rest.len());
        out.push((head.to_string(), rest[body_start..body_end].to_string()));
        rest = &rest[body_end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_owns_http_framing_whatever_the_guest_answers() {
    let host = HostConfig::new()
        .class("counter", "counter")
        .start()
        .await
        .unwrap();
    // A guest's `content-length: 0` in front of a body that is itself a response, and
    // other framing headers: stripped, so the client reads the body the guest returned and
    // then the real answer to its second request, never a forged one.
    let forged = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged";
    let told = serde_json::json!({
        "status": 200,
        "headers": [
            ["content-length", "0"],
            ["transfer-encoding", "chunked"],
            ["connection", "keep-alive"],
            ["keep-alive", "timeout=600"],
            ["upgrade", "h2c"],
            ["trailer", "x"],
            ["x-kept", "yes"],
        ],
        "body": forged,
    })
    .to_string();
    let request = format!(
        "POST /counter/frame/respond HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{told}\
         GET /counter/frame/version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        told.len()
    );
    let raw = raw_http(host.addr, request.as_bytes()).await.unwrap();
    let got = responses(&raw);
    assert_eq!(got.len(), 2, "{raw}");
    assert_eq!(got[0].1, forged, "{raw}");
    let head = got[0].0.to_ascii_lowercase();
    assert!(
        head.contains(&format!("content-length: {}", forged.len())),
        "{raw}"
    );
    for owned in ["transfer-encoding", "keep-alive", "upgrade", "trailer"] {
        assert!(!head.contains(owned), "{owned} reached the wire: {raw}");
    }
    assert!(head.contains("x-kept: yes"), "{raw}");
    assert_eq!(got[1].1, r#"{"version":"v1"}"#, "{raw}");
    host.log
        .wait_for(
            &["dropped response headers the host owns", "content-length"],
            1,
        )
        .await
        .unwrap();

    // 1xx is the host's: a guest's 101 (or 100) becomes a 500 with a JSON error.
    for status in [101, 100] {
        let told = serde_json::json!({ "status": status, "headers": [["upgrade", "websocket"]], "body": "" });
        let r = post(&host.url("/counter/frame/respond"), &told.to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 500, "{status}: {}", r.body);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("invalid status"),
            "{}",
            r.body
        );
    }
    // Also when it refuses a WebSocket with a fake 101: the client gets an error, not a
    // half-upgraded connection.
    let (status, body) = Ws::connect_refused(&host.ws_url("/counter/frame/ws?name=reject-101"))
        .await
        .unwrap();
    assert_eq!(status, 500, "{body}");
    // The object and the host serve on.
    assert_eq!(
        get(&host.url("/counter/frame/version"))
            .await
            .unwrap()
            .json()["version"],
        "v1"
    );
}

/// Opens `n` TCP connections to `addr` that send nothing.
async fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.unwrap());
    }
    out
}

/// What the host says on a connection it refused at once (read to its end).
async fn refusal(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut text))
        .await
        .expect("the refusal comes at once")
        .unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_host_wide_and_per_address_and_the_admin_api_stays_up() {
    let host = counter_host()
        .toml("connections", "max_open = 12\nmax_per_address = 8")
        .start()
        .await
        .unwrap();
    // Eight from 127.0.0.1: the ninth from it is refused, naming the limit.
    let mut held = idle_connections(host.addr, 8).await;
    let text = refusal(host.addr).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("max_per_address"), "{text}");
    // Another address (127.0.0.2 is loopback too) still gets in, up to the host-wide cap.
    for _ in 0..4 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        held.push(socket.connect(host.addr).await.unwrap());
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut tcp = socket.connect(host.addr).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("max_open"), "{text}");
    // The admin API is another listener and keeps answering.
    assert_eq!(get(&host.admin_url("/readyz")).await.unwrap().status, 200);
    // Connections that close give their place back.
    held.truncate(6);
    eventually("a place is free again", || async {
        Ok(get(&host.url("/counter/free/activations"))
            .await
            .ok()
            .filter(|r| r.status == 200)
            .map(|_| ()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_peer_is_pinged_then_dropped_and_a_live_one_stays() {
    let host = counter_host()
        .toml("connections", "ping_interval_ms = 300")
        .start()
        .await
        .unwrap();
    // A peer that completes the handshake and then never reads: it cannot answer pings.
    let tcp = TcpStream::connect(host.addr).await.unwrap();
    let (silent, _) =
        tokio_tungstenite::client_async(host.ws_url("/counter/room/ws?name=silent"), tcp)
            .await
            .unwrap();
    // A live client answers pings: tungstenite does while it reads, so a task keeps reading.
    let (live, _) = tokio_tungstenite::connect_async(host.ws_url("/counter/room/ws?name=live"))
        .await
        .unwrap();
    let (mut to_host, mut from_host) = futures_util::StreamExt::split(live);
    let (frames, mut received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut from_host).await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let _ = frames.send(text.to_string());
            }
        }
    });
    // The silent one is dropped: the object gets its close.
    host.log
        .wait_for(&["no answer to a ping", "dropping the connection"], 1)
        .await
        .unwrap();
    eventually("only the live socket is left", || async {
        let n = get(&host.url("/counter/room/sockets")).await?.json();
        Ok((n == json!(1)).then_some(()))
    })
    .await
    .unwrap();
    // Well past two ping intervals, the live one still works.
    futures_util::SinkExt::send(
        &mut to_host,
        tokio_tungstenite::tungstenite::Message::Text("echo still here".into()),
    )
    .await
    .unwrap();
    let echoed = tokio::time::timeout(WAIT, async {
        loop {
            let text = received.recv().await.expect("the live socket is open");
            if text == "still here" {
                return text;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(echoed, "still here");
    drop(silent);
}

/// Upgrades to a WebSocket at `url` with `origin` (if any); the HTTP status of the answer
/// (101 when accepted) and its body.
async fn upgrade_from(url: &str, origin: Option<&str>) -> (u16, String) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_ws, response)) => (response.status().as_u16(), String::new()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_can_limit_which_pages_open_its_websockets() {
    let host = counter_host()
        .class_key("counter", "allowed_origins", "[\"http://good.example\"]")
        .start()
        .await
        .unwrap();
    let url = host.ws_url("/counter/guarded/ws?name=a");
    let (status, body) = upgrade_from(&url, Some("http://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("allowed_origins"), "{body}");
    assert_eq!(upgrade_from(&url, Some("http://good.example")).await.0, 101);
    // A client that sends no Origin is not a browser page: let through.
    assert_eq!(upgrade_from(&url, None).await.0, 101);
}
