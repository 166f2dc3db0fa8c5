//! Whole conversations against an in-memory fake host that behaves like lodge where it
//! matters: events are transactions (a panic discards the event's writes and frames), a
//! socket being accepted is listed without tags, a closing socket is no longer listed but
//! its attachment is still readable, the alarm is one value, and the instance can be
//! evicted between any two events (the next event activates a fresh one from storage).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use lodge_sdk::{Request, Response};
use serde_json::Value;

use super::*;

#[derive(Clone, Default)]
struct FakeSocket {
    tags: Vec<String>,
    attachment: Vec<u8>,
}

#[derive(Clone, Default)]
struct World {
    name: String,
    settings: HashMap<String, String>,
    now: u64,
    storage: BTreeMap<String, Vec<u8>>,
    alarm: Option<u64>,
    open: BTreeMap<u64, FakeSocket>,
    /// A socket whose close is being delivered: readable, not listed.
    closing: Option<(u64, FakeSocket)>,
    /// Frames of the running event (released when it ends without a panic).
    pending: Vec<(u64, String)>,
    random: u64,
    /// The host's last outage `(from, to)`, as the real host reports it.
    outage: Option<(u64, u64)>,
}

struct Fake(RefCell<World>);

impl Host for Fake {
    fn now_ms(&self) -> u64 {
        self.0.borrow().now
    }
    fn downtime_since(&self, since: u64) -> u64 {
        self.0
            .borrow()
            .outage
            .map_or(0, |(from, to)| to.saturating_sub(from.max(since)))
    }
    fn object_name(&self) -> String {
        self.0.borrow().name.clone()
    }
    fn setting(&self, key: &str) -> Option<String> {
        self.0.borrow().settings.get(key).cloned()
    }
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().storage.get(key).cloned()
    }
    fn put(&self, key: &str, value: Vec<u8>) {
        self.0.borrow_mut().storage.insert(key.to_string(), value);
    }
    fn delete_all(&self) {
        self.0.borrow_mut().storage.clear();
    }
    fn send(&self, socket: u64, text: &str) {
        let mut w = self.0.borrow_mut();
        if w.open.contains_key(&socket) {
            w.pending.push((socket, text.to_string()));
        }
    }
    fn broadcast(&self, text: &str, except: &[u64]) {
        let mut w = self.0.borrow_mut();
        let ids: Vec<u64> = w
            .open
            .keys()
            .copied()
            .filter(|s| !except.contains(s))
            .collect();
        for id in ids {
            w.pending.push((id, text.to_string()));
        }
    }
    fn sockets(&self, tag: Option<&str>) -> Vec<u64> {
        let w = self.0.borrow();
        w.open
            .iter()
            .filter(|(_, s)| tag.is_none_or(|t| s.tags.iter().any(|x| x == t)))
            .map(|(id, _)| *id)
            .collect()
    }
    fn attachment(&self, socket: u64) -> Option<Vec<u8>> {
        let w = self.0.borrow();
        if let Some((id, s)) = &w.closing
            && *id == socket
        {
            return Some(s.attachment.clone());
        }
        w.open.get(&socket).map(|s| s.attachment.clone())
    }
    fn set_attachment(&self, socket: u64, data: Vec<u8>) {
        if let Some(s) = self.0.borrow_mut().open.get_mut(&socket) {
            s.attachment = data;
        }
    }
    fn alarm(&self) -> Option<u64> {
        self.0.borrow().alarm
    }
    fn set_alarm(&self, at_ms: u64) {
        self.0.borrow_mut().alarm = Some(at_ms);
    }
    fn delete_alarm(&self) {
        self.0.borrow_mut().alarm = None;
    }
    fn set_auto_response(&self, _request: &str, _response: &str) {}
    fn random_hex(&self, bytes: usize) -> String {
        let mut w = self.0.borrow_mut();
        w.random += 1;
        format!("{:0width$x}", w.random, width = bytes * 2)
    }
}

/// One object on the fake host, with its delivered frames per socket.
struct Sim {
    host: Fake,
    app: Option<App>,
    inbox: BTreeMap<u64, Vec<Value>>,
    next_socket: u64,
    /// Evict the instance after every event.
    evict_always: bool,
}

