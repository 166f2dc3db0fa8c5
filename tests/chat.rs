//! End-to-end tests of the chat room class (`guests/chat`, docs/chat.md, the protocol in
//! shared/protocols/chat.md) over a real `lodge` process on loopback: real WebSockets,
//! real redb, restarts and SIGKILL. The only stand-in is the AI provider
//! (`lodge_tests::fake_ai`), driven by `[[directive]]`s in the chat messages themselves.
//! The last test drives the room's web page in headless Chromium (`tests/browser/`).

use std::path::Path;
use std::time::Duration;

use lodge_tests::fake_ai::{FakeAi, PARTIAL_DELTAS, closed_port_url, echo_reply};
use lodge_tests::{Host, HostConfig, Ws, get, http};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

// ---- set-up -------------------------------------------------------------------------

/// A host serving the chat class: the shipped guest, or the component file named by
/// `LODGE_CHAT_WASM` (to run these tests against another build of the class).
fn chat() -> HostConfig {
    match std::env::var_os("LODGE_CHAT_WASM") {
        Some(path) => HostConfig::new().class_file("chat", path.into()),
        None => HostConfig::new().class("chat", "chat"),
    }
}

/// A chat host whose AI is the fake provider.
fn chat_with_ai(fake: &FakeAi) -> HostConfig {
    chat()
        .toml("ai", &format!("base_url = \"{}\"", fake.base_url()))
        .toml("ai", "model = \"fake-model\"")
}

// ---- helpers ------------------------------------------------------------------------

/// The next frame, which must be of type `kind`.
async fn next(ws: &mut Ws, kind: &str) -> Value {
    let frame = ws.recv_json().await.unwrap();
    assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
    frame
}

fn names(presence: &Value) -> Vec<String> {
    presence["users"]
        .as_array()
        .unwrap_or_else(|| panic!("presence without users: {presence}"))
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

/// A client that has joined a room, with what it received on joining.
struct Joined {
    ws: Ws,
    history: Vec<Value>,
    users: Vec<String>,
}

/// Joins `room` as `name` (already URL-encoded) and reads the two join frames, which
/// must be `history` then `presence`.
async fn join(host: &Host, room: &str, name: &str) -> Joined {
    let mut ws = Ws::connect(&host.ws_url(&format!("/chat/{room}/ws?name={name}")))
        .await
        .unwrap();
    let history = next(&mut ws, "history").await["data"]
        .as_array()
        .expect("history.data is an array")
        .clone();
    let users = names(&next(&mut ws, "presence").await);
    Joined { ws, history, users }
}

/// What someone already in the room receives when `name` joins: `user_joined`, then
/// `presence` listing `users`.
async fn sees_join(ws: &mut Ws, name: &str, users: &[&str]) {
    let joined = next(ws, "user_joined").await;
    assert_eq!(joined["name"], name, "{joined}");
    assert!(joined["timestamp"].as_u64().unwrap() > 0, "{joined}");
    assert_eq!(names(&next(ws, "presence").await), users);
}

/// What someone still in the room receives when `name` leaves.
async fn sees_leave(ws: &mut Ws, name: &str, users: &[&str]) {
    let left = next(ws, "user_left").await;
    assert_eq!(left["name"], name, "{left}");
    assert!(left["timestamp"].as_u64().unwrap() > 0, "{left}");
    assert_eq!(names(&next(ws, "presence").await), users);
}

async fn say(ws: &mut Ws, text: &str) {
    ws.send_json(&json!({"type": "message", "text": text}))
        .await
        .unwrap();
}

/// Checks an ENTRY (or the entry fields of a frame).
fn assert_entry(entry: &Value, id: u64, name: &str, role: &str, text: &str) {
    assert_eq!(entry["id"], id, "{entry}");
    assert_eq!(entry["name"], name, "{entry}");
    assert_eq!(entry["role"], role, "{entry}");
    assert_eq!(entry["text"], text, "{entry}");
    assert!(entry["ts"].as_u64().unwrap() > 1_600_000_000_000, "{entry}");
}

/// The next frame, which must be the `message` frame of entry `id`.
async fn message(ws: &mut Ws, id: u64, name: &str, text: &str) -> Value {
    let frame = next(ws, "message").await;
    assert_entry(&frame, id, name, "user", text);
    frame
}

/// The ENTRY fields of a `message` or `ai_response` frame.
fn entry_of(frame: &Value) -> Value {
    let mut entry = frame.clone();
    let map = entry.as_object_mut().unwrap();
    map.remove("type");
    map.remove("response_id");
    entry
}

/// `GET /chat/{room}/history{query}`, which must answer 200 with a JSON array.
async fn history(host: &Host, room: &str, query: &str) -> Vec<Value> {
    let r = get(&host.url(&format!("/chat/{room}/history{query}")))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.content_type.starts_with("application/json"), "{r:?}");
    r.json().as_array().expect("history is an array").clone()
}

