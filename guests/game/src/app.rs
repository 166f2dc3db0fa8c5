//! The game's glue: events in, storage, frames and the alarm out, through [`Host`].
//!
//! The lobby keeps its queue in socket attachments (see [`crate::lobby`]); a room keeps
//! everything in one stored [`Room`] that is read when the instance is activated, changed
//! by an event, and written back at its end (the host commits the write with the event,
//! and releases the event's frames only after that). The in-memory copy is only a cache:
//! the host throws the instance away after a trap, when idle, or on deploy, and
//! [`App::activate`] reads it again.
//!
//! Seats are proven by the socket's attachment (slot and token, set by the room when it
//! accepted the socket), never by anything in a frame.

use lodge_sdk::{Request, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::host::Host;
use crate::lobby::{self, Ticket, Waiter};
use crate::protocol::{self, ClientFrame, clean_name, hash_token, is_token};
use crate::room::{AlarmOutcome, Joined, Presence, Room, Settings};

/// The object that runs matchmaking; every other name is a room.
pub const LOBBY: &str = "lobby";
/// Storage: the whole room ([`Room`] as JSON).
pub const ROOM_KEY: &str = "room";
/// Storage: each finished game, `result/000001` onwards (by game number).
pub const RESULT_PREFIX: &str = "result/";
/// Storage (lobby): the last place-in-line number handed out.
pub const SEQ_KEY: &str = "seq";
/// Socket tags in a room: one per seat slot, and one for spectators.
pub const SEAT_TAGS: [&str; 2] = ["seat0", "seat1"];
pub const SPECTATOR_TAG: &str = "spectator";
/// The heartbeat the host answers without waking the object.
pub const HEARTBEAT: (&str, &str) = (r#"{"type":"heartbeat"}"#, r#"{"type":"pong"}"#);

const LOBBY_PAGE: &str = include_str!("../web/lobby.html");
const ROOM_PAGE: &str = include_str!("../web/room.html");

/// The answer to a WebSocket upgrade.
#[derive(Debug)]
pub enum Outcome {
    Accept {
        tags: Vec<String>,
        attachment: Value,
    },
    Reject(Response),
}

/// One object of the class: the lobby or a room, decided by the object's name.
pub enum App {
    Lobby,
    Room(Box<RoomObject>),
}

fn get_json<T: DeserializeOwned>(h: &impl Host, key: &str) -> Option<T> {
    let bytes = h.get(key)?;
    Some(
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("stored {key} does not decode: {e}")),
    )
}

fn put_json<T: Serialize + ?Sized>(h: &impl Host, key: &str, value: &T) {
    h.put(key, serde_json::to_vec(value).expect("serializable"));
}

fn attachment<T: DeserializeOwned>(h: &impl Host, socket: u64) -> Option<T> {
    serde_json::from_slice(&h.attachment(socket)?).ok()
}

fn set_attachment<T: Serialize>(h: &impl Host, socket: u64, value: &T) {
    h.set_attachment(socket, serde_json::to_vec(value).expect("serializable"));
}

fn send(h: &impl Host, socket: u64, value: &Value) {
    h.send(socket, &value.to_string());
}

fn send_error(h: &impl Host, socket: u64, code: &str, message: &str) {
    send(
        h,
        socket,
        &json!({ "type": "error", "code": code, "error": message }),
    );
}

/// A fresh, unguessable room name: 16 hex digits (64 random bits).
fn new_room_name(h: &impl Host) -> String {
    h.random_hex(8)
}

fn flag(req: &Request, name: &str) -> bool {
    matches!(req.query_param(name).as_deref(), Some("1" | "true"))
}

impl App {
    /// Builds the object for a new instance, reading what it needs from storage.
    pub fn activate(h: &impl Host) -> App {
        h.set_auto_response(HEARTBEAT.0, HEARTBEAT.1);
        let name = h.object_name();
        if name == LOBBY {
            App::Lobby
        } else {
            App::Room(Box::new(RoomObject::load(h, name)))
        }
    }

    pub fn on_request(&mut self, h: &impl Host, req: &Request) -> Response {
        let allowed = req.method == "GET" || (req.method == "POST" && req.path == "/create");
        if !allowed {
            return Response::error(405, format!("{} is not supported here", req.method));
        }
        match (self, req.path.as_str()) {
            (App::Lobby, "/") => Response::html(LOBBY_PAGE),
            (App::Lobby, "/state") => Response::json(
                200,
                &json!({ "waiting": lobby_waiters(h).len(), "connected": h.sockets(None).len() }),
            ),
            (App::Lobby, "/create") => Response::json(200, &json!({ "room": new_room_name(h) })),
            (App::Room(_), "/") => Response::html(ROOM_PAGE),
            (App::Room(r), "/state") => Response::json(200, &r.state(h, None)),
            (_, path) => Response::error(404, format!("no route {} {path}", req.method)),
        }
        .header("cache-control", "no-store")
    }

    pub fn on_connect(&mut self, h: &impl Host, socket: u64, req: &Request) -> Outcome {
        if req.path != "/ws" {
            return Outcome::Reject(Response::error(404, "WebSockets connect to /ws"));
        }
        match self {
            App::Lobby => lobby_connect(h, socket, req),
            App::Room(r) => r.connect(h, socket, req),
        }
    }

    pub fn on_text(&mut self, h: &impl Host, socket: u64, text: &str) {
        let frame = match protocol::parse(text) {
            Ok(f) => f,
            Err(e) => return send_error(h, socket, "bad_frame", &e),
        };
        if frame == ClientFrame::Heartbeat {
            return send(h, socket, &json!({ "type": "pong" }));
        }
        match self {
            App::Lobby => lobby_message(h, socket, frame),
            App::Room(r) => r.message(h, socket, frame),
        }
    }

    pub fn on_binary(&mut self, h: &impl Host, socket: u64) {
        send_error(h, socket, "bad_frame", "binary frames are not supported");
    }

    pub fn on_close(&mut self, h: &impl Host, _socket: u64) {
        match self {
            App::Lobby => broadcast_waiting(h, None),
            App::Room(r) => r.closed(h),
        }
    }

    pub fn on_alarm(&mut self, h: &impl Host) {
        match self {
            // The lobby sets no alarm; a stray one is dropped.
            App::Lobby => h.delete_alarm(),
            App::Room(r) => r.alarm(h),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lobby
// ---------------------------------------------------------------------------------------

/// The next place in line (a stored counter, so the order holds across evictions).
fn next_seq(h: &impl Host) -> u64 {
    let n: u64 = get_json(h, SEQ_KEY).unwrap_or(0) + 1;
    put_json(h, SEQ_KEY, &n);
    n
}

/// Everyone waiting, read from the open sockets' attachments.
fn lobby_waiters(h: &impl Host) -> Vec<Waiter> {
    h.sockets(None)
        .into_iter()
        .filter_map(|socket| {
            let t: Ticket = attachment(h, socket)?;
            Some(Waiter {
                socket,
                name: t.name,
                seq: t.queued?,
                client: t.client,
            })
        })
        .collect()
}

/// Tells every lobby socket how many wait. `joining` is a socket being accepted right now
/// (listed, but its attachment is not set yet) with its ticket.
fn broadcast_waiting(h: &impl Host, joining: Option<(u64, &Ticket)>) {
    let mut waiting = lobby_waiters(h).len();
    let mut except = Vec::new();
    if let Some((socket, ticket)) = joining {
        waiting += usize::from(ticket.queued.is_some());
        send(h, socket, &json!({ "type": "lobby", "waiting": waiting }));
        except.push(socket);
    }
    h.broadcast(
        &json!({ "type": "lobby", "waiting": waiting }).to_string(),
        &except,
    );
}

/// Pairs whoever waits, oldest first; each pair is sent to a new room. `joining` as in
/// [`broadcast_waiting`]: its ticket is updated in place instead of through the host.
fn run_matchmaking(h: &impl Host, mut joining: Option<(u64, &mut Ticket)>) {
    let mut waiters = lobby_waiters(h);
    if let Some((socket, ticket)) = &joining {
        waiters.retain(|w| w.socket != *socket);
        if let Some(seq) = ticket.queued {
            waiters.push(Waiter {
                socket: *socket,
                name: ticket.name.clone(),
                seq,
                client: ticket.client.clone(),
            });
        }
    }
    for (a, b) in lobby::pair(waiters) {
        let room = new_room_name(h);
        for (me, other) in [(&a, &b), (&b, &a)] {
            send(
                h,
                me.socket,
                &json!({ "type": "matched", "room": room, "name": me.name, "opponent": other.name }),
            );
            let ticket = Ticket {
                name: me.name.clone(),
                queued: None,
                client: me.client.clone(),
            };
            match &mut joining {
                Some((socket, t)) if *socket == me.socket => **t = ticket,
                _ => set_attachment(h, me.socket, &ticket),
            }
        }
    }
}

fn lobby_connect(h: &impl Host, socket: u64, req: &Request) -> Outcome {
    let raw_name = req.query_param("name").unwrap_or_default();
    let mut ticket = Ticket {
        name: clean_name(&raw_name),
        queued: None,
        client: lobby::clean_client(req.query_param("client").as_deref()),
    };
    // `/ws?name=NAME` waits at once; without a name (or with `watch=1`) the socket only
    // watches until it sends `play`.
    if !raw_name.trim().is_empty() && !flag(req, "watch") {
        ticket.queued = Some(next_seq(h));
        send(h, socket, &json!({ "type": "queued", "name": ticket.name }));
    }
    run_matchmaking(h, Some((socket, &mut ticket)));
    broadcast_waiting(h, Some((socket, &ticket)));
    Outcome::Accept {
        tags: Vec::new(),
        attachment: serde_json::to_value(&ticket).expect("serializable"),
    }
}

fn lobby_message(h: &impl Host, socket: u64, frame: ClientFrame) {
    let mut ticket: Ticket = attachment(h, socket).unwrap_or_default();
    match frame {
        ClientFrame::Play { name } => {
            if let Some(name) = name {
                ticket.name = clean_name(&name);
            } else if ticket.name.is_empty() {
                ticket.name = clean_name("");
            }
            if ticket.queued.is_none() {
                ticket.queued = Some(next_seq(h));
            }
            set_attachment(h, socket, &ticket);
            send(h, socket, &json!({ "type": "queued", "name": ticket.name }));
            run_matchmaking(h, None);
            broadcast_waiting(h, None);
        }
        ClientFrame::Cancel => {
            ticket.queued = None;
            set_attachment(h, socket, &ticket);
            send(h, socket, &json!({ "type": "cancelled" }));
            broadcast_waiting(h, None);
        }
        ClientFrame::Create => {
            send(
                h,
                socket,
                &json!({ "type": "created", "room": new_room_name(h) }),
            );
        }
        _ => send_error(
            h,
            socket,
            "bad_frame",
            "the lobby understands play, cancel and create",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Room
// ---------------------------------------------------------------------------------------

/// What a room keeps on each socket (its attachment): who it is and, for a seated player,
/// the seat slot and the token that proves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatTicket {
    pub name: String,
    #[serde(default)]
    pub slot: Option<usize>,
    #[serde(default)]
    pub token: Option<String>,
}

/// A room object: its stored state, cached.
pub struct RoomObject {
    name: String,
    settings: Settings,
    room: Room,
}

impl RoomObject {
    fn load(h: &impl Host, name: String) -> RoomObject {
        let setting = |key: &str, default: u64| -> u64 {
            h.setting(key)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        RoomObject {
            name,
            settings: Settings {
                turn_ms: setting("turn_seconds", 30).max(1).saturating_mul(1000),
                cleanup_ms: setting("cleanup_seconds", 300).saturating_mul(1000),
            },
            room: get_json(h, ROOM_KEY).unwrap_or_default(),
        }
    }

    /// Who is connected, from the sockets' tags; `joining` is a socket being accepted
    /// (already listed, but without its tags yet).
    fn presence(h: &impl Host, joining: Option<Joined>) -> Presence {
        let mut p = Presence {
            seated: SEAT_TAGS.map(|t| !h.sockets(Some(t)).is_empty()),
            spectators: h.sockets(Some(SPECTATOR_TAG)).len(),
        };
        match joining {
            Some(Joined::Player { slot, .. }) => p.seated[slot] = true,
            Some(Joined::Spectator) => p.spectators += 1,
            None => {}
        }
        p
    }

    fn state(&self, h: &impl Host, joining: Option<Joined>) -> Value {
        let presence = Self::presence(h, joining);
        self.room
            .view(&self.name, &presence, h.now_ms(), &self.settings)
    }

    /// After an event changed `self.room` (from `before`): store it, and the result of a
    /// game that just ended; point the alarm at the next due time (or the next check, see
    /// [`Room::alarm_after`]); show everyone the new state. `joining` is a socket being
    /// accepted (sent to directly: it has no tags yet).
    fn commit(
        &mut self,
        h: &impl Host,
        before: &Room,
        joining: Option<(u64, Joined)>,
        force_alarm: bool,
    ) {
        if self.room != *before {
            put_json(h, ROOM_KEY, &self.room);
            let g = &self.room.game;
            let already_over = before.game.status.is_over() && before.game_no == self.room.game_no;
            if g.status.is_over() && !already_over {
                put_json(h, &format!("{RESULT_PREFIX}{:06}", self.room.game_no), g);
            }
        }
        arm(
            h,
            self.room.alarm_after(h.now_ms(), &self.settings),
            force_alarm,
        );
        let state = self.state(h, joining.map(|(_, j)| j));
        match joining {
            Some((socket, _)) => {
                send(h, socket, &state);
                h.broadcast(&state.to_string(), &[socket]);
            }
            None => h.broadcast(&state.to_string(), &[]),
        }
    }

    fn connect(&mut self, h: &impl Host, socket: u64, req: &Request) -> Outcome {
        let before = self.room.clone();
        let name = clean_name(&req.query_param("name").unwrap_or_default());
        let raw_token = req.query_param("token").unwrap_or_default();
        let presented = Some(raw_token.clone()).filter(|t| is_token(t));
        let presented_hash = presented.as_deref().map(hash_token);
        let fresh = h.random_hex(16);
        let joined = self.room.join(
            &name,
            presented_hash.as_deref(),
            flag(req, "spectate"),
            &hash_token(&fresh),
            h.now_ms(),
            &self.settings,
        );
        // A token that did not give a seat back: tell the client to forget it (before a
        // seat frame, which carries the token to keep instead).
        if !raw_token.is_empty() && !matches!(joined, Joined::Player { new: false, .. }) {
            send_error(
                h,
                socket,
                "bad_token",
                "that seat token is not valid in this room",
            );
        }
        let (tag, ticket) = match joined {
            Joined::Player { slot, new } => {
                let seat = self.room.seats[slot].as_ref().expect("joined a seat");
                let ticket = SeatTicket {
                    name: seat.name.clone(),
                    slot: Some(slot),
                    token: Some(if new { fresh } else { raw_token }),
                };
                self.send_seat(h, socket, &ticket);
                (SEAT_TAGS[slot], ticket)
            }
            Joined::Spectator => {
                send(h, socket, &json!({ "type": "spectator", "name": name }));
                let ticket = SeatTicket {
                    name,
                    slot: None,
                    token: None,
                };
                (SPECTATOR_TAG, ticket)
            }
        };
        self.commit(h, &before, Some((socket, joined)), false);
        Outcome::Accept {
            tags: vec![tag.to_string()],
            attachment: serde_json::to_value(&ticket).expect("serializable"),
        }
    }

    /// Tells a seated socket its seat: the color it plays in the current game, its slot,
    /// name and token.
    fn send_seat(&self, h: &impl Host, socket: u64, ticket: &SeatTicket) {
        let Some(slot) = ticket.slot else { return };
        send(
            h,
            socket,
            &json!({
                "type": "seat",
                "color": self.room.color_of(slot),
                "slot": slot,
                "name": ticket.name,
                "token": ticket.token,
            }),
        );
    }

    fn message(&mut self, h: &impl Host, socket: u64, frame: ClientFrame) {
        let before = self.room.clone();
        let now = h.now_ms();
        let ticket: SeatTicket = attachment(h, socket).unwrap_or_default();
        let token_hash = ticket.token.as_deref().map(hash_token);
        let seat = self.room.check_seat(ticket.slot, token_hash.as_deref());
        let settings = self.settings;
        let result = match frame {
            ClientFrame::Move { column } => {
                seat.and_then(|slot| self.room.play(slot, column.unwrap_or(-1), now, &settings))
            }
            ClientFrame::Resign => seat.and_then(|slot| self.room.resign(slot, now)),
            ClientFrame::Rematch => seat.and_then(|slot| {
                if self.room.request_rematch(slot, now, &settings)? {
                    self.resend_seats(h);
                }
                Ok(())
            }),
            _ => {
                return send_error(
                    h,
                    socket,
                    "bad_frame",
                    "a room understands move, resign and rematch",
                );
            }
        };
        match result {
            Ok(()) => self.commit(h, &before, None, false),
            Err(e) => send_error(h, socket, e.code(), &e.to_string()),
        }
    }

    /// After a rematch swapped colors: every seated socket learns its new color.
    fn resend_seats(&self, h: &impl Host) {
        for tag in SEAT_TAGS {
            for socket in h.sockets(Some(tag)) {
                if let Some(ticket) = attachment::<SeatTicket>(h, socket) {
                    self.send_seat(h, socket, &ticket);
                }
            }
        }
    }

    fn closed(&mut self, h: &impl Host) {
        let before = self.room.clone();
        // The closing socket is no longer listed. A room nobody ever sat in stored
        // nothing, so there is nothing to clean up.
        let untouched = self.room == Room::default();
        if h.sockets(None).is_empty() && !untouched {
            self.room.emptied(h.now_ms(), &self.settings);
        }
        self.commit(h, &before, None, false);
    }

    fn alarm(&mut self, h: &impl Host) {
        let before = self.room.clone();
        // A turn the host was down during gets that time back before its deadline is judged.
        if let Some(started) = self.room.turn_started(&self.settings) {
            self.room.credit_downtime(h.downtime_since(started));
        }
        let presence = Self::presence(h, None);
        match self.room.on_alarm(h.now_ms(), &presence, &self.settings) {
            AlarmOutcome::Cleanup => {
                h.delete_all();
                h.delete_alarm();
                self.room = Room::default();
            }
            _ => self.commit(h, &before, None, true),
        }
    }
}

/// Points the object's one alarm at `next`, or removes it. Unless forced, leaves it alone
/// when it is already right, which saves a write.
fn arm(h: &impl Host, next: Option<u64>, force: bool) {
    match next {
        Some(at) if force || h.alarm() != Some(at) => h.set_alarm(at),
        None if force || h.alarm().is_some() => h.delete_alarm(),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
