//! End-to-end tests of the Connect Four class (`guests/game`, protocol in
//! `docs/game-protocol.md`) over a real `lodge` process on loopback: the lobby's pairing,
//! seats and tokens, refused moves that change nothing, wins, a draw, resignation and
//! rematch, the turn clock on the object's alarm (also while the room is evicted and
//! across restarts), reconnecting with a token (after a close, an eviction, SIGKILL), the
//! empty-room cleanup, bad input; and the two web pages driven in headless Chromium
//! (`tests/game-browser/`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lodge_tests::{Host, HostConfig, Ws, eventually, get, http, post, repo_root};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A host serving the game; `LODGE_GAME_WASM` points the tests at another build of the
/// component (e.g. a deliberately broken one, to see the tests catch it).
fn game_host() -> HostConfig {
    match std::env::var_os("LODGE_GAME_WASM") {
        Some(path) => HostConfig::new().class_file("game", PathBuf::from(path)),
        None => HostConfig::new().class("game", "game"),
    }
}

/// The room's stored state as `GET /game/{room}/state` shows it, without the server's
/// clock (`now`), which differs on every read.
async fn stored(host: &Host, room: &str) -> Value {
    let r = get(&host.url(&format!("/game/{room}/state")))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.content_type.starts_with("application/json"), "{r:?}");
    let mut v = r.json();
    v.as_object_mut().unwrap().remove("now");
    v
}

/// `[[row, col], ...]` as a set, for comparing winning cells in any order.
fn cells(v: &Value) -> BTreeSet<(u64, u64)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list of cells: {v}"))
        .iter()
        .map(|c| (c[0].as_u64().unwrap(), c[1].as_u64().unwrap()))
        .collect()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Opens a room socket; returns it with the frames of its connect event: an optional
/// `error` (`bad_token`), the `seat` or `spectator` frame, then the first `state`.
async fn open(host: &Host, room: &str, query: &str) -> (Ws, Vec<Value>) {
    let mut ws = Ws::connect(&host.ws_url(&format!("/game/{room}/ws?{query}")))
        .await
        .unwrap();
    let mut frames = Vec::new();
    loop {
        let f = ws.recv_json().await.unwrap();
        let done = f["type"] == "state";
        frames.push(f);
        if done {
            return (ws, frames);
        }
    }
}

/// Someone holding a seat.
struct Player {
    ws: Ws,
    token: String,
    color: String,
    slot: u64,
}

/// Joins `room` and expects a seat (`query` must not present a token).
async fn sit(host: &Host, room: &str, query: &str) -> (Player, Value) {
    let (ws, frames) = open(host, room, query).await;
    assert_eq!(frames.len(), 2, "seat then state: {frames:?}");
    let seat = &frames[0];
    assert_eq!(seat["type"], "seat", "{seat}");
    let token = seat["token"].as_str().unwrap().to_string();
    assert!(is_hex(&token, 32), "a token is 32 hex digits: {token}");
    let player = Player {
        ws,
        token,
        color: seat["color"].as_str().unwrap().to_string(),
        slot: seat["slot"].as_u64().unwrap(),
    };
    (player, frames[1].clone())
}

/// Two seated players (`ann` red, `bob` yellow) in a game that just started, and the
/// spectators that joined after them.
struct Table {
    room: String,
    red: Player,
    yellow: Player,
    watchers: Vec<Ws>,
}

impl Table {
    async fn seat(host: &Host, room: &str) -> Table {
        let (mut red, state) = sit(host, room, "name=ann").await;
        assert_eq!(
            (red.color.as_str(), red.slot),
            ("red", 0),
            "first joiner is red"
        );
        assert_eq!(state["status"], "waiting");
        assert_eq!(state["game"], 0);
        let (yellow, state) = sit(host, room, "name=bob").await;
        assert_eq!((yellow.color.as_str(), yellow.slot), ("yellow", 1));
        assert_ne!(red.token, yellow.token);
        assert_eq!(state["status"], "playing", "{state}");
        assert_eq!(state["turn"], "red");
        assert_eq!(state["game"], 1);
        // The first player learns that the game started.
        let seen = red.ws.recv_json().await.unwrap();
        assert_eq!(seen, state, "both see the same state");
        Table {
            room: room.to_string(),
            red,
            yellow,
            watchers: Vec::new(),
        }
    }

    async fn watch(&mut self, host: &Host, query: &str) -> Value {
        let (ws, frames) = open(host, &self.room, query).await;
        assert_eq!(frames[0]["type"], "spectator", "{frames:?}");
        self.watchers.push(ws);
        let state = frames.last().unwrap().clone();
        // Everyone else sees the spectator count change.
        assert_eq!(self.next_state(1).await, state);
        state
    }

    fn player(&mut self, color: &str) -> &mut Player {
        match color {
            "red" => &mut self.red,
            "yellow" => &mut self.yellow,
            _ => panic!("no color {color}"),
        }
    }

    /// The next frame of every socket except the last `skip` watchers: it must be a
    /// `state`, the same for all. Returns it.
    async fn next_state(&mut self, skip: usize) -> Value {
        let n = self.watchers.len() - skip;
        let mut seen: Option<Value> = None;
        let sockets = [&mut self.red.ws, &mut self.yellow.ws]
            .into_iter()
            .chain(self.watchers[..n].iter_mut());
        for ws in sockets {
            let f = ws.recv_json().await.unwrap();
            assert_eq!(f["type"], "state", "expected a state frame: {f}");
            match &seen {
                Some(s) => assert_eq!(&f, s, "everyone gets the same state"),
                None => seen = Some(f),
            }
        }
        seen.unwrap()
    }

    /// `color` drops a disc into `col`; every socket's next frame is the new state.
    async fn play(&mut self, color: &str, col: u64) -> Value {
        self.player(color)
            .ws
            .send_json(&json!({"type": "move", "column": col}))
            .await
            .unwrap();
        let state = self.next_state(0).await;
        let last = state["moves"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["color"], color, "{state}");
        assert_eq!(last["column"], col, "{state}");
        let row = last["row"].as_u64().unwrap() as usize;
        assert_eq!(state["board"][row][col as usize], color, "{state}");
        state
    }

    /// Plays columns alternately, red first; returns the last state.
    async fn play_all(&mut self, first: &str, columns: &[u64]) -> Value {
        let mut color = first.to_string();
        let mut state = Value::Null;
        for (i, &c) in columns.iter().enumerate() {
            if i > 0 {
                assert_eq!(state["status"], "playing", "move {i}: {state}");
            }
            state = self.play(&color, c).await;
            color = if color == "red" { "yellow" } else { "red" }.into();
        }
        state
    }
}

