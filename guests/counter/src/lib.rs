//! `counter`: the host's test class. A durable counter over HTTP and WebSocket, with
//! hooks that let end-to-end tests observe activations, closes and traps.

use lodge_sdk::{Connect, Message, Object, Request, Response, Socket, alarms, sockets, storage};
use serde_json::json;

/// The class version, observable by clients (hot-swap tests deploy both).
const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// The counter object. It keeps nothing in memory: every event reads storage.
struct Counter;

fn bump(key: &str, by: i64) -> i64 {
    let n: i64 = storage::get(key).unwrap().unwrap_or(0) + by;
    storage::put(key, &n).unwrap();
    n
}

impl Object for Counter {
    fn activate() -> Self {
        // Counted in storage so tests can tell whether an event woke the object.
        bump("activations", 1);
        sockets::set_auto_response("ping", "pong");
        Counter
    }

    fn on_request(&mut self, req: Request) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::json(200, &json!({ "count": bump("count", 0) })),
            ("POST", "/increment") => Response::json(200, &json!({ "count": bump("count", 1) })),
            ("GET", "/activations") => {
                Response::json(200, &json!({ "activations": bump("activations", 0) }))
            }
            ("PUT", "/kv") => {
                let key = req.query_param("key").unwrap_or_default();
                let value = String::from_utf8_lossy(&req.body).into_owned();
                match storage::put(&format!("kv:{key}"), &value) {
                    Ok(()) => Response::json(200, &json!({ "ok": true })),
                    Err(e) => Response::error(400, e.to_string()),
                }
            }
            ("PUT", "/kv-unwrap") => {
                // Like `PUT /kv`, but after a write of its own and with `unwrap()`: a
                // refused write (quota, size) traps, and both writes must be rolled back.
                bump("count", 1);
                let key = req.query_param("key").unwrap_or_default();
                let value = String::from_utf8_lossy(&req.body).into_owned();
                storage::put(&format!("kv:{key}"), &value).unwrap();
                Response::json(200, &json!({ "ok": true }))
            }
            ("GET", "/kv") => {
                let key = req.query_param("key").unwrap_or_default();
                let value: Option<String> = storage::get(&format!("kv:{key}")).unwrap();
                Response::json(200, &json!({ "value": value }))
            }
            ("GET", "/list") => {
                let reverse = req.query_param("reverse").is_some();
                let limit = req.query_param("limit").and_then(|l| l.parse().ok());
                let entries: Vec<(String, String)> = storage::list("kv:", limit, reverse).unwrap();
                Response::json(200, &entries)
            }
            ("GET", "/closes") => {
                let closes: Vec<(String, serde_json::Value)> =
                    storage::list("close:", None, false).unwrap();
                Response::json(200, &closes)
            }
            ("POST", "/trap") => {
                // The write must be rolled back with the trap.
                storage::put("count", &-1_000_000i64).unwrap();
                panic!("trap requested");
            }
            ("PUT", "/alarm") => {
                // `at` (absolute ms) or `in` (ms from now); `fail` = attempts to trap.
                let at = match (req.query_param("at"), req.query_param("in")) {
                    (Some(at), _) => at.parse().unwrap_or(0),
                    (None, Some(delay)) => lodge_sdk::now_ms() + delay.parse::<u64>().unwrap_or(0),
                    (None, None) => return Response::error(400, "give at= or in="),
                };
                let fail: u32 = req
                    .query_param("fail")
                    .and_then(|f| f.parse().ok())
                    .unwrap_or(0);
                storage::put("alarm_fail", &fail).unwrap();
                alarms::set_at(at);
                Response::json(200, &json!({ "alarm": at }))
            }
            ("DELETE", "/alarm") => {
                alarms::delete();
                Response::json(200, &json!({ "alarm": null }))
            }
            ("GET", "/alarm") => {
                let fired: Vec<(String, serde_json::Value)> =
                    storage::list("fired:", None, false).unwrap();
                let fired: Vec<serde_json::Value> = fired.into_iter().map(|(_, v)| v).collect();
                Response::json(200, &json!({ "alarm": alarms::get(), "fired": fired }))
            }
            ("POST", "/slow") => {
                // Holds the object busy: events queued behind it must wait their turn.
                let ms: u64 = req
                    .query_param("ms")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(100);
                let until = lodge_sdk::now_ms() + ms;
                while lodge_sdk::now_ms() < until {}
                Response::json(
                    200,
                    &json!({ "count": bump("count", 1), "ended_at": lodge_sdk::now_ms() }),
                )
            }
            ("POST", "/sleep") => {
                // Waits in a WASI poll, which uses no CPU: only the host's wall clock ends it.
                storage::put("count", &-9i64).unwrap();
                let ms = req
                    .query_param("ms")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(100);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Response::json(200, &json!({ "slept": ms }))
            }
            ("POST", "/spin") => {
                // Never returns: the host's CPU limit must end it.
                storage::put("count", &-7i64).unwrap();
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            ("POST", "/hog") => {
                // Allocates without bound: the host's memory limit must end it.
                storage::put("count", &-8i64).unwrap();
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                loop {
                    chunks.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            ("GET", "/version") => Response::json(200, &json!({ "version": VERSION })),
            // Answers with the status, headers and body the request names: how tests play
            // a guest that tries to take over the host's HTTP framing.
            ("POST", "/respond") => respond_as_told(&req.body),
            #[cfg(feature = "fs")]
            ("GET", "/file") => Response::text(
                200,
                std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
            ),
            ("GET", "/sockets") => Response::json(200, &sockets::all().len()),
            ("GET", "/whoami") => Response::json(
                200,
                &json!({ "class": lodge_sdk::object::class_name(), "name": lodge_sdk::object::name(), "id": lodge_sdk::object::id() }),
            ),
            _ => Response::error(404, format!("no route {} {}", req.method, req.path)),
        }
    }

    fn on_connect(&mut self, socket: Socket, req: &Request) -> Connect {
        let name = req.query_param("name").unwrap_or_else(|| "anon".into());
        if name == "reject" {
            return Connect::reject(Response::error(403, "rejected by the object"));
        }
        if name == "reject-101" {
            // A refusal that pretends to be the upgrade.
            return Connect::reject(
                Response::text(101, "not really").header("upgrade", "websocket"),
            );
        }
        let _ =
            socket.send_json(&json!({ "type": "hello", "name": name, "count": bump("count", 0) }));
        Connect::accept()
            .tags(req.query_param("tag"))
            .attachment(&json!({ "name": name }))
    }

    fn on_message(&mut self, socket: Socket, message: Message) {
        let text = match message {
            Message::Text(t) => t,
            Message::Binary(b) => {
                let _ = socket.send_binary(&b);
                return;
            }
        };
        let (cmd, arg) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        match cmd {
            "inc" => {
                let n = bump("count", 1);
                let _ = socket.send_json(&json!({ "type": "count", "count": n }));
            }
            "version" => {
                let _ = socket.send_json(&json!({ "type": "version", "version": VERSION }));
            }
            "store" => {
                // `store KEY SIZE`: writes SIZE bytes under `kv:KEY` (storage fault tests).
                let (key, size) = arg.split_once(' ').unwrap_or((arg, "0"));
                let value = "x".repeat(size.parse().unwrap_or(0));
                let stored = storage::put(&format!("kv:{key}"), &value).is_ok();
                let _ = socket.send_json(&json!({ "type": "stored", "ok": stored }));
            }
            "echo" => {
                let _ = socket.send_text(arg);
            }
            "whoami" => {
                let att: serde_json::Value = socket.attachment().unwrap_or_default();
                let _ = socket.send_json(
                    &json!({ "type": "whoami", "attachment": att, "tags": socket.tags() }),
                );
            }
            "broadcast" => {
                sockets::broadcast_json(&json!({ "type": "broadcast", "text": arg }), &[]);
            }
            "tagcast" => {
                let (tag, msg) = arg.split_once(' ').unwrap_or((arg, ""));
                sockets::broadcast_json_to_tag(&json!({ "type": "tagcast", "text": msg }), tag);
            }
            "close" => {
                let _ = socket.close(4000, "closed by the object");
            }
            "trap" => {
                bump("count", 1_000_000);
                let _ = socket.send_text("this frame must never arrive");
                panic!("trap requested over websocket");
            }
            _ => {
                let _ = socket.send_json(
                    &json!({ "type": "error", "error": format!("unknown command {cmd}") }),
                );
            }
        }
    }

    fn on_alarm(&mut self, retry: u32) {
        let fail: u32 = storage::get("alarm_fail").unwrap().unwrap_or(0);
        let n = bump("fired_count", 1);
        storage::put(
            &format!("fired:{n:06}"),
            &json!({ "retry": retry, "at": lodge_sdk::now_ms(), "sockets": sockets::all().len() }),
        )
        .unwrap();
        if retry < fail {
            panic!("alarm attempt {retry} fails on purpose");
        }
        // Tell connected sockets, so a test can wait on the frame.
        sockets::broadcast_json(&json!({ "type": "alarm", "retry": retry }), &[]);
    }

    fn on_close(&mut self, socket: Socket, code: u16, _reason: String) {
        let att: serde_json::Value = socket.attachment().unwrap_or_default();
        let name = att["name"].as_str().unwrap_or("?").to_string();
        storage::put(&format!("close:{name}"), &json!({ "code": code })).unwrap();
    }
}

lodge_sdk::export!(Counter);

/// The reactor initialiser the component runs at instantiation: this variant traps in it,
/// the way a class whose static setup fails would.
#[cfg(feature = "start-trap")]
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    core::arch::wasm32::unreachable()
}

/// `{"status": 200, "headers": [["name", "value"], ...], "body": "..."}` as a response.
fn respond_as_told(body: &[u8]) -> Response {
    let told: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut resp = Response {
        status: told["status"].as_u64().unwrap_or(200) as u16,
        headers: Vec::new(),
        body: told["body"].as_str().unwrap_or("").as_bytes().to_vec(),
    };
    for pair in told["headers"].as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) {
            resp = resp.header(name, value);
        }
    }
    resp
}
