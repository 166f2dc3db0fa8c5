//! `doc`: a collaborative text document, compatible with Yjs clients.
//!
//! Each object is one document: a `Y.Text` named `content` (see [`store::TEXT_NAME`]),
//! synchronised with the y-websocket protocol over the object's WebSocket (`/doc/{name}`
//! or `/doc/{name}/ws`), stored as a snapshot plus the updates since, with a version
//! history over HTTP and an editor page at `GET /doc/{name}`. `docs/document.md` is the
//! reference for clients and operators.

mod awareness;
mod codec;
pub mod diff;
mod page;
pub mod protocol;
mod store;
mod versions;

use lodge_sdk::sockets::raw as sockets_raw;
use lodge_sdk::{Connect, Message, Object, Request, Response, Socket, alarms, object, sockets};
use serde::Deserialize;
use serde_json::json;

use protocol::{Incoming, ProtocolError};
use store::{DocError, Document};

/// The text frame the editor page sends every few seconds to notice a dead connection, and
/// the host's answer (an auto-response: the object is not woken).
pub const PROBE: &str = "ping";
pub const PROBE_ANSWER: &str = "pong";

/// Close code: a message does not decode (bad varint, truncated, invalid update or state
/// vector, awareness state that is not JSON).
pub const CLOSE_MALFORMED: u16 = 4400;
/// Close code: a message or update is larger than `max_update_bytes`, or our answer to a
/// sync step 1 would be larger than the host lets us send.
pub const CLOSE_TOO_LARGE: u16 = 4413;
/// Close code: a text frame, or a message type / sync sub-type this server does not speak.
pub const CLOSE_UNSUPPORTED: u16 = 4415;
/// Close code: the update could not be stored (storage quota or failure); try again later.
pub const CLOSE_STORAGE: u16 = 4507;

/// The class settings (`[classes.doc.settings]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Compact after this many stored updates.
    pub compact_every: usize,
    /// Record an automatic version (and compact) this long after the last edit.
    pub version_idle_ms: u64,
    /// Largest update (or awareness update) a client may send.
    pub max_update_bytes: usize,
    /// Versions kept; the oldest are deleted beyond it.
    pub max_versions: usize,
    /// Largest stored value written for snapshots and version texts.
    pub chunk_bytes: usize,
}

impl Settings {
    pub(crate) fn read() -> Settings {
        Settings {
            compact_every: object::setting_or("compact_every", 100usize).max(1),
            version_idle_ms: object::setting_or("version_idle_ms", 5_000u64),
            max_update_bytes: object::setting_or("max_update_bytes", 1usize << 20),
            max_versions: object::setting_or("max_versions", 1_000usize).max(1),
            chunk_bytes: object::setting_or("chunk_bytes", 256usize << 10).max(1024),
        }
    }
}

fn send(socket: Socket, bytes: Vec<u8>) -> Result<(), sockets::SocketError> {
    sockets_raw::send(socket.id(), &Message::Binary(bytes))
}

fn broadcast(bytes: Vec<u8>, except: &[Socket]) {
    let except: Vec<u64> = except.iter().map(|s| s.id()).collect();
    let _ = sockets_raw::broadcast(&Message::Binary(bytes), None, &except);
}

fn restored_message(restore: &versions::Restore) -> Vec<u8> {
    let json = serde_json::to_string(restore).unwrap_or_else(|_| "{}".into());
    protocol::restored_message(&json)
}

/// Who asks for a restore: the `by` query parameter (the editor page sends its user's
/// name), trimmed to 40 characters without control characters.
fn restorer(req: &Request) -> Option<String> {
    let by: String = req
        .query_param("by")?
        .chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect();
    let by = by.trim();
    (!by.is_empty()).then(|| by.to_string())
}

fn close(socket: Socket, code: u16, reason: &str) {
    let _ = socket.close(code, reason);
}