/// Sends `frame` from `ws` and expects an `error` with `code` as its very next frame.
async fn refused(ws: &mut Ws, frame: &str, code: &str) {
    ws.send(frame).await.unwrap();
    let f = ws.recv_json().await.unwrap();
    assert_eq!(f["type"], "error", "{frame} -> {f}");
    assert_eq!(f["code"], code, "{frame} -> {f}");
    assert!(!f["error"].as_str().unwrap().is_empty(), "{f}");
}

/// The lines of the host's log about `room` that show its lifecycle, in order: `activated`,
/// `evicted`, `alarm` (an alarm was handled).
fn lifecycle(host: &Host, room: &str) -> Vec<&'static str> {
    let name = format!("name={room}");
    let object = format!("game/{room}");
    host.log
        .all()
        .iter()
        .filter_map(|l| {
            if l.contains("alarm handled") && l.contains(&object) {
                Some("alarm")
            } else if l.contains(&name) && l.contains(" evicted") {
                Some("evicted")
            } else if l.contains(&name) && l.contains(" activated") {
                Some("activated")
            } else {
                None
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Lobby
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lobby_pairs_waiting_players_into_one_room() {
    let host = game_host().start().await.unwrap();
    let lobby = |q: &str| host.ws_url(&format!("/game/lobby/ws{q}"));

    // A socket without a name only watches the count.
    let mut watcher = Ws::connect(&lobby("")).await.unwrap();
    assert_eq!(
        watcher.recv_json().await.unwrap(),
        json!({"type": "lobby", "waiting": 0})
    );

    let mut ann = Ws::connect(&lobby("?name=ann")).await.unwrap();
    assert_eq!(
        ann.recv_json().await.unwrap(),
        json!({"type": "queued", "name": "ann"})
    );
    assert_eq!(
        ann.recv_json().await.unwrap(),
        json!({"type": "lobby", "waiting": 1})
    );
    assert_eq!(watcher.recv_json().await.unwrap()["waiting"], 1);
    let state = get(&host.url("/game/lobby/state")).await.unwrap().json();
    assert_eq!(state["waiting"], 1, "{state}");
    assert_eq!(state["connected"], 2, "{state}");

    let mut bob = Ws::connect(&lobby("?name=bob")).await.unwrap();
    assert_eq!(bob.recv_type("queued").await.unwrap()["name"], "bob");
    let a = ann.recv_type("matched").await.unwrap();
    let b = bob.recv_type("matched").await.unwrap();
    let room = a["room"].as_str().unwrap().to_string();
    assert!(is_hex(&room, 16), "a minted room name: {room}");
    assert_eq!(b["room"], room.as_str(), "both go to the same room");
    assert_eq!(
        (a["name"].as_str(), a["opponent"].as_str()),
        (Some("ann"), Some("bob"))
    );
    assert_eq!(
        (b["name"].as_str(), b["opponent"].as_str()),
        (Some("bob"), Some("ann"))
    );
    assert_eq!(
        watcher.recv_type("lobby").await.unwrap()["waiting"],
        0,
        "the count drops once they are paired"
    );
    for ws in [&mut ann, &mut bob] {
        assert_eq!(ws.recv_type("lobby").await.unwrap()["waiting"], 0);
    }

    // The pair meets in that room: seats in the order they arrive.
    let (ann_seat, _) = sit(&host, &room, "name=ann").await;
    let (bob_seat, state) = sit(&host, &room, "name=bob").await;
    assert_eq!(ann_seat.color, "red");
    assert_eq!(bob_seat.color, "yellow");
    assert_eq!(state["room"], room.as_str());
    assert_eq!(state["players"]["red"]["name"], "ann");
    assert_eq!(state["players"]["yellow"]["name"], "bob");

    // The watcher asks to play, changes its mind, asks again: first come, first served.
    watcher
        .send_json(&json!({"type": "play", "name": "cy"}))
        .await
        .unwrap();
    assert_eq!(watcher.recv_type("queued").await.unwrap()["name"], "cy");
    watcher.send(r#"{"type":"cancel"}"#).await.unwrap();
    watcher.recv_type("cancelled").await.unwrap();
    assert_eq!(watcher.recv_type("lobby").await.unwrap()["waiting"], 0);
    let mut dee = Ws::connect(&lobby("?name=dee")).await.unwrap();
    dee.recv_type("queued").await.unwrap();
    watcher.send(r#"{"type":"play"}"#).await.unwrap();
    let m = watcher.recv_type("matched").await.unwrap();
    assert_eq!(
        (m["name"].as_str(), m["opponent"].as_str()),
        (Some("cy"), Some("dee"))
    );
    let d = dee.recv_type("matched").await.unwrap();
    assert_eq!(d["room"], m["room"]);
    assert_ne!(m["room"], room.as_str(), "every pair gets a new room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lobby_never_pairs_two_tabs_of_one_browser() {
    let host = game_host().start().await.unwrap();
    let lobby = |q: &str| host.ws_url(&format!("/game/lobby/ws{q}"));
    let mut first = Ws::connect(&lobby("?name=ann&client=browserA"))
        .await
        .unwrap();
    first.recv_type("queued").await.unwrap();
    let mut second = Ws::connect(&lobby("?name=ann&client=browserA"))
        .await
        .unwrap();
    second.recv_type("queued").await.unwrap();
    // Both tabs wait: the count says 2, and nobody was matched before it.
    for ws in [&mut first, &mut second] {
        loop {
            let frame = ws.recv_json().await.unwrap();
            assert_ne!(
                frame["type"], "matched",
                "two tabs of one browser were paired"
            );
            if frame["type"] == "lobby" && frame["waiting"] == 2 {
                break;
            }
        }
    }
    // Someone else arrives: they play the tab that waited longest.
    let mut bob = Ws::connect(&lobby("?name=bob&client=browserB"))
        .await
        .unwrap();
    let b = bob.recv_type("matched").await.unwrap();
    let a = first.recv_type("matched").await.unwrap();
    assert_eq!(a["room"], b["room"]);
    assert_eq!(a["opponent"], "bob");
    // The second tab keeps waiting.
    let count = second.recv_type("lobby").await.unwrap();
    assert_eq!(count["waiting"], 1, "{count}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lobby_queue_survives_eviction_and_forgets_closed_sockets() {
    // One live object at most: touching a room evicts the lobby when the test says so.
    let host = game_host()
        .toml("runtime", "max_live_objects = 1")
        .start()
        .await
        .unwrap();
    let lobby = |q: &str| host.ws_url(&format!("/game/lobby/ws{q}"));
    let mut watcher = Ws::connect(&lobby("")).await.unwrap();
    assert_eq!(watcher.recv_type("lobby").await.unwrap()["waiting"], 0);

    // Ann waits, then goes away: she leaves the line by herself.
    let mut ann = Ws::connect(&lobby("?name=ann")).await.unwrap();
    ann.recv_type("queued").await.unwrap();
    assert_eq!(watcher.recv_type("lobby").await.unwrap()["waiting"], 1);
    ann.close(1000).await.unwrap();
    assert_eq!(watcher.recv_type("lobby").await.unwrap()["waiting"], 0);

    // Cy waits while the lobby is evicted; his place is kept on his socket.
    let mut cy = Ws::connect(&lobby("?name=cy")).await.unwrap();
    cy.recv_type("queued").await.unwrap();
    assert_eq!(watcher.recv_type("lobby").await.unwrap()["waiting"], 1);
    assert_eq!(
        get(&host.url("/game/elsewhere/state"))
            .await
            .unwrap()
            .status,
        200
    );
    host.log
        .wait_for(&["evicted", "name=lobby"], 1)
        .await
        .unwrap();

    // Bob arrives: he is paired with cy, the one still waiting.
    let mut bob = Ws::connect(&lobby("?name=bob")).await.unwrap();
    let b = bob.recv_type("matched").await.unwrap();
    assert_eq!(b["opponent"], "cy", "{b}");
    let c = cy.recv_type("matched").await.unwrap();
    assert_eq!(c["opponent"], "bob");
    assert_eq!(c["room"], b["room"]);
    host.log
        .wait_for(&["activated", "name=lobby"], 2)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_mints_a_room_to_share_and_any_name_is_a_room() {
    let host = game_host().start().await.unwrap();
    let mut ws = Ws::connect(&host.ws_url("/game/lobby/ws")).await.unwrap();
    ws.recv_type("lobby").await.unwrap();
    ws.send(r#"{"type":"create"}"#).await.unwrap();
    let created = ws.recv_type("created").await.unwrap();
    let room = created["room"].as_str().unwrap().to_string();
    assert!(is_hex(&room, 16), "{created}");
    let r = post(&host.url("/game/lobby/create"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let other = r.json()["room"].as_str().unwrap().to_string();
    assert!(is_hex(&other, 16), "{other}");
    assert_ne!(room, other, "names are random");

    // Nothing is stored for a created room until someone sits down.
    let fresh = stored(&host, &room).await;
    assert_eq!(fresh["status"], "waiting");
    assert_eq!(fresh["room"], room.as_str());
    assert_eq!(fresh["players"], json!({"red": null, "yellow": null}));

    // The creator and a friend with the link play there.
    let mut table = Table::seat(&host, &room).await;
    table.play("red", 3).await;
    assert_eq!(stored(&host, &room).await["moves"][0]["column"], 3);

    // A hand-picked name works the same way; the page is served at the room's root.
    let page = get(&host.url("/game/friday-night")).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert!(page.body.contains("id=\"board\""));
    let lobby = get(&host.url("/game/lobby")).await.unwrap();
    assert!(lobby.body.contains("id=\"play-button\""));
    let (p, state) = sit(&host, "friday-night", "name=eve").await;
    assert_eq!(p.color, "red");
    assert_eq!(state["room"], "friday-night");
    assert_eq!(state["players"]["red"]["name"], "eve");
}

// ---------------------------------------------------------------------------------------
// Seats, spectators, refused moves
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seats_with_secret_tokens_then_spectators_who_see_every_state() {
    let host = game_host().start().await.unwrap();
    let mut t = Table::seat(&host, "seats").await;

    // A third joiner watches, also without asking to; so does one who asks.
    let s = t.watch(&host, "name=cy").await;
    assert_eq!(s["spectators"], 1);
    let s = t.watch(&host, "name=dee&spectate=1").await;
    assert_eq!(s["spectators"], 2);
    assert_eq!(s["players"]["red"]["name"], "ann");
    assert_eq!(s["players"]["yellow"]["name"], "bob");
    assert_eq!(s["players"]["red"]["connected"], true);
    assert_eq!(s["players"]["yellow"]["connected"], true);

    // Spectators get every state, move by move (Table::play checks every socket).
    let s = t.play_all("red", &[3, 3, 4]).await;
    assert_eq!(s["moves"].as_array().unwrap().len(), 3);
    assert_eq!(s["turn"], "yellow");

    // Tokens are never shown to anyone else, nor stored in the view.
    let view = stored(&host, "seats").await.to_string();
    for token in [&t.red.token, &t.yellow.token] {
        assert!(!view.contains(token.as_str()), "{view}");
        assert!(!s.to_string().contains(token.as_str()));
    }

    // A spectator leaving is seen by everyone left.
    let w = t.watchers.pop().unwrap();
    w.close(1000).await.unwrap();
    assert_eq!(t.next_state(0).await["spectators"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_can_move_for_another_seat_and_refusals_change_nothing() {
    let host = game_host().start().await.unwrap();
    let room = "rules";
    let mut t = Table::seat(&host, room).await;
    t.watch(&host, "name=cy").await;
    let before = stored(&host, room).await;

    // A spectator can do nothing.
    let spectator = &mut t.watchers[0];
    refused(spectator, r#"{"type":"move","column":3}"#, "not_seated").await;
    refused(spectator, r#"{"type":"resign"}"#, "not_seated").await;
    refused(spectator, r#"{"type":"rematch"}"#, "not_seated").await;
    // Naming a seat or a token in the frame changes nothing: seats come from the socket.
    let forged =
        json!({"type": "move", "column": 3, "color": "red", "slot": 0, "token": t.red.token});
    refused(spectator, &forged.to_string(), "not_seated").await;

    // Yellow cannot move on red's turn, not even claiming to be red.
    refused(
        &mut t.yellow.ws,
        r#"{"type":"move","column":3}"#,
        "not_your_turn",
    )
    .await;
    let forged =
        json!({"type": "move", "column": 3, "color": "red", "slot": 0, "token": t.red.token});
    refused(&mut t.yellow.ws, &forged.to_string(), "not_your_turn").await;

    // Columns must be integers 0..=6.
    for bad in [
        r#"{"type":"move","column":7}"#,
        r#"{"type":"move","column":-1}"#,
        r#"{"type":"move","column":"3"}"#,
        r#"{"type":"move","column":2.5}"#,
        r#"{"type":"move","column":null}"#,
        r#"{"type":"move"}"#,
        r#"{"type":"move","column":4294967296}"#,
    ] {
        refused(&mut t.red.ws, bad, "bad_column").await;
    }
    refused(&mut t.red.ws, r#"{"type":"rematch"}"#, "not_over").await;
    assert_eq!(stored(&host, room).await, before, "refusals change nothing");

    // Fill column 0 (alternating colors: no four), then it is full.
    t.play_all("red", &[0, 0, 0, 0, 0, 0]).await;
    let before = stored(&host, room).await;
    assert_eq!(before["board"][0][0], "yellow");
    refused(
        &mut t.red.ws,
        r#"{"type":"move","column":0}"#,
        "column_full",
    )
    .await;
    // Red is still to move; yellow still cannot.
    refused(
        &mut t.yellow.ws,
        r#"{"type":"move","column":1}"#,
        "not_your_turn",
    )
    .await;
    assert_eq!(stored(&host, room).await, before);

    // No refused frame made anyone else receive anything: the next frame every socket
    // gets is the state of the next accepted move.
    let s = t.play("red", 1).await;
    assert_eq!(s["moves"].as_array().unwrap().len(), 7);

    // Red wins along the bottom row; then nothing more is accepted.
    let s = t.play_all("yellow", &[1, 2, 2, 3]).await;
    assert_eq!(s["status"], "won", "{s}");
    assert_eq!(s["winner"], "red");
    let before = stored(&host, room).await;
    refused(
        &mut t.yellow.ws,
        r#"{"type":"move","column":4}"#,
        "not_playing",
    )
    .await;
    refused(
        &mut t.red.ws,
        r#"{"type":"move","column":4}"#,
        "not_playing",
    )
    .await;
    refused(&mut t.yellow.ws, r#"{"type":"resign"}"#, "not_playing").await;
    refused(
        &mut t.watchers[0],
        r#"{"type":"move","column":4}"#,
        "not_seated",
    )
    .await;
    assert_eq!(
        stored(&host, room).await,
        before,
        "a finished game stays finished"
    );
}

// ---------------------------------------------------------------------------------------
// Games to the end
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vertical_win_is_stored_with_its_cells() {
    let mut host = game_host().start().await.unwrap();
    let room = "vertical";
    let mut t = Table::seat(&host, room).await;
    t.watch(&host, "name=cy").await;
    let s = t.play_all("red", &[2, 5, 2, 5, 2, 5, 2]).await;
    assert_eq!(s["status"], "won");
    assert_eq!(s["winner"], "red");
    assert_eq!(s["reason"], "four_in_a_row");
    assert_eq!(s["turn"], Value::Null);
    assert_eq!(s["turn_deadline"], Value::Null, "the clock stops");
    assert_eq!(
        cells(&s["winning_cells"]),
        BTreeSet::from([(2, 2), (3, 2), (4, 2), (5, 2)])
    );
    // Stored, and still there after a crash.
    let mut expected = s.clone();
    expected.as_object_mut().unwrap().remove("now");
    assert_eq!(stored(&host, room).await, expected);
    drop(t);
    host.kill();
    host.restart().await.unwrap();
    let after = stored(&host, room).await;
    assert_eq!(after["status"], "won");
    assert_eq!(after["winner"], "red");
    assert_eq!(after["winning_cells"], expected["winning_cells"]);
    assert_eq!(after["moves"], expected["moves"]);
    assert_eq!(after["board"], expected["board"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diagonal_win_for_yellow() {
    let host = game_host().start().await.unwrap();
    let room = "diagonal";
    let mut t = Table::seat(&host, room).await;
    // Yellow builds (5,6) (4,5) (3,4) (2,3); red fills underneath.
    let s = t
        .play_all("red", &[0, 6, 5, 5, 4, 4, 3, 4, 3, 3, 0, 3])
        .await;
    assert_eq!(s["status"], "won", "{s}");
    assert_eq!(s["winner"], "yellow");
    assert_eq!(s["reason"], "four_in_a_row");
    assert_eq!(
        cells(&s["winning_cells"]),
        BTreeSet::from([(5, 6), (4, 5), (3, 4), (2, 3)])
    );
    let st = stored(&host, room).await;
    assert_eq!(st["winner"], "yellow");
    assert_eq!(cells(&st["winning_cells"]), cells(&s["winning_cells"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_board_is_a_draw() {
    let host = game_host().start().await.unwrap();
    let room = "draw";
    let mut t = Table::seat(&host, room).await;
    // Columns filled in pairs so that no four ever line up (the guest's unit test uses
    // the same order).
    let order = [
        0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 2, 3, 2, 3, 2, 3, 3, 2, 3, 2, 3, 2, 4, 5, 4, 5, 4, 5,
        5, 4, 5, 4, 5, 4, 6, 6, 6, 6, 6, 6,
    ];
    let s = t.play_all("red", &order).await;
    assert_eq!(s["status"], "draw", "{s}");
    assert_eq!(s["reason"], "board_full");
    assert_eq!(s["winner"], Value::Null);
    assert_eq!(s["moves"].as_array().unwrap().len(), 42);
    assert_eq!(stored(&host, room).await["status"], "draw");
    refused(
        &mut t.red.ws,
        r#"{"type":"move","column":0}"#,
        "not_playing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resignation_ends_the_game_and_a_rematch_swaps_colors() {
    let host = game_host().start().await.unwrap();
    let room = "resign";
    let mut t = Table::seat(&host, room).await;
    t.play_all("red", &[3, 3]).await;
    t.red.ws.send(r#"{"type":"resign"}"#).await.unwrap();
    let s = t.next_state(0).await;
    assert_eq!(s["status"], "won");
    assert_eq!(s["winner"], "yellow");
    assert_eq!(s["reason"], "resign");
    assert_eq!(s["turn_deadline"], Value::Null);
    assert_eq!(stored(&host, room).await["reason"], "resign");

    // Both ask for a rematch: game 2 starts at once with the colors swapped.
    t.red.ws.send(r#"{"type":"rematch"}"#).await.unwrap();
    let s = t.next_state(0).await;
    assert_eq!(s["players"]["red"]["rematch"], true);
    assert_eq!(s["players"]["yellow"]["rematch"], false);
    assert_eq!(s["status"], "won", "nothing starts on one request");
    t.yellow.ws.send(r#"{"type":"rematch"}"#).await.unwrap();
    // Each seated socket first learns its new color, then the new game.
    let ann = t.red.ws.recv_json().await.unwrap();
    let bob = t.yellow.ws.recv_json().await.unwrap();
    assert_eq!(
        (ann["type"].as_str(), ann["color"].as_str()),
        (Some("seat"), Some("yellow"))
    );
    assert_eq!(
        (bob["type"].as_str(), bob["color"].as_str()),
        (Some("seat"), Some("red"))
    );
    assert_eq!(ann["token"], t.red.token.as_str(), "same seat, same token");
    assert_eq!(ann["slot"], 0);
    let s = t.next_state(0).await;
    assert_eq!(s["game"], 2);
    assert_eq!(s["status"], "playing");
    assert_eq!(s["turn"], "red");
    assert_eq!(s["players"]["red"]["name"], "bob");
    assert_eq!(s["players"]["yellow"]["name"], "ann");
    assert_eq!(s["moves"], json!([]));
    // Bob (slot 1) now plays red and moves first.
    std::mem::swap(&mut t.red, &mut t.yellow);
    refused(
        &mut t.yellow.ws,
        r#"{"type":"move","column":0}"#,
        "not_your_turn",
    )
    .await;
    let s = t.play("red", 0).await;
    assert_eq!(s["players"]["red"]["name"], "bob");
}

// ---------------------------------------------------------------------------------------
// The turn clock
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_to_move_forfeits_on_time() {
    let host = game_host()
        .setting("game", "turn_seconds", "1")
        .start()
        .await
        .unwrap();
    // Red never moves: yellow wins.
    let mut t = Table::seat(&host, "slow-red").await;
    let started = stored(&host, "slow-red").await;
    assert_eq!(started["turn_seconds"], 1);
    assert!(started["turn_deadline"].as_u64().is_some(), "{started}");
    let s = t.next_state(0).await;
    assert_eq!(s["status"], "won", "{s}");
    assert_eq!(s["winner"], "yellow");
    assert_eq!(s["reason"], "timeout");
    assert_eq!(s["turn_deadline"], Value::Null);
    assert_eq!(stored(&host, "slow-red").await["reason"], "timeout");
    refused(
        &mut t.red.ws,
        r#"{"type":"move","column":0}"#,
        "not_playing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_move_restarts_the_turn_clock() {
    let host = game_host()
        .setting("game", "turn_seconds", "1")
        .start()
        .await
        .unwrap();
    let mut t = Table::seat(&host, "slow-yellow").await;
    let first = stored(&host, "slow-yellow").await["turn_deadline"]
        .as_u64()
        .unwrap();
    // Red moves at once; the deadline moves on to yellow's turn, and yellow forfeits.
    let s = t.play("red", 3).await;
    let second = s["turn_deadline"].as_u64().unwrap();
    assert!(second >= first, "{second} < {first}");
    let s = t.next_state(0).await;
    assert_eq!(s["status"], "won", "{s}");
    assert_eq!(s["winner"], "red", "yellow ran out of time: {s}");
    assert_eq!(s["reason"], "timeout");
    assert_eq!(s["moves"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turn_clock_runs_out_while_the_room_is_evicted() {
    let host = game_host()
        .setting("game", "turn_seconds", "2")
        .toml("runtime", "idle_timeout_ms = 100")
        .start()
        .await
        .unwrap();
    let room = "sleepy";
    let mut t = Table::seat(&host, room).await;
    host.log
        .wait_for(&["evicted", &format!("name={room}")], 1)
        .await
        .unwrap();
    // The alarm wakes the room, and the sockets, held by the host while it slept, get the
    // result.
    let s = t.next_state(0).await;
    assert_eq!(s["status"], "won", "{s}");
    assert_eq!(s["winner"], "yellow");
    assert_eq!(s["reason"], "timeout");
    host.log
        .wait_for(&["alarm handled", &format!("game/{room}")], 1)
        .await
        .unwrap();
    let life = lifecycle(&host, room);
    let alarm = life.iter().position(|&k| k == "alarm").unwrap();
    assert_eq!(
        &life[alarm - 2..=alarm],
        ["evicted", "activated", "alarm"],
        "the alarm found the room evicted and woke it: {life:?}"
    );
    assert_eq!(stored(&host, room).await["reason"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_the_host_was_down_for_gets_that_time_back_then_ends_if_nobody_returns() {
    let mut host = game_host()
        .setting("game", "turn_seconds", "1")
        .start()
        .await
        .unwrap();
    let room = "outage";
    let t = Table::seat(&host, room).await;
    let deadline = stored(&host, room).await["turn_deadline"].as_u64().unwrap();
    host.kill();
    drop(t);
    // Let the turn run out while no host runs.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(deadline.saturating_sub(now) + 200)).await;
    host.restart().await.unwrap();
    // The alarm that fires at start-up finds the deadline passed during the outage: the
    // outage is nobody's time, so the deadline moves on instead of ending the game.
    host.log
        .wait_for(&["alarm handled", &format!("game/{room}")], 1)
        .await
        .unwrap();
    // Nobody came back: once the turn's own time is over, the game is abandoned, nobody
    // wins; cleanup is scheduled.
    host.log
        .wait_for(&["alarm handled", &format!("game/{room}")], 2)
        .await
        .unwrap();
    let s = stored(&host, room).await;
    assert_eq!(s["status"], "abandoned", "{s}");
    assert_eq!(s["reason"], "abandoned");
    assert_eq!(s["winner"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_the_host_was_down_is_nobodys_turn() {
    let mut host = game_host()
        .setting("game", "turn_seconds", "2")
        .start()
        .await
        .unwrap();
    let room = "paused";
    let t = Table::seat(&host, room).await;
    let red_token = t.red.token.clone();
    drop(t);
    host.kill();
    // Down longer than the whole turn (the outage has to last: this is its length).
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    host.restart().await.unwrap();
    host.log
        .wait_for(&["the host was down since its last sign of life"], 1)
        .await
        .unwrap();
    // Red, to move, comes back: the game is still on and red can play.
    let (mut red, frames) = open(&host, room, &format!("name=ann&token={red_token}")).await;
    let s = frames.last().unwrap();
    assert_eq!(s["status"], "playing", "the outage was charged to red: {s}");
    red.send_json(&json!({"type": "move", "column": 3}))
        .await
        .unwrap();
    let s = loop {
        let s = red.recv_json().await.unwrap();
        if s["type"] == "state" && s["moves"].as_array().is_some_and(|m| !m.is_empty()) {
            break s;
        }
        assert_ne!(s["status"], "won", "{s}");
    };
    assert_eq!(s["moves"][0]["column"], 3, "{s}");
    assert_eq!(s["status"], "playing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turn_clock_survives_a_restart() {
    // Long enough for a restart and a reconnect to fit in the first turn.
    let mut host = game_host()
        .setting("game", "turn_seconds", "5")
        .start()
        .await
        .unwrap();
    let room = "restarted";
    let t = Table::seat(&host, room).await;
    let yellow_token = t.yellow.token.clone();
    drop(t);
    host.kill();
    host.restart().await.unwrap();
    // Yellow comes back; red (to move) does not, and forfeits on the clock set before
    // the restart.
    let (mut yellow, frames) = open(&host, room, &format!("name=bob&token={yellow_token}")).await;
    assert_eq!(frames[0]["type"], "seat", "{frames:?}");
    assert_eq!(frames[0]["color"], "yellow");
    let s = &frames[1];
    assert_eq!(
        s["status"], "playing",
        "the restart and reconnect took longer than the turn: {s}"
    );
    assert_eq!(s["players"]["red"]["connected"], false);
    assert_eq!(s["players"]["yellow"]["connected"], true);
    // (The clock gets the outage back first: states with a later deadline may come.)
    let s = loop {
        let s = yellow.recv_json().await.unwrap();
        assert_eq!(s["type"], "state");
        if s["status"] != "playing" {
            break s;
        }
    };
    assert_eq!(s["status"], "won", "{s}");
    assert_eq!(s["winner"], "yellow");
    assert_eq!(s["reason"], "timeout");
    assert_eq!(s["moves"], json!([]));
}

// ---------------------------------------------------------------------------------------
// Reconnecting
// ---------------------------------------------------------------------------------------

/// Checks a reconnect: the seat frame gives back the seat and token, the state is the
/// full game, with this seat connected again.
fn assert_seat_back(frames: &[Value], color: &str, token: &str, moves: &Value) {
    assert_eq!(
        frames.len(),
        2,
        "no bad_token, then seat and state: {frames:?}"
    );
    assert_eq!(frames[0]["type"], "seat");
    assert_eq!(frames[0]["color"], color);
    assert_eq!(frames[0]["token"], token);
    let s = &frames[1];
    assert_eq!(&s["moves"], moves, "the whole game is back");
    assert_eq!(s["status"], "playing");
    assert_eq!(s["players"][color]["connected"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_gets_the_seat_back_with_the_token() {
    let host = game_host().start().await.unwrap();
    let room = "comeback";
    let mut t = Table::seat(&host, room).await;
    let s = t.play_all("red", &[3, 4]).await;
    let moves = s["moves"].clone();

    // Red closes; yellow sees red go.
    let Table {
        red,
        mut yellow,
        watchers,
        ..
    } = t;
    red.ws.close(1000).await.unwrap();
    let s = yellow.ws.recv_json().await.unwrap();
    assert_eq!(s["players"]["red"]["connected"], false, "{s}");
    assert_eq!(s["players"]["yellow"]["connected"], true);

    // With the token (and whatever name), the seat comes back; yellow sees red again.
    let (ws, frames) = open(&host, room, &format!("name=imposter&token={}", red.token)).await;
    assert_seat_back(&frames, "red", &red.token, &moves);
    assert_eq!(frames[0]["name"], "ann", "the seat keeps its name");
    let s = yellow.ws.recv_json().await.unwrap();
    assert_eq!(s["players"]["red"]["connected"], true, "{s}");
    assert_eq!(s, frames[1]);
    let mut t = Table {
        room: room.into(),
        red: Player { ws, ..red },
        yellow,
        watchers,
    };
    // The seat plays on from there.
    t.play("red", 3).await;

    // A second tab with the same token (even asking to watch) holds the same seat.
    let (mut tab, frames) = open(
        &host,
        room,
        &format!("name=ann&spectate=1&token={}", t.red.token),
    )
    .await;
    assert_eq!(frames[0]["type"], "seat");
    assert_eq!(frames[0]["color"], "red");
    assert_eq!(t.next_state(0).await, frames[1]);
    refused(&mut tab, r#"{"type":"move","column":0}"#, "not_your_turn").await;
    // One tab closing leaves the seat connected through the other.
    tab.close(1000).await.unwrap();
    let s = t.next_state(0).await;
    assert_eq!(s["players"]["red"]["connected"], true, "{s}");
    // The other tab still plays.
    t.play("yellow", 0).await;
    t.play("red", 0).await;

    // A token that holds no seat is refused politely, and its holder just watches.
    let (_, frames) = open(&host, room, &format!("name=x&token={}", "0".repeat(32))).await;
    assert_eq!(frames[0]["code"], "bad_token", "{frames:?}");
    assert_eq!(frames[1]["type"], "spectator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_gets_the_seat_back_after_the_room_was_evicted() {
    // One live object at most: touching another object evicts the room, at a moment the
    // test chooses.
    let host = game_host()
        .toml("runtime", "max_live_objects = 1")
        .start()
        .await
        .unwrap();
    let room = "evicted";
    let mut t = Table::seat(&host, room).await;
    let s = t.play_all("red", &[3, 4, 5]).await;
    let moves = s["moves"].clone();
    // Yellow leaves; red sees it.
    let Table {
        mut red,
        yellow,
        watchers,
        ..
    } = t;
    yellow.ws.close(1000).await.unwrap();
    let s = red.ws.recv_json().await.unwrap();
    assert_eq!(s["players"]["yellow"]["connected"], false, "{s}");
    // Another object takes the only slot: the room is evicted, red's socket stays open.
    assert_eq!(
        get(&host.url("/game/lobby/state")).await.unwrap().status,
        200
    );
    host.log
        .wait_for(&["evicted", &format!("name={room}")], 1)
        .await
        .unwrap();

    let (ws, frames) = open(&host, room, &format!("name=bob&token={}", yellow.token)).await;
    assert_seat_back(&frames, "yellow", &yellow.token, &moves);
    // Red, whose socket was held by the host meanwhile, sees yellow come back.
    let s = red.ws.recv_json().await.unwrap();
    assert_eq!(s["players"]["yellow"]["connected"], true, "{s}");
    host.log
        .wait_for(&["activated", &format!("name={room}")], 2)
        .await
        .unwrap();
    let l = lifecycle(&host, room);
    assert_eq!(&l[l.len() - 2..], ["evicted", "activated"], "{l:?}");
    let mut t = Table {
        room: room.into(),
        red,
        yellow: Player { ws, ..yellow },
        watchers,
    };
    t.play("yellow", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_players_get_their_seats_back_after_sigkill() {
    let mut host = game_host().start().await.unwrap();
    let room = "crash";
    let mut t = Table::seat(&host, room).await;
    let s = t.play_all("red", &[3, 3, 2]).await;
    let moves = s["moves"].clone();
    let (red_token, yellow_token) = (t.red.token.clone(), t.yellow.token.clone());
    host.kill();
    drop(t);
    host.restart().await.unwrap();

    let (mut red, frames) = open(&host, room, &format!("name=ann&token={red_token}")).await;
    assert_seat_back(&frames, "red", &red_token, &moves);
    assert_eq!(
        frames[1]["players"]["yellow"]["connected"], false,
        "yellow is not back yet"
    );
    let (mut yellow, frames) = open(&host, room, &format!("name=bob&token={yellow_token}")).await;
    assert_eq!(frames[0]["color"], "yellow");
    assert_eq!(frames[1]["players"]["yellow"]["connected"], true);
    let s = red.recv_json().await.unwrap();
    assert_eq!(s["players"]["yellow"]["connected"], true, "{s}");
    assert_eq!(s["turn"], "yellow");
    // And the game goes on.
    yellow.send(r#"{"type":"move","column":2}"#).await.unwrap();
    for ws in [&mut red, &mut yellow] {
        let s = ws.recv_json().await.unwrap();
        assert_eq!(s["moves"].as_array().unwrap().len(), 4, "{s}");
    }
}

// ---------------------------------------------------------------------------------------
// Cleanup
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_room_is_deleted_by_a_later_alarm() {
    let host = game_host()
        .setting("game", "cleanup_seconds", "1")
        .start()
        .await
        .unwrap();
    let room = "tidy";
    let mut t = Table::seat(&host, room).await;
    t.play("red", 3).await;
    t.red.ws.send(r#"{"type":"resign"}"#).await.unwrap();
    assert_eq!(t.next_state(0).await["status"], "won");
    // While someone is connected, the room's alarm (a check every cleanup period once no
    // turn clock runs) keeps it.
    host.log
        .wait_for(&["alarm handled", &format!("game/{room}")], 1)
        .await
        .unwrap();
    let kept = stored(&host, room).await;
    assert_eq!(kept["moves"].as_array().unwrap().len(), 1, "{kept}");
    assert_eq!(kept["players"]["red"]["connected"], true);

    let red_token = t.red.token.clone();
    let Table { red, yellow, .. } = t;
    red.ws.close(1000).await.unwrap();
    yellow.ws.close(1000).await.unwrap();
    // An alarm deletes the room a second after the last socket closed.
    eventually("the room is deleted", || async {
        Ok(is_deleted(&host, room).await.then_some(()))
    })
    .await
    .unwrap();
    let s = stored(&host, room).await;
    assert_eq!(s["status"], "waiting", "{s}");
    assert_eq!(s["moves"], json!([]));
    // The old seat is gone with it: its token is refused, and a newcomer takes slot 0.
    let (_, frames) = open(&host, room, &format!("name=ann&token={red_token}")).await;
    assert_eq!(frames[0]["code"], "bad_token", "{frames:?}");
    assert_eq!(frames[1]["type"], "seat");
    assert_ne!(frames[1]["token"], red_token.as_str());
}

/// Whether the room's storage is gone: `GET /state` shows a room nobody ever sat in.
async fn is_deleted(host: &Host, room: &str) -> bool {
    let s = stored(host, room).await;
    s["game"] == 0 && s["players"] == json!({"red": null, "yellow": null})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_whose_sockets_vanished_in_a_restart_are_still_cleaned_up() {
    let mut host = game_host()
        .setting("game", "cleanup_seconds", "1")
        .start()
        .await
        .unwrap();
    // One room with a finished game (no turn clock running), one where only one seat
    // was taken (no game yet).
    let mut t = Table::seat(&host, "finished").await;
    t.red.ws.send(r#"{"type":"resign"}"#).await.unwrap();
    assert_eq!(t.next_state(0).await["reason"], "resign");
    let (_half, _) = sit(&host, "half", "name=solo").await;
    host.kill();
    host.restart().await.unwrap();
    // No close event will ever come for those sockets; the rooms notice by themselves.
    for room in ["finished", "half"] {
        eventually(&format!("{room} is cleaned up"), || async {
            Ok(is_deleted(&host, room).await.then_some(()))
        })
        .await
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_frames_and_change_nothing() {
    let host = game_host().start().await.unwrap();
    let room = "garbage";
    let mut t = Table::seat(&host, room).await;
    t.watch(&host, "name=cy").await;
    let before = stored(&host, room).await;
    for frame in [
        "not json",
        "",
        "{}",
        "[1,2]",
        r#"{"type":7}"#,
        r#"{"type":"fly"}"#,
        // Lobby frames mean nothing in a room.
        r#"{"type":"play","name":"x"}"#,
        r#"{"type":"create"}"#,
        r#"{"type":"cancel"}"#,
    ] {
        refused(&mut t.red.ws, frame, "bad_frame").await;
        refused(&mut t.watchers[0], frame, "bad_frame").await;
    }
    t.yellow
        .ws
        .send_message(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    let f = t.yellow.ws.recv_json().await.unwrap();
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("bad_frame")),
        "{f}"
    );
    // Even a binary frame that holds a valid move is refused.
    t.red
        .ws
        .send_message(Message::binary(br#"{"type":"move","column":3}"#.to_vec()))
        .await
        .unwrap();
    assert_eq!(t.red.ws.recv_json().await.unwrap()["code"], "bad_frame");
    assert_eq!(stored(&host, room).await, before, "nothing changed");
    // The heartbeat is answered; the sockets work on, and nobody else got anything.
    t.red.ws.send(r#"{"type":"heartbeat"}"#).await.unwrap();
    assert_eq!(t.red.ws.recv_json().await.unwrap(), json!({"type": "pong"}));
    let s = t.play("red", 3).await;
    assert_eq!(s["moves"].as_array().unwrap().len(), 1);

    // The lobby refuses garbage and room frames the same way.
    let mut lobby = Ws::connect(&host.ws_url("/game/lobby/ws")).await.unwrap();
    lobby.recv_type("lobby").await.unwrap();
    for frame in [
        "{",
        r#"{"type":"move","column":1}"#,
        r#"{"type":"resign"}"#,
        r#"{"type":"rematch"}"#,
    ] {
        refused(&mut lobby, frame, "bad_frame").await;
    }
    lobby
        .send_message(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(lobby.recv_json().await.unwrap()["code"], "bad_frame");
    let state = get(&host.url("/game/lobby/state")).await.unwrap().json();
    assert_eq!(state["waiting"], 0, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_routes_get_clear_json_errors() {
    let host = game_host().start().await.unwrap();
    let long = "r".repeat(300);
    for bad in [
        "/game/a%2Fb/state".to_string(),
        "/game/a%00b/state".to_string(),
        "/game/%ff/state".to_string(),
        format!("/game/{long}/state"),
    ] {
        let r = get(&host.url(&bad)).await.unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(
            r.content_type.starts_with("application/json"),
            "{bad}: {r:?}"
        );
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("invalid object name"),
            "{bad}: {}",
            r.body
        );
        let (status, body) = Ws::connect_refused(&host.ws_url(&bad.replace("/state", "/ws")))
            .await
            .unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("invalid object name"), "{body}");
    }

    // The class's own routes: unknown paths 404, other methods 405, sockets only at /ws.
    let r = get(&host.url("/game/some-room/nope")).await.unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.json()["error"].is_string());
    for method in ["PUT", "DELETE", "POST"] {
        let r = http(method, &host.url("/game/some-room/state"), "x")
            .await
            .unwrap();
        assert_eq!(r.status, 405, "{method}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    let (status, _) = Ws::connect_refused(&host.ws_url("/game/some-room/other"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    // None of that touched the room.
    assert_eq!(
        stored(&host, "some-room").await["players"],
        json!({"red": null, "yellow": null})
    );

    // Player names are cleaned, never refused.
    let (_alice, s) = sit(&host, "names", "name=%20%20al%0Aice%09%20").await;
    assert_eq!(s["players"]["red"]["name"], "alice");
    let long_name = "n".repeat(100);
    let (p, s) = sit(&host, "names", &format!("name={long_name}")).await;
    assert_eq!(p.color, "yellow");
    assert_eq!(s["players"]["yellow"]["name"], "n".repeat(24));
    let (_, frames) = open(&host, "names", "").await;
    assert_eq!(frames[0], json!({"type": "spectator", "name": "player"}));
}

// ---------------------------------------------------------------------------------------
// Host bugs found by these tests (fixed; kept as regression tests)
// ---------------------------------------------------------------------------------------

/// Was a host bug (fixed: only the socket whose `on-connect` runs is listed while
/// connecting): a socket is put in the object's socket table (`Phase::Connecting`) when its
/// upgrade arrives, before its `on-connect` has run, and `SocketTable::list` (so the
/// guest's `sockets.list` and `broadcast`) includes such sockets. An event that runs while
/// a connect is queued behind it therefore broadcasts to a socket its object has not
/// accepted yet (and may still reject): the newcomer's first frame is the state of an
/// earlier event instead of its own `seat`/`spectator` frame, and the guest counts it as
/// open (`h.sockets(None)`, e.g. for the empty-room check). Only the socket whose own
/// `on-connect` is running should be listed while connecting.
///
/// Seen in this suite: a player's socket dropped and a new player connected at once got
/// the close's `state` first. Here the room is kept busy by a burst of frames so that a
/// move is usually queued before the newcomer's connect (on the buggy host that failed
/// every time); whichever runs first, the newcomer's frames must start with its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_receives_nothing_before_its_own_connect_frames() {
    let host = game_host().start().await.unwrap();
    let room = "pending";
    let mut t = Table::seat(&host, room).await;
    t.watch(&host, "name=cy").await;
    // Keep the room busy: frames that are slow to parse (a long JSON array each, just
    // under the 1 MiB message limit), answered one at a time with `bad_frame`.
    let heavy = format!("[{}0]", "0,".repeat(400_000));
    for _ in 0..20 {
        t.watchers[0].send(&heavy).await.unwrap();
    }
    // Red's move waits behind the burst; a newcomer connects meanwhile.
    t.red
        .ws
        .send(r#"{"type":"move","column":3}"#)
        .await
        .unwrap();
    let (mut late, frames) = open(&host, room, "name=late").await;
    assert_eq!(
        frames[0]["type"], "spectator",
        "a socket's first frame comes from its own on-connect, not from the move that \
         ran before it: {frames:?}"
    );
    assert_eq!(frames.len(), 2, "{frames:?}");
    // If the connect ran first, the move's state follows it.
    if frames[1]["moves"] == json!([]) {
        let s = late.recv_json().await.unwrap();
        assert_eq!(s["moves"].as_array().unwrap().len(), 1, "{s}");
    }
}

// ---------------------------------------------------------------------------------------
// The pages in a real browser
// ---------------------------------------------------------------------------------------

/// `tests/game-browser`, with its npm packages installed (`npm ci`) if they are not yet.
fn browser_test_dir() -> PathBuf {
    let dir = repo_root().join("tests/game-browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the browser test");
        assert!(
            status.success(),
            "npm ci in {} failed: {status}",
            dir.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_play_a_full_game_in_headless_chromium() {
    let host = game_host().start().await.unwrap();
    let dir = tokio::task::spawn_blocking(browser_test_dir).await.unwrap();
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("game.mjs")
        .arg(host.url(""))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Ok(path) = std::env::var("GAME_SCREENSHOT") {
        cmd.arg(path);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "game.mjs failed ({}) after {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        started.elapsed()
    );
    // The rooms it played in hold what the pages showed.
    let rooms: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("room="))
        .collect();
    assert_eq!(rooms.len(), 2, "{stdout}");
    let first = stored(&host, rooms[0]).await;
    assert_eq!(first["status"], "won", "{first}");
    assert_eq!(first["winner"], "red");
    assert_eq!(first["reason"], "four_in_a_row");
    assert_eq!(
        cells(&first["winning_cells"]),
        BTreeSet::from([(5, 3), (4, 4), (3, 5), (2, 6)])
    );
    let second = stored(&host, rooms[1]).await;
    assert_eq!(second["reason"], "resign", "{second}");
    assert_eq!(second["winner"], "yellow");
}
