//! `chat`: an AI chat room per object name, speaking shared/protocols/chat.md.
//!
//! The room keeps nothing that matters in memory: entries, the id counter, the room's
//! settings and the AI streams in flight live in storage, each user's name lives in their
//! socket's attachment (it survives hibernation), and `self` only caches settings that
//! [`Chat::activate`] reads again. Every handler is one transaction: a message's entry and
//! the id counter are written together, and the frames announcing it leave the host only
//! once they are durable.
//!
//! The protocol parsing, validation and AI context rules are pure functions in
//! [`protocol`], [`config`] and [`context`], unit-tested natively; this file wires them
//! to the host. Storage layout:
//!
//! | key | value |
//! | --- | --- |
//! | `msg:{id:020}` | an ENTRY `{id, name, role, text, ts}`; keys sort by id |
//! | `meta:last_id` | the id of the newest entry (the counter behind gap-free ids) |
//! | `room:settings` | `{system_prompt: string or null, answer_all: bool}` |
//! | `ai:{stream:020}` | an AI reply in flight: `{response_id, asked_by, entry_id, started}` |

pub mod config;
pub mod context;
pub mod page;
pub mod presence;
pub mod protocol;

use lodge_sdk::ai::{self, AiError, ChatMessage, CompletionRequest};
use lodge_sdk::storage::{self, StorageError};
use lodge_sdk::{AiEvent, Connect, Message, Object, Request, Response, Socket, object, sockets};
use serde::{Deserialize, Serialize};

use config::{ClassConfig, ROOM_SETTINGS_KEY, RoomSettings, render_system_prompt};
use context::build_context;
use presence::{Announce, Presence};
use protocol::{
    Attachment, ClientFrame, ENTRY_PREFIX, Entry, HEARTBEAT, JOIN_HISTORY, PONG, ROLE_ASSISTANT,
    ROLE_USER,
};

/// The id of the newest entry.
const LAST_ID_KEY: &str = "meta:last_id";
/// The prefix of the records of AI replies in flight.
const PENDING_PREFIX: &str = "ai:";

fn pending_key(stream: u64) -> String {
    format!("{PENDING_PREFIX}{stream:020}")
}

/// An AI reply in flight, kept so that one a host restart cut off is noticed.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    response_id: u64,
    /// Who asked (the author of the entry that triggered it).
    asked_by: String,
    /// The entry that triggered it.
    entry_id: u64,
    /// When it started (ms since the epoch).
    started: u64,
}

/// The room. Only caches: the class settings and the room's settings.
/// An AI reply being written, as far as it got.
#[derive(Default)]
struct Reply {
    text: String,
    /// When it started (ms since the epoch).
    started: u64,
}

struct Chat {
    class: ClassConfig,
    room: RoomSettings,
    /// The id of the newest entry once read: this instance is the room's only writer, and
    /// the host replaces it after a trap or a failed commit, so the copy never goes stale.
    /// Saves a storage read per message.
    last_id: Option<u64>,
    /// Who is here, once the first join or leave since the activation needed it.
    presence: Option<Presence>,
    /// What each AI reply in flight has written so far, by response id: a stopped reply is
    /// stored with it.
    replies: std::collections::BTreeMap<u64, Reply>,
    /// Replies stopped by a participant: pieces of them still on their way are dropped
    /// (the host stops delivering once the stop's event has committed).
    stopped: std::collections::HashSet<u64>,
}

/// Gives up on the event when storage itself is down (the host then rolls back its writes
/// and drops its outputs); any other refusal is returned for the caller to report.
fn check<T>(result: Result<T, StorageError>, what: &str) -> Result<T, String> {
    result.map_err(|e| match e {
        StorageError::Unavailable(m) => panic!("storage unavailable while {what}: {m}"),
        StorageError::TooLarge(m) => format!("could not {what}: too large ({m})"),
        StorageError::QuotaExceeded(m) => {
            format!("could not {what}: the room's storage is full ({m})")
        }
        StorageError::Invalid(m) => format!("could not {what}: {m}"),
    })
}

