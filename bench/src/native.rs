//! The native baseline: the chat protocol subset the benchmark uses, as a plain tokio +
//! tokio-tungstenite server with no WebAssembly, and the same durability as lodge.
//!
//! - `GET /chat/{room}/ws?name=NAME` joins; the joiner gets `history` (last 50 entries)
//!   then `presence`, the others `user_joined` then `presence`; a closed socket makes the
//!   others get `user_left` and `presence`.
//! - `{"type":"message","text":...}` is validated like the chat guest does, stored in redb
//!   (entry + id counter in one batch, gap-free ids) and broadcast to everyone as
//!   `{"type":"message", id, name, role, text, ts}` only once its commit is durable;
//!   `{"type":"heartbeat"}` is answered `{"type":"pong"}`.
//! - Durability: one writer thread drains every waiting batch into one redb write
//!   transaction committed with `Durability::Immediate` (fsync): group commit, as lodge's
//!   storage writer does. `--no-fsync` commits with `Durability::None` instead.
//! - Each room is one task (events strictly in order, like a lodge object) and a gate task
//!   that releases each event's frames in order once its batch is durable, so a room keeps
//!   working on the next message while the previous one is being fsynced (as lodge does).
//! - `GET /metrics` answers `native_commits_total` and `native_committed_batches_total`.
//!
//! What it does not do: AI, settings, the web page, hibernation (rooms stay in memory).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chat");

/// Same limits as the chat guest and lodge's defaults.
const MAX_TEXT_CHARS: usize = 2000;
const MAX_NAME_CHARS: usize = 32;
const JOIN_HISTORY: usize = 50;
const MAILBOX: usize = 1024;
const SEND_QUEUE: usize = 1024;
const MAX_MESSAGE_BYTES: usize = 1 << 20;
const MAX_BATCHES_PER_COMMIT: usize = 4096;
const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;
const PONG: &str = r#"{"type":"pong"}"#;

/// Serves until killed.
pub async fn run(
    listen: SocketAddr,
    data_dir: PathBuf,
    fsync: bool,
    read_buffer: usize,
) -> Result<()> {
    let store = Store::open(&data_dir, fsync)?;
    let listener = TcpListener::bind(listen).await?;
    println!("native listening on http://{}", listener.local_addr()?);
    let server = Arc::new(Server {
        rooms: Mutex::new(HashMap::new()),
        store,
        sockets: AtomicU64::new(1),
        read_buffer,
    });
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("native: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(server, tcp).await {
                eprintln!("native: connection: {e:#}");
            }
        });
    }
}

struct Server {
    rooms: Mutex<HashMap<String, mpsc::Sender<RoomEvent>>>,
    store: Store,
    sockets: AtomicU64,
    /// WebSocket read buffer per connection, bytes.
    read_buffer: usize,
}

impl Server {
    fn room(self: &Arc<Self>, name: &str) -> mpsc::Sender<RoomEvent> {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if let Some(tx) = rooms.get(name) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(MAILBOX);
        rooms.insert(name.to_string(), tx.clone());
        let store = self.store.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = room_task(name.clone(), store, rx).await {
                eprintln!("native: room {name}: {e:#}");
            }
        });
        tx
    }
}

// ---- connections ----------------------------------------------------------------------

