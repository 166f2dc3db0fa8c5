//! `lodge new NAME`: scaffolds a guest crate that builds, tests and runs as it is.
//!
//! The crate is a small but real class (a guestbook: HTTP, WebSocket broadcast,
//! storage, a class setting, the auto-response), commented for someone writing their
//! first class. It depends on the lodge SDK by path (`--sdk`, default this repository's
//! `guests/sdk`), has its own `[workspace]` so it builds wherever it is put (even inside
//! another workspace's folder), pins the toolchain with the `wasm32-wasip2` target, and
//! starts from the SDK workspace's `Cargo.lock` when there is one, so it builds with
//! the dependency versions the SDK is tested with (and offline when they are cached).
//!
//! Everything is written into a directory that did not exist before; if anything fails
//! half-way, that directory is removed again.

use std::path::{Path, PathBuf};

/// Why a crate could not be scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("'{name}' cannot name a class: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{0} already exists: choose another name or --dir (lodge new never overwrites)")]
    Exists(PathBuf),
    #[error(
        "the lodge SDK was not found at {0} (no Cargo.toml of lodge-sdk there): pass --sdk PATH to the guests/sdk folder of a lodge checkout"
    )]
    SdkNotFound(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The SDK of the repository this binary was built from (`guests/sdk`).
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .join("guests")
        .join("sdk")
}

/// Rust keywords (strict, reserved and 2018+), which cannot name a library crate.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names that clash with the standard library, cargo's own folders, the crate's
/// dependencies, or files some systems cannot create.
const RESERVED: &[&str] = &[
    "std",
    "core",
    "alloc",
    "proc_macro",
    "proc-macro",
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
    "target",
    "lodge_sdk",
    "lodge-sdk",
    "serde",
    "serde_json",
    "serde-json",
    "wit_bindgen",
    "wit-bindgen",
    "con",
    "prn",
    "aux",
    "nul",
];

/// Checks that `name` can be both a lodge class name and a Rust crate name.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let refuse = |reason: &str| {
        Err(ScaffoldError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return refuse("the name is empty");
    }
    if name.len() > 64 {
        return refuse("a class name is at most 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return refuse("a class name starts with a lowercase letter (a-z)");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return refuse(&format!(
            "{c:?} is not allowed: a class name is made of a-z, 0-9, '-' and '_'"
        ));
    }
    // The library is named after the crate with '-' turned into '_'.
    let lib = name.replace('-', "_");
    if KEYWORDS.contains(&lib.as_str()) {
        return refuse("it is a Rust keyword, which cannot name a crate");
    }
    if RESERVED.contains(&name) || RESERVED.contains(&lib.as_str()) {
        return refuse(
            "it is reserved (the standard library, cargo's folders, or a dependency of the crate)",
        );
    }
    if !crate::object::is_valid_class_name(name) {
        return refuse("it is not a valid class name");
    }
    Ok(())
}