/// The newest `limit` entries, newest first. An entry that does not decode is skipped
/// (and logged) rather than hiding the whole history.
fn recent_entries(limit: u32) -> Vec<Entry> {
    entries_before(limit, None)
}

/// The newest `limit` entries with an id below `before` (all ids when `None`), newest first.
fn entries_before(limit: u32, before: Option<u64>) -> Vec<Entry> {
    if limit == 0 {
        return Vec::new();
    }
    let listed = storage::raw::list(&storage::ListOptions {
        prefix: Some(ENTRY_PREFIX.as_bytes().to_vec()),
        start: None,
        end: before.map(|id| protocol::entry_key(id).into_bytes()),
        limit: Some(limit),
        reverse: true,
    });
    let listed = check(listed, "read the history").unwrap_or_else(|e| {
        eprintln!("chat: {e}");
        Vec::new()
    });
    listed
        .into_iter()
        .filter_map(|kv| match serde_json::from_slice::<Entry>(&kv.value) {
            Ok(entry) => Some(entry),
            Err(e) => {
                eprintln!(
                    "chat: skipping undecodable entry {}: {e}",
                    String::from_utf8_lossy(&kv.key)
                );
                None
            }
        })
        .collect()
}

/// The newest `limit` entries, oldest first.
fn history(limit: u32) -> Vec<Entry> {
    history_before(limit, None)
}

/// The newest `limit` entries before `before`, oldest first.
fn history_before(limit: u32, before: Option<u64>) -> Vec<Entry> {
    let mut entries = entries_before(limit, before);
    entries.reverse();
    entries
}

/// The id of the newest entry, from storage.
fn read_last_id() -> Result<u64, String> {
    let last = check(
        storage::raw::get(LAST_ID_KEY.as_bytes()),
        "read the id counter",
    )?
    .and_then(|bytes| serde_json::from_slice::<u64>(&bytes).ok());
    Ok(match last {
        Some(last) => last,
        // No counter (a new room): start after the newest entry, if any (none normally).
        None => recent_entries(1).first().map_or(0, |e| e.id),
    })
}

/// Stores a new entry with the id after `last`; the entry and the counter are written in
/// one call, so either both land or neither does.
fn store_entry(
    last: u64,
    name: &str,
    role: &str,
    text: &str,
    stopped: bool,
) -> Result<Entry, String> {
    let entry = Entry {
        id: last + 1,
        name: name.to_string(),
        role: role.to_string(),
        text: text.to_string(),
        ts: lodge_sdk::now_ms(),
        stopped,
    };
    let value = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
    let writes = [
        storage::Entry {
            key: protocol::entry_key(entry.id).into_bytes(),
            value,
        },
        storage::Entry {
            key: LAST_ID_KEY.as_bytes().to_vec(),
            value: entry.id.to_string().into_bytes(),
        },
    ];
    check(storage::raw::put_many(&writes), "store the message")?;
    Ok(entry)
}

/// One `ai_partial` per reply being written (protocol v2): everything it wrote so far.
fn send_partials(socket: Socket, replies: &std::collections::BTreeMap<u64, Reply>, ai_name: &str) {
    for (&id, reply) in replies {
        let _ = socket.send_text(&protocol::ai_partial_frame(
            id,
            &reply.text,
            ai_name,
            reply.started,
        ));
    }
}

/// The names of the open sockets other than `skip`, from their attachments.
fn names_except(skip: Socket) -> Vec<String> {
    sockets::all()
        .into_iter()
        .filter(|&s| s != skip)
        .filter_map(|s| s.attachment::<Attachment>().map(|a| a.name))
        .collect()
}

fn broadcast(frame: &str) {
    sockets::broadcast_text(frame, &[]);
}

fn describe_ai_error(e: &AiError) -> String {
    match e {
        AiError::Unavailable(m) => format!("the AI is not available: {m}"),
        AiError::Busy(m) => format!("the AI is busy, try again in a moment: {m}"),
        AiError::Invalid(m) => format!("the AI refused the request: {m}"),
    }
}