async fn connection(server: Arc<Server>, tcp: TcpStream) -> Result<()> {
    tcp.set_nodelay(true)?;
    let mut peek = [0u8; 12];
    let n = tcp.peek(&mut peek).await?;
    if &peek[..n] == b"GET /metrics" {
        return metrics(&server, tcp).await;
    }
    let mut target: Option<(String, String)> = None;
    let config = WebSocketConfig::default()
        .read_buffer_size(server.read_buffer)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    // The handshake callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match parse_target(req.uri().path(), req.uri().query().unwrap_or("")) {
            Ok(t) => {
                target = Some(t);
                Ok(resp)
            }
            Err((status, message)) => {
                let mut err = ErrorResponse::new(Some(json!({ "error": message }).to_string()));
                *err.status_mut() = status.try_into().expect("valid status");
                Err(err)
            }
        }
    };
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config))
        .await
        .context("websocket handshake")?;
    let (room_name, name) = target.expect("the handshake accepted a target");
    let socket = server.sockets.fetch_add(1, Ordering::Relaxed);
    let room = server.room(&room_name);
    let (out_tx, mut out_rx) = mpsc::channel::<Arc<str>>(SEND_QUEUE);
    room.send(RoomEvent::Join {
        socket,
        name,
        out: out_tx,
    })
    .await?;
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if text.as_str() == HEARTBEAT {
                        if ws.send(Message::Text(PONG.into())).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    let event = RoomEvent::Text { socket, text: text.as_str().to_owned() };
                    if room.send(event).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let frame = error_frame("binary frames are not supported: send JSON text frames like {\"type\":\"message\",\"text\":\"hi\"}");
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = out_rx.recv() => match out {
                Some(frame) => {
                    if ws.send(Message::Text(Utf8Bytes::from(&*frame))).await.is_err() {
                        break;
                    }
                }
                None => {
                    let close = CloseFrame {
                        code: CloseCode::from(1008),
                        reason: "too slow: the send queue is full".into(),
                    };
                    let _ = ws.close(Some(close)).await;
                    break;
                }
            },
        }
    }
    let _ = room.send(RoomEvent::Leave { socket }).await;
    Ok(())
}

async fn metrics(server: &Server, mut tcp: TcpStream) -> Result<()> {
    let stats = &server.store.stats;
    let body = format!(
        "native_commits_total {}\nnative_committed_batches_total {}\n",
        stats.commits.load(Ordering::Relaxed),
        stats.batches.load(Ordering::Relaxed)
    );
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(resp.as_bytes()).await?;
    tcp.shutdown().await?;
    Ok(())
}

/// `/chat/{room}/ws` and `name=` -> (room, name), or an HTTP error.
fn parse_target(path: &str, query: &str) -> Result<(String, String), (u16, String)> {
    let rest = path
        .strip_prefix("/chat/")
        .ok_or((404, format!("no route {path}")))?;
    let (room, tail) = rest
        .split_once('/')
        .ok_or((404, "no WebSocket here".to_string()))?;
    if tail != "ws" && tail != "ws/" {
        return Err((404, format!("no WebSocket at /{tail}")));
    }
    let room = decode(room);
    if room.is_empty() {
        return Err((404, "no room name".into()));
    }
    let name = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "name").then(|| decode(&v.replace('+', " ")))
    });
    let name = validate_name(name.as_deref()).map_err(|e| (400, e))?;
    Ok((room, name))
}

fn decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn validate_name(name: Option<&str>) -> Result<String, String> {
    let name = name
        .ok_or("a name is required: connect to /ws?name=YOUR_NAME")?
        .trim();
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name must not contain control characters".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the name is too long: at most {MAX_NAME_CHARS} characters are allowed"
        ));
    }
    Ok(name.to_string())
}

// ---- rooms ----------------------------------------------------------------------------

