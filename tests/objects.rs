//! End-to-end tests of the object runtime over a real `lodge` process on loopback:
//! routing and errors, events as transactions, one-at-a-time delivery, eviction and
//! hibernating sockets, the output gate across SIGKILL, restarts.

use lodge_tests::{HostConfig, Ws, eventually, get, http, post};
use serde_json::{Value, json};

fn counter_host() -> HostConfig {
    HostConfig::new().class("counter", "counter")
}

async fn count(host: &lodge_tests::Host, name: &str) -> i64 {
    let r = get(&host.url(&format!("/counter/{name}/"))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["count"].as_i64().unwrap()
}

async fn activations(host: &lodge_tests::Host, name: &str) -> i64 {
    let r = get(&host.url(&format!("/counter/{name}/activations")))
        .await
        .unwrap();
    r.json()["activations"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_errors_are_clear_json() {
    let host = counter_host().start().await.unwrap();
    let r = get(&host.url("/nosuchclass/x")).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("nosuchclass"));

    for dots in ["/counter/..", "/counter/.%2e/x"] {
        let req = format!("GET {dots} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = lodge_tests::raw_http(host.addr, req.as_bytes())
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.1 400"), "{dots}: {resp}");
        assert!(resp.contains("invalid object name"), "{resp}");
    }
    // Malformed HTTP gets a 400 and the host keeps serving.
    let resp = lodge_tests::raw_http(host.addr, b"NOT HTTP AT ALL\r\n\r\n")
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    let long = "x".repeat(10_000);
    for bad in [
        "/counter/a%2Fb",
        "/counter/a%00b",
        "/counter/%ff",
        &format!("/counter/{long}"),
    ] {
        let r = get(&host.url(bad)).await.unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.content_type.starts_with("application/json"), "{bad}");
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("invalid object name")
        );
    }
    let r = get(&host.url("/counter")).await.unwrap();
    assert_eq!(r.status, 404);

    // The guest's own 404 passes through; the object is addressed by name.
    let r = get(&host.url("/counter/a/nope")).await.unwrap();
    assert_eq!(r.status, 404);
    let who = get(&host.url("/counter/some%20room/whoami"))
        .await
        .unwrap()
        .json();
    assert_eq!(who["name"], "some room");
    assert_eq!(who["class"], "counter");
    assert_eq!(who["id"].as_str().unwrap().len(), 32);

    // Request bodies are bounded.
    let big = "x".repeat(2 << 20);
    let r = http("PUT", &host.url("/counter/a/kv?key=big"), &big)
        .await
        .unwrap();
    assert_eq!(r.status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_object_never_interleave() {
    let host = counter_host().start().await.unwrap();
    // Each increment reads the count and writes it back: any interleaving, or any read
    // that missed a not-yet-durable write of an earlier event, would lose an update.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = host.url("/counter/shared/increment");
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let r = post(&url, "").await.unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
            }
        }));
    }
    // WebSocket increments go through the same mailbox.
    let mut ws = Ws::connect(&host.ws_url("/counter/shared/ws?name=w"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    for _ in 0..50 {
        ws.send("inc").await.unwrap();
    }
    let mut last = 0;
    for _ in 0..50 {
        let v = ws.recv_type("count").await.unwrap();
        let n = v["count"].as_i64().unwrap();
        assert!(n > last, "counts arrive in order: {n} after {last}");
        last = n;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count(&host, "shared").await, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_rolls_back_the_event_and_the_next_event_succeeds() {
    let host = counter_host().start().await.unwrap();
    post(&host.url("/counter/t/increment"), "").await.unwrap();
    let r = post(&host.url("/counter/t/trap"), "").await.unwrap();
    assert_eq!(r.status, 500);
    let body = r.json();
    assert_eq!(body["object"], "counter/t");
    assert!(
        body["error"].as_str().unwrap().contains("trapped"),
        "{body}"
    );
    // The operator's log line says which object, which kind of event and how it ended.
    host.log
        .wait_for(
            &[
                "class=counter",
                "name=t",
                "kind=request",
                "outcome=\"failed\"",
                "event failed",
            ],
            1,
        )
        .await
        .unwrap();
    // The trap's write (count = -1000000) was discarded; a fresh instance serves on.
    assert_eq!(count(&host, "t").await, 1);
    let r = post(&host.url("/counter/t/increment"), "").await.unwrap();
    assert_eq!(r.json()["count"], 2);

    // Over a WebSocket: the frame sent before the trap never arrives; the socket gets an
    // error frame and close 1011; the object keeps its state.
    let mut ws = Ws::connect(&host.ws_url("/counter/t/ws?name=x"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    ws.send("trap").await.unwrap();
    let err = ws.recv_json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert!(err["error"].as_str().unwrap().contains("counter/t"));
    assert_eq!(ws.closed().await.unwrap().code, 1011);
    assert_eq!(count(&host, "t").await, 2);
    // Other objects were never disturbed.
    let r = post(&host.url("/counter/other/increment"), "")
        .await
        .unwrap();
    assert_eq!(r.json()["count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_lists_by_prefix_with_limit_and_reverse() {
    let host = counter_host().start().await.unwrap();
    for k in ["b", "a", "d", "c"] {
        let r = http(
            "PUT",
            &host.url(&format!("/counter/kv/kv?key={k}")),
            &format!("v{k}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    }
    let all = get(&host.url("/counter/kv/list")).await.unwrap().json();
    assert_eq!(
        all,
        json!([
            ["kv:a", "va"],
            ["kv:b", "vb"],
            ["kv:c", "vc"],
            ["kv:d", "vd"]
        ])
    );
    let last2 = get(&host.url("/counter/kv/list?reverse=1&limit=2"))
        .await
        .unwrap()
        .json();
    assert_eq!(last2, json!([["kv:d", "vd"], ["kv:c", "vc"]]));
    let v = get(&host.url("/counter/kv/kv?key=c")).await.unwrap().json();
    assert_eq!(v["value"], "vc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_idle_eviction_and_restart() {
    let mut host = counter_host()
        .toml("runtime", "idle_timeout_ms = 200")
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        post(&host.url("/counter/durable/increment"), "")
            .await
            .unwrap();
    }
    let before = activations(&host, "durable").await;
    host.log
        .wait_for(&["evicted", "why=\"idle\""], 1)
        .await
        .unwrap();
    assert_eq!(count(&host, "durable").await, 3);
    assert_eq!(
        activations(&host, "durable").await,
        before + 1,
        "re-activated from storage"
    );

    host.restart().await.unwrap();
    assert_eq!(count(&host, "durable").await, 3);
    let r = post(&host.url("/counter/durable/increment"), "")
        .await
        .unwrap();
    assert_eq!(r.json()["count"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_outlive_eviction_and_the_auto_response_does_not_wake_the_object() {
    // One live instance at most: activating any other object evicts the previous one.
    let host = counter_host()
        .toml("runtime", "max_live_objects = 1")
        .start()
        .await
        .unwrap();
    let mut alice = Ws::connect(&host.ws_url("/counter/room/ws?name=alice&tag=red"))
        .await
        .unwrap();
    assert_eq!(alice.recv_json().await.unwrap()["type"], "hello");
    let mut bob = Ws::connect(&host.ws_url("/counter/room/ws?name=bob"))
        .await
        .unwrap();
    bob.recv_type("hello").await.unwrap();
    let base = activations(&host, "room").await;

    // Evict the room by activating another object.
    post(&host.url("/counter/elsewhere/increment"), "")
        .await
        .unwrap();
    host.log
        .wait_for(&["evicted", "name=room"], 1)
        .await
        .unwrap();

    // The host answers the auto-response pair itself.
    alice.send("ping").await.unwrap();
    assert_eq!(alice.recv().await.unwrap(), "pong");
    assert_eq!(
        activations(&host, "room").await,
        base + 1,
        "ping did not activate the room"
    );

    // Evicted again; a message re-activates the room and is delivered; the socket's
    // attachment and tags survived.
    post(&host.url("/counter/elsewhere/increment"), "")
        .await
        .unwrap();
    host.log
        .wait_for(&["evicted", "name=room"], 2)
        .await
        .unwrap();
    alice.send("whoami").await.unwrap();
    let who = alice.recv_type("whoami").await.unwrap();
    assert_eq!(who["attachment"], json!({ "name": "alice" }));
    assert_eq!(who["tags"], json!(["red"]));
    assert_eq!(activations(&host, "room").await, base + 2);

    // Broadcasts reach every socket, tagged ones only those with the tag.
    bob.send("broadcast hello all").await.unwrap();
    assert_eq!(
        alice.recv_type("broadcast").await.unwrap()["text"],
        "hello all"
    );
    assert_eq!(
        bob.recv_type("broadcast").await.unwrap()["text"],
        "hello all"
    );
    bob.send("tagcast red only reds").await.unwrap();
    assert_eq!(
        alice.recv_type("tagcast").await.unwrap()["text"],
        "only reds"
    );
    bob.send("echo marker").await.unwrap();
    assert_eq!(
        bob.recv().await.unwrap(),
        "marker",
        "bob got no tagcast before his echo"
    );

    // on-close reaches the object even while it is evicted.
    post(&host.url("/counter/elsewhere/increment"), "")
        .await
        .unwrap();
    host.log
        .wait_for(&["evicted", "name=room"], 3)
        .await
        .unwrap();
    bob.close(1000).await.unwrap();
    let closes = eventually("bob's close recorded", || async {
        let v = get(&host.url("/counter/room/closes")).await?.json();
        Ok(v.as_array().filter(|a| !a.is_empty()).cloned())
    })
    .await
    .unwrap();
    assert_eq!(closes, vec![json!(["close:bob", { "code": 1000 }])]);

    // The object can close a socket; the client sees its code.
    alice.send("close").await.unwrap();
    assert_eq!(alice.closed().await.unwrap().code, 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_can_refuse_a_websocket() {
    let host = counter_host().start().await.unwrap();
    let (status, body) = Ws::connect_refused(&host.ws_url("/counter/r/ws?name=reject"))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("rejected by the object"), "{body}");
    // Refused sockets are not kept.
    assert_eq!(
        get(&host.url("/counter/r/sockets")).await.unwrap().json(),
        json!(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let mut host = counter_host().start().await.unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/crash/ws?name=w"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    // Keep a window of increments in flight and kill the host mid-stream.
    let mut acked = 0i64;
    let mut sent = 0;
    for _ in 0..32 {
        ws.send("inc").await.unwrap();
        sent += 1;
    }
    loop {
        match ws.recv_json().await {
            Ok(v) if v["type"] == "count" => {
                acked = v["count"].as_i64().unwrap();
                if acked == 100 {
                    host.kill();
                } else if acked < 100 {
                    ws.send("inc").await.unwrap();
                    sent += 1;
                }
            }
            Ok(other) => panic!("unexpected frame {other}"),
            Err(_) => break,
        }
    }
    assert!(
        acked >= 100,
        "the client saw {acked} acknowledgements of {sent}"
    );
    host.restart().await.unwrap();
    let after = count(&host, "crash").await;
    assert!(
        after >= acked,
        "every acknowledged increment is durable: saw {acked}, stored {after}"
    );
    assert!(after <= sent as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    let mut host = counter_host().start().await.unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/bye/ws?name=w"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    post(&host.url("/counter/bye/increment"), "").await.unwrap();
    let waiter = tokio::spawn(async move { ws.closed().await });
    let status = tokio::task::spawn_blocking(move || {
        let s = host.terminate();
        (s, host)
    })
    .await
    .unwrap();
    assert!(status.0.unwrap().success());
    assert_eq!(waiter.await.unwrap().unwrap().code, 1001);
    let mut host = status.1;
    host.restart().await.unwrap();
    assert_eq!(count(&host, "bye").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_event_makes_others_wait_their_turn_not_interleave() {
    let host = counter_host().start().await.unwrap();
    let slow = tokio::spawn({
        let url = host.url("/counter/busy/slow?ms=300");
        async move { post(&url, "").await.unwrap().json() }
    });
    // Whichever runs first, the other sees its write: interleaved, both would read 0
    // and both answer 1.
    let quick = post(&host.url("/counter/busy/increment"), "")
        .await
        .unwrap()
        .json();
    let slow: Value = slow.await.unwrap();
    let mut counts = [
        slow["count"].as_i64().unwrap(),
        quick["count"].as_i64().unwrap(),
    ];
    counts.sort();
    assert_eq!(counts, [1, 2]);
    // Another object is served meanwhile.
    assert_eq!(count(&host, "free").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_waiting_in_a_wasi_poll_is_ended_by_the_wall_clock_limit() {
    let host = counter_host()
        .toml("limits", "wall_ms_per_event = 1000")
        .start()
        .await
        .unwrap();
    post(&host.url("/counter/sleeper/increment"), "")
        .await
        .unwrap();
    let sleep = tokio::spawn({
        let url = host.url("/counter/sleeper/sleep?ms=600000");
        async move { post(&url, "").await.unwrap() }
    });
    // Sleeping uses no CPU, so the CPU budget never ends it; meanwhile others are served.
    for i in 1..=3 {
        let r = post(&host.url("/counter/awake/increment"), "")
            .await
            .unwrap();
        assert_eq!(r.json()["count"], i);
    }
    let sleep = sleep.await.unwrap();
    assert_eq!(sleep.status, 500, "{}", sleep.body);
    assert!(
        sleep.body.contains("wall-clock limit of 1000 ms"),
        "{}",
        sleep.body
    );
    // The client's message carries a reference to the log line with the details.
    let error = sleep.json()["error"].as_str().unwrap().to_owned();
    let reference = error
        .rsplit_once("(ref ")
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no reference in {error:?}"));
    host.log
        .wait_for(&["event failed", &format!("reference={reference}")], 1)
        .await
        .unwrap();
    // Its write was discarded and the object works on a fresh instance.
    assert_eq!(count(&host, "sleeper").await, 1);
    let r = post(&host.url("/counter/sleeper/increment"), "")
        .await
        .unwrap();
    assert_eq!(r.json()["count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_guests_hit_their_limits_without_disturbing_others() {
    let host = counter_host()
        .toml("limits", "cpu_ms_per_event = 500")
        .toml("limits", "memory_bytes = 33554432")
        .start()
        .await
        .unwrap();
    post(&host.url("/counter/spinner/increment"), "")
        .await
        .unwrap();
    let spin = tokio::spawn({
        let url = host.url("/counter/spinner/spin");
        async move { post(&url, "").await.unwrap() }
    });
    // While one object spins, another keeps answering.
    for i in 1..=5 {
        let r = post(&host.url("/counter/healthy/increment"), "")
            .await
            .unwrap();
        assert_eq!(r.json()["count"], i);
    }
    let spin = spin.await.unwrap();
    assert_eq!(spin.status, 500);
    assert!(spin.body.contains("CPU time limit"), "{}", spin.body);
    assert_eq!(
        count(&host, "spinner").await,
        1,
        "the spinning event's write was discarded"
    );

    let hog = post(&host.url("/counter/hog/hog"), "").await.unwrap();
    assert_eq!(hog.status, 500, "{}", hog.body);
    assert_eq!(hog.json()["object"], "counter/hog");
    assert_eq!(count(&host, "hog").await, 0);
    let r = post(&host.url("/counter/hog/increment"), "").await.unwrap();
    assert_eq!(
        r.json()["count"],
        1,
        "a fresh instance serves the next event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_ping_gets_pong_and_bad_frames_get_close_codes() {
    use tokio_tungstenite::tungstenite::Message;
    let host = counter_host()
        .toml("limits", "max_message_bytes = 1024")
        .start()
        .await
        .unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/p/ws?name=p"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    ws.send_message(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    ws.send("echo after-ping").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), "after-ping");

    // A message over the limit closes that socket with 1009; others are unaffected.
    let mut other = Ws::connect(&host.ws_url("/counter/p/ws?name=q"))
        .await
        .unwrap();
    other.recv_type("hello").await.unwrap();
    ws.send(&"x".repeat(4096)).await.unwrap();
    assert_eq!(ws.closed().await.unwrap().code, 1009);
    other.send("echo still here").await.unwrap();
    assert_eq!(other.recv().await.unwrap(), "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_can_be_set_per_class() {
    let host = counter_host()
        .class("tiny", "counter")
        .toml("classes.tiny.limits", "max_body_bytes = 10")
        .start()
        .await
        .unwrap();
    let body = "x".repeat(100);
    let r = http("PUT", &host.url("/tiny/a/kv?key=k"), &body)
        .await
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("10 bytes"));
    let r = http("PUT", &host.url("/counter/a/kv?key=k"), &body)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_socket_attachment_is_bounded() {
    let host = counter_host()
        .toml("limits", "max_attachment_bytes = 32")
        .start()
        .await
        .unwrap();
    let long = "n".repeat(100);
    let (status, body) = Ws::connect_refused(&host.ws_url(&format!("/counter/att/ws?name={long}")))
        .await
        .unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("attachment of"), "{body}");
    // A small one is fine, and the object keeps no trace of the refused socket.
    let mut ws = Ws::connect(&host.ws_url("/counter/att/ws?name=ok"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    assert_eq!(
        get(&host.url("/counter/att/sockets")).await.unwrap().json(),
        json!(1)
    );
}
