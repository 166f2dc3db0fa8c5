//! lodge: a self-hosted runtime for stateful durable objects whose classes are
//! WebAssembly components. See DESIGN.md for the semantics; each module's comment says
//! how its part is built.
//!
//! Data flows one way: socket or timer -> `server` -> `runtime` (the object's mailbox)
//! -> guest -> `bindings` -> `storage` / sockets -> commit -> outputs released.

pub mod admin;
pub mod ai;
pub mod alarms;
pub mod app;
pub mod backup;
pub mod bindings;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod storage;

pub use lodge_core::{config, object};