/// The document object.
pub struct DocumentObject {
    settings: Settings,
    /// The loaded document; `None` until an event needs it, or after a failure left it
    /// out of step with storage.
    doc: Option<Document>,
    /// Who owns which awareness client (a cache of the sockets' attachments).
    awareness: awareness::Awareness,
}

impl DocumentObject {
    fn doc(&mut self) -> Result<&mut Document, DocError> {
        if self.doc.is_none() {
            self.doc = Some(Document::load()?);
        }
        Ok(self.doc.as_mut().expect("just loaded"))
    }

    /// After an edit: compact if enough updates piled up, and (re)arm the idle alarm.
    fn after_edit(&mut self) -> Result<(), DocError> {
        let every = self.settings.compact_every;
        let chunk = self.settings.chunk_bytes;
        let doc = self.doc()?;
        if doc.updates.len() >= every {
            doc.compact(chunk)?;
        }
        alarms::set_in(self.settings.version_idle_ms);
        Ok(())
    }

    fn on_binary(&mut self, socket: Socket, frame: &[u8]) -> Result<(), (u16, String)> {
        let message =
            protocol::parse(frame, self.settings.max_update_bytes).map_err(|e| e.close())?;
        match message {
            Incoming::SyncStep1(sv) => {
                let doc = self.doc().map_err(internal)?;
                let diff = doc
                    .diff_for(sv)
                    .map_err(|e| ProtocolError::Malformed(e.to_string()).close())?;
                let reply = protocol::sync_message(protocol::SYNC_STEP2, &diff);
                if let Err(e) = send(socket, reply) {
                    return Err((
                        CLOSE_TOO_LARGE,
                        format!("the document is too large to send: {e:?}"),
                    ));
                }
            }
            Incoming::SyncStep2(update) | Incoming::Update(update) => {
                let doc = self.doc().map_err(internal)?;
                match doc.apply_remote(update) {
                    Ok(Some(delta)) => {
                        broadcast(
                            protocol::sync_message(protocol::SYNC_UPDATE, &delta),
                            &[socket],
                        );
                        // The update is stored; a failed compaction only leaves more
                        // updates to load, and is retried by the next edit or the alarm.
                        if let Err(e) = self.after_edit() {
                            eprintln!("document: compaction failed: {e}");
                            self.doc = None;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // The in-memory document may hold part of it: rebuild from storage.
                        self.doc = None;
                        return Err(match e {
                            DocError::Invalid(m) => ProtocolError::Malformed(m).close(),
                            DocError::Storage(m) => (CLOSE_STORAGE, m),
                        });
                    }
                }
            }
            Incoming::Awareness(payload) => {
                let entries = protocol::parse_awareness(payload).map_err(|e| e.close())?;
                let fresh = self.awareness.update(socket, entries);
                if !fresh.is_empty() {
                    // To everyone, the sender too: y-websocket clients count their own
                    // echo as a sign of life (they reconnect after 30 s of silence).
                    broadcast(protocol::awareness_message(&fresh), &[]);
                }
            }
            Incoming::QueryAwareness => {
                let known = self.awareness.known();
                if !known.is_empty() {
                    let _ = send(socket, protocol::awareness_message(&known));
                }
            }
        }
        Ok(())
    }

    fn record_version(
        &mut self,
        label: Option<String>,
        auto: bool,
    ) -> Result<versions::Version, DocError> {
        let text = self.doc()?.text();
        versions::record(
            &text,
            label,
            auto,
            self.settings.chunk_bytes,
            self.settings.max_versions,
        )
    }

    /// Records an automatic version if the text differs from the newest version.
    fn record_if_changed(
        &mut self,
        label: Option<String>,
    ) -> Result<Option<versions::Version>, DocError> {
        let text = self.doc()?.text();
        let latest = versions::latest()?;
        let unchanged = match &latest {
            Some(v) => v.hash == versions::hash(&text),
            None => text.is_empty(),
        };
        if unchanged {
            return Ok(None);
        }
        self.record_version(label, true).map(Some)
    }

    fn restore(&mut self, id: u64, by: Option<String>) -> Result<Response, DocError> {
        let Some(version) = versions::get(id)? else {
            return Ok(Response::error(404, format!("no version {id}")));
        };
        let target = versions::text(&version)?;
        if self.doc()?.text() == target {
            return Ok(Response::json(
                200,
                &json!({ "restored": id, "changed": false, "version": null }),
            ));
        }
        // Whatever was written since the newest version stays in the history.
        let before = self.record_if_changed(Some(format!("before restoring version {id}")))?;
        let update = self.doc()?.replace_text(&target)?;
        if let Some(update) = update {
            broadcast(protocol::sync_message(protocol::SYNC_UPDATE, &update), &[]);
            self.after_edit()?;
        }
        // After the update, on every socket: editors drop their undo history here.
        let restore = versions::record_restore(&version, by)?;
        broadcast(restored_message(&restore), &[]);
        let label = match &version.label {
            Some(l) if !l.is_empty() => format!("restored version {id} ({l})"),
            _ => format!("restored version {id}"),
        };
        let after = self.record_version(Some(label), false)?;
        Ok(Response::json(
            200,
            &json!({
                "restored": id,
                "changed": true,
                "before": before.map(|v| v.id),
                "version": public(&after),
            }),
        ))
    }

    fn route(&mut self, req: &Request) -> Result<Response, DocError> {
        let path = req.path.as_str();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method.as_str();
        Ok(match (method, segments.as_slice()) {
            ("GET", [""]) => page::html(),
            ("GET", ["app.js"]) => page::app_js(),
            ("GET", ["licenses.txt"]) => page::licenses(),
            ("GET", ["text"]) => Response::text(200, self.doc()?.text()),
            ("GET", ["state"]) => {
                Response::with_body(200, "application/octet-stream", self.doc()?.encode_state())
            }
            ("GET", ["stats"]) => {
                let doc = self.doc()?;
                let text = doc.text();
                Response::json(
                    200,
                    &json!({
                        "length": text.chars().count(),
                        "stored_updates": doc.updates.len(),
                        "stored_update_bytes": doc.update_bytes,
                        "snapshot_bytes": doc.meta.snapshot_bytes,
                        "compactions": doc.meta.compactions,
                        "sockets": sockets::all().len(),
                        "alarm": alarms::get(),
                    }),
                )
            }
            ("GET", ["versions"]) => {
                let list: Vec<serde_json::Value> = versions::list()?.iter().map(public).collect();
                Response::json(200, &list)
            }
            ("POST", ["versions"]) => {
                let label = match parse_label(&req.body) {
                    Ok(l) => l,
                    Err(e) => return Ok(Response::error(400, e)),
                };
                let v = self.record_version(label, false)?;
                Response::json(201, &public(&v))
            }
            ("GET", ["versions", id]) => match id.parse::<u64>().ok() {
                Some(id) => match versions::get(id)? {
                    Some(v) => {
                        let text = versions::text(&v)?;
                        Response::json(
                            200,
                            &json!({ "id": v.id, "ts": v.ts, "label": v.label, "auto": v.auto, "length": v.length, "text": text }),
                        )
                    }
                    None => Response::error(404, format!("no version {id}")),
                },
                None => Response::error(400, format!("version id {id:?} is not a number")),
            },
            ("POST", ["versions", id, "restore"]) => match id.parse::<u64>().ok() {
                Some(id) => self.restore(id, restorer(req))?,
                None => Response::error(400, format!("version id {id:?} is not a number")),
            },
            (
                _,
                [""]
                | ["app.js"]
                | ["licenses.txt"]
                | ["text"]
                | ["state"]
                | ["stats"]
                | ["versions"],
            )
            | (_, ["versions", _] | ["versions", _, "restore"]) => {
                Response::error(405, format!("{method} is not allowed on {path}"))
            }
            _ => Response::error(404, format!("no route {method} {path}")),
        })
    }
}

/// A version as the API shows it.
fn public(v: &versions::Version) -> serde_json::Value {
    json!({ "id": v.id, "ts": v.ts, "label": v.label, "length": v.length, "auto": v.auto })
}

fn parse_label(body: &[u8]) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        label: Option<String>,
    }
    let parsed: Body = serde_json::from_slice(body)
        .map_err(|e| format!("body must be JSON like {{\"label\": \"...\"}}: {e}"))?;
    let label = parsed
        .label
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
    if label.as_ref().is_some_and(|l| l.chars().count() > 200) {
        return Err("label is longer than 200 characters".into());
    }
    Ok(label)
}

