//! The host side of the `lodge:object` WIT package: the store data every instance
//! carries, and one file per imported interface. Each import works on the current
//! event's context ([`EventCtx`]): writes and outputs are collected there and only take
//! effect when the runtime commits the event.

mod ai;
mod alarms;
mod logs;
mod object;
mod shared;
mod sockets;
mod storage;

use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::ai::CompletionRequest;
use crate::sockets::Frame;
use crate::storage::{self as store, EventWrites, KeyRange, Layers};

wasmtime::component::bindgen!({
    world: "object-class",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::lodge::object::types::{Header, Message, Request, Response};
pub use exports::lodge::object::events::{AiEvent, ConnectOutcome};
pub use shared::{ObjectSetup, ObjectShared, Rank, Ranked, Streams, lock};

/// Something an event does outside its storage writes. Released in order, and only
/// after the event's writes are durable.
#[derive(Debug)]
pub enum Output {
    Send(u64, Frame),
    Close(u64, u16, String),
    /// The event failed on this socket's message: error frame, then close 1011.
    Fail {
        socket: u64,
        message: String,
        reason: String,
    },
    StartAi(u64, CompletionRequest),
    CancelAi(u64),
}

/// The state of the event being delivered.
#[derive(Debug, Default)]
pub struct EventCtx {
    pub writes: EventWrites,
    pub outputs: Vec<Output>,
    /// The alarm as this event sees it, and whether the event changed it.
    pub alarm: Option<u64>,
    pub alarm_changed: bool,
    /// The limits refused to the guest in this event (each is logged once per event).
    pub refused: Vec<&'static str>,
    /// Bytes charged to the event's budgets so far, by [`Budget`].
    pub spent: [u64; 3],
    /// A storage call of this event failed because storage is unavailable (the
    /// database unreachable, a disk error): if the event then fails, that is why.
    pub storage_failure: Option<String>,
}

/// What an event's host calls may cost the host, per event ([`HostState::charge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Keys and values the host materialises for reads.
    Read = 0,
    /// Keys and values held until the commit.
    Write = 1,
    /// Frames queued for sockets.
    Send = 2,
}

impl Budget {
    /// The class's limit for it.
    fn limit(self, limits: &crate::config::Limits) -> usize {
        match self {
            Budget::Read => limits.max_read_bytes_per_event,
            Budget::Write => limits.max_write_bytes_per_event,
            Budget::Send => limits.max_send_bytes_per_event,
        }
    }

    /// The limit's config key, and what it bounds.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Budget::Read => ("max_read_bytes_per_event", "read"),
            Budget::Write => ("max_write_bytes_per_event", "write"),
            Budget::Send => ("max_send_bytes_per_event", "queue for sockets"),
        }
    }
}

/// `[limits] memory_bytes` for one instance: wasmtime's limiter, counting refusals.
pub struct MemoryLimit(StoreLimits);

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.0.memory_growing(current, desired, maximum);
        if !matches!(grown, Ok(true)) {
            crate::metrics::refusals::count("memory_bytes");
        }
        grown
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.0.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.0.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.0.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.0.instances()
    }

    fn tables(&self) -> usize {
        self.0.tables()
    }

    fn memories(&self) -> usize {
        self.0.memories()
    }
}

/// The data of one instance's wasmtime store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: MemoryLimit,
    pub object: Arc<ObjectShared>,
    pub event: EventCtx,
    /// Epoch ticks the current event has run.
    pub ticks: u64,
}

