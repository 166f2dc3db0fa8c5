//! The one place the wasmtime engine is configured. Every knob that matters for lodge is
//! set here with its reason; the pool is sized from the live-object cap so that the cap,
//! not the allocator, is what limits live instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::RuntimeConfig;

/// Core instances a Rust `wasm32-wasip2` component needs at most (its module, the WASI
/// adapter and the small shim modules `wasm-component-ld` adds), with room to spare.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;

/// Instances beyond the live-object cap, for instantiating a new version once before
/// it is deployed.
const PROBE_SLOTS: u32 = 4;

/// Builds the engine for these limits.
pub fn build_engine(runtime: &RuntimeConfig, max_memory_bytes: u64) -> wasmtime::Result<Engine> {
    Engine::new(&engine_config(runtime, max_memory_bytes))
}

/// The engine configuration.
pub fn engine_config(runtime: &RuntimeConfig, max_memory_bytes: u64) -> Config {
    let mut config = Config::new();
    // CPU time per event is measured in epoch ticks: cheap (a counter check at loop
    // headers and calls) and, with async, able to yield instead of only trapping.
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    if let Some(strategy) = profiling_strategy() {
        config.profiler(strategy);
    }

    // A few slots beyond the live cap for deploy probes (see `Runtime::probe`).
    let cap = runtime.max_live_objects + PROBE_SLOTS;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(cap)
        .total_core_instances(cap * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(cap * 2)
        .max_memories_per_component(2)
        .total_tables(cap * CORE_INSTANCES_PER_COMPONENT)
        .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
        // Every idle async store keeps its fiber stack: one per live instance.
        .total_stacks(cap)
        // Each class's own cap is enforced per store; the slot fits the largest.
        .max_memory_size(max_memory_bytes as usize)
        // A freed slot gives its linear memory back (one madvise per eviction). Keeping
        // 1 MiB resident saved that syscall but left every slot ever used at 1 MiB of RSS
        // after its object hibernated (bench: 526 MiB for 526 evicted rooms) and cost a
        // 1 MiB reset per eviction; activations are rare next to events, so memory wins.
        .linear_memory_keep_resident(0)
        // Tables are a few KiB: resetting them in place is cheaper than a syscall.
        .table_keep_resident(64 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Copy-on-write images add mappings per instance; plain initialisation copies the
    // guest's small data segments and keeps `vm.max_map_count` headroom.
    config.memory_init_cow(false);
    config
}

/// `LODGE_WASM_PROFILER=perfmap` makes guest code visible to `perf` (wasmtime writes
/// `/tmp/perf-PID.map`): without it, samples in compiled guests are bare `[JIT]` addresses.
fn profiling_strategy() -> Option<wasmtime::ProfilingStrategy> {
    match std::env::var("LODGE_WASM_PROFILER").ok()?.as_str() {
        "perfmap" => Some(wasmtime::ProfilingStrategy::PerfMap),
        other => {
            tracing::warn!(
                value = other,
                "LODGE_WASM_PROFILER is not `perfmap`: ignored"
            );
            None
        }
    }
}

/// Sizes the process-wide pool cranelift compiles on (rayon's global pool) to one thread
/// fewer than the machine has cores, so that compiling a deployed component leaves a
/// core to the objects being served (bench: on 2 cores, p99 rose 3x in the second after
/// a deploy while the compile took both). Call once, before the first compile.
pub fn reserve_a_core_for_serving() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Fails only if the pool already exists, which leaves it as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(cores.saturating_sub(1).max(1))
        .thread_name(|i| format!("lodge-compile-{i}"))
        .build_global();
}

/// Advances the engine's epoch every `tick` until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    pub fn start(engine: Engine, tick: Duration) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("lodge-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
