//! A mock lodge host that runs chat.wasm in-process and checks shared/protocols/chat.md end
//! to end: in-memory storage and sockets with the host's semantics (a joining socket is
//! listed during on-connect; a closing one is not, but its attachment is still readable),
//! the heartbeat auto-response, a scripted AI provider, and eviction (a fresh instance over
//! the same storage and sockets). Set CHAT_WASM to test another build.
use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use wasmtime::Result;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "object-class",
    path: "../../../wit",
});

use exports::lodge::object::events::{AiEvent, ConnectOutcome};
use lodge::object::ai::{AiError, CompletionRequest};
use lodge::object::sockets::{AutoResponse, SocketError};
use lodge::object::storage::{Entry, ListOptions, StorageError};
use lodge::object::types::{Header, Message, Request, Response};

#[derive(Default, Clone)]
struct Sock {
    tags: Vec<String>,
    attachment: Vec<u8>,
}

struct H {
    wasi: WasiCtx,
    table: ResourceTable,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    sockets: BTreeMap<u64, Sock>,
    closing: Option<(u64, Sock)>,
    outbox: Vec<(u64, String)>,
    auto: Option<AutoResponse>,
    next_stream: u64,
    started: Vec<(u64, CompletionRequest)>,
    ai_fail: Option<AiError>,
    settings: HashMap<String, String>,
}

impl WasiView for H {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl lodge::object::types::Host for H {}

impl lodge::object::object::Host for H {
    fn class_name(&mut self) -> String {
        "chat".into()
    }
    fn name(&mut self) -> String {
        "lobby".into()
    }
    fn id(&mut self) -> String {
        "0".repeat(32)
    }
    fn setting(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).cloned()
    }
}

impl lodge::object::storage::Host for H {
    fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.kv.get(&key).cloned())
    }
    fn get_many(&mut self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        Ok(keys.iter().map(|k| self.kv.get(k).cloned()).collect())
    }
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StorageError> {
        if key.is_empty() {
            return Err(StorageError::Invalid("empty key".into()));
        }
        self.kv.insert(key, value);
        Ok(())
    }
    fn put_many(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        for e in entries {
            self.kv.insert(e.key, e.value);
        }
        Ok(())
    }
    fn delete(&mut self, key: Vec<u8>) -> Result<bool, StorageError> {
        Ok(self.kv.remove(&key).is_some())
    }
    fn list(&mut self, o: ListOptions) -> Result<Vec<Entry>, StorageError> {
        let mut v: Vec<Entry> = self
            .kv
            .iter()
            .filter(|(k, _)| o.prefix.as_ref().is_none_or(|p| k.starts_with(p)))
            .filter(|(k, _)| o.start.as_ref().is_none_or(|s| *k >= s))
            .filter(|(k, _)| o.end.as_ref().is_none_or(|e| *k < e))
            .map(|(k, v)| Entry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        if o.reverse {
            v.reverse();
        }
        if let Some(l) = o.limit {
            v.truncate(l as usize);
        }
        Ok(v)
    }
    fn delete_all(&mut self) -> Result<(), StorageError> {
        self.kv.clear();
        Ok(())
    }
    fn usage(&mut self) -> Result<u64, StorageError> {
        Ok(0)
    }
    fn quota(&mut self) -> u64 {
        1 << 30
    }
}

impl H {
    fn sock(&self, s: u64) -> Option<&Sock> {
        self.sockets
            .get(&s)
            .or(self.closing.as_ref().filter(|c| c.0 == s).map(|c| &c.1))
    }
}