/// Writes a new guest crate `parent/name` using the SDK at `sdk`; returns its folder.
pub fn create(parent: &Path, name: &str, sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    validate_name(name)?;
    let sdk_manifest = sdk.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&sdk_manifest)
        .map(|t| t.contains("name = \"lodge-sdk\""))
        .unwrap_or(false);
    if !is_sdk {
        return Err(ScaffoldError::SdkNotFound(sdk.to_path_buf()));
    }
    // An absolute path keeps working wherever the crate is built from.
    let sdk = sdk
        .canonicalize()
        .map_err(|_| ScaffoldError::SdkNotFound(sdk.to_path_buf()))?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Write {
        path: parent.to_path_buf(),
        source,
    })?;
    // `create_dir` (not `_all`) fails if someone made the folder meanwhile.
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ScaffoldError::Exists(dir));
        }
        Err(source) => return Err(ScaffoldError::Write { path: dir, source }),
    }
    match write_files(&dir, name, &sdk) {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// `lodge new`: scaffolds the crate and tells the user what to do next.
pub fn cli(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<(), ScaffoldError> {
    let sdk = sdk.map_or_else(default_sdk, Path::to_path_buf);
    let dir = create(parent, name, &sdk)?;
    let lib = name.replace('-', "_");
    println!("created the lodge class `{name}` in {}", dir.display());
    println!();
    println!("  cd {}", dir.display());
    println!("  cargo test                                      # the class's unit tests");
    println!(
        "  cargo build --release --target wasm32-wasip2    # -> target/wasm32-wasip2/release/{lib}.wasm"
    );
    println!(
        "  lodge deploy {name} target/wasm32-wasip2/release/{lib}.wasm   # into the running host"
    );
    println!("  # then open http://127.0.0.1:8787/{name}/lobby/");
    println!();
    println!(
        "README.md in the crate has the rest (new versions, rollback, lodge dev, a host of its own)."
    );
    Ok(())
}

fn write_files(dir: &Path, name: &str, sdk: &Path) -> Result<(), ScaffoldError> {
    let lib = name.replace('-', "_");
    let sdk_toml = toml::Value::String(sdk.display().to_string()).to_string();
    let fill = |template: &str| {
        template
            .replace("__NAME__", name)
            .replace("__LIB__", &lib)
            .replace("__SDK__", &sdk_toml)
    };
    let write = |rel: &str, contents: &str| {
        let path = dir.join(rel);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(|source| ScaffoldError::Write {
                path: folder.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| ScaffoldError::Write { path, source })
    };
    write("Cargo.toml", &fill(CARGO_TOML))?;
    write("rust-toolchain.toml", RUST_TOOLCHAIN)?;
    write(".gitignore", GITIGNORE)?;
    write("lodge.toml", &fill(LODGE_TOML))?;
    write("README.md", &fill(README))?;
    write("src/lib.rs", &fill(LIB_RS))?;
    write("src/book.rs", BOOK_RS)?;
    write("src/page.html", PAGE_HTML)?;
    // Start from the versions the SDK is built and tested with; cargo drops what this
    // crate does not use and adds the crate itself.
    if let Some(lock) = sdk.parent().map(|p| p.join("Cargo.lock"))
        && let Ok(text) = std::fs::read_to_string(&lock)
    {
        write("Cargo.lock", &text)?;
    }
    Ok(())
}

const CARGO_TOML: &str = r##"[package]
name = "__NAME__"
description = "A lodge object class: a guestbook per object"
version = "0.1.0"
edition = "2024"
publish = false

# A lodge class is a WebAssembly component: a cdylib built for wasm32-wasip2.
[lib]
crate-type = ["cdylib"]

[dependencies]
lodge-sdk = { path = __SDK__ }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# Small components instantiate fast: optimise for size, and abort on panic (lodge turns
# the trap into a clean error for that one event and rolls its writes back).
[profile.release]
opt-level = "s"
lto = true
strip = true
codegen-units = 1
panic = "abort"

# Its own workspace, so the crate builds standalone wherever it lives.
[workspace]
"##;

const RUST_TOOLCHAIN: &str = r##"# The toolchain lodge is built and tested with, and the target a class is built for.
[toolchain]
channel = "1.95.0"
components = ["rustfmt", "clippy"]
targets = ["wasm32-wasip2"]
profile = "minimal"
"##;

const GITIGNORE: &str = "/target\n/data\n";

const LODGE_TOML: &str = r##"# A lodge config serving this class alone: `lodge serve --config lodge.toml`.
# Every key lodge knows is documented in lodge.toml at the root of the lodge repository.
listen = "127.0.0.1:8787"
# Relative to the folder lodge is started from.
data_dir = "./data"

[classes.__NAME__]
# Relative to this file's folder.
component = "target/wasm32-wasip2/release/__LIB__.wasm"

[classes.__NAME__.settings]
# Read by the class with `object::setting("max_text_len")`.
max_text_len = 500
"##;

const README: &str = r##"# __NAME__

A lodge object class, scaffolded by `lodge new __NAME__`: every
object of the class `__NAME__` is one guestbook. `/__NAME__/lobby/` and `/__NAME__/party/`
are two books, each created the first time someone asks for it, each with its own storage
and its own WebSockets.

| route (after `/__NAME__/{book}`) | what it does |
| --- | --- |
| `GET /` | a small web page: sign the book, see new entries live |
| `GET /entries?limit=N` | the last N entries (default 50, at most 500), oldest first |
| `POST /entries` | body `{"name": "...", "text": "..."}`: signs the book, answers 201 with the entry |
| WebSocket `/ws?name=NAME` | first a `hello` frame with recent entries, then an `entry` frame for every new entry; send `{"type":"sign","text":"..."}` to sign |

A text frame `ping` is answered `pong` by the host itself, without waking the object.

## Build

```sh
rustup target add wasm32-wasip2                  # once (rust-toolchain.toml asks for it too)
cargo build --release --target wasm32-wasip2
# -> target/wasm32-wasip2/release/__LIB__.wasm
```

## Test

```sh
cargo test
```

runs the unit tests of `src/book.rs` natively: the rules of the guestbook are plain
functions with no lodge imports, so they need no host. For end-to-end tests against a real
host, see "Testing a class" in the lodge plugin guide (`docs/plugin-guide.md`).

## Deploy into a running host

`lodge` is the binary of the lodge checkout (`cargo install --path host` there puts it on
your PATH; `cargo run --release -p lodge --` there runs it too). With a lodge host running
on this machine (`cargo xtask serve` in the checkout, or any `lodge serve`), build the class
and deploy it. The first deploy creates the class on the host, without a restart and
without touching anyone connected to its other classes:

```sh
cargo build --release --target wasm32-wasip2
lodge deploy __NAME__ target/wasm32-wasip2/release/__LIB__.wasm --label "first version"
lodge versions __NAME__
```

Then open http://127.0.0.1:8787/__NAME__/lobby/ (the host's landing page at
http://127.0.0.1:8787/ lists it too). The CLI talks to the admin API on 127.0.0.1:8788 and
finds the token the host generated on its own, from any folder (`--admin-url` and
`--token` point it elsewhere). A class created this way runs with the host's `[limits]`
and no settings, so `max_text_len` is the class's default (500).

Deploy again after every change: open WebSockets stay connected and each book moves to the
new version at its next event. A component that does not compile or does not fit the
`lodge:object` world is refused and the running version keeps serving.

```sh
lodge rollback __NAME__      # back to the version before
lodge remove __NAME__        # stop serving the class (its books are kept for a later deploy)
```

Or let lodge rebuild and deploy on every save:

```sh
lodge dev --guests . --config lodge.toml
```

## Run it on a host of its own

`lodge.toml` in this folder serves this class alone, with its setting (stop the other host
first, or change `listen` and `[admin] listen`, since both use the default ports):

```toml
listen = "127.0.0.1:8787"
data_dir = "./data"

[classes.__NAME__]
component = "target/wasm32-wasip2/release/__LIB__.wasm"

[classes.__NAME__.settings]
max_text_len = 500
```

```sh
lodge serve --config lodge.toml
# open http://127.0.0.1:8787/__NAME__/lobby/ in a browser, or:
curl -X POST http://127.0.0.1:8787/__NAME__/lobby/entries -d '{"name":"ada","text":"hello"}'
curl http://127.0.0.1:8787/__NAME__/lobby/entries
```

The deploy commands above work the same against it. To add the class to an existing host's
config instead, copy the `[classes.__NAME__]` table into it (with an absolute `component`
path, or one relative to that config file) and restart that host.

## Where things are

- `src/lib.rs`: the class (events, storage, sockets), commented for learning.
- `src/book.rs`: its rules as plain functions, with unit tests.
- `src/page.html`: the web page.
- `Cargo.toml`: depends on the lodge SDK by path (change `lodge-sdk = { path = ... }` if
  you move the lodge checkout); `Cargo.lock` started as a copy of the SDK's.
"##;

const LIB_RS: &str = r##"//! `__NAME__`: a lodge object class, scaffolded by `lodge new`. Every object is a
//! guestbook, addressed as `/__NAME__/{book}/...` (see README.md for the routes).
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

    /// Every HTTP request to `/__NAME__/{book}/...` that is not a WebSocket upgrade.
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
"##;

const BOOK_RS: &str = r##"//! The guestbook's rules as plain functions: no lodge imports, so `cargo test` runs them
//! natively, without a host. Keep the logic of a class here and the lodge calls in
//! `lib.rs`, and most of it is tested in milliseconds.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The key holding the number of entries.
pub const COUNT_KEY: &str = "count";
/// Every entry is stored under this prefix (see [`entry_key`]).
pub const ENTRY_PREFIX: &str = "entry:";
/// Entries returned when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = 500;
/// The longest entry, in characters, unless the operator sets `max_text_len`.
pub const DEFAULT_MAX_TEXT: usize = 500;
/// The longest name, in characters.
pub const MAX_NAME: usize = 32;

/// One signature in the book.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 1 for the first entry, then counting up without gaps.
    pub n: u64,
    pub name: String,
    pub text: String,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub at: u64,
}

/// The storage key of entry `n`. Storage keys sort bytewise, so the number is
/// zero-padded: `entry:00000000000000000010` sorts after `entry:00000000000000000009`.
pub fn entry_key(n: u64) -> String {
    format!("{ENTRY_PREFIX}{n:020}")
}

/// A name as given (trimmed): 1 to [`MAX_NAME`] characters, no control characters.
pub fn clean_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("give a name (?name=... on the WebSocket URL)".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("a name is at most {MAX_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("a name may not contain control characters".into());
    }
    Ok(name.to_string())
}

/// An entry's text (trimmed): not empty, at most `max_chars` characters.
pub fn clean_text(raw: &str, max_chars: usize) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("the text is empty".into());
    }
    if text.chars().count() > max_chars {
        return Err(format!("an entry is at most {max_chars} characters"));
    }
    Ok(text.to_string())
}