fn req(method: &str, path: &str, query: &str) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Sim {
    fn new(name: &str) -> Sim {
        let world = World {
            name: name.into(),
            now: 1_000_000,
            ..World::default()
        };
        Sim {
            host: Fake(RefCell::new(world)),
            app: None,
            inbox: BTreeMap::new(),
            next_socket: 100,
            evict_always: false,
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        self.host
            .0
            .borrow_mut()
            .settings
            .insert(key.into(), value.into());
    }

    fn advance(&mut self, ms: u64) {
        self.host.0.borrow_mut().now += ms;
    }

    fn now(&self) -> u64 {
        self.host.0.borrow().now
    }

    /// Runs one event as a transaction; returns its result, or None if it panicked.
    fn event<R>(&mut self, f: impl FnOnce(&mut App, &Fake) -> R) -> Option<R> {
        let snapshot = self.host.0.borrow().clone();
        let mut app = self.app.take().unwrap_or_else(|| App::activate(&self.host));
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut app, &self.host)));
        let mut w = self.host.0.borrow_mut();
        match result {
            Ok(r) => {
                for (socket, text) in std::mem::take(&mut w.pending) {
                    let v: Value = serde_json::from_str(&text).expect("frames are JSON");
                    self.inbox.entry(socket).or_default().push(v);
                }
                if !self.evict_always {
                    self.app = Some(app);
                }
                Some(r)
            }
            Err(_) => {
                // Writes, alarm and frames of the event are discarded with the instance.
                let open = std::mem::take(&mut w.open);
                *w = snapshot;
                w.open = open;
                w.pending.clear();
                None
            }
        }
    }

    fn http(&mut self, method: &str, path: &str) -> Response {
        self.event(|app, h| app.on_request(h, &req(method, path, "")))
            .unwrap()
    }

    fn state(&mut self) -> Value {
        let r = self.http("GET", "/state");
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Opens a WebSocket at `path?query`; the socket id, or the rejection.
    fn try_connect(&mut self, path: &str, query: &str) -> Result<u64, Response> {
        let id = self.next_socket;
        self.next_socket += 1;
        self.host
            .0
            .borrow_mut()
            .open
            .insert(id, FakeSocket::default());
        let outcome = self
            .event(|app, h| app.on_connect(h, id, &req("GET", path, query)))
            .expect("connect panicked");
        let mut w = self.host.0.borrow_mut();
        match outcome {
            Outcome::Accept { tags, attachment } => {
                let s = w.open.get_mut(&id).unwrap();
                s.tags = tags;
                s.attachment = serde_json::to_vec(&attachment).unwrap();
                Ok(id)
            }
            Outcome::Reject(r) => {
                w.open.remove(&id);
                self.inbox.remove(&id);
                Err(r)
            }
        }
    }

    fn connect(&mut self, query: &str) -> u64 {
        self.try_connect("/ws", query).expect("accepted")
    }

    fn send(&mut self, socket: u64, text: &str) {
        self.event(|app, h| app.on_text(h, socket, text))
            .expect("message panicked");
    }

    fn send_json(&mut self, socket: u64, v: Value) {
        self.send(socket, &v.to_string());
    }

    fn close(&mut self, socket: u64) {
        {
            let mut w = self.host.0.borrow_mut();
            let s = w.open.remove(&socket).expect("open socket");
            w.closing = Some((socket, s));
        }
        self.event(|app, h| app.on_close(h, socket))
            .expect("close panicked");
        self.host.0.borrow_mut().closing = None;
    }

    /// Fires the alarm if it is due (clearing it first, as the host's commit does).
    fn fire_alarm(&mut self) -> bool {
        let due = {
            let w = self.host.0.borrow();
            w.alarm.is_some_and(|at| at <= w.now)
        };
        if due {
            self.host.0.borrow_mut().alarm = None;
            self.event(|app, h| app.on_alarm(h))
                .expect("alarm panicked");
        }
        due
    }

    fn alarm(&self) -> Option<u64> {
        self.host.0.borrow().alarm
    }

    fn evict(&mut self) {
        self.app = None;
    }

    fn frames(&mut self, socket: u64) -> Vec<Value> {
        self.inbox.remove(&socket).unwrap_or_default()
    }

    fn last_of(&mut self, socket: u64, kind: &str) -> Option<Value> {
        self.frames(socket)
            .into_iter()
            .rev()
            .find(|f| f["type"] == kind)
    }

    fn stored_keys(&self) -> Vec<String> {
        self.host.0.borrow().storage.keys().cloned().collect()
    }
}

fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn mv(col: i64) -> Value {
    json!({ "type": "move", "column": col })
}

/// A room with two seated players; returns (sim, red socket, yellow socket, red token,
/// yellow token), frames drained.
fn seated_room() -> (Sim, u64, u64, String, String) {
    let mut sim = Sim::new("r1");
    let a = sim.connect("name=alice");
    let b = sim.connect("name=bob");
    let fa = sim.frames(a);
    let fb = sim.frames(b);
    let seat_a = fa.iter().find(|f| f["type"] == "seat").unwrap().clone();
    let seat_b = fb.iter().find(|f| f["type"] == "seat").unwrap().clone();
    assert_eq!(seat_a["color"], "red");
    assert_eq!(seat_b["color"], "yellow");
    let ta = seat_a["token"].as_str().unwrap().to_string();
    let tb = seat_b["token"].as_str().unwrap().to_string();
    (sim, a, b, ta, tb)
}

// ---- lobby ------------------------------------------------------------------------------

#[test]
fn lobby_pairs_waiting_players_first_come_first_served() {
    let mut sim = Sim::new(LOBBY);
    let a = sim.connect("name=ann");
    assert_eq!(types(&sim.frames(a)), ["queued", "lobby"]);
    let w = sim.connect("");
    assert_eq!(
        sim.frames(w),
        vec![json!({ "type": "lobby", "waiting": 1 })]
    );
    let b = sim.connect("name=ben");
    let fa = sim.frames(a);
    let fb = sim.frames(b);
    let ma = fa
        .iter()
        .find(|f| f["type"] == "matched")
        .expect("ann matched")
        .clone();
    let mb = fb
        .iter()
        .find(|f| f["type"] == "matched")
        .expect("ben matched")
        .clone();
    assert_eq!(ma["room"], mb["room"]);
    assert_eq!(ma["opponent"], "ben");
    assert_eq!(mb["opponent"], "ann");
    assert_eq!(ma["room"].as_str().unwrap().len(), 16);
    assert_ne!(ma["room"], LOBBY);
    assert_eq!(sim.last_of(w, "lobby").unwrap()["waiting"], 0);
    // The next two, one of them joining by `play`, get their own room.
    let c = sim.connect("name=cat");
    sim.evict();
    sim.send_json(w, json!({ "type": "play", "name": "wes" }));
    let mc = sim.last_of(c, "matched").expect("cat matched");
    let mw = sim.last_of(w, "matched").expect("wes matched");
    assert_eq!(mc["room"], mw["room"]);
    assert_eq!(mw["name"], "wes");
    assert_ne!(mc["room"], ma["room"]);
    assert_eq!(sim.state()["waiting"], 0);
}

#[test]
fn lobby_order_is_arrival_order_across_evictions() {
    let mut sim = Sim::new(LOBBY);
    sim.evict_always = true;
    let watchers: Vec<u64> = (0..3).map(|_| sim.connect("")).collect();
    // Queue in the order 2, 0, 1: 2 and 0 are paired, 1 waits.
    for &i in &[2usize, 0, 1] {
        sim.send_json(
            watchers[i],
            json!({ "type": "play", "name": format!("p{i}") }),
        );
    }
    assert!(sim.last_of(watchers[2], "matched").is_some());
    assert_eq!(
        sim.last_of(watchers[0], "matched").unwrap()["opponent"],
        "p2"
    );
    assert!(sim.last_of(watchers[1], "matched").is_none());
    assert_eq!(sim.state()["waiting"], 1);
}