enum RoomEvent {
    Join {
        socket: u64,
        name: String,
        out: mpsc::Sender<Arc<str>>,
    },
    Text {
        socket: u64,
        text: String,
    },
    Leave {
        socket: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    id: u64,
    name: String,
    role: String,
    text: String,
    ts: u64,
}

/// What the gate does with an event's outputs once its batch is durable.
enum Op {
    Add(u64, mpsc::Sender<Arc<str>>),
    Remove(u64),
    Send(u64, Arc<str>),
    /// To every member but the one given.
    Broadcast(Arc<str>, Option<u64>),
}

struct Release {
    ticket: Option<Ticket>,
    ops: Vec<Op>,
}

fn msg_key(room: &str, id: u64) -> Vec<u8> {
    let mut k = room.as_bytes().to_vec();
    k.extend_from_slice(b"\0m");
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn last_id_key(room: &str) -> Vec<u8> {
    let mut k = room.as_bytes().to_vec();
    k.extend_from_slice(b"\0l");
    k
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn error_frame(error: &str) -> String {
    json!({ "type": "error", "error": error }).to_string()
}

fn presence_frame(names: &BTreeMap<u64, String>) -> Arc<str> {
    let mut users: Vec<&String> = names.values().collect();
    users.sort();
    users.dedup();
    json!({ "type": "presence", "users": users })
        .to_string()
        .into()
}

fn message_frame(entry: &Entry) -> String {
    let mut map = Map::new();
    map.insert("type".into(), "message".into());
    map.insert("id".into(), entry.id.into());
    map.insert("name".into(), entry.name.clone().into());
    map.insert("role".into(), entry.role.clone().into());
    map.insert("text".into(), entry.text.clone().into());
    map.insert("ts".into(), entry.ts.into());
    Value::Object(map).to_string()
}

/// Validates a client frame like the chat guest: `Ok(Some(text))` for a message,
/// `Ok(None)` for a heartbeat, `Err` with the error frame's text otherwise.
fn parse_frame(raw: &str) -> Result<Option<String>, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("a frame must be a JSON object with a \"type\" field".into());
    };
    match map.get("type") {
        Some(Value::String(t)) if t == "message" => match map.get("text") {
            Some(Value::String(text)) => {
                let text = text.trim();
                if text.is_empty() {
                    return Err("the message is empty".into());
                }
                let len = text.chars().count();
                if len > MAX_TEXT_CHARS {
                    return Err(format!(
                        "the message is too long: {len} characters, at most {MAX_TEXT_CHARS} are allowed"
                    ));
                }
                Ok(Some(text.to_string()))
            }
            Some(_) => Err("the \"text\" field must be a string".into()),
            None => Err("a message needs a \"text\" field".into()),
        },
        Some(Value::String(t)) if t == "heartbeat" => Ok(None),
        Some(Value::String(t)) => Err(format!(
            "unknown frame type {}: send \"message\" or \"heartbeat\"",
            Value::String(t.chars().take(40).collect())
        )),
        Some(_) => Err("the \"type\" field must be a string".into()),
        None => Err("missing \"type\" field".into()),
    }
}

async fn room_task(room: String, store: Store, mut rx: mpsc::Receiver<RoomEvent>) -> Result<()> {
    // State from storage: the id counter and the last entries (kept in memory after).
    let (mut last_id, mut recent) = store.load_room(&room)?;
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    let (gate_tx, gate_rx) = mpsc::unbounded_channel();
    tokio::spawn(gate(gate_rx));
    while let Some(event) = rx.recv().await {
        let release = match event {
            RoomEvent::Join { socket, name, out } => {
                let history: Vec<&Entry> = recent.iter().collect();
                let history: Arc<str> = json!({ "type": "history", "data": history })
                    .to_string()
                    .into();
                names.insert(socket, name.clone());
                let presence = presence_frame(&names);
                let joined: Arc<str> =
                    json!({ "type": "user_joined", "name": name, "timestamp": now_ms() })
                        .to_string()
                        .into();
                Release {
                    ticket: None,
                    ops: vec![
                        Op::Add(socket, out),
                        Op::Send(socket, history),
                        Op::Send(socket, presence.clone()),
                        Op::Broadcast(joined, Some(socket)),
                        Op::Broadcast(presence, Some(socket)),
                    ],
                }
            }
            RoomEvent::Text { socket, text } => match parse_frame(&text) {
                Ok(Some(text)) => {
                    let Some(name) = names.get(&socket).cloned() else {
                        continue;
                    };
                    let entry = Entry {
                        id: last_id + 1,
                        name,
                        role: "user".into(),
                        text,
                        ts: now_ms(),
                    };
                    let value = serde_json::to_vec(&entry)?;
                    let ticket = store.submit(vec![
                        (msg_key(&room, entry.id), value),
                        (last_id_key(&room), entry.id.to_string().into_bytes()),
                    ]);
                    last_id = entry.id;
                    let frame: Arc<str> = message_frame(&entry).into();
                    recent.push_back(entry);
                    if recent.len() > JOIN_HISTORY {
                        recent.pop_front();
                    }
                    Release {
                        ticket: Some(ticket),
                        ops: vec![Op::Broadcast(frame, None)],
                    }
                }
                Ok(None) => Release {
                    ticket: None,
                    ops: vec![Op::Send(socket, PONG.into())],
                },
                Err(e) => Release {
                    ticket: None,
                    ops: vec![Op::Send(socket, error_frame(&e).into())],
                },
            },
            RoomEvent::Leave { socket } => {
                let Some(name) = names.remove(&socket) else {
                    continue;
                };
                let left: Arc<str> =
                    json!({ "type": "user_left", "name": name, "timestamp": now_ms() })
                        .to_string()
                        .into();
                Release {
                    ticket: None,
                    ops: vec![
                        Op::Remove(socket),
                        Op::Broadcast(left, None),
                        Op::Broadcast(presence_frame(&names), None),
                    ],
                }
            }
        };
        if gate_tx.send(release).is_err() {
            break;
        }
    }
    Ok(())
}

/// Releases each event's frames in order, once its batch is durable.
async fn gate(mut rx: mpsc::UnboundedReceiver<Release>) {
    let mut members: HashMap<u64, mpsc::Sender<Arc<str>>> = HashMap::new();
    while let Some(release) = rx.recv().await {
        if let Some(ticket) = release.ticket {
            match ticket.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // Same promise as lodge: never show what a crash could lose.
                    eprintln!("native: commit failed: {e}");
                    std::process::exit(1);
                }
                Err(_) => return,
            }
        }
        for op in release.ops {
            match op {
                Op::Add(id, tx) => {
                    members.insert(id, tx);
                }
                Op::Remove(id) => {
                    members.remove(&id);
                }
                Op::Send(id, frame) => {
                    if let Some(tx) = members.get(&id)
                        && tx.try_send(frame).is_err()
                    {
                        // Too slow (or gone): dropping the sender closes the socket.
                        members.remove(&id);
                    }
                }
                Op::Broadcast(frame, except) => {
                    members
                        .retain(|id, tx| Some(*id) == except || tx.try_send(frame.clone()).is_ok());
                }
            }
        }
    }
}