/// The `limit` query parameter: absent means [`DEFAULT_LIMIT`]; larger than
/// [`MAX_LIMIT`] is clamped.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, String> {
    match raw {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<u32>() {
            Ok(0) => Err("limit must be at least 1".into()),
            Ok(n) => Ok(n.min(MAX_LIMIT)),
            Err(_) => Err(format!("limit must be a whole number, not {s:?}")),
        },
    }
}

/// The body of `POST /entries`.
#[derive(Debug, Deserialize)]
pub struct SignRequest {
    pub name: String,
    pub text: String,
}

/// Parses the body of `POST /entries`.
pub fn parse_sign_request(body: &[u8]) -> Result<SignRequest, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("the body must be JSON {{\"name\": ..., \"text\": ...}}: {e}"))
}

/// What a client may send over its WebSocket.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// `{"type":"sign","text":"..."}`
    Sign { text: String },
}

/// Parses a client's text frame.
pub fn parse_frame(text: &str) -> Result<ClientFrame, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("expected {{\"type\":\"sign\",\"text\":\"...\"}}: {e}"))
}

/// The frame every socket gets for a new entry.
pub fn entry_frame(entry: &Entry) -> Value {
    json!({ "type": "entry", "entry": entry })
}

/// The frame a client gets when its frame was refused.
pub fn error_frame(message: &str) -> Value {
    json!({ "type": "error", "error": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_like_their_numbers() {
        let mut keys: Vec<String> = [10, 9, 100, 1].into_iter().map(entry_key).collect();
        keys.sort();
        assert_eq!(keys, [1, 9, 10, 100].map(entry_key));
        assert!(entry_key(7).starts_with(ENTRY_PREFIX));
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(clean_name("  ada "), Ok("ada".into()));
        assert!(clean_name("   ").is_err());
        assert!(clean_name("a\u{7}b").is_err());
        assert!(clean_name(&"é".repeat(MAX_NAME)).is_ok());
        assert!(clean_name(&"é".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn text_length_counts_characters_not_bytes() {
        assert_eq!(clean_text(" hi ", 2), Ok("hi".into()));
        assert!(clean_text("", 10).is_err());
        assert!(clean_text("ééé", 3).is_ok());
        assert!(clean_text("éééé", 3).is_err());
    }

    #[test]
    fn limits_default_clamp_and_refuse_nonsense() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("3")), Ok(3));
        assert_eq!(parse_limit(Some("100000")), Ok(MAX_LIMIT));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("-1")).is_err());
        assert!(parse_limit(Some("lots")).is_err());
    }

    #[test]
    fn frames_and_bodies_parse_or_say_why_not() {
        assert_eq!(
            parse_frame(r#"{"type":"sign","text":"hi"}"#),
            Ok(ClientFrame::Sign { text: "hi".into() })
        );
        assert!(
            parse_frame(r#"{"type":"shout"}"#)
                .unwrap_err()
                .contains("sign")
        );
        assert!(parse_frame("not json").is_err());
        let body = parse_sign_request(br#"{"name":"ada","text":"hi"}"#).unwrap();
        assert_eq!((body.name.as_str(), body.text.as_str()), ("ada", "hi"));
        assert!(parse_sign_request(b"{}").is_err());
    }

    #[test]
    fn frames_have_a_type() {
        let entry = Entry {
            n: 1,
            name: "ada".into(),
            text: "hi".into(),
            at: 5,
        };
        assert_eq!(entry_frame(&entry)["type"], "entry");
        assert_eq!(entry_frame(&entry)["entry"]["n"], 1);
        assert_eq!(error_frame("no")["error"], "no");
    }
}
"##;

const PAGE_HTML: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Guestbook</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: .5rem; margin-bottom: 1rem; }
  input[name=text] { flex: 1; }
  li { margin: .3rem 0; }
  .name { font-weight: bold; }
  #status { color: #777; font-size: .9rem; }
</style>
</head>
<body>
<h1 id="title">Guestbook</h1>
<form id="sign">
  <input name="name" placeholder="your name" maxlength="32" required>
  <input name="text" placeholder="say something nice" required>
  <button>Sign</button>
</form>
<div id="status">connecting...</div>
<ul id="entries"></ul>
<script>
  // This page is served by the object itself (GET /); the book is the path's second part.
  const base = location.pathname.replace(/\/+$/, "");
  document.getElementById("title").textContent = "Guestbook " + decodeURIComponent(base.split("/")[2] || "");
  const list = document.getElementById("entries");
  const status = document.getElementById("status");
  const form = document.getElementById("sign");
  let ws = null;

  function show(entry) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.name + ": ";
    li.append(name, entry.text);
    list.prepend(li);
  }

  function connect(name) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}${base}/ws?name=${encodeURIComponent(name)}`);
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "hello") { list.replaceChildren(); frame.entries.forEach(show); status.textContent = "signed in as " + frame.name; }
      if (frame.type === "entry") show(frame.entry);
      if (frame.type === "error") status.textContent = frame.error;
    };
    ws.onclose = () => { status.textContent = "disconnected"; ws = null; };
  }

  form.onsubmit = (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const text = form.elements.text.value;
    if (!ws) { connect(name); ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "sign", text })), { once: true }); }
    else ws.send(JSON.stringify({ type: "sign", text }));
    form.elements.text.value = "";
  };

  // Show the book before signing in, over plain HTTP.
  fetch(base + "/entries").then((r) => r.json()).then((entries) => { entries.forEach(show); status.textContent = "sign to join live"; });
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_class_and_crate_names() {
        for good in ["guestbook", "my-book", "book_2", "a"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Guestbook", "lowercase"),
            ("2book", "lowercase letter"),
            ("my book", "' '"),
            ("a/b", "'/'"),
            ("../x", "lowercase letter"),
            ("fn", "keyword"),
            ("self", "keyword"),
            ("test", "reserved"),
            ("lodge-sdk", "reserved"),
            ("serde_json", "reserved"),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(validate_name(&"a".repeat(64)).is_ok());
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn creates_a_crate_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = create(tmp.path(), "book", &default_sdk()).unwrap();
        assert_eq!(dir, tmp.path().join("book"));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"book\""), "{manifest}");
        assert!(manifest.contains("[workspace]"));
        let parsed: toml::Value = toml::from_str(&manifest).unwrap();
        let sdk = parsed["dependencies"]["lodge-sdk"]["path"]
            .as_str()
            .unwrap();
        assert!(Path::new(sdk).join("Cargo.toml").exists(), "{sdk}");
        for file in ["src/lib.rs", "src/book.rs", "README.md", "lodge.toml"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(
                !text.contains("__NAME__") && !text.contains("__LIB__"),
                "{file}"
            );
        }
        let config = crate::config::Config::load(&dir.join("lodge.toml")).unwrap();
        assert_eq!(
            config.classes["book"].component,
            dir.join("target/wasm32-wasip2/release/book.wasm")
        );

        let err = create(tmp.path(), "book", &default_sdk()).unwrap_err();
        assert!(matches!(err, ScaffoldError::Exists(_)), "{err}");
        assert!(err.to_string().contains("already exists"));
    }

    #[test]
    fn a_missing_sdk_is_named_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let err = create(tmp.path(), "book", &tmp.path().join("nosdk")).unwrap_err();
        assert!(err.to_string().contains("--sdk"), "{err}");
        assert!(!tmp.path().join("book").exists());
    }
}