impl lodge::object::sockets::Host for H {
    fn send(&mut self, socket: u64, message: Message) -> Result<(), SocketError> {
        if self.sockets.contains_key(&socket) {
            let Message::Text(t) = message else {
                panic!("binary sent")
            };
            self.outbox.push((socket, t));
            Ok(())
        } else {
            Err(SocketError::NotFound)
        }
    }
    fn broadcast(
        &mut self,
        message: Message,
        tag: Option<String>,
        except: Vec<u64>,
    ) -> Result<u32, SocketError> {
        let Message::Text(t) = message else {
            panic!("binary broadcast")
        };
        let mut n = 0;
        for (id, s) in &self.sockets {
            if except.contains(id) {
                continue;
            }
            if let Some(tag) = &tag {
                if !s.tags.contains(tag) {
                    continue;
                }
            }
            self.outbox.push((*id, t.clone()));
            n += 1;
        }
        Ok(n)
    }
    fn close(&mut self, _socket: u64, _code: u16, _reason: String) -> Result<(), SocketError> {
        Ok(())
    }
    fn list(&mut self, tag: Option<String>) -> Vec<u64> {
        self.sockets
            .iter()
            .filter(|(_, s)| tag.as_ref().is_none_or(|t| s.tags.contains(t)))
            .map(|(i, _)| *i)
            .collect()
    }
    fn tags(&mut self, socket: u64) -> Result<Vec<String>, SocketError> {
        self.sock(socket)
            .map(|s| s.tags.clone())
            .ok_or(SocketError::NotFound)
    }
    fn attachment(&mut self, socket: u64) -> Result<Vec<u8>, SocketError> {
        self.sock(socket)
            .map(|s| s.attachment.clone())
            .ok_or(SocketError::NotFound)
    }
    fn set_attachment(&mut self, socket: u64, data: Vec<u8>) -> Result<(), SocketError> {
        self.sockets
            .get_mut(&socket)
            .map(|s| s.attachment = data)
            .ok_or(SocketError::NotFound)
    }
    fn set_auto_response(&mut self, pair: Option<AutoResponse>) {
        self.auto = pair;
    }
}

impl lodge::object::alarms::Host for H {
    fn set(&mut self, _at: u64) {}
    fn get(&mut self) -> Option<u64> {
        None
    }
    fn delete(&mut self) {}
}

impl lodge::object::ai::Host for H {
    fn start_chat(&mut self, request: CompletionRequest) -> Result<u64, AiError> {
        if let Some(e) = self.ai_fail.clone() {
            return Err(e);
        }
        self.next_stream += 1;
        self.started.push((self.next_stream, request));
        Ok(self.next_stream)
    }
    fn cancel(&mut self, _id: u64) {}
}

struct Room {
    engine: Engine,
    component: Component,
    linker: Linker<H>,
    store: Store<H>,
    inst: ObjectClass,
    activations: u32,
}

fn wasm_path() -> String {
    std::env::var("CHAT_WASM").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/wasm32-wasip2/release/chat.wasm"
        )
        .to_string()
    })
}

fn req(method: &str, path: &str, query: &str, body: &[u8]) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![Header {
            name: "host".into(),
            value: "x".into(),
        }],
        body: body.to_vec(),
    }
}