fn ids(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

/// An AI reply as one client saw it: the `ai_stream` frames (response id, content) and
/// the frame that ended it (`ai_response` or `ai_error`). Every frame in between must be
/// one of those.
async fn ai_outcome(ws: &mut Ws) -> (Vec<(u64, String)>, Value) {
    let mut pieces = Vec::new();
    loop {
        let frame = ws.recv_json().await.unwrap();
        match frame["type"].as_str() {
            Some("ai_stream") => {
                assert!(frame["timestamp"].as_u64().unwrap() > 0, "{frame}");
                pieces.push((
                    frame["response_id"].as_u64().unwrap(),
                    frame["content"].as_str().unwrap().to_string(),
                ));
            }
            Some("ai_response" | "ai_error") => return (pieces, frame),
            _ => panic!("unexpected frame while waiting for the AI: {frame}"),
        }
    }
}

fn joined_text(pieces: &[(u64, String)]) -> String {
    pieces.iter().map(|(_, c)| c.as_str()).collect()
}

/// Waits until both clients received the same AI reply and returns its pieces and the
/// final `ai_response` frame.
async fn same_reply(a: &mut Ws, b: &mut Ws) -> (Vec<(u64, String)>, Value) {
    let (pieces, done) = ai_outcome(a).await;
    let (b_pieces, b_done) = ai_outcome(b).await;
    assert_eq!(done["type"], "ai_response", "{done}");
    assert_eq!(
        pieces, b_pieces,
        "both clients got the same pieces in order"
    );
    assert_eq!(done, b_done, "both clients got the same final reply");
    let response_id = done["response_id"].as_u64().unwrap();
    assert!(response_id > 0);
    assert!(
        pieces.iter().all(|(r, _)| *r == response_id),
        "every piece carries the reply's response_id {response_id}: {pieces:?}"
    );
    assert_eq!(
        joined_text(&pieces),
        done["text"],
        "the pieces add up to the reply"
    );
    (pieces, done)
}

/// The content of a message the room sent the AI.
fn contents(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(role: &str, content: &str) -> (String, String) {
    (role.to_string(), content.to_string())
}

/// The log lines of `host` so far with every one of `needles`.
fn log_lines_with(host: &Host, needles: &[&str]) -> Vec<(usize, String)> {
    host.log
        .all()
        .into_iter()
        .enumerate()
        .filter(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Evicts every live room (the host runs with `max_live_objects = 1`) by activating the
/// room `other`, and waits for the `evicted` log line of `room` number `nth`.
async fn evict(host: &Host, room: &str, other: &str, nth: usize) {
    history(host, other, "").await;
    host.log
        .wait_for(&["evicted", &format!("name={room}}}")], nth)
        .await
        .unwrap();
}

// ---- joining and leaving ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_gives_history_then_presence_and_everyone_hears_of_joins_and_leaves() {
    let host = chat().start().await.unwrap();
    let mut alice = join(&host, "lobby", "alice").await;
    assert!(alice.history.is_empty(), "{:?}", alice.history);
    assert_eq!(alice.users, ["alice"]);
    say(&mut alice.ws, "first").await;
    let first = message(&mut alice.ws, 1, "alice", "first").await;

    // The joiner gets history then presence; the others user_joined then presence.
    let mut bob = join(&host, "lobby", "bob").await;
    assert_eq!(bob.history, vec![entry_of(&first)]);
    assert_eq!(bob.users, ["alice", "bob"]);
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;

    // Names are trimmed; a second tab of alice shows one alice.
    let mut alice2 = join(&host, "lobby", "%20%20alice%20").await;
    assert_eq!(alice2.users, ["alice", "bob"]);
    assert_eq!(alice2.history.len(), 1);
    sees_join(&mut alice.ws, "alice", &["alice", "bob"]).await;
    sees_join(&mut bob.ws, "alice", &["alice", "bob"]).await;

    // Leaving: the others hear user_left and the new presence.
    bob.ws.close(1000).await.unwrap();
    sees_leave(&mut alice.ws, "bob", &["alice"]).await;
    sees_leave(&mut alice2.ws, "bob", &["alice"]).await;
    // One alice tab closes: she is still here in the other.
    alice2.ws.close(1000).await.unwrap();
    sees_leave(&mut alice.ws, "alice", &["alice"]).await;

    // Rooms are separate objects.
    let other = join(&host, "elsewhere", "carol").await;
    assert!(other.history.is_empty());
    assert_eq!(other.users, ["carol"]);
    // alice received nothing about the other room: her next frame is her own message.
    say(&mut alice.ws, "still here").await;
    message(&mut alice.ws, 2, "alice", "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_history_is_the_last_50_entries_oldest_first() {
    let host = chat().start().await.unwrap();
    let mut alice = join(&host, "busy", "alice").await;
    for i in 1..=60 {
        say(&mut alice.ws, &format!("m{i}")).await;
    }
    for i in 1..=60 {
        message(&mut alice.ws, i, "alice", &format!("m{i}")).await;
    }
    let bob = join(&host, "busy", "bob").await;
    assert_eq!(ids(&bob.history), (11..=60).collect::<Vec<_>>());
    for entry in &bob.history {
        let id = entry["id"].as_u64().unwrap();
        assert_entry(entry, id, "alice", "user", &format!("m{id}"));
    }
    // GET /history: the same entries; limit picks the newest N, oldest first.
    assert_eq!(history(&host, "busy", "").await, bob.history);
    assert_eq!(ids(&history(&host, "busy", "?limit=3").await), [58, 59, 60]);
    assert!(history(&host, "busy", "?limit=0").await.is_empty());
    assert_eq!(
        ids(&history(&host, "busy", "?limit=100000").await),
        (1..=60).collect::<Vec<_>>()
    );
    // before=ID pages back: the newest N entries older than ID (what a client scrolling up
    // asks for), oldest first.
    assert_eq!(
        ids(&history(&host, "busy", "?limit=3&before=11").await),
        [8, 9, 10]
    );
    assert_eq!(ids(&history(&host, "busy", "?before=3").await), [1, 2]);
    assert!(history(&host, "busy", "?before=1").await.is_empty());
    let r = get(&host.url("/chat/busy/history?before=x")).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("before"), "{}", r.body);
    for bad in ["ten", "-1", "2.5"] {
        let r = get(&host.url(&format!("/chat/busy/history?limit={bad}")))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "limit={bad}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains("limit"),
            "{}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_talking_while_the_room_is_evicted() {
    // One live instance at most: activating any other room evicts this one.
    let host = chat()
        .toml("runtime", "max_live_objects = 1")
        .start()
        .await
        .unwrap();
    let mut alice = join(&host, "den", "alice").await;
    let mut bob = join(&host, "den", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;

    // The next frame wakes the evicted room with everyone's name intact.
    evict(&host, "den", "elsewhere", 1).await;
    say(&mut bob.ws, "hello after eviction").await;
    message(&mut bob.ws, 1, "bob", "hello after eviction").await;
    message(&mut alice.ws, 1, "bob", "hello after eviction").await;

    // A socket closing while the room is evicted is still announced.
    evict(&host, "den", "elsewhere", 2).await;
    let activations = log_lines_with(&host, &["activated", "name=den}"]).len();
    bob.ws.close(1000).await.unwrap();
    sees_leave(&mut alice.ws, "bob", &["alice"]).await;
    host.log
        .wait_for(&["activated", "name=den}"], activations + 1)
        .await
        .unwrap();

    // And a new joiner of the evicted room sees everything.
    evict(&host, "den", "elsewhere", 3).await;
    let carol = join(&host, "den", "carol").await;
    assert_eq!(ids(&carol.history), [1]);
    assert_eq!(carol.users, ["alice", "carol"]);
    sees_join(&mut alice.ws, "carol", &["alice", "carol"]).await;
}

// ---- messages -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_get_gap_free_ids_and_reach_everyone_in_the_same_order() {
    let host = chat().start().await.unwrap();
    let mut alice = join(&host, "talk", "alice").await;
    let mut bob = join(&host, "talk", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;

    // Both write at once, without waiting: the room orders them, everyone sees one order.
    for i in 0..20 {
        say(&mut alice.ws, &format!("a{i}")).await;
        say(&mut bob.ws, &format!("  b{i}\n")).await;
    }
    let mut seen_by_alice = Vec::new();
    let mut seen_by_bob = Vec::new();
    for _ in 0..40 {
        seen_by_alice.push(next(&mut alice.ws, "message").await);
        seen_by_bob.push(next(&mut bob.ws, "message").await);
    }
    assert_eq!(
        seen_by_alice, seen_by_bob,
        "the sender is included, same order"
    );
    assert_eq!(ids(&seen_by_alice), (1..=40).collect::<Vec<_>>());
    for who in ["a", "b"] {
        let name = if who == "a" { "alice" } else { "bob" };
        let theirs: Vec<&Value> = seen_by_alice.iter().filter(|f| f["name"] == name).collect();
        let expected: Vec<String> = (0..20).map(|i| format!("{who}{i}")).collect();
        let texts: Vec<&str> = theirs.iter().map(|f| f["text"].as_str().unwrap()).collect();
        assert_eq!(
            texts, expected,
            "{name}'s messages, trimmed, in the order sent"
        );
        assert!(theirs.iter().all(|f| f["role"] == "user"));
    }
    // Stored exactly as announced.
    let stored = history(&host, "talk", "?limit=100").await;
    assert_eq!(
        stored,
        seen_by_alice.iter().map(entry_of).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_continue_without_gaps_across_a_clean_restart_and_a_sigkill() {
    let mut host = chat().start().await.unwrap();
    let mut alice = join(&host, "durable", "alice").await;
    for i in 1..=3 {
        say(&mut alice.ws, &format!("before {i}")).await;
        message(&mut alice.ws, i, "alice", &format!("before {i}")).await;
    }
    // SIGTERM: the host closes the socket with 1001 and exits cleanly.
    let status = tokio::task::block_in_place(|| host.terminate()).unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(alice.ws.closed().await.unwrap().code, 1001);
    host.restart().await.unwrap();

    let mut alice = join(&host, "durable", "alice").await;
    assert_eq!(ids(&alice.history), [1, 2, 3]);
    say(&mut alice.ws, "after restart").await;
    message(&mut alice.ws, 4, "alice", "after restart").await;

    // SIGKILL, then start again on the same data.
    host.restart().await.unwrap();
    let mut alice = join(&host, "durable", "alice").await;
    assert_eq!(ids(&alice.history), [1, 2, 3, 4]);
    assert_entry(&alice.history[3], 4, "alice", "user", "after restart");
    say(&mut alice.ws, "after kill").await;
    message(&mut alice.ws, 5, "alice", "after kill").await;
    assert_eq!(ids(&history(&host, "durable", "").await), [1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_a_client_received_survives_sigkill() {
    let mut host = chat().start().await.unwrap();
    let mut alice = join(&host, "crash", "alice").await;
    // Keep a window of messages in flight and kill the host in the middle of the stream.
    let mut sent = 0u64;
    for _ in 0..16 {
        sent += 1;
        say(&mut alice.ws, &format!("msg {sent}")).await;
    }
    let mut received = Vec::new();
    // Until the socket ends (the host was killed).
    while let Ok(frame) = alice.ws.recv_json().await {
        assert_eq!(frame["type"], "message", "{frame}");
        received.push(frame.clone());
        if frame["id"] == 40 {
            host.kill();
        } else if sent < 200 {
            sent += 1;
            // The socket may already be gone once the host was killed.
            let _ = alice
                .ws
                .send_json(&json!({"type": "message", "text": format!("msg {sent}")}))
                .await;
        }
    }
    assert!(received.len() >= 40, "saw {} messages", received.len());
    host.restart().await.unwrap();
    let stored = history(&host, "crash", "?limit=1000").await;
    let n = stored.len() as u64;
    assert_eq!(ids(&stored), (1..=n).collect::<Vec<_>>(), "no gaps");
    assert!(n <= sent, "stored {n} of {sent} sent");
    for frame in &received {
        let id = frame["id"].as_u64().unwrap();
        assert!(id <= n, "message {id} was received but is not stored");
        assert_eq!(stored[id as usize - 1], entry_of(frame));
    }
    // Every stored message is one that was sent, in the order sent.
    for entry in &stored {
        assert_eq!(entry["text"], format!("msg {}", entry["id"]));
    }
    // The room carries on after the crash.
    let mut alice = join(&host, "crash", "alice").await;
    say(&mut alice.ws, "after the crash").await;
    message(&mut alice.ws, n + 1, "alice", "after the crash").await;
}

// ---- heartbeats ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_gets_a_pong_without_waking_the_evicted_room() {
    let host = chat()
        .toml("runtime", "max_live_objects = 1")
        .start()
        .await
        .unwrap();
    let mut alice = join(&host, "hb", "alice").await;
    evict(&host, "hb", "other", 1).await;
    let evicted_at = log_lines_with(&host, &["evicted", "name=hb}"])[0].0;

    alice.ws.send(r#"{"type":"heartbeat"}"#).await.unwrap();
    assert_eq!(alice.ws.recv_json().await.unwrap(), json!({"type": "pong"}));
    // Activate another room and wait for its log line: an activation of `hb` for the
    // heartbeat would have been logged before it.
    history(&host, "third", "").await;
    host.log
        .wait_for(&["activated", "name=third}"], 1)
        .await
        .unwrap();
    let woken: Vec<_> = log_lines_with(&host, &["activated", "name=hb}"])
        .into_iter()
        .filter(|(i, _)| *i > evicted_at)
        .collect();
    assert!(woken.is_empty(), "the heartbeat woke the room: {woken:?}");

    // A heartbeat the host does not recognise verbatim reaches the room (waking it), and
    // the room answers it the same way: this is also what the check above would have seen.
    alice.ws.send(r#"{ "type" : "heartbeat" }"#).await.unwrap();
    assert_eq!(alice.ws.recv_json().await.unwrap(), json!({"type": "pong"}));
    host.log
        .wait_for(&["activated", "name=hb}"], 2)
        .await
        .unwrap();
    // Nothing was stored by either.
    assert!(history(&host, "hb", "").await.is_empty());
}

// ---- bad input ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_an_error_to_the_sender_alone_and_store_nothing() {
    let host = chat()
        .setting("chat", "max_text_len", "10")
        .setting("chat", "max_name_len", "8")
        .start()
        .await
        .unwrap();
    let mut alice = join(&host, "strict", "alice").await;
    let mut bob = join(&host, "strict", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;

    let cases: [(&str, &str); 9] = [
        ("not json", "invalid JSON"),
        ("[1,2]", "JSON object"),
        (r#"{"text":"hi"}"#, "missing \"type\""),
        (
            r#"{"type":"shout","text":"hi"}"#,
            "unknown frame type \"shout\"",
        ),
        (r#"{"type":"message"}"#, "\"text\""),
        (r#"{"type":"message","text":42}"#, "must be a string"),
        (r#"{"type":"message","text":""}"#, "empty"),
        (r#"{"type":"message","text":" \n\t "}"#, "empty"),
        (
            r#"{"type":"message","text":"elevenchars"}"#,
            "too long: 11 characters, at most 10",
        ),
    ];
    for (raw, why) in cases {
        alice.ws.send(raw).await.unwrap();
        let error = next(&mut alice.ws, "error").await;
        let text = error["error"].as_str().unwrap();
        assert!(text.contains(why), "{raw} -> {text}");
    }
    alice
        .ws
        .send_message(Message::Binary(vec![0xff, 0x00, 0x7b].into()))
        .await
        .unwrap();
    let error = next(&mut alice.ws, "error").await;
    assert!(
        error["error"].as_str().unwrap().contains("binary"),
        "{error}"
    );

    // Nothing was stored or sent to bob: the first valid message gets id 1 and is bob's
    // next frame. The limit counts characters, not bytes, after trimming.
    say(&mut alice.ws, "  tencharsok  ").await;
    message(&mut alice.ws, 1, "alice", "tencharsok").await;
    message(&mut bob.ws, 1, "alice", "tencharsok").await;
    say(&mut bob.ws, "éééééééééé").await;
    message(&mut bob.ws, 2, "bob", "éééééééééé").await;
    message(&mut alice.ws, 2, "bob", "éééééééééé").await;
    assert_eq!(ids(&history(&host, "strict", "").await), [1, 2]);

    // Bad names are refused with 400 and a JSON reason; nobody hears of them.
    let bad_names: [(&str, &str); 5] = [
        ("", "required"),
        ("?name=", "empty"),
        ("?name=%20%20", "empty"),
        ("?name=ninechars", "too long"),
        ("?name=a%07b", "control"),
    ];
    for (query, why) in bad_names {
        let (status, body) = Ws::connect_refused(&host.ws_url(&format!("/chat/strict/ws{query}")))
            .await
            .unwrap();
        assert_eq!(status, 400, "{query}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let reason = body["error"].as_str().unwrap();
        assert!(reason.contains(why), "{query}: {reason}");
    }
    let exact = join(&host, "strict", "eightchr").await;
    assert_eq!(exact.users, ["alice", "bob", "eightchr"]);
    sees_join(&mut alice.ws, "eightchr", &["alice", "bob", "eightchr"]).await;

    // Wrong paths and methods: JSON errors.
    let (status, _) = Ws::connect_refused(&host.ws_url("/chat/strict/socket?name=x"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    let r = get(&host.url("/chat/strict/nope")).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    let r = http("DELETE", &host.url("/chat/strict/history"), "")
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert!(r.json()["error"].is_string());
    assert_eq!(ids(&history(&host, "strict", "").await), [1, 2]);
}

// ---- the AI -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_replies_stream_to_everyone_identically_with_the_history_as_context() {
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake).start().await.unwrap();
    let mut alice = join(&host, "ai-room", "alice").await;
    let mut bob = join(&host, "ai-room", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;

    say(&mut alice.ws, "@ai what is lodge?").await;
    let question = message(&mut alice.ws, 1, "alice", "@ai what is lodge?").await;
    message(&mut bob.ws, 1, "alice", "@ai what is lodge?").await;
    let (pieces, done) = same_reply(&mut alice.ws, &mut bob.ws).await;
    let first_answer = echo_reply("alice: @ai what is lodge?", 2);
    assert!(pieces.len() >= 3, "streamed in pieces: {pieces:?}");
    assert_entry(&done, 2, "AI", "assistant", &first_answer);
    assert_eq!(
        history(&host, "ai-room", "").await,
        vec![entry_of(&question), entry_of(&done)]
    );

    // What the provider was asked: the system prompt naming the room, then the question.
    let requests = fake.wait_for_requests(1).await.unwrap();
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.body["stream"], true);
    assert_eq!(request.body["model"], "fake-model");
    let sent = contents(request.messages());
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].0, "system");
    assert!(sent[0].1.contains("ai-room"), "{}", sent[0].1);
    assert_eq!(sent[1], pair("user", "alice: @ai what is lodge?"));
    let system = sent[0].clone();

    // A plain message and one that only looks like a mention ask nothing; `@AI:` does,
    // with the whole conversation so far as context.
    say(&mut bob.ws, "no question here").await;
    message(&mut bob.ws, 3, "bob", "no question here").await;
    message(&mut alice.ws, 3, "bob", "no question here").await;
    say(&mut bob.ws, "@aiden hi").await;
    message(&mut bob.ws, 4, "bob", "@aiden hi").await;
    message(&mut alice.ws, 4, "bob", "@aiden hi").await;
    say(&mut alice.ws, "@AI: and again").await;
    message(&mut alice.ws, 5, "alice", "@AI: and again").await;
    message(&mut bob.ws, 5, "alice", "@AI: and again").await;
    let (_, done) = same_reply(&mut alice.ws, &mut bob.ws).await;
    assert_entry(
        &done,
        6,
        "AI",
        "assistant",
        &echo_reply("alice: @AI: and again", 6),
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "only the @ai messages asked the AI");
    assert_eq!(
        contents(requests[1].messages()),
        [
            system.clone(),
            pair("user", "alice: @ai what is lodge?"),
            pair("assistant", &first_answer),
            pair("user", "bob: no question here"),
            pair("user", "bob: @aiden hi"),
            pair("user", "alice: @AI: and again"),
        ]
    );

    // A slow stream, with human chat going on meanwhile: everyone sees the same frames in
    // the same order and the whole reply.
    say(&mut alice.ws, "@ai [[slow]] take your time").await;
    message(&mut alice.ws, 7, "alice", "@ai [[slow]] take your time").await;
    message(&mut bob.ws, 7, "alice", "@ai [[slow]] take your time").await;
    let first_piece = next(&mut alice.ws, "ai_stream").await;
    say(&mut bob.ws, "meanwhile").await;
    let mut alice_frames = vec![first_piece];
    let mut bob_frames = Vec::new();
    for (ws, frames) in [
        (&mut alice.ws, &mut alice_frames),
        (&mut bob.ws, &mut bob_frames),
    ] {
        loop {
            let frame = ws.recv_json().await.unwrap();
            let last = frame["type"] == "ai_response";
            frames.push(frame);
            if last {
                break;
            }
        }
    }
    assert_eq!(alice_frames, bob_frames);
    let chat: Vec<&Value> = alice_frames
        .iter()
        .filter(|f| f["type"] == "message")
        .collect();
    assert_eq!(chat.len(), 1, "{alice_frames:?}");
    assert_entry(chat[0], 8, "bob", "user", "meanwhile");
    let streamed: String = alice_frames
        .iter()
        .filter(|f| f["type"] == "ai_stream")
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    let slow_answer = echo_reply("alice: @ai [[slow]] take your time", 8);
    assert_eq!(streamed, slow_answer);
    let done = alice_frames.last().unwrap();
    assert_entry(done, 9, "AI", "assistant", &slow_answer);
    assert_eq!(
        ids(&history(&host, "ai-room", "").await),
        (1..=9).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ai_context_survives_a_restart() {
    let fake = FakeAi::start().await;
    let mut host = chat_with_ai(&fake).start().await.unwrap();
    let mut alice = join(&host, "memory", "alice").await;
    say(&mut alice.ws, "@ai remember the word pineapple").await;
    message(&mut alice.ws, 1, "alice", "@ai remember the word pineapple").await;
    let (_, remembered) = ai_outcome(&mut alice.ws).await;
    let answer = echo_reply("alice: @ai remember the word pineapple", 2);
    assert_entry(&remembered, 2, "AI", "assistant", &answer);

    // SIGKILL right after the reply arrived: it is durable.
    host.restart().await.unwrap();
    let mut alice = join(&host, "memory", "alice").await;
    assert_eq!(alice.history[1], entry_of(&remembered));
    say(&mut alice.ws, "@ai what was the word?").await;
    message(&mut alice.ws, 3, "alice", "@ai what was the word?").await;
    let (_, done) = ai_outcome(&mut alice.ws).await;
    assert_entry(
        &done,
        4,
        "AI",
        "assistant",
        &echo_reply("alice: @ai what was the word?", 4),
    );
    let requests = fake.wait_for_requests(2).await.unwrap();
    let sent = contents(requests[1].messages());
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(sent[0].0, "system");
    assert_eq!(
        sent[1..],
        [
            pair("user", "alice: @ai remember the word pineapple"),
            pair("assistant", &answer),
            pair("user", "alice: @ai what was the word?"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_reply_cut_off_by_a_crash_leaves_the_room_usable() {
    let fake = FakeAi::start().await;
    let mut host = chat_with_ai(&fake)
        .toml("limits", "max_ai_streams = 1")
        .start()
        .await
        .unwrap();
    let mut alice = join(&host, "cut", "alice").await;
    say(&mut alice.ws, "@ai [[idle]] tell me everything").await;
    message(&mut alice.ws, 1, "alice", "@ai [[idle]] tell me everything").await;
    // The reply has begun (and will not go on): SIGKILL in the middle of it.
    let piece = next(&mut alice.ws, "ai_stream").await;
    assert_eq!(piece["content"], PARTIAL_DELTAS[0], "{piece}");
    host.restart().await.unwrap();

    // The question is kept, nothing of the cut reply is; the room notices the lost stream
    // and its one stream slot is free: the next question is answered, with the next id.
    let mut alice = join(&host, "cut", "alice").await;
    assert_eq!(ids(&alice.history), [1]);
    host.log
        .wait_for(&["dropping the record of an interrupted AI reply"], 1)
        .await
        .unwrap();
    say(&mut alice.ws, "@ai again?").await;
    message(&mut alice.ws, 2, "alice", "@ai again?").await;
    let (_, done) = ai_outcome(&mut alice.ws).await;
    assert_entry(
        &done,
        3,
        "AI",
        "assistant",
        &echo_reply("alice: @ai again?", 3),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_failure_reaches_everyone_as_an_ai_error_without_the_hosts_details() {
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake)
        .toml("ai", "first_token_timeout_ms = 500")
        .toml("ai", "api_key_env = \"CHAT_TEST_AI_KEY\"")
        .env("CHAT_TEST_AI_KEY", "sk-chat-test-secret")
        .start()
        .await
        .unwrap();
    let mut alice = join(&host, "trouble", "alice").await;
    let mut bob = join(&host, "trouble", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;

    // (directive, what users are told, what the operator's log says under the same
    // reference, whether partial pieces may come first)
    let cases: [(&str, &str, &[&str], bool); 6] = [
        (
            "[[401]]",
            "not set up correctly on this server",
            &["rejected the API key (401)", "CHAT_TEST_AI_KEY"],
            false,
        ),
        ("[[429]]", "busy: try again", &["rate limited"], false),
        (
            "[[500]]",
            "failed while answering",
            &["failed with 500"],
            false,
        ),
        (
            "[[malformed]]",
            "broke off",
            &["malformed stream chunk"],
            true,
        ),
        ("[[drop]]", "broke off", &["midway"], true),
        (
            "[[stall]]",
            "took too long",
            &["no reply within", "first_token_timeout_ms"],
            false,
        ),
    ];
    let mut id = 0;
    for (i, (directive, told, logged, partial)) in cases.into_iter().enumerate() {
        let question = format!("@ai {directive} please");
        say(&mut alice.ws, &question).await;
        id += 1;
        message(&mut alice.ws, id, "alice", &question).await;
        message(&mut bob.ws, id, "alice", &question).await;
        let (pieces, error) = ai_outcome(&mut alice.ws).await;
        let (bob_pieces, bob_error) = ai_outcome(&mut bob.ws).await;
        assert_eq!(error["type"], "ai_error", "{directive}: {error}");
        assert_eq!((&pieces, &error), (&bob_pieces, &bob_error), "{directive}");
        let response_id = error["response_id"].as_u64().unwrap();
        assert!(response_id > 0, "{directive}: {error}");
        assert!(pieces.iter().all(|(r, _)| *r == response_id));
        if partial {
            let text = joined_text(&pieces);
            assert!(
                text.starts_with(PARTIAL_DELTAS[0]) && "Partial reply".starts_with(&text),
                "{directive}: partial pieces {text:?}"
            );
        } else {
            assert!(pieces.is_empty(), "{directive}: {pieces:?}");
        }
        let message_text = error["error"].as_str().unwrap();
        assert!(message_text.contains(told), "{directive}: {message_text:?}");
        // Nothing about the host: no provider address, no config keys, no secret.
        for leak in [
            fake.base_url().as_str(),
            "127.0.0.1",
            "[ai]",
            "CHAT_TEST_AI_KEY",
            "sk-chat-test-secret",
        ] {
            assert!(
                !message_text.contains(leak),
                "{directive}: {message_text:?} shows {leak:?}"
            );
        }
        // The details are in the log, under the reference the users got.
        let reference = message_text
            .rsplit_once("(ref ")
            .and_then(|(_, r)| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{directive}: no reference in {message_text:?}"));
        let mut needles = vec!["AI stream failed", reference];
        needles.extend_from_slice(logged);
        host.log.wait_for(&needles, 1).await.unwrap();

        // Human chat carries on; no assistant entry was stored (ids have no gap).
        let text = format!("still talking {i}");
        say(&mut bob.ws, &text).await;
        id += 1;
        message(&mut bob.ws, id, "bob", &text).await;
        message(&mut alice.ws, id, "bob", &text).await;
    }
    let stored = history(&host, "trouble", "").await;
    assert_eq!(ids(&stored), (1..=id).collect::<Vec<_>>());
    assert!(stored.iter().all(|e| e["role"] == "user"), "{stored:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), cases.len());
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer sk-chat-test-secret")
        );
    }

    // The provider is fine again: the next question is answered.
    say(&mut alice.ws, "@ai are you back?").await;
    message(&mut alice.ws, id + 1, "alice", "@ai are you back?").await;
    message(&mut bob.ws, id + 1, "alice", "@ai are you back?").await;
    let (_, done) = same_reply(&mut alice.ws, &mut bob.ws).await;
    assert_eq!(done["id"], id + 2);
    assert_eq!(done["role"], "assistant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_missing_provider_is_an_ai_error_and_chat_goes_on() {
    // Nothing listens at the configured address.
    let host = chat()
        .toml("ai", &format!("base_url = \"{}\"", closed_port_url()))
        .start()
        .await
        .unwrap();
    let mut alice = join(&host, "lonely", "alice").await;
    let mut bob = join(&host, "lonely", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;
    say(&mut alice.ws, "@ai anyone there?").await;
    message(&mut alice.ws, 1, "alice", "@ai anyone there?").await;
    message(&mut bob.ws, 1, "alice", "@ai anyone there?").await;
    let (pieces, error) = ai_outcome(&mut alice.ws).await;
    assert_eq!(
        (pieces.clone(), error.clone()),
        ai_outcome(&mut bob.ws).await
    );
    assert!(pieces.is_empty());
    assert_eq!(error["type"], "ai_error");
    assert!(error["response_id"].as_u64().unwrap() > 0);
    let text = error["error"].as_str().unwrap();
    assert!(text.contains("cannot be reached"), "{text}");
    host.log
        .wait_for(
            &["AI stream failed", "connection refused", "is it running"],
            1,
        )
        .await
        .unwrap();
    say(&mut bob.ws, "oh well").await;
    message(&mut bob.ws, 2, "bob", "oh well").await;
    message(&mut alice.ws, 2, "bob", "oh well").await;

    // No provider configured at all: the reply cannot even start (response_id 0) and the
    // error says how to configure one.
    let host = chat().start().await.unwrap();
    let mut alice = join(&host, "offline", "alice").await;
    let mut bob = join(&host, "offline", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;
    say(&mut alice.ws, "@ai hello?").await;
    message(&mut alice.ws, 1, "alice", "@ai hello?").await;
    message(&mut bob.ws, 1, "alice", "@ai hello?").await;
    for ws in [&mut alice.ws, &mut bob.ws] {
        let error = next(ws, "ai_error").await;
        assert_eq!(error["response_id"], 0, "{error}");
        let text = error["error"].as_str().unwrap();
        assert!(
            text.contains("no AI provider is configured") && text.contains("[ai] base_url"),
            "{text}"
        );
    }
    say(&mut bob.ws, "fine").await;
    message(&mut bob.ws, 2, "bob", "fine").await;
    message(&mut alice.ws, 2, "bob", "fine").await;
    assert_eq!(ids(&history(&host, "offline", "").await), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_streams_is_an_ai_error_at_once() {
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake)
        .toml("classes.chat.limits", "max_ai_streams = 1")
        .toml("ai", "first_token_timeout_ms = 2000")
        .start()
        .await
        .unwrap();
    let mut alice = join(&host, "crowded", "alice").await;
    say(&mut alice.ws, "@ai [[stall]] hold on").await;
    message(&mut alice.ws, 1, "alice", "@ai [[stall]] hold on").await;
    // The first stream is in flight once the provider has its request.
    fake.wait_for_requests(1).await.unwrap();
    say(&mut alice.ws, "@ai me too").await;
    message(&mut alice.ws, 2, "alice", "@ai me too").await;
    let busy = next(&mut alice.ws, "ai_error").await;
    assert_eq!(busy["response_id"], 0, "{busy}");
    assert!(busy["error"].as_str().unwrap().contains("busy"), "{busy}");
    host.log
        .wait_for(&["limit refused", "max_ai_streams", "name=crowded"], 1)
        .await
        .unwrap();
    // The stalled one ends with its own error; then the room can ask again.
    let stalled = next(&mut alice.ws, "ai_error").await;
    assert!(stalled["response_id"].as_u64().unwrap() > 0, "{stalled}");
    say(&mut alice.ws, "@ai now?").await;
    message(&mut alice.ws, 3, "alice", "@ai now?").await;
    let (_, done) = ai_outcome(&mut alice.ws).await;
    assert_entry(
        &done,
        4,
        "AI",
        "assistant",
        &echo_reply("alice: @ai now?", 4),
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_settings_change_the_prompt_and_who_the_ai_answers() {
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake)
        .setting("chat", "ai_name", "\"Robo\"")
        .start()
        .await
        .unwrap();
    let url = host.url("/chat/tuned/settings");
    let defaults = get(&url).await.unwrap().json();
    assert_eq!(defaults["answer_all"], false);
    assert!(
        defaults["system_prompt"]
            .as_str()
            .unwrap()
            .contains("{room}")
    );

    let r = http(
        "PUT",
        &url,
        r#"{"system_prompt":"Be brief in {room}.","answer_all":true}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let tuned = json!({"system_prompt": "Be brief in {room}.", "answer_all": true});
    assert_eq!(r.json(), tuned);
    // Refused updates change nothing.
    for bad in [r#"{"answer_all":"yes"}"#, r#"{"colour":"red"}"#, "{"] {
        let r = http("PUT", &url, bad).await.unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(get(&url).await.unwrap().json(), tuned);

    // With answer_all, a message without @ai is answered, under the room's prompt.
    let mut alice = join(&host, "tuned", "alice").await;
    say(&mut alice.ws, "hello there").await;
    message(&mut alice.ws, 1, "alice", "hello there").await;
    let (_, done) = ai_outcome(&mut alice.ws).await;
    assert_entry(
        &done,
        2,
        "Robo",
        "assistant",
        &echo_reply("alice: hello there", 2),
    );
    let requests = fake.wait_for_requests(1).await.unwrap();
    assert_eq!(
        contents(requests[0].messages())[0],
        pair("system", "Be brief in tuned.")
    );
}

// ---- the page in a browser ----------------------------------------------------------

/// Runs a command to completion (at most `limit`), failing with its output if it fails.
async fn run(cmd: &mut tokio::process::Command, what: &str, limit: Duration) -> String {
    let output = tokio::time::timeout(limit, cmd.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_headless_chromium() {
    let dir = lodge_tests::repo_root().join("tests/browser");
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium: apt-get install chromium \
         (cargo xtask test installs it)"
    );
    if !dir.join("node_modules").exists() {
        run(
            tokio::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci in tests/browser",
            Duration::from_secs(300),
        )
        .await;
    }
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake).start().await.unwrap();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("chat.mjs"))
        .arg(host.url(""))
        .arg("café talk")
        .current_dir(&dir);
    if let Ok(path) = std::env::var("LODGE_CHAT_SCREENSHOT") {
        cmd.env("CHAT_SCREENSHOT", path);
    }
    let out = run(
        &mut cmd,
        "node tests/browser/chat.mjs",
        Duration::from_secs(180),
    )
    .await;
    println!("{out}");
    assert!(out.contains("all checks passed"), "{out}");

    // What the pages did is what the room stored.
    let stored = history(&host, "caf%C3%A9%20talk", "?limit=100").await;
    let ai: Vec<&Value> = stored.iter().filter(|e| e["role"] == "assistant").collect();
    // The answer, and the reply stopped from the page (kept, marked).
    assert_eq!(ai.len(), 2, "{stored:?}");
    assert!(
        ai[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Echo: alice: @ai"),
        "{stored:?}"
    );
    assert_eq!(ai[1]["stopped"], true, "{stored:?}");
    assert!(
        stored
            .iter()
            .any(|e| e["name"] == "bob" && e["role"] == "user")
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_token_usage_shows_in_the_metrics() {
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake).start().await.unwrap();
    let mut alice = join(&host, "tokens", "alice").await.ws;
    say(&mut alice, "@ai count my tokens").await;
    message(&mut alice, 1, "alice", "@ai count my tokens").await;
    let (_, done) = ai_outcome(&mut alice).await;
    assert_eq!(done["type"], "ai_response", "{done}");
    let metrics = host.admin("GET", "/metrics", vec![]).await.unwrap().body;
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    // The fake reports 10 prompt tokens per message (system prompt + the question).
    assert_eq!(value("lodge_ai_tokens_total{kind=\"prompt\"} "), 20);
    assert!(value("lodge_ai_tokens_total{kind=\"completion\"} ") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_room_sends_a_bounded_presence_instead_of_the_whole_list_on_every_join() {
    let host = chat()
        .setting("chat", "presence_list_max", "5")
        .start()
        .await
        .unwrap();
    let mut watcher = join(&host, "big", "watcher").await;
    let mut crowd = Vec::new();
    for batch in 0..15 {
        let names: Vec<String> = (0..10).map(|i| format!("user{batch:02}{i}")).collect();
        let joins = names.iter().map(|name| join(&host, "big", name));
        crowd.extend(futures_util::future::join_all(joins).await);
    }
    // Every joiner got at most the first 5 names.
    assert!(crowd.iter().all(|j| j.users.len() <= 5));
    // Everything the watcher got during 150 joins, up to a message that marks the end.
    say(&mut crowd[0].ws, "end").await;
    let frames = until_message(&mut watcher.ws).await;
    let joins = frames.iter().filter(|f| f["type"] == "user_joined").count();
    // A notice and the whole list per join while the room is small (5 people), then a
    // count when it moved by 5 %: every join used to send both, each presence listing
    // everyone (300 frames here, and O(n^2) bytes).
    assert_eq!(joins, 4, "join notices only while the room is small");
    assert!(frames.len() < 100, "{} frames for 150 joins", frames.len());
    let newest = frames
        .iter()
        .rev()
        .find(|f| f["type"] == "presence")
        .unwrap();
    assert!(names(newest).len() <= 5, "{newest}");
    let count = newest["count"].as_u64().unwrap();
    assert!((143..=151).contains(&count), "{newest}");
    // Leaving is announced the same way; a joiner always gets the exact count.
    for joined in crowd.drain(..100) {
        joined.ws.close(1000).await.unwrap();
    }
    let mut late = Ws::connect(&host.ws_url("/chat/big/ws?name=late"))
        .await
        .unwrap();
    next(&mut late, "history").await;
    let presence = next(&mut late, "presence").await;
    assert_eq!(presence["count"], 52, "{presence}");
    assert_eq!(names(&presence).len(), 5);
    say(&mut late, "end").await;
    let frames = until_message(&mut watcher.ws).await;
    let newest = frames
        .iter()
        .rev()
        .find(|f| f["type"] == "presence")
        .unwrap();
    let count = newest["count"].as_u64().unwrap();
    assert!((49..=55).contains(&count), "{newest}");
}

/// The frames `ws` receives before the next chat message.
async fn until_message(ws: &mut Ws) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = ws.recv_json().await.unwrap();
        if frame["type"] == "message" {
            return frames;
        }
        frames.push(frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_can_stop_an_ai_reply_and_what_it_wrote_is_kept() {
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake).start().await.unwrap();
    let mut alice = join(&host, "stoppable", "alice").await;
    let mut bob = join(&host, "stoppable", "bob").await;
    sees_join(&mut alice.ws, "bob", &["alice", "bob"]).await;
    let question = "@ai [[slow]] tell me everything";
    say(&mut alice.ws, question).await;
    message(&mut alice.ws, 1, "alice", question).await;
    message(&mut bob.ws, 1, "alice", question).await;
    // Once the reply is under way, bob stops it.
    let first = next(&mut bob.ws, "ai_stream").await;
    let response_id = first["response_id"].as_u64().unwrap();
    bob.ws
        .send_json(&json!({"type": "ai_stop", "response_id": response_id}))
        .await
        .unwrap();
    // Everyone gets the stopped reply, holding what had been written before it.
    let first_piece = first["content"].as_str().unwrap().to_owned();
    for (ws, mut pieces) in [(&mut alice.ws, String::new()), (&mut bob.ws, first_piece)] {
        let stopped = loop {
            let frame = ws.recv_json().await.unwrap();
            match frame["type"].as_str() {
                Some("ai_stream") => pieces.push_str(frame["content"].as_str().unwrap()),
                Some("ai_response") => break frame,
                other => panic!("unexpected {other:?}: {frame}"),
            }
        };
        assert_eq!(stopped["stopped"], true, "{stopped}");
        assert_eq!(stopped["response_id"], response_id);
        assert_eq!(stopped["id"], 2);
        // Exactly what everyone had been shown, and nothing after it.
        assert_eq!(
            stopped["text"].as_str().unwrap(),
            pieces.trim(),
            "{stopped}"
        );
    }
    // It is in the history, marked; a second stop of it is refused to the sender alone.
    let stored = history(&host, "stoppable", "").await;
    assert_eq!(stored.last().unwrap()["stopped"], true, "{stored:?}");
    bob.ws
        .send_json(&json!({"type": "ai_stop", "response_id": response_id}))
        .await
        .unwrap();
    let refused = next(&mut bob.ws, "error").await;
    assert!(
        refused["error"].as_str().unwrap().contains("no AI reply"),
        "{refused}"
    );
    // The conversation goes on with the next id.
    say(&mut alice.ws, "thanks").await;
    message(&mut alice.ws, 3, "alice", "thanks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_sees_the_reply_being_written_so_far_and_the_rest() {
    let fake = FakeAi::start().await;
    let host = chat_with_ai(&fake).start().await.unwrap();
    let mut alice = join(&host, "late", "alice").await;
    let question = "@ai [[slow]] a long answer";
    say(&mut alice.ws, question).await;
    message(&mut alice.ws, 1, "alice", question).await;
    let first = next(&mut alice.ws, "ai_stream").await;
    let response_id = first["response_id"].as_u64().unwrap();
    // carol joins while the reply is being written.
    let mut carol = Ws::connect(&host.ws_url("/chat/late/ws?name=carol"))
        .await
        .unwrap();
    next(&mut carol, "history").await;
    next(&mut carol, "presence").await;
    let partial = next(&mut carol, "ai_partial").await;
    assert_eq!(partial["response_id"], response_id, "{partial}");
    assert_eq!(partial["name"], "AI");
    assert!(partial["started_at"].as_u64().unwrap() > 0);
    // What she got so far plus the pieces that follow is the whole reply; `resume` in the
    // middle answers with exactly what she has been shown up to then.
    let mut text = partial["content"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with(first["content"].as_str().unwrap()),
        "{partial}"
    );
    carol.send_json(&json!({"type": "resume"})).await.unwrap();
    let mut resumed = 0;
    let done = loop {
        let frame = carol.recv_json().await.unwrap();
        match frame["type"].as_str() {
            Some("ai_stream") => {
                assert_eq!(frame["response_id"], response_id);
                text.push_str(frame["content"].as_str().unwrap());
            }
            Some("ai_partial") => {
                assert_eq!(frame["content"].as_str().unwrap(), text, "{frame}");
                resumed += 1;
            }
            Some("ai_response") => break frame,
            _ => {}
        }
    };
    assert_eq!(resumed, 1, "one ai_partial answers the resume");
    assert_eq!(done["text"].as_str().unwrap(), text.trim());
}