impl Chat {
    /// Answers the AI for the newest entry (which `asker` just wrote).
    fn start_ai(&mut self, question: &Entry) {
        let newest_first = recent_entries(self.class.ai_context_messages);
        let effective = self.room.effective(&self.class);
        let prompt = render_system_prompt(&effective.system_prompt, &object::name());
        let messages = build_context(
            &prompt,
            &newest_first,
            self.class.ai_context_messages as usize,
            self.class.ai_context_chars,
        )
        .into_iter()
        .map(|m| ChatMessage::new(m.role, m.content))
        .collect();
        let request = CompletionRequest {
            messages,
            model: self.class.ai_model.clone(),
            temperature: self.class.ai_temperature,
            max_tokens: self.class.ai_max_tokens,
        };
        match ai::start(&request) {
            Ok(stream) => {
                self.replies.insert(
                    stream,
                    Reply {
                        text: String::new(),
                        started: lodge_sdk::now_ms(),
                    },
                );
                let pending = Pending {
                    response_id: stream,
                    asked_by: question.name.clone(),
                    entry_id: question.id,
                    started: lodge_sdk::now_ms(),
                };
                // The reply works without the record; it only helps notice a lost stream.
                if let Err(e) = storage::put(&pending_key(stream), &pending) {
                    eprintln!("chat: could not record AI stream {stream}: {e}");
                }
            }
            Err(e) => broadcast(&protocol::ai_error_frame(0, &describe_ai_error(&e))),
        }
    }

    fn on_text(&mut self, socket: Socket, raw: &str) {
        let frame = match protocol::parse_client_frame(raw, self.class.max_text_len) {
            Ok(frame) => frame,
            Err(e) => {
                let _ = socket.send_text(&protocol::error_frame(&e));
                return;
            }
        };
        let text = match frame {
            ClientFrame::Heartbeat => {
                let _ = socket.send_text(PONG);
                return;
            }
            ClientFrame::Message(text) => text,
            ClientFrame::AiStop(response_id) => {
                self.stop_ai(socket, response_id);
                return;
            }
            ClientFrame::Resume => {
                send_partials(socket, &self.replies, &self.class.ai_name);
                return;
            }
        };
        let Some(Attachment { name }) = socket.attachment::<Attachment>() else {
            let _ = socket.send_text(&protocol::error_frame(
                "this connection has no name: reconnect to /ws?name=YOUR_NAME",
            ));
            return;
        };
        let entry = match self.store_entry(&name, ROLE_USER, &text) {
            Ok(entry) => entry,
            Err(e) => {
                let _ = socket.send_text(&protocol::error_frame(&e));
                return;
            }
        };
        broadcast(&protocol::message_frame(&entry));
        if self.room.answer_all || protocol::mentions_ai(&entry.text) {
            self.start_ai(&entry);
        }
    }

    /// A participant stops reply `response_id`: no more pieces of it, and what it had written
    /// is stored and sent to everyone as a stopped reply.
    fn stop_ai(&mut self, socket: Socket, response_id: u64) {
        let Some(Reply { text, .. }) = self.replies.remove(&response_id) else {
            let _ = socket.send_text(&protocol::error_frame(&format!(
                "there is no AI reply {response_id} being written"
            )));
            return;
        };
        ai::cancel(response_id);
        self.stopped.insert(response_id);
        let _ = storage::delete(&pending_key(response_id));
        let ai_name = self.class.ai_name.clone();
        match self.store_reply(&ai_name, text.trim(), true) {
            Ok(entry) => broadcast(&protocol::ai_response_frame(&entry, response_id)),
            Err(e) => broadcast(&protocol::ai_error_frame(response_id, &e)),
        }
    }

    /// Stores a new entry with the next id (see [`store_entry`]).
    fn store_entry(&mut self, name: &str, role: &str, text: &str) -> Result<Entry, String> {
        self.store(name, role, text, false)
    }