#[test]
fn lobby_cancel_close_and_create() {
    let mut sim = Sim::new(LOBBY);
    let a = sim.connect("name=ann");
    let w = sim.connect("");
    sim.send_json(a, json!({ "type": "cancel" }));
    assert!(types(&sim.frames(a)).contains(&"cancelled".to_string()));
    assert_eq!(sim.last_of(w, "lobby").unwrap()["waiting"], 0);
    // Waiting then leaving: the line is the open sockets, so a closed one is gone.
    sim.send_json(a, json!({ "type": "play" }));
    assert_eq!(sim.last_of(w, "lobby").unwrap()["waiting"], 1);
    sim.close(a);
    assert_eq!(sim.last_of(w, "lobby").unwrap()["waiting"], 0);
    let b = sim.connect("name=ben");
    assert!(
        sim.last_of(b, "matched").is_none(),
        "nobody left to pair with"
    );
    sim.send_json(w, json!({ "type": "create" }));
    let created = sim.last_of(w, "created").unwrap();
    assert_eq!(created["room"].as_str().unwrap().len(), 16);
    sim.send_json(w, json!({ "type": "move", "column": 1 }));
    assert_eq!(sim.last_of(w, "error").unwrap()["code"], "bad_frame");
    let r = sim.http("POST", "/create");
    assert_eq!(r.status, 200);
    let page = sim.http("GET", "/");
    assert!(
        String::from_utf8(page.body)
            .unwrap()
            .contains("id=\"play-button\"")
    );
}

// ---- room: seats, moves, results ----------------------------------------------------

#[test]
fn two_seats_then_spectators_and_everyone_gets_state() {
    let (mut sim, a, b, ta, tb) = seated_room();
    assert!(is_token(&ta) && is_token(&tb) && ta != tb);
    let s = sim.connect("name=sam");
    let fs = sim.frames(s);
    assert_eq!(types(&fs), ["spectator", "state"]);
    assert_eq!(fs[1]["spectators"], 1);
    let forced = sim.connect("name=tim&spectate=1");
    assert_eq!(types(&sim.frames(forced)), ["spectator", "state"]);
    let st = sim.last_of(a, "state").unwrap();
    assert_eq!(st["status"], "playing");
    assert_eq!(st["spectators"], 2);
    assert_eq!(
        st["players"]["red"],
        json!({ "name": "alice", "connected": true, "rematch": false })
    );
    assert_eq!(st["players"]["yellow"]["name"], "bob");
    assert_eq!(st["turn"], "red");
    assert_eq!(st["turn_deadline"], sim.now() + 30_000);
    assert!(sim.last_of(b, "state").is_some());
    // Tokens are stored hashed only.
    let stored = String::from_utf8(sim.host.get(ROOM_KEY).unwrap()).unwrap();
    assert!(!stored.contains(&ta) && stored.contains(&hash_token(&ta)));
}

#[test]
fn moves_are_validated_from_the_attachment_not_the_frame() {
    let (mut sim, a, b, ta, _) = seated_room();
    let s = sim.connect("name=sam");
    sim.frames(s);
    // A spectator cannot move, even claiming a color and a token in the frame.
    sim.send_json(
        s,
        json!({ "type": "move", "column": 0, "color": "red", "token": ta }),
    );
    assert_eq!(sim.last_of(s, "error").unwrap()["code"], "not_seated");
    sim.send_json(b, mv(0));
    assert_eq!(sim.last_of(b, "error").unwrap()["code"], "not_your_turn");
    for bad in [
        json!({ "type": "move", "column": 7 }),
        json!({ "type": "move", "column": "2" }),
        json!({ "type": "move" }),
    ] {
        sim.send_json(a, bad);
        assert_eq!(sim.last_of(a, "error").unwrap()["code"], "bad_column");
    }
    sim.send(a, "not json");
    assert_eq!(sim.last_of(a, "error").unwrap()["code"], "bad_frame");
    assert!(
        sim.frames(b).is_empty(),
        "refused frames change nothing and tell nobody else"
    );
    assert!(sim.state()["moves"].as_array().unwrap().is_empty());
    sim.send_json(a, mv(3));
    let st = sim.last_of(b, "state").unwrap();
    assert_eq!(st["board"][5][3], "red");
    assert_eq!(st["turn"], "yellow");
    assert_eq!(
        st["moves"],
        json!([{ "color": "red", "column": 3, "row": 5, "at": sim.now() }])
    );
    assert!(sim.last_of(s, "state").is_some(), "spectators see moves");
    // A full column.
    for i in 0..5 {
        sim.send_json(if i % 2 == 0 { b } else { a }, mv(3));
    }
    sim.frames(b);
    sim.send_json(a, mv(3));
    let e = sim.last_of(a, "error").unwrap();
    assert_eq!(e["code"], "column_full");
    assert!(e["error"].as_str().unwrap().contains("full"));
}

