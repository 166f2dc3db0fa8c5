//! lodge's domain types and the parsers that read untrusted bytes: object names and ids,
//! request routes, the storage key layout, the config file, the Server-Sent Events
//! stream of AI providers, and the response heads guests return.
//!
//! None of this needs the runtime (no wasmtime, tokio or redb), so the fuzz targets in
//! `fuzz/` build against this crate alone in a few minutes, sanitizers included. The host
//! re-exports each module where it is used (`lodge::object`, `lodge::config`,
//! `lodge::storage::keys`, `lodge::server::routes`, `lodge::ai::sse`).

pub mod config;
pub mod keys;
pub mod object;
pub mod response;
pub mod routes;
pub mod sse;
pub mod time;