fn internal(e: DocError) -> (u16, String) {
    (CLOSE_STORAGE, e.to_string())
}

impl Object for DocumentObject {
    fn activate() -> Self {
        // The editor page's liveness probe, answered by the host without waking the
        // document (so an idle document still hibernates).
        sockets::set_auto_response(PROBE, PROBE_ANSWER);
        DocumentObject {
            settings: Settings::read(),
            doc: None,
            awareness: awareness::Awareness::default(),
        }
    }

    fn on_request(&mut self, req: Request) -> Response {
        match self.route(&req) {
            Ok(r) => r,
            Err(e) => {
                // Whatever happened, the next event starts from storage again.
                self.doc = None;
                Response::error(500, e.to_string())
            }
        }
    }

    fn on_connect(&mut self, socket: Socket, req: &Request) -> Connect {
        if req.path != "/" && req.path != "/ws" {
            return Connect::reject(Response::error(
                404,
                format!(
                    "WebSocket upgrades are accepted on / and /ws, not {}",
                    req.path
                ),
            ));
        }
        let sv = match self.doc() {
            Ok(doc) => doc.state_vector(),
            Err(e) => {
                self.doc = None;
                return Connect::reject(Response::error(500, e.to_string()));
            }
        };
        // Our step 1 (the client answers with what we miss), then who else is here.
        let _ = send(socket, protocol::sync_message(protocol::SYNC_STEP1, &sv));
        let known = self.awareness.known();
        if !known.is_empty() {
            let _ = send(socket, protocol::awareness_message(&known));
        }
        // An editor that was away during a restore must not undo across it either.
        match versions::last_restore() {
            Ok(Some(restore)) => {
                let _ = send(socket, restored_message(&restore));
            }
            Ok(None) => {}
            Err(e) => return Connect::reject(Response::error(500, e.to_string())),
        }
        Connect::accept().attachment(&awareness::Attachment::default())
    }