impl Room {
    fn new(settings: HashMap<String, String>) -> Result<Room> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let component = Component::from_file(&engine, wasm_path())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        ObjectClass::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let h = H {
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
            kv: BTreeMap::new(),
            sockets: BTreeMap::new(),
            closing: None,
            outbox: vec![],
            auto: None,
            next_stream: 0,
            started: vec![],
            ai_fail: None,
            settings,
        };
        let mut store = Store::new(&engine, h);
        let inst = ObjectClass::instantiate(&mut store, &component, &linker)?;
        Ok(Room {
            engine,
            component,
            linker,
            store,
            inst,
            activations: 1,
        })
    }
    /// Throws the instance away (eviction / restart); storage and sockets stay.
    fn evict(&mut self) -> Result<()> {
        let mut h = std::mem::replace(
            self.store.data_mut(),
            H {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
                kv: Default::default(),
                sockets: Default::default(),
                closing: None,
                outbox: vec![],
                auto: None,
                next_stream: 0,
                started: vec![],
                ai_fail: None,
                settings: Default::default(),
            },
        );
        h.wasi = WasiCtx::builder().inherit_stderr().build();
        h.table = ResourceTable::new();
        h.auto = None;
        self.store = Store::new(&self.engine, h);
        self.inst = ObjectClass::instantiate(&mut self.store, &self.component, &self.linker)?;
        self.activations += 1;
        Ok(())
    }
    fn take(&mut self) -> Vec<(u64, Value)> {
        self.store
            .data_mut()
            .outbox
            .drain(..)
            .map(|(s, t)| {
                (
                    s,
                    serde_json::from_str(&t).unwrap_or_else(|_| panic!("not JSON: {t}")),
                )
            })
            .collect()
    }
    fn http(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Result<(u16, Value, Response)> {
        let r = req(method, path, query, body);
        let ev = self.inst.lodge_object_events();
        let resp = ev.call_on_request(&mut self.store, &r)?;
        let v = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        Ok((resp.status, v, resp))
    }
    fn connect(&mut self, id: u64, path: &str, query: &str) -> Result<Result<(), (u16, Value)>> {
        self.store.data_mut().sockets.insert(id, Sock::default());
        let r = req("GET", path, query, b"");
        let ev = self.inst.lodge_object_events();
        match ev.call_on_connect(&mut self.store, id, &r)? {
            ConnectOutcome::Accept(a) => {
                let s = self.store.data_mut().sockets.get_mut(&id).unwrap();
                s.tags = a.tags;
                s.attachment = a.attachment;
                Ok(Ok(()))
            }
            ConnectOutcome::Reject(resp) => {
                self.store.data_mut().sockets.remove(&id);
                self.store.data_mut().outbox.retain(|(s, _)| *s != id);
                Ok(Err((resp.status, serde_json::from_slice(&resp.body)?)))
            }
        }
    }
    fn send(&mut self, id: u64, text: &str) -> Result<()> {
        // The host's auto-response.
        if let Some(a) = &self.store.data().auto {
            if a.request == text {
                let r = a.response.clone();
                self.store.data_mut().outbox.push((id, r));
                return Ok(());
            }
        }
        let ev = self.inst.lodge_object_events();
        ev.call_on_message(&mut self.store, id, &Message::Text(text.into()))
    }
    fn send_binary(&mut self, id: u64, b: &[u8]) -> Result<()> {
        let ev = self.inst.lodge_object_events();
        ev.call_on_message(&mut self.store, id, &Message::Binary(b.to_vec()))
    }
    fn close(&mut self, id: u64) -> Result<()> {
        let s = self.store.data_mut().sockets.remove(&id).unwrap();
        self.store.data_mut().closing = Some((id, s));
        let ev = self.inst.lodge_object_events();
        ev.call_on_close(&mut self.store, id, 1000, "bye".into())?;
        self.store.data_mut().closing = None;
        Ok(())
    }
    fn ai(&mut self, id: u64, e: AiEvent) -> Result<()> {
        let ev = self.inst.lodge_object_events();
        ev.call_on_ai_event(&mut self.store, id, &e)
    }
}

fn only(frames: &[(u64, Value)], sock: u64) -> Vec<Value> {
    frames
        .iter()
        .filter(|(s, _)| *s == sock)
        .map(|(_, v)| v.clone())
        .collect()
}

