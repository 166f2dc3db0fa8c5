//! `lodge-class-template`: a lodge object class, scaffolded by `lodge new`. Every object is a
//! guestbook, addressed as `/lodge-class-template/{book}/...` (see README.md for the routes).
//!
//! How lodge runs this code (the lodge plugin guide has the details):
//!
//! - There is exactly one live instance per object on a host, and it gets that object's
//!   events (HTTP requests, WebSocket connects, messages and closes, the alarm, AI stream
//!   events) strictly one at a time. `&mut self` is never shared and no locks are needed.
//! - Every event is a transaction. The storage writes it makes become durable together
//!   when it returns; if it panics (a trap), they are thrown away, and so is everything it
//!   sent. What it sends (frames, responses) leaves the host only once its writes are on
//!   disk, so no client ever sees an entry that a crash could lose.
//! - The instance is thrown away when the object has been idle for a while (and after a
//!   trap or a deploy), but its WebSockets stay open, with their attachments. So anything
//!   that must last lives in `storage`; `self` is only a cache that `activate` rebuilds.

mod book;

use book::{ClientFrame, Entry};
use lodge_sdk::{Connect, Message, Object, Request, Response, Socket, object, sockets, storage};
use serde_json::json;

/// The web page served at `GET /`.
const PAGE: &str = include_str!("page.html");

/// One guestbook. Everything in it can be rebuilt from storage.
struct Guestbook {
    /// How many entries the book has (a cache of the `count` key).
    count: u64,
    /// The longest entry, in characters: the operator's `max_text_len` setting.
    max_text: usize,
}

impl Object for Guestbook {
    /// Runs when an instance is created: on the object's first event, and again after an
    /// eviction, a trap or a deploy. Read what you need from storage.
    fn activate() -> Self {
        // A panic here is a trap like any other: the event fails with a clear error and
        // the next event tries again on a fresh instance.
        let count = storage::get::<u64>(book::COUNT_KEY)
            .expect("read the entry count")
            .unwrap_or(0);
        // Class settings come from the operator's `[classes.NAME.settings]`.
        let max_text = object::setting_or("max_text_len", book::DEFAULT_MAX_TEXT);
        // The host answers the text frame "ping" with "pong" by itself, without waking
        // this object (clients can keep their sockets alive for free).
        sockets::set_auto_response("ping", "pong");
        Guestbook { count, max_text }
    }

    /// Every HTTP request to `/lodge-class-template/{book}/...` that is not a WebSocket upgrade.
    /// `request.path` is what follows the book's name; it always starts with `/`.
    fn on_request(&mut self, request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => Response::html(PAGE),
            ("GET", "/entries") => {
                match book::parse_limit(request.query_param("limit").as_deref()) {
                    Ok(limit) => Response::json(200, &self.recent(limit)),
                    Err(e) => Response::error(400, e),
                }
            }
            ("POST", "/entries") => {
                let signed = book::parse_sign_request(&request.body)
                    .and_then(|s| Ok((book::clean_name(&s.name)?, s.text)))
                    .and_then(|(name, text)| self.sign(&name, &text));
                match signed {
                    Ok(entry) => Response::json(201, &entry),
                    Err(e) => Response::error(400, e),
                }
            }
            (_, "/" | "/entries") => Response::error(405, "method not allowed"),
            _ => Response::error(404, format!("no route {}", request.path)),
        }
    }

    /// A WebSocket upgrade. Accepting returns the socket's tags and attachment; rejecting
    /// answers the upgrade with an ordinary HTTP response.
    fn on_connect(&mut self, socket: Socket, request: &Request) -> Connect {
        if request.path != "/ws" {
            return Connect::reject(Response::error(404, "WebSockets connect to /ws"));
        }
        let name = match book::clean_name(&request.query_param("name").unwrap_or_default()) {
            Ok(name) => name,
            Err(e) => return Connect::reject(Response::error(400, e)),
        };
        // The socket can be written to already; this frame leaves after the upgrade.
        let hello =
            json!({ "type": "hello", "name": name, "entries": self.recent(book::DEFAULT_LIMIT) });
        let _ = socket.send_json(&hello);
        // The attachment is small per-socket data kept by the host: it survives while
        // this object is evicted, which `self` does not.
        Connect::accept().attachment(&name)
    }

    /// A frame from one of this book's sockets.
    fn on_message(&mut self, socket: Socket, message: Message) {
        let Message::Text(text) = message else {
            let _ = socket.send_json(&book::error_frame("send text frames"));
            return;
        };
        // Who sent it? The attachment set in `on_connect`, even if this instance is new.
        let name: String = socket.attachment().unwrap_or_default();
        let result = book::parse_frame(&text).and_then(|frame| match frame {
            ClientFrame::Sign { text } => self.sign(&name, &text),
        });
        if let Err(e) = result {
            // Only to the sender: a bad frame changes nothing for anyone else.
            let _ = socket.send_json(&book::error_frame(&e));
        }
    }
}

impl Guestbook {
    /// Adds an entry and tells every open socket about it.
    fn sign(&mut self, name: &str, text: &str) -> Result<Entry, String> {
        let text = book::clean_text(text, self.max_text)?;
        let entry = Entry {
            n: self.count + 1,
            name: name.to_string(),
            text,
            at: lodge_sdk::now_ms(),
        };
        // The entry and the new count in one `put-many`: the host checks every key and
        // value before writing any, so a refusal (a value over the size limit, the quota)
        // leaves nothing half-written. (A refused single `put` would not undo earlier
        // writes of this event: only a trap does that.)
        storage::raw::put_many(&[
            storage::Entry {
                key: book::entry_key(entry.n).into_bytes(),
                value: serde_json::to_vec(&entry).expect("an entry serializes"),
            },
            storage::Entry {
                key: book::COUNT_KEY.as_bytes().to_vec(),
                value: serde_json::to_vec(&entry.n).expect("a number serializes"),
            },
        ])
        .map_err(|e| storage::Error::from(e).to_string())?;
        // Safe to update before the event ends: if it fails after all, lodge throws this
        // instance away and the next one reads the count from storage again.
        self.count = entry.n;
        // Queued now, sent once the writes above are durable (the output gate).
        sockets::broadcast_json(&book::entry_frame(&entry), &[]);
        Ok(entry)
    }

    /// The last `limit` entries, oldest first.
    fn recent(&self, limit: u32) -> Vec<Entry> {
        // Keys sort bytewise and entry keys are zero-padded, so a reversed prefix scan
        // gives the newest entries first.
        let newest_first: Vec<(String, Entry)> =
            storage::list(book::ENTRY_PREFIX, Some(limit), true).expect("list the entries");
        newest_first.into_iter().rev().map(|(_, e)| e).collect()
    }
}

lodge_sdk::export!(Guestbook);