    /// Stores an AI reply (`stopped`: cut short by a participant).
    fn store_reply(&mut self, name: &str, text: &str, stopped: bool) -> Result<Entry, String> {
        self.store(name, ROLE_ASSISTANT, text, stopped)
    }

    fn store(
        &mut self,
        name: &str,
        role: &str,
        text: &str,
        stopped: bool,
    ) -> Result<Entry, String> {
        let last = match self.last_id {
            Some(last) => last,
            None => read_last_id()?,
        };
        let entry = store_entry(last, name, role, text, stopped)?;
        self.last_id = Some(entry.id);
        Ok(entry)
    }

    fn settings_response(&self) -> Response {
        Response::json(200, &self.room.effective(&self.class)).header("cache-control", "no-store")
    }
}

impl Object for Chat {
    fn activate() -> Self {
        // Heartbeats are answered by the host without waking the room.
        sockets::set_auto_response(HEARTBEAT, PONG);
        let class = ClassConfig::from_lookup(object::setting);
        let room = storage::get::<RoomSettings>(ROOM_SETTINGS_KEY)
            .unwrap_or_else(|e| {
                eprintln!("chat: ignoring stored room settings: {e}");
                None
            })
            .unwrap_or_default();
        // The host never evicts a room while one of its AI streams is in flight, so a
        // record found now belongs to a stream that a host restart cut off: drop it. (Should
        // a live stream still deliver after all, `on_ai_event` does not need the record.)
        if let Ok(stale) = storage::list::<serde_json::Value>(PENDING_PREFIX, None, false) {
            for (key, _) in stale {
                eprintln!("chat: dropping the record of an interrupted AI reply ({key})");
                let _ = storage::delete(&key);
            }
        }
        Chat {
            class,
            room,
            last_id: None,
            presence: None,
            replies: Default::default(),
            stopped: Default::default(),
        }
    }

    fn on_request(&mut self, req: Request) -> Response {
        let path = req.path.as_str();
        match (req.method.as_str(), path) {
            ("GET" | "HEAD", "/" | "" | "/index.html") => Response::html(page::render(&self.class))
                .header("cache-control", "no-cache")
                .header("x-content-type-options", "nosniff")
                .header(
                    "content-security-policy",
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     img-src data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'",
                ),
            ("GET", "/history") => {
                let limit = protocol::parse_history_limit(req.query_param("limit").as_deref());
                let before = protocol::parse_history_before(req.query_param("before").as_deref());
                match limit.and_then(|limit| Ok((limit, before?))) {
                    Ok((limit, before)) => Response::json(200, &history_before(limit, before))
                        .header("cache-control", "no-store"),
                    Err(e) => Response::error(400, e),
                }
            }
            ("GET", "/settings") => self.settings_response(),
            ("PUT", "/settings") => match self.room.apply_update(&req.body) {
                Ok(next) => {
                    if let Err(e) = check(
                        storage::raw::put(
                            ROOM_SETTINGS_KEY.as_bytes(),
                            &serde_json::to_vec(&next).unwrap_or_default(),
                        ),
                        "store the settings",
                    ) {
                        return Response::error(507, e);
                    }
                    self.room = next;
                    self.settings_response()
                }
                Err(e) => Response::error(400, e),
            },
            (_, "/" | "" | "/index.html" | "/history") => {
                Response::error(405, format!("{} is not allowed on {path}", req.method)).header("allow", "GET")
            }
            (_, "/settings") => Response::error(405, format!("{} is not allowed on /settings", req.method))
                .header("allow", "GET, PUT"),
            _ => Response::error(404, format!("no route {} {path}: try /, /history or /settings", req.method)),
        }
    }