    fn on_message(&mut self, socket: Socket, message: Message) {
        let result = match message {
            Message::Binary(frame) => self.on_binary(socket, &frame),
            Message::Text(_) => Err((
                CLOSE_UNSUPPORTED,
                "unsupported: text frame; y-websocket messages are binary".to_string(),
            )),
        };
        if let Err((code, reason)) = result {
            close(socket, code, &reason);
        }
    }

    fn on_close(&mut self, socket: Socket, _code: u16, _reason: String) {
        // The clients this socket spoke for are gone (unless another socket owns them
        // now, e.g. the same client reconnected). Works from a fresh instance too.
        let removals = self.awareness.closed(socket);
        if !removals.is_empty() {
            broadcast(protocol::awareness_message(&removals), &[socket]);
        }
    }

    fn on_alarm(&mut self, _retry: u32) {
        // Edits settled: fold the updates into the snapshot and keep a version.
        let chunk = self.settings.chunk_bytes;
        let result = (|| -> Result<(), DocError> {
            let doc = self.doc()?;
            if !doc.updates.is_empty() {
                doc.compact(chunk)?;
            }
            self.record_if_changed(None)?;
            Ok(())
        })();
        if let Err(e) = result {
            self.doc = None;
            // A trap makes the host retry the alarm with backoff.
            panic!("document alarm failed: {e}");
        }
    }
}

lodge_sdk::export!(DocumentObject);