// ---- storage --------------------------------------------------------------------------

type Ticket = oneshot::Receiver<Result<(), String>>;
type Pending = (Vec<(Vec<u8>, Vec<u8>)>, oneshot::Sender<Result<(), String>>);

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    batches: AtomicU64,
}

#[derive(Clone)]
struct Store {
    db: Arc<Database>,
    writer: std_mpsc::Sender<Pending>,
    stats: Arc<Stats>,
}

impl Store {
    fn open(dir: &Path, fsync: bool) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let db = Arc::new(Database::create(dir.join("native.redb"))?);
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        let (tx, rx) = std_mpsc::channel::<Pending>();
        let stats = Arc::new(Stats::default());
        let (wdb, wstats) = (db.clone(), stats.clone());
        let durability = if fsync {
            Durability::Immediate
        } else {
            Durability::None
        };
        std::thread::Builder::new()
            .name("native-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_BATCHES_PER_COMMIT {
                        match rx.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    let result = commit(&wdb, durability, &group).map_err(|e| format!("{e:#}"));
                    wstats.commits.fetch_add(1, Ordering::Relaxed);
                    wstats
                        .batches
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                    for (_, done) in group {
                        let _ = done.send(result.clone());
                    }
                }
            })?;
        Ok(Store {
            db,
            writer: tx,
            stats,
        })
    }

    fn submit(&self, writes: Vec<(Vec<u8>, Vec<u8>)>) -> Ticket {
        let (done, ticket) = oneshot::channel();
        if let Err(std_mpsc::SendError((_, done))) = self.writer.send((writes, done)) {
            let _ = done.send(Err("the writer stopped".into()));
        }
        ticket
    }

    /// The room's id counter and its last entries, oldest first.
    fn load_room(&self, room: &str) -> Result<(u64, VecDeque<Entry>)> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let last = table
            .get(last_id_key(room).as_slice())?
            .and_then(|v| std::str::from_utf8(v.value()).ok()?.parse().ok())
            .unwrap_or(0u64);
        let mut recent = VecDeque::new();
        let (lo, hi) = (msg_key(room, 0), msg_key(room, u64::MAX));
        for item in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice())?.rev() {
            let (_, v) = item?;
            if let Ok(entry) = serde_json::from_slice::<Entry>(v.value()) {
                recent.push_front(entry);
            }
            if recent.len() >= JOIN_HISTORY {
                break;
            }
        }
        Ok((last, recent))
    }
}

fn commit(db: &Database, durability: Durability, group: &[Pending]) -> Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    {
        let mut table = txn.open_table(TABLE)?;
        for (writes, _) in group {
            for (k, v) in writes {
                table.insert(k.as_slice(), v.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}