    fn on_connect(&mut self, socket: Socket, req: &Request) -> Connect {
        if req.path != "/ws" && req.path != "/ws/" {
            return Connect::reject(Response::error(
                404,
                format!(
                    "no WebSocket at {}: connect to /ws?name=YOUR_NAME",
                    req.path
                ),
            ));
        }
        let name = match protocol::validate_name(
            req.query_param("name").as_deref(),
            self.class.max_name_len,
        ) {
            Ok(name) => name,
            Err(e) => return Connect::reject(Response::error(400, e)),
        };
        let now = lodge_sdk::now_ms();
        let max = self.class.presence_list_max;
        // The connecting socket has no attachment yet: it is not among the names read.
        let presence = self
            .presence
            .get_or_insert_with(|| Presence::from_names(names_except(socket)));
        presence.join(&name);
        let frame = protocol::presence_frame(&presence.users(max), presence.count());
        // To the joiner: history, then presence. To the others: who joined, then presence
        // (in a large room, only the count, when it moved).
        let _ = socket.send_text(&protocol::history_frame(&history(JOIN_HISTORY)));
        let _ = socket.send_text(&frame);
        // Replies being written: what they wrote so far; their next pieces follow.
        send_partials(socket, &self.replies, &self.class.ai_name);
        match presence.announce(max) {
            Announce::Everyone => {
                sockets::broadcast_text(&protocol::user_frame(true, &name, now), &[socket]);
                sockets::broadcast_text(&frame, &[socket]);
            }
            Announce::Count => {
                sockets::broadcast_text(&frame, &[socket]);
            }
            Announce::Nothing => {}
        }
        Connect::accept().attachment(&Attachment { name })
    }

    fn on_message(&mut self, socket: Socket, message: Message) {
        match message {
            Message::Text(raw) => self.on_text(socket, &raw),
            Message::Binary(_) => {
                let _ = socket.send_text(&protocol::error_frame(
                    "binary frames are not supported: send JSON text frames like {\"type\":\"message\",\"text\":\"hi\"}",
                ));
            }
        }
    }

    fn on_close(&mut self, socket: Socket, _code: u16, _reason: String) {
        let Some(Attachment { name }) = socket.attachment::<Attachment>() else {
            return;
        };
        let max = self.class.presence_list_max;
        let presence = match &mut self.presence {
            Some(presence) => {
                presence.leave(&name);
                presence
            }
            // Rebuilt without the socket that is closing.
            None => self
                .presence
                .insert(Presence::from_names(names_except(socket))),
        };
        let frame = protocol::presence_frame(&presence.users(max), presence.count());
        match presence.announce(max) {
            Announce::Everyone => {
                broadcast(&protocol::user_frame(false, &name, lodge_sdk::now_ms()));
                broadcast(&frame);
            }
            Announce::Count => broadcast(&frame),
            Announce::Nothing => {}
        }
    }

    fn on_ai_event(&mut self, stream: ai::StreamId, event: AiEvent) {
        if self.stopped.contains(&stream) {
            if !matches!(event, AiEvent::Delta(_)) {
                self.stopped.remove(&stream);
            }
            return;
        }
        match event {
            AiEvent::Delta(content) => {
                self.replies
                    .entry(stream)
                    .or_default()
                    .text
                    .push_str(&content);
                if !content.is_empty() {
                    broadcast(&protocol::ai_stream_frame(
                        stream,
                        &content,
                        lodge_sdk::now_ms(),
                    ));
                }
            }
            AiEvent::Done(full) => {
                self.replies.remove(&stream);
                let _ = storage::delete(&pending_key(stream));
                let text = full.trim();
                if text.is_empty() {
                    broadcast(&protocol::ai_error_frame(
                        stream,
                        "the AI returned an empty reply",
                    ));
                    return;
                }
                let ai_name = self.class.ai_name.clone();
                match self.store_reply(&ai_name, text, false) {
                    Ok(entry) => broadcast(&protocol::ai_response_frame(&entry, stream)),
                    Err(e) => broadcast(&protocol::ai_error_frame(stream, &e)),
                }
            }
            AiEvent::Error(message) => {
                self.replies.remove(&stream);
                let _ = storage::delete(&pending_key(stream));
                broadcast(&protocol::ai_error_frame(stream, &message));
            }
        }
    }
}

lodge_sdk::export!(Chat);