impl HostState {
    /// Fresh store data for an instance of `object`.
    pub fn new(object: Arc<ObjectShared>) -> HostState {
        // No preopens, no environment, no arguments, no network: the guest's only
        // ambient capabilities are clocks, randomness and its log output.
        let wasi = WasiCtx::builder()
            .stdout(logs::GuestLog::stdout(&object))
            .stderr(logs::GuestLog::stderr(&object))
            .build();
        let limits = MemoryLimit(
            StoreLimitsBuilder::new()
                .memory_size(object.limits.memory_bytes as usize)
                .trap_on_grow_failure(true)
                .build(),
        );
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            object,
            event: EventCtx::default(),
            ticks: 0,
        }
    }

    /// Asks the pending layers (the event's writes, the object's batches not yet durable)
    /// under the overlay's lock; what they leave open is read from committed storage
    /// after the lock is released (see `storage::txn::Layers`).
    fn layers<R>(&self, f: impl FnOnce(&Layers<'_>) -> R) -> R {
        let overlay = self.object.overlay();
        f(&Layers {
            overlay: &overlay,
            event: &self.event.writes,
        })
    }

    /// The value of `key` as this event sees it.
    pub(crate) async fn read(
        &mut self,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, store::StorageError> {
        let lookup = self.layers(|l| l.get(key));
        let from_engine = matches!(lookup, store::Lookup::Committed);
        let value = lookup
            .resolve(&self.object.store, self.object.object.id, key)
            .await?;
        if from_engine {
            self.object.overlay().remember(key, value.as_deref());
        }
        Ok(value)
    }

    /// Entries in `range` as this event sees them.
    pub(crate) async fn read_list(
        &mut self,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Result<store::Entries, store::StorageError> {
        let plan = self.layers(|l| l.list(range));
        plan.run(
            &self.object.store,
            self.object.object.id,
            range,
            reverse,
            limit,
            max_bytes,
        )
        .await
    }

    /// The object's usage if this event committed now.
    pub(crate) async fn read_usage(&mut self, committed: u64) -> Result<u64, store::StorageError> {
        let plan = self.layers(|l| l.usage());
        plan.run(&self.object.store, self.object.object.id, committed)
            .await
    }

    /// Charges `bytes` to one of the event's budgets. `Err(detail)` (also logged, once per
    /// event) when that would pass the class's limit: the call must then do nothing.
    pub(crate) fn charge(&mut self, budget: Budget, bytes: usize) -> Result<(), String> {
        let limit = budget.limit(&self.object.limits) as u64;
        let spent = &mut self.event.spent[budget as usize];
        let after = spent.saturating_add(bytes as u64);
        if after > limit {
            return Err(self.over_budget(budget, &format!("this call would make it {after}")));
        }
        *spent = after;
        Ok(())
    }

    /// Refuses a call that would pass `budget`; returns the message for the guest.
    pub(crate) fn over_budget(&mut self, budget: Budget, why: &str) -> String {
        let limit = budget.limit(&self.object.limits);
        let (name, what) = budget.names();
        let detail = format!("one event may {what} at most {limit} bytes (`{name}`); {why}");
        self.refused(name, &detail);
        detail
    }

    /// Records that `limit` refused a call of the guest's. The guest gets the error to
    /// handle; the operator gets a log line in the object's span (class and id), once per
    /// limit and event so that a guest retrying in a loop cannot flood the log.
    pub(crate) fn refused(&mut self, limit: &'static str, detail: &str) {
        crate::metrics::refusals::count(limit);
        if !self.event.refused.contains(&limit) {
            self.event.refused.push(limit);
            tracing::warn!(limit, detail, "limit refused");
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl self::lodge::object::types::Host for HostState {}

/// The linker every class is instantiated with: our imports plus the WASI interfaces a
/// guest may use (clocks, random, stdio and the I/O streams they need).
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_async(&mut linker)?;
    // Rust's std also asks for its (empty) environment, exit (on abort) and whether its
    // stdio is a terminal (never): all harmless, none grants any authority.
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::p2::bindings::cli;
    let l = &mut linker;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    // std's HashMap seeds itself from insecure-seed: a guest using one needs it.
    use wasmtime_wasi::p2::bindings::random;
    use wasmtime_wasi::random::WasiRandom;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, |s| s.wasi.random())?;
    ObjectClass::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}
