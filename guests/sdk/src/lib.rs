//! The lodge guest SDK: write an object class as one Rust type.
//!
//! A class is a type implementing [`Object`]; [`export!`] turns it into the component's
//! exports. The host creates one instance per object and delivers its events one at a
//! time, so `&mut self` is never shared. An instance may be thrown away whenever the
//! object goes idle (its sockets stay open), so anything that must survive lives in
//! [`storage`]; `self` is a cache that [`Object::activate`] rebuilds.
//!
//! ```ignore
//! #[derive(Default)]
//! struct Counter;
//! impl lodge_sdk::Object for Counter {
//!     fn on_request(&mut self, _req: lodge_sdk::Request) -> lodge_sdk::Response {
//!         let n: u64 = lodge_sdk::storage::get("n").unwrap().unwrap_or(0) + 1;
//!         lodge_sdk::storage::put("n", &n).unwrap();
//!         lodge_sdk::Response::json(200, &n)
//!     }
//! }
//! lodge_sdk::export!(Counter);
//! ```

/// The raw wit-bindgen output for the `lodge:object/object-class` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "object-class",
        path: "../../wit",
        default_bindings_module: "lodge_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "__export_object_class",
    });
}

pub mod ai;
pub mod alarms;
mod dispatch;
pub mod http;
pub mod sockets;
pub mod storage;

pub use bindings::exports::lodge::object::events::AiEvent;
pub use bindings::lodge::object::types::{Header, Message, Request, Response};
#[doc(hidden)]
pub use dispatch::{Dispatch, with_object};
pub use http::Connect;
pub use sockets::Socket;

/// This object's class, name and id.
pub mod object {
    use crate::bindings::lodge::object::object as raw;

    /// The class name (e.g. `chat`).
    pub fn class_name() -> String {
        raw::class_name()
    }
    /// The name the object is addressed by (e.g. the room).
    pub fn name() -> String {
        raw::name()
    }
    /// The stable object id (32 hex digits).
    pub fn id() -> String {
        raw::id()
    }
    /// A class setting from the operator's config, if set.
    pub fn setting(key: &str) -> Option<String> {
        raw::setting(key)
    }
    /// Milliseconds the host was not running since `since` (ms since the epoch): time a
    /// clock-keeping object should charge to nobody (e.g. a turn timer).
    pub fn downtime_since(since: u64) -> u64 {
        raw::downtime_since(since)
    }
    /// A class setting parsed as a number (or anything `FromStr`), else `default`.
    pub fn setting_or<T: std::str::FromStr>(key: &str, default: T) -> T {
        raw::setting(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// Milliseconds since the Unix epoch, from the host's wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An object class. Every method is optional; the defaults refuse HTTP with 404, accept
/// every WebSocket and ignore everything else.
pub trait Object: 'static {
    /// Builds the in-memory side of the object when an instance is created (after
    /// activation, eviction, a trap or a deploy). Read what you need from [`storage`].
    fn activate() -> Self
    where
        Self: Sized;

    /// An HTTP request that is not a WebSocket upgrade.
    fn on_request(&mut self, request: Request) -> Response {
        let _ = request;
        Response::error(404, "not found")
    }

    /// A WebSocket upgrade. The socket can already be sent to; it is listed (without
    /// tags) from now on, and dropped again if the connection is rejected.
    fn on_connect(&mut self, socket: Socket, request: &Request) -> Connect {
        let _ = (socket, request);
        Connect::accept()
    }

    /// A frame from a socket.
    fn on_message(&mut self, socket: Socket, message: Message) {
        let _ = (socket, message);
    }

    /// A socket closed. Its tags and attachment are still readable.
    fn on_close(&mut self, socket: Socket, code: u16, reason: String) {
        let _ = (socket, code, reason);
    }

    /// The alarm fired; `retry` counts earlier failed attempts.
    fn on_alarm(&mut self, retry: u32) {
        let _ = retry;
    }

    /// An AI stream started with [`ai::start_chat`] delivered something.
    fn on_ai_event(&mut self, stream: ai::StreamId, event: AiEvent) {
        let _ = (stream, event);
    }
}

/// Exports a type implementing [`Object`] as this component's object class.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        #[doc(hidden)]
        struct __LodgeClass;
        impl $crate::Dispatch for __LodgeClass {
            type Class = $ty;
        }
        $crate::bindings::__export_object_class!(__LodgeClass with_types_in $crate::bindings);
    };
}
