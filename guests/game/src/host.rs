//! The slice of the host the game uses, as a trait.
//!
//! The game's glue ([`crate::app`]) talks to the host only through [`Host`]. In the
//! component, [`Sdk`] forwards every call to the real imports; in native tests a fake host
//! (in `app.rs`'s tests) keeps storage, sockets and the alarm in memory, so whole
//! conversations (lobby pairing, reconnects, alarms after eviction) run under `cargo test`.
//!
//! Storage failures panic: the host then rolls the event back (writes and frames), which
//! is the only safe answer when the room cannot be saved.

/// What the game needs from the host. Socket ids are the host's.
pub trait Host {
    fn now_ms(&self) -> u64;
    /// Milliseconds the host was not running since `since`.
    fn downtime_since(&self, since: u64) -> u64;
    fn object_name(&self) -> String;
    fn setting(&self, key: &str) -> Option<String>;
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn put(&self, key: &str, value: Vec<u8>);
    fn delete_all(&self);
    /// Queues a text frame (a socket that is gone is ignored).
    fn send(&self, socket: u64, text: &str);
    /// Queues a text frame for every open socket but `except`.
    fn broadcast(&self, text: &str, except: &[u64]);
    /// Open sockets, only those with `tag` if given.
    fn sockets(&self, tag: Option<&str>) -> Vec<u64>;
    fn attachment(&self, socket: u64) -> Option<Vec<u8>>;
    fn set_attachment(&self, socket: u64, data: Vec<u8>);
    fn alarm(&self) -> Option<u64>;
    fn set_alarm(&self, at_ms: u64);
    fn delete_alarm(&self);
    fn set_auto_response(&self, request: &str, response: &str);
    /// `bytes` random bytes as lowercase hex.
    fn random_hex(&self, bytes: usize) -> String;
}

/// The real host, through the lodge SDK.
pub struct Sdk;

impl Host for Sdk {
    fn now_ms(&self) -> u64 {
        lodge_sdk::now_ms()
    }

    fn downtime_since(&self, since: u64) -> u64 {
        lodge_sdk::object::downtime_since(since)
    }

    fn object_name(&self) -> String {
        lodge_sdk::object::name()
    }

    fn setting(&self, key: &str) -> Option<String> {
        lodge_sdk::object::setting(key)
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        lodge_sdk::storage::raw::get(key.as_bytes())
            .unwrap_or_else(|e| panic!("storage get {key}: {e:?}"))
    }

    fn put(&self, key: &str, value: Vec<u8>) {
        lodge_sdk::storage::raw::put(key.as_bytes(), &value)
            .unwrap_or_else(|e| panic!("storage put {key}: {e:?}"))
    }

    fn delete_all(&self) {
        lodge_sdk::storage::raw::delete_all()
            .unwrap_or_else(|e| panic!("storage delete-all: {e:?}"))
    }

    fn send(&self, socket: u64, text: &str) {
        let _ = lodge_sdk::Socket(socket).send_text(text);
    }

    fn broadcast(&self, text: &str, except: &[u64]) {
        let except: Vec<lodge_sdk::Socket> = except.iter().map(|&s| lodge_sdk::Socket(s)).collect();
        lodge_sdk::sockets::broadcast_text(text, &except);
    }

    fn sockets(&self, tag: Option<&str>) -> Vec<u64> {
        lodge_sdk::sockets::raw::list(tag)
    }

    fn attachment(&self, socket: u64) -> Option<Vec<u8>> {
        lodge_sdk::sockets::raw::attachment(socket).ok()
    }

    fn set_attachment(&self, socket: u64, data: Vec<u8>) {
        let _ = lodge_sdk::sockets::raw::set_attachment(socket, &data);
    }

    fn alarm(&self) -> Option<u64> {
        lodge_sdk::alarms::get()
    }

    fn set_alarm(&self, at_ms: u64) {
        lodge_sdk::alarms::set_at(at_ms)
    }

    fn delete_alarm(&self) {
        lodge_sdk::alarms::delete()
    }

    fn set_auto_response(&self, request: &str, response: &str) {
        lodge_sdk::sockets::set_auto_response(request, response)
    }

    fn random_hex(&self, bytes: usize) -> String {
        crate::protocol::random_hex(bytes)
    }
}
