//! `hostile`: a class that attacks its host on purpose, one route per attack, so the
//! end-to-end tests can check that each one is bounded, reported to the guest as an error
//! and harmless to everyone else. Each route answers what the host told it.

use lodge_sdk::storage::raw;
use lodge_sdk::{Connect, Message, Object, Request, Response, Socket, sockets};
use serde_json::json;

struct Hostile;

fn param(req: &Request, name: &str, default: usize) -> usize {
    req.query_param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The host's answer as JSON: `{"ok": ...}` or `{"error": "..."}`.
fn answer<T: Into<serde_json::Value>, E: std::fmt::Debug>(result: Result<T, E>) -> Response {
    match result {
        Ok(v) => Response::json(200, &json!({ "ok": v.into() })),
        Err(e) => Response::json(200, &json!({ "error": format!("{e:?}") })),
    }
}

impl Object for Hostile {
    fn activate() -> Self {
        Hostile
    }

    fn on_request(&mut self, req: Request) -> Response {
        let mib = vec![b'x'; 1 << 20];
        match (req.method.as_str(), req.path.as_str()) {
            // `count` values of 1 MiB under `big:N`, in one event.
            ("POST", "/fill") => {
                let from = param(&req, "from", 0);
                let count = param(&req, "count", 1);
                answer(
                    (from..from + count).try_for_each(|i| {
                        raw::put(format!("big:{i:06}").as_bytes(), &mib).map(|_| ())
                    }),
                )
            }
            // One small key read back `copies` times in one call (amplification).
            ("POST", "/get-many") => {
                let copies = param(&req, "copies", 1);
                let keys = vec![b"big:000000".to_vec(); copies];
                answer(raw::get_many(&keys).map(|v| v.len()))
            }
            // Every entry at once: no limit.
            ("POST", "/list-all") => {
                let options = raw::ListOptions {
                    prefix: None,
                    start: None,
                    end: None,
                    limit: None,
                    reverse: false,
                };
                answer(raw::list(&options).map(|v| v.len()))
            }
            // `count` frames of 1 MiB to every socket, in one event.
            ("POST", "/flood") => {
                let count = param(&req, "count", 1);
                let text = "y".repeat(1 << 20);
                answer((0..count).try_for_each(|_| {
                    sockets::raw::broadcast(&Message::Text(text.clone()), None, &[]).map(|_| ())
                }))
            }
            // `lines` log lines in one event.
            ("POST", "/log") => {
                let lines = param(&req, "lines", 1);
                for i in 0..lines {
                    println!("hostile log line {i}");
                }
                Response::json(200, &json!({ "ok": lines }))
            }
            _ => Response::error(404, "no such attack"),
        }
    }

    fn on_connect(&mut self, _socket: Socket, _req: &Request) -> Connect {
        Connect::accept()
    }
}

lodge_sdk::export!(Hostile);