#[test]
fn a_win_is_stored_with_its_result_and_ends_the_clock() {
    let (mut sim, a, b, _, _) = seated_room();
    for (s, c) in [(a, 0), (b, 6), (a, 1), (b, 6), (a, 2), (b, 6)] {
        sim.send_json(s, mv(c));
    }
    assert!(sim.alarm().is_some());
    sim.send_json(a, mv(3));
    let st = sim.last_of(b, "state").unwrap();
    assert_eq!(st["status"], "won");
    assert_eq!(st["winner"], "red");
    assert_eq!(st["reason"], "four_in_a_row");
    assert_eq!(st["winning_cells"], json!([[5, 0], [5, 1], [5, 2], [5, 3]]));
    assert_eq!(st["turn"], Value::Null);
    assert_eq!(st["turn_deadline"], Value::Null);
    assert_eq!(
        sim.alarm(),
        Some(sim.now() + 300_000),
        "no clock after the game, only the check for an empty room"
    );
    let result: Value = serde_json::from_slice(&sim.host.get("result/000001").unwrap()).unwrap();
    assert_eq!(result["winner"], "red");
    assert_eq!(result["moves"].as_array().unwrap().len(), 7);
    sim.send_json(b, mv(4));
    assert_eq!(sim.last_of(b, "error").unwrap()["code"], "not_playing");
    // The state survives eviction exactly.
    let before = sim.state();
    sim.evict();
    let mut after = sim.state();
    after["now"] = before["now"].clone();
    assert_eq!(after, before);
}

#[test]
fn resign_and_rematch_swap_colors() {
    let (mut sim, a, b, ta, _) = seated_room();
    sim.send_json(a, json!({ "type": "rematch" }));
    assert_eq!(sim.last_of(a, "error").unwrap()["code"], "not_over");
    sim.send_json(b, json!({ "type": "resign" }));
    let st = sim.last_of(a, "state").unwrap();
    assert_eq!(
        (
            st["status"].as_str(),
            st["winner"].as_str(),
            st["reason"].as_str()
        ),
        (Some("won"), Some("red"), Some("resign"))
    );
    sim.send_json(a, json!({ "type": "rematch" }));
    assert_eq!(
        sim.last_of(b, "state").unwrap()["players"]["red"]["rematch"],
        true
    );
    sim.frames(a);
    sim.evict();
    sim.send_json(b, json!({ "type": "rematch" }));
    let fa = sim.frames(a);
    assert_eq!(types(&fa), ["seat", "state"]);
    assert_eq!(fa[0]["color"], "yellow");
    assert_eq!(fa[0]["token"], ta.as_str(), "the seat keeps its token");
    let st = &fa[1];
    assert_eq!(st["game"], 2);
    assert_eq!(st["status"], "playing");
    assert_eq!(st["players"]["red"]["name"], "bob");
    assert_eq!(st["players"]["yellow"]["name"], "alice");
    assert_eq!(st["players"]["red"]["rematch"], false);
    assert_eq!(sim.last_of(b, "seat").unwrap()["color"], "red");
    sim.send_json(a, mv(0));
    assert_eq!(sim.last_of(a, "error").unwrap()["code"], "not_your_turn");
    sim.send_json(b, mv(0));
    assert_eq!(sim.last_of(a, "state").unwrap()["board"][5][0], "red");
    assert!(sim.host.get("result/000001").is_some());
    assert!(sim.host.get("result/000002").is_none());
}

// ---- reconnects -------------------------------------------------------------------------

#[test]
fn token_gives_the_seat_back_and_the_opponent_sees_it() {
    let (mut sim, a, b, ta, _) = seated_room();
    sim.send_json(a, mv(3));
    sim.close(a);
    let st = sim.last_of(b, "state").unwrap();
    assert_eq!(st["players"]["red"]["connected"], false);
    assert_eq!(st["players"]["yellow"]["connected"], true);
    sim.evict();
    let a2 = sim.connect(&format!("name=whoever&token={ta}"));
    let f = sim.frames(a2);
    assert_eq!(types(&f), ["seat", "state"]);
    assert_eq!(f[0]["color"], "red");
    assert_eq!(f[0]["name"], "alice", "the seat keeps its name");
    assert_eq!(
        f[1]["moves"].as_array().unwrap().len(),
        1,
        "full state on rejoin"
    );
    assert_eq!(
        sim.last_of(b, "state").unwrap()["players"]["red"]["connected"],
        true
    );
    // The reclaimed socket can play.
    sim.send_json(b, mv(3));
    sim.send_json(a2, mv(4));
    assert!(sim.last_of(a2, "error").is_none());
    assert_eq!(sim.state()["moves"].as_array().unwrap().len(), 3);
}