fn main() -> Result<()> {
    let mut settings = HashMap::new();
    settings.insert("max_text_len".to_string(), "50".to_string());
    let mut room = Room::new(settings)?;
    let mut checks = 0;
    macro_rules! check {
        ($c:expr) => {{
            assert!($c, "{}", stringify!($c));
            checks += 1;
        }};
        ($a:expr, $b:expr) => {{
            assert_eq!($a, $b);
            checks += 1;
        }};
    }

    // The page.
    let (st, _, resp) = room.http("GET", "/", "", b"")?;
    check!(st, 200);
    let html = String::from_utf8(resp.body.clone())?;
    check!(html.contains(r#"const CONFIG = {"aiName":"AI","maxNameLen":32,"maxTextLen":50};"#));
    check!(
        resp.headers
            .iter()
            .any(|h| h.name == "content-type" && h.value.starts_with("text/html"))
    );
    check!(
        room.store
            .data()
            .auto
            .as_ref()
            .map(|a| (a.request.as_str(), a.response.as_str())),
        Some((r#"{"type":"heartbeat"}"#, r#"{"type":"pong"}"#))
    );
    check!(room.http("GET", "/nope", "", b"")?.0, 404);
    check!(room.http("POST", "/history", "", b"")?.0, 405);
    check!(room.http("GET", "/history", "", b"")?.1, json!([]));

    // Refused upgrades.
    let r = room.connect(1, "/ws", "")?.unwrap_err();
    check!(r.0, 400);
    check!(r.1["error"].as_str().unwrap().contains("required"));
    check!(room.connect(1, "/ws", "name=%20%20")?.unwrap_err().0, 400);
    check!(
        room.connect(1, "/ws", &format!("name={}", "x".repeat(33)))?
            .unwrap_err()
            .0,
        400
    );
    check!(room.connect(1, "/ws", "name=a%07b")?.unwrap_err().0, 400);
    check!(
        room.connect(1, "/elsewhere", "name=alice")?.unwrap_err().0,
        404
    );
    check!(room.take().is_empty());
    check!(room.store.data().sockets.is_empty());

    // Joins.
    room.connect(1, "/ws", "name=%20alice%20")?.unwrap();
    let f = room.take();
    check!(
        only(&f, 1),
        vec![
            json!({"type":"history","data":[]}),
            json!({"type":"presence","users":["alice"]})
        ]
    );
    check!(f.len(), 2);
    check!(
        room.store.data().sockets[&1].attachment,
        br#"{"name":"alice"}"#.to_vec()
    );
    room.connect(2, "/ws", "name=bob")?.unwrap();
    let f = room.take();
    check!(
        only(&f, 2),
        vec![
            json!({"type":"history","data":[]}),
            json!({"type":"presence","users":["alice","bob"]})
        ]
    );
    let a = only(&f, 1);
    check!(a.len(), 2);
    check!(a[0]["type"], "user_joined");
    check!(a[0]["name"], "bob");
    check!(a[0]["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    check!(a[1], json!({"type":"presence","users":["alice","bob"]}));

    // Messages.
    room.send(1, r#"{"type":"message","text":"  hello  "}"#)?;
    let f = room.take();
    check!(f.len(), 2);
    let m = &only(&f, 2)[0];
    check!(m["type"], "message");
    check!(m["id"], 1);
    check!(m["name"], "alice");
    check!(m["role"], "user");
    check!(m["text"], "hello");
    check!(only(&f, 1)[0], *m);
    check!(
        room.store
            .data()
            .kv
            .contains_key(b"msg:00000000000000000001".as_slice())
    );
    check!(
        room.store.data().kv[b"meta:last_id".as_slice()],
        b"1".to_vec()
    );

    // Refusals go to the sender only and change nothing.
    for (bad, needle) in [
        ("nope", "invalid JSON"),
        (r#"{"type":"dance"}"#, "\"dance\""),
        (r#"{"type":"message","text":"   "}"#, "empty"),
        (
            r#"{"type":"message","text":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
            "too long",
        ),
        ("[]", "object"),
    ] {
        room.send(2, bad)?;
        let f = room.take();
        check!(f.len(), 1);
        check!(f[0].0, 2);
        check!(f[0].1["type"], "error");
        check!(f[0].1["error"].as_str().unwrap().contains(needle));
    }
    room.send_binary(2, b"\x00\x01")?;
    let f = room.take();
    check!(f.len(), 1);
    check!(f[0].1["type"], "error");
    check!(
        room.store.data().kv[b"meta:last_id".as_slice()],
        b"1".to_vec()
    );

    // Heartbeats: by the host, and by the guest if one gets through.
    room.send(2, r#"{"type":"heartbeat"}"#)?;
    check!(room.take(), vec![(2, json!({"type":"pong"}))]);
    room.send(2, r#"{ "type": "heartbeat" }"#)?;
    check!(room.take(), vec![(2, json!({"type":"pong"}))]);

    // The AI.
    room.send(2, r#"{"type":"message","text":"@ai what is 2+2?"}"#)?;
    let f = room.take();
    check!(f.len(), 2);
    check!(f[0].1["id"], 2);
    let (sid, request) = room.store.data().started.last().cloned().unwrap();
    let msgs: Vec<(String, String)> = request
        .messages
        .iter()
        .map(|m| (m.role.clone(), m.content.clone()))
        .collect();
    check!(msgs[0].0, "system");
    check!(msgs[0].1.contains("\"lobby\""));
    check!(
        msgs[1..].to_vec(),
        vec![
            ("user".to_string(), "alice: hello".to_string()),
            ("user".into(), "bob: @ai what is 2+2?".into())
        ]
    );
    let pk = format!("ai:{sid:020}");
    check!(room.store.data().kv.contains_key(pk.as_bytes()));
    room.ai(sid, AiEvent::Delta("It is ".into()))?;
    room.ai(sid, AiEvent::Delta("4.".into()))?;
    let f = room.take();
    check!(f.len(), 4);
    check!(f[0].1["type"], "ai_stream");
    check!(f[0].1["response_id"], sid);
    check!(f[0].1["content"], "It is ");
    check!(f[0].1["timestamp"].is_u64());
    room.ai(sid, AiEvent::Done("It is 4.".into()))?;
    let f = room.take();
    check!(f.len(), 2);
    let r = &f[0].1;
    check!(r["type"], "ai_response");
    check!(r["id"], 3);
    check!(r["name"], "AI");
    check!(r["role"], "assistant");
    check!(r["text"], "It is 4.");
    check!(r["response_id"], sid);
    check!(r["ts"].is_u64());
    check!(!room.store.data().kv.contains_key(pk.as_bytes()));

    // A failing stream.
    room.send(1, r#"{"type":"message","text":"@AI, again"}"#)?;
    room.take();
    let (sid2, request) = room.store.data().started.last().cloned().unwrap();
    check!(
        request.messages.last().unwrap().content,
        "alice: @AI, again"
    );
    check!(
        request.messages[request.messages.len() - 2].role,
        "assistant"
    );
    room.ai(sid2, AiEvent::Error("provider said 429".into()))?;
    check!(
        room.take().into_iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![json!({"type":"ai_error","response_id":sid2,"error":"provider said 429"}); 2]
    );

    // No provider: human chat keeps working.
    room.store.data_mut().ai_fail =
        Some(AiError::Unavailable("no [ai] provider configured".into()));
    room.send(1, r#"{"type":"message","text":"@ai hello?"}"#)?;
    let f = room.take();
    check!(f.len(), 4);
    check!(f[0].1["type"], "message");
    check!(f[0].1["id"], 5);
    check!(f[2].1["type"], "ai_error");
    check!(f[2].1["response_id"], 0);
    check!(
        f[2].1["error"]
            .as_str()
            .unwrap()
            .contains("no [ai] provider configured")
    );
    room.store.data_mut().ai_fail = None;
    room.send(1, r#"{"type":"message","text":"@aiden is not the AI"}"#)?;
    room.take();
    let n_started = room.store.data().started.len();

    // Eviction / restart: a stale pending record is cleaned, ids continue.
    room.store.data_mut().kv.insert(
        b"ai:00000000000000000099".to_vec(),
        br#"{"response_id":99,"asked_by":"x","entry_id":1,"started":1}"#.to_vec(),
    );
    room.evict()?;
    check!(room.store.data().auto.is_none());
    room.send(2, r#"{"type":"message","text":"after restart"}"#)?;
    let f = room.take();
    check!(f[0].1["id"], 7);
    check!(room.store.data().auto.is_some());
    check!(!room.store.data().kv.keys().any(|k| k.starts_with(b"ai:")));
    check!(room.store.data().started.len(), n_started);

    // History.
    let (st, h, _) = room.http("GET", "/history", "limit=2", b"")?;
    check!(st, 200);
    check!(
        h.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![6, 7]
    );
    check!(
        h[1],
        json!({"id":7,"name":"bob","role":"user","text":"after restart","ts":h[1]["ts"]})
    );
    check!(
        room.http("GET", "/history", "", b"")?
            .1
            .as_array()
            .unwrap()
            .len(),
        7
    );
    check!(room.http("GET", "/history", "limit=abc", b"")?.0, 400);
    check!(room.http("GET", "/history", "limit=0", b"")?.1, json!([]));

    // A third joiner gets the history, oldest first.
    room.connect(3, "/ws", "name=carol")?.unwrap();
    let f = room.take();
    let c = only(&f, 3);
    check!(
        c[0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    check!(
        c[1],
        json!({"type":"presence","users":["alice","bob","carol"]})
    );

    // Settings.
    let (st, s, _) = room.http("GET", "/settings", "", b"")?;
    check!(st, 200);
    check!(s["answer_all"], false);
    check!(s["system_prompt"].as_str().unwrap().contains("{room}"));
    let (st, s, _) = room.http(
        "PUT",
        "/settings",
        "",
        br#"{"system_prompt":"You are a pirate in {room}.","answer_all":true}"#,
    )?;
    check!(st, 200);
    check!(
        s,
        json!({"system_prompt":"You are a pirate in {room}.","answer_all":true})
    );
    check!(
        room.http("PUT", "/settings", "", br#"{"answer_all":"yes"}"#)?
            .0,
        400
    );
    check!(room.http("PUT", "/settings", "", br#"{"bogus":1}"#)?.0, 400);
    check!(room.http("DELETE", "/settings", "", b"")?.0, 405);
    room.evict()?;
    check!(
        room.http("GET", "/settings", "", b"")?.1["answer_all"],
        true
    );
    room.send(3, r#"{"type":"message","text":"no mention"}"#)?;
    room.take();
    let (_, request) = room.store.data().started.last().cloned().unwrap();
    check!(room.store.data().started.len(), n_started + 1);
    check!(request.messages[0].content, "You are a pirate in lobby.");
    room.http(
        "PUT",
        "/settings",
        "",
        br#"{"answer_all":false,"system_prompt":null}"#,
    )?;

    // Leaving.
    room.close(2)?;
    let f = room.take();
    check!(f.len(), 4);
    check!(only(&f, 1)[0]["type"], "user_left");
    check!(only(&f, 1)[0]["name"], "bob");
    check!(
        only(&f, 1)[1],
        json!({"type":"presence","users":["alice","carol"]})
    );
    // on_close after eviction.
    room.evict()?;
    room.close(3)?;
    let f = room.take();
    check!(
        f.iter().map(|x| x.1.clone()).collect::<Vec<_>>()[1],
        json!({"type":"presence","users":["alice"]})
    );

    // Context budget: ai_context_messages from settings.
    let mut settings = HashMap::new();
    settings.insert("ai_context_messages".to_string(), "3".to_string());
    settings.insert("ai_name".to_string(), "Robo".to_string());
    let mut room2 = Room::new(settings)?;
    room2.connect(1, "/ws", "name=z")?.unwrap();
    for i in 0..5 {
        room2.send(1, &format!(r#"{{"type":"message","text":"m{i}"}}"#))?;
    }
    room2.send(1, r#"{"type":"message","text":"@ai sum up"}"#)?;
    let (sid, request) = room2.store.data().started.last().cloned().unwrap();
    check!(
        request
            .messages
            .iter()
            .map(|m| m.content.clone())
            .skip(1)
            .collect::<Vec<_>>(),
        vec!["z: m3", "z: m4", "z: @ai sum up"]
    );
    room2.take();
    room2.ai(sid, AiEvent::Done("  ".into()))?;
    check!(room2.take()[0].1["type"], "ai_error");
    room2.send(1, r#"{"type":"message","text":"@ai again"}"#)?;
    let (sid, _) = room2.store.data().started.last().cloned().unwrap();
    room2.take();
    room2.ai(sid, AiEvent::Done("Sure.".into()))?;
    let f = room2.take();
    check!(f[0].1["name"], "Robo");
    check!(f[0].1["id"], 8);

    let _ = room.activations;
    println!("chat harness: {checks} passed, 0 failed");
    Ok(())
}