#[test]
fn a_wrong_token_is_refused_politely() {
    let (mut sim, _, _, ta, _) = seated_room();
    let mut forged = ta.clone();
    forged.replace_range(0..1, if ta.starts_with('0') { "1" } else { "0" });
    let x = sim.connect(&format!("name=eve&token={forged}"));
    let f = sim.frames(x);
    assert_eq!(types(&f), ["error", "spectator", "state"]);
    assert_eq!(f[0]["code"], "bad_token");
    let y = sim.connect("name=eve&token=garbage");
    assert_eq!(sim.frames(y)[0]["code"], "bad_token");
    // In a fresh room a stale token just means a new seat.
    let mut fresh = Sim::new("r2");
    let z = fresh.connect(&format!("name=al&token={ta}"));
    assert_eq!(types(&fresh.frames(z)), ["error", "seat", "state"]);
}

#[test]
fn routes_and_upgrades() {
    let mut sim = Sim::new("r1");
    assert_eq!(sim.try_connect("/other", "").unwrap_err().status, 404);
    let page = String::from_utf8(sim.http("GET", "/").body).unwrap();
    for id in [
        "id=\"board\"",
        "id=\"turn\"",
        "id=\"clock\"",
        "id=\"result\"",
        "id=\"seat\"",
        "id=\"status\"",
    ] {
        assert!(page.contains(id), "{id}");
    }
    assert_eq!(sim.http("GET", "/nope").status, 404);
    assert_eq!(sim.http("POST", "/state").status, 405);
    let st = sim.state();
    assert_eq!(st["status"], "waiting");
    assert!(sim.stored_keys().is_empty(), "looking stores nothing");
    // Someone who only watched and left leaves nothing behind either.
    let s = sim.connect("spectate=1");
    sim.close(s);
    assert!(sim.stored_keys().is_empty());
    assert_eq!(sim.alarm(), None);
}

// ---- clocks -----------------------------------------------------------------------------

#[test]
fn the_player_to_move_forfeits_on_time_once() {
    let (mut sim, a, b, _, _) = seated_room();
    sim.set("turn_seconds", "5"); // read on activation
    sim.evict();
    sim.send_json(a, mv(3));
    let deadline = sim.now() + 5_000;
    assert_eq!(sim.last_of(b, "state").unwrap()["turn_deadline"], deadline);
    assert_eq!(sim.alarm(), Some(deadline));
    sim.advance(4_999);
    assert!(!sim.fire_alarm());
    sim.advance(1);
    sim.evict();
    assert!(sim.fire_alarm());
    let st = sim.last_of(a, "state").unwrap();
    assert_eq!(st["status"], "won");
    assert_eq!(st["winner"], "red");
    assert_eq!(st["reason"], "timeout");
    let check = Some(sim.now() + 300_000);
    assert_eq!(
        sim.alarm(),
        check,
        "only the check for an empty room is left"
    );
    assert!(sim.host.get("result/000001").is_some());
    // A retried alarm (the host delivers at least once) changes nothing.
    let stored = sim.host.get(ROOM_KEY);
    sim.event(|app, h| app.on_alarm(h)).unwrap();
    assert_eq!(sim.host.get(ROOM_KEY), stored);
    assert_eq!(sim.alarm(), check);
}

#[test]
fn an_early_alarm_rearms_for_the_real_deadline() {
    let (mut sim, a, _, _, _) = seated_room();
    sim.send_json(a, mv(3));
    let deadline = sim.alarm().unwrap();
    // Someone (a retry, an older schedule) fires it early.
    sim.event(|app, h| app.on_alarm(h)).unwrap();
    assert_eq!(sim.alarm(), Some(deadline));
    assert_eq!(sim.state()["status"], "playing");
}

#[test]
fn an_empty_room_is_cleaned_up_after_the_game_is_abandoned() {
    let (mut sim, a, b, ta, _) = seated_room();
    sim.set("cleanup_seconds", "60");
    sim.evict();
    let start = sim.now();
    sim.close(a);
    sim.close(b);
    // The alarm is the earlier of the turn deadline and the cleanup.
    assert_eq!(sim.alarm(), Some(start + 30_000));
    sim.advance(30_000);
    assert!(sim.fire_alarm());
    let st = sim.state();
    assert_eq!(st["status"], "abandoned");
    assert_eq!(st["reason"], "abandoned");
    assert_eq!(sim.alarm(), Some(start + 60_000));
    sim.advance(30_000);
    sim.evict();
    assert!(sim.fire_alarm());
    assert!(sim.stored_keys().is_empty(), "{:?}", sim.stored_keys());
    assert_eq!(sim.alarm(), None);
    // The room starts over; the old token is just a stale one.
    let x = sim.connect(&format!("name=al&token={ta}"));
    let f = sim.frames(x);
    assert_eq!(types(&f), ["error", "seat", "state"]);
    assert_eq!(f[2]["status"], "waiting");
    assert_eq!(f[2]["game"], 0);
}

#[test]
fn coming_back_cancels_the_cleanup() {
    let (mut sim, a, b, ta, _) = seated_room();
    sim.send_json(a, json!({ "type": "resign" }));
    sim.close(a);
    sim.close(b);
    let cleanup = sim.now() + 300_000;
    assert_eq!(sim.alarm(), Some(cleanup));
    sim.advance(100_000);
    let a2 = sim.connect(&format!("token={ta}"));
    assert_eq!(
        sim.alarm(),
        Some(sim.now() + 300_000),
        "no cleanup is due any more, only the next check"
    );
    sim.advance(300_000);
    assert!(sim.fire_alarm());
    assert!(sim.host.get(ROOM_KEY).is_some(), "someone is here");
    assert_eq!(sim.alarm(), Some(sim.now() + 300_000));
    assert_eq!(sim.last_of(a2, "state").unwrap()["status"], "won");
    // Even if an old alarm still fires while someone is there, the room stays.
    sim.event(|app, h| app.on_alarm(h)).unwrap();
    assert!(sim.host.get(ROOM_KEY).is_some());
}

#[test]
fn a_restart_that_dropped_every_socket_still_ends_in_cleanup() {
    let (mut sim, _, _, _, _) = seated_room();
    // The host restarts: sockets are gone without close events, the instance too.
    sim.host.0.borrow_mut().open.clear();
    sim.evict();
    sim.advance(30_000);
    assert!(sim.fire_alarm());
    assert_eq!(sim.state()["status"], "abandoned");
    sim.advance(300_000);
    assert!(sim.fire_alarm());
    assert!(sim.stored_keys().is_empty());
    assert_eq!(sim.alarm(), None);
}

#[test]
fn a_restart_after_the_game_ended_still_ends_in_cleanup() {
    // No turn clock runs after a game, and a restart drops the sockets without close
    // events: only the check alarm notices that the room is empty.
    let (mut sim, a, _, _, _) = seated_room();
    sim.send_json(a, json!({ "type": "resign" }));
    sim.host.0.borrow_mut().open.clear();
    sim.evict();
    sim.advance(300_000);
    assert!(sim.fire_alarm());
    assert_eq!(sim.alarm(), Some(sim.now() + 300_000), "cleanup scheduled");
    sim.advance(300_000);
    assert!(sim.fire_alarm());
    assert!(sim.stored_keys().is_empty(), "{:?}", sim.stored_keys());
    assert_eq!(sim.alarm(), None);
}

#[test]
fn a_trap_rolls_the_event_back() {
    let (mut sim, a, b, _, _) = seated_room();
    let stored = sim.host.get(ROOM_KEY);
    let out = sim.event(|app, h| {
        app.on_text(h, a, &mv(3).to_string());
        panic!("trap after the move");
    });
    assert!(out.is_none());
    assert_eq!(sim.host.get(ROOM_KEY), stored);
    assert!(
        sim.frames(b).is_empty(),
        "no frame of a failed event leaves"
    );
    // The next event runs on a fresh instance, from storage.
    sim.send_json(a, mv(3));
    assert_eq!(
        sim.last_of(b, "state").unwrap()["moves"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
