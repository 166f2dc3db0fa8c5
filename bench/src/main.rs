//! `lodge-bench`: lodge's benchmark suite. A load generator speaking the chat protocol
//! (shared/protocols/chat.md) to any server, a native baseline chat server (tokio +
//! tokio-tungstenite + redb, no WebAssembly, same durability), and scenarios that run
//! both and print one JSON result line each on stdout (progress goes to stderr).
//!
//! `cargo run --release -p lodge-bench -- all` builds lodge and the chat guest, then runs
//! every scenario against fresh servers on 127.0.0.1 with temporary data dirs.
//! These are measurements, not tests: nothing asserts on a timing.

mod client;
mod cold;
mod durable;
mod fanout;
mod hibernate;
mod hotswap;
mod native;
mod servers;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use servers::{Kind, LodgeOpts, Paths, Server, Usage};
use stats::{emit, ratio, round3};

#[derive(Parser)]
#[command(
    name = "lodge-bench",
    about = "lodge's benchmarks against a native baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build lodge and the chat guest, then run every scenario at its default size.
    All {
        #[command(flatten)]
        common: Common,
        /// Fan-out rounds per target (interleaved; ratios compare medians).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Run the native baseline chat server until killed.
    Native {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        data_dir: PathBuf,
        /// Commit without fsync (redb `Durability::None`).
        #[arg(long)]
        no_fsync: bool,
        /// The WebSocket read buffer per connection (tungstenite's default: 128 KiB).
        #[arg(long, default_value_t = 128)]
        read_buffer_kib: usize,
    },
    /// R rooms x C clients, one open-loop sender per room.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        targets: Targets,
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        #[arg(long, default_value_t = 500)]
        clients: usize,
        /// Messages per second per room.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Rounds over all targets, interleaved; ratios compare the medians.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Noisy neighbour: small rooms' latency alone, then while one big room broadcasts
    /// (same server): does one room starve the others?
    Neighbours {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        targets: Targets,
        /// Clients of the big room.
        #[arg(long, default_value_t = 2000)]
        big_clients: usize,
        /// Messages per second in the big room.
        #[arg(long, default_value_t = 20.0)]
        big_rate: f64,
        #[arg(long, default_value_t = 10)]
        small_rooms: usize,
        #[arg(long, default_value_t = 10)]
        small_clients: usize,
        #[arg(long, default_value_t = 5.0)]
        small_rate: f64,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// First-message latency in fresh rooms (activation included) vs a warm room.
    Cold {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        targets: Targets,
        #[arg(long, default_value_t = 2000)]
        rooms: usize,
        #[arg(long, default_value_t = 500)]
        warm: usize,
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Many objects writing at once: durable events/s and group-commit sizes vs fsyncs/s.
    Durable {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        targets: Targets,
        #[arg(long, default_value_t = 1000)]
        objects: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Messages each object's client keeps outstanding (1: send, wait for it, send).
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
    },
    /// Server RSS per open socket with every room hibernated.
    Hibernate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        targets: Targets,
        #[arg(long, default_value_t = 2000)]
        sockets: usize,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// lodge's idle timeout for this run.
        #[arg(long, default_value_t = 200)]
        idle_ms: u64,
    },
    /// Deploy and roll back the chat class during fan-out (lodge only).
    Hotswap {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 8.0)]
        secs: f64,
        #[arg(long, default_value_t = 2.5)]
        deploy_at: f64,
        #[arg(long, default_value_t = 5.5)]
        rollback_at: f64,
        #[arg(long, default_value_t = 1.0)]
        window: f64,
    },
    /// This disk's fdatasync/s and single-commit redb commits/s.
    Fsync {
        /// Where to measure (default: the system temp dir, where the servers' data goes).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Use the existing binaries: skip `cargo build`.
    #[arg(long)]
    no_build: bool,
    /// The repository root (default: the parent of bench/).
    #[arg(long)]
    root: Option<PathBuf>,
    #[arg(long)]
    lodge_bin: Option<PathBuf>,
    #[arg(long)]
    chat_wasm: Option<PathBuf>,
    /// lodge's `[runtime] max_live_objects` (the live-instance cap, LRU beyond it).
    #[arg(long, default_value_t = 1000)]
    max_live: u32,
}

impl Common {
    fn paths(&self, build: bool) -> Result<Paths> {
        let paths = Paths::new(
            self.root.clone(),
            self.lodge_bin.clone(),
            self.chat_wasm.clone(),
        );
        if build && !self.no_build {
            paths.build()?;
        }
        Ok(paths)
    }

    fn lodge(&self) -> LodgeOpts {
        LodgeOpts {
            max_live_objects: self.max_live,
            ..LodgeOpts::default()
        }
    }
}

#[derive(Args, Clone)]
struct Targets {
    /// Servers to run, comma-separated: native, native-nofsync, native-4k-read-buffer,
    /// lodge, lodge-postgres (lodge with storage in a private PostgreSQL server).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// Run against a server that is already listening (e.g. http://127.0.0.1:8787)
    /// instead of starting any.
    #[arg(long)]
    url: Option<String>,
}

impl Targets {
    fn kinds(&self, default: &[Kind]) -> Result<Vec<Kind>> {
        if self.url.is_some() {
            return Ok(vec![Kind::External]);
        }
        match &self.targets {
            Some(list) => list.iter().map(|s| Kind::parse(s)).collect(),
            None => Ok(default.to_vec()),
        }
    }

    fn needs_lodge(&self, default: &[Kind]) -> bool {
        self.kinds(default)
            .map(|k| k.iter().any(|k| k.is_lodge()))
            .unwrap_or(false)
    }
}

const ALL_TARGETS: &[Kind] = &[
    Kind::Native,
    Kind::NativeNoFsync,
    Kind::NativeSmallBuffer,
    Kind::Lodge,
];
const COLD_TARGETS: &[Kind] = &[Kind::Native, Kind::Lodge];
const DURABLE_TARGETS: &[Kind] = &[Kind::Native, Kind::NativeSmallBuffer, Kind::Lodge];
const HIBERNATE_TARGETS: &[Kind] = &[Kind::Native, Kind::NativeSmallBuffer, Kind::Lodge];

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Native {
        listen,
        data_dir,
        no_fsync,
        read_buffer_kib,
    } = &cli.command
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return rt.block_on(native::run(
            *listen,
            data_dir.clone(),
            !no_fsync,
            read_buffer_kib * 1024,
        ));
    }
    servers::raise_fd_limit();
    client::epoch();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli.command))
}

fn nonce() -> String {
    format!("{:x}", client::now_us() ^ (std::process::id() as u64) << 20)
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Native { .. } => unreachable!("handled in main"),
        Command::All { common, repeat } => all(&common, repeat).await,
        Command::Fanout {
            common,
            targets,
            rooms,
            clients,
            rate,
            secs,
            repeat,
        } => {
            let paths = common.paths(targets.needs_lodge(ALL_TARGETS))?;
            let cfg = fanout_cfg(rooms, clients, rate, secs);
            emit(
                &fanout_scenario(
                    &paths,
                    &common.lodge(),
                    &targets.kinds(ALL_TARGETS)?,
                    targets.url.as_deref(),
                    &cfg,
                    repeat,
                )
                .await?,
            );
            Ok(())
        }
        Command::Neighbours {
            common,
            targets,
            big_clients,
            big_rate,
            small_rooms,
            small_clients,
            small_rate,
            secs,
        } => {
            let paths = common.paths(targets.needs_lodge(&[Kind::Lodge]))?;
            let big = fanout_cfg(1, big_clients, big_rate, secs + 4.0);
            let small = fanout_cfg(small_rooms, small_clients, small_rate, secs);
            for kind in targets.kinds(&[Kind::Lodge])? {
                emit(
                    &neighbours_scenario(
                        &paths,
                        &common.lodge(),
                        kind,
                        targets.url.as_deref(),
                        &big,
                        &small,
                    )
                    .await?,
                );
            }
            Ok(())
        }
        Command::Cold {
            common,
            targets,
            rooms,
            warm,
            parallel,
        } => {
            let paths = common.paths(targets.needs_lodge(COLD_TARGETS))?;
            let cfg = cold::ColdCfg {
                rooms,
                warm,
                parallel,
                cap: Some(common.max_live as usize - 1),
            };
            emit(
                &cold_scenario(
                    &paths,
                    &common.lodge(),
                    &targets.kinds(COLD_TARGETS)?,
                    targets.url.as_deref(),
                    &cfg,
                )
                .await?,
            );
            Ok(())
        }
        Command::Durable {
            common,
            targets,
            objects,
            secs,
            in_flight,
        } => {
            let paths = common.paths(targets.needs_lodge(DURABLE_TARGETS))?;
            let cfg = durable::DurableCfg {
                objects,
                secs,
                in_flight,
                connect_parallel: 32,
            };
            emit(
                &durable_scenario(
                    &paths,
                    &common.lodge(),
                    &targets.kinds(DURABLE_TARGETS)?,
                    targets.url.as_deref(),
                    &cfg,
                )
                .await?,
            );
            Ok(())
        }
        Command::Hibernate {
            common,
            targets,
            sockets,
            rooms,
            idle_ms,
        } => {
            let paths = common.paths(targets.needs_lodge(HIBERNATE_TARGETS))?;
            let cfg = hibernate::HibernateCfg {
                sockets,
                rooms,
                idle_ms,
                connect_parallel: 32,
            };
            emit(
                &hibernate_scenario(
                    &paths,
                    &common.lodge(),
                    &targets.kinds(HIBERNATE_TARGETS)?,
                    &cfg,
                )
                .await?,
            );
            Ok(())
        }
        Command::Hotswap {
            common,
            rooms,
            clients,
            rate,
            secs,
            deploy_at,
            rollback_at,
            window,
        } => {
            let paths = common.paths(true)?;
            let cfg = hotswap::HotswapCfg {
                fanout: fanout_cfg(rooms, clients, rate, secs),
                deploy_at,
                rollback_at,
                window_secs: window,
            };
            emit(&hotswap_scenario(&paths, &common.lodge(), &cfg).await?);
            Ok(())
        }
        Command::Fsync { dir, secs } => {
            let dir = dir.unwrap_or_else(std::env::temp_dir);
            let probe = tokio::task::spawn_blocking(move || durable::probe(&dir, secs)).await??;
            let mut line = json!({ "scenario": "fsync" });
            merge(&mut line, probe.json());
            emit(&line);
            Ok(())
        }
    }
}

fn fanout_cfg(rooms: usize, clients: usize, rate: f64, secs: f64) -> fanout::FanoutCfg {
    fanout::FanoutCfg {
        rooms,
        clients,
        rate,
        secs,
        drain_secs: 10.0,
        connect_parallel: 32,
        prefix: format!("fan-{}", nonce()),
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// The machine the figures come from.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    json!({
        "scenario": "machine",
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "mem_gib": mem_kib.map(|k| round3(k as f64 / 1048576.0)),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

async fn all(common: &Common, repeat: usize) -> Result<()> {
    let paths = common.paths(true)?;
    paths.check()?;
    emit(&machine());
    // Below saturation (latency comparable), then one room overloaded (the frames/s
    // ceiling of server + load generator on this machine).
    let fanouts = [
        (1, 500, 40.0, 5.0),
        (50, 20, 20.0, 5.0),
        (1, 500, 400.0, 3.0),
    ];
    for (rooms, clients, rate, secs) in fanouts {
        let cfg = fanout_cfg(rooms, clients, rate, secs);
        emit(&fanout_scenario(&paths, &common.lodge(), ALL_TARGETS, None, &cfg, repeat).await?);
    }
    let cold = cold::ColdCfg {
        rooms: 2000,
        warm: 500,
        parallel: 4,
        cap: Some(common.max_live as usize - 1),
    };
    emit(&cold_scenario(&paths, &common.lodge(), COLD_TARGETS, None, &cold).await?);
    // One in flight per object, then eight: the second lets events of one object run
    // while its previous ones commit.
    for in_flight in [1, 8] {
        let durable = durable::DurableCfg {
            objects: 1000,
            secs: 5.0,
            in_flight,
            connect_parallel: 32,
        };
        emit(&durable_scenario(&paths, &common.lodge(), DURABLE_TARGETS, None, &durable).await?);
    }
    let hib = hibernate::HibernateCfg {
        sockets: 2000,
        rooms: 100,
        idle_ms: 200,
        connect_parallel: 32,
    };
    emit(&hibernate_scenario(&paths, &common.lodge(), HIBERNATE_TARGETS, &hib).await?);
    let swap = hotswap::HotswapCfg {
        fanout: fanout_cfg(10, 20, 20.0, 8.0),
        deploy_at: 2.5,
        rollback_at: 5.5,
        window_secs: 1.0,
    };
    emit(&hotswap_scenario(&paths, &common.lodge(), &swap).await?);
    Ok(())
}

async fn start(kind: Kind, paths: &Paths, lodge: &LodgeOpts, url: Option<&str>) -> Result<Server> {
    note!("starting {}", kind.name());
    Server::start(kind, paths, lodge, url).await
}

/// The figures of one fan-out run that the ratios are built from.
#[derive(Clone, Copy)]
struct FanoutFigures {
    fps: f64,
    p50: f64,
    p99: f64,
    cpu_per_frame: Option<f64>,
}

/// The median of some values (the upper one of the middle two).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs fan-out on every target, `repeat` rounds interleaved (native, native without
/// fsync, lodge, native, ...) so that a busy spell of this shared machine does not land
/// on one target only. Each target reports its run with the median p99 and every round's
/// figures; the ratios compare medians.
async fn fanout_scenario(
    paths: &Paths,
    lodge: &LodgeOpts,
    kinds: &[Kind],
    url: Option<&str>,
    cfg: &fanout::FanoutCfg,
    repeat: usize,
) -> Result<Value> {
    let mut rounds: Vec<(Kind, FanoutFigures, Value)> = Vec::new();
    for round in 0..repeat.max(1) {
        for &kind in kinds {
            let server = start(kind, paths, lodge, url).await?;
            note!(
                "fan-out {}x{} at {}/s per room for {} s on {} (round {})",
                cfg.rooms,
                cfg.clients,
                cfg.rate,
                cfg.secs,
                kind.name(),
                round + 1
            );
            let mut c = cfg.clone();
            c.prefix = format!("{}-{}-{round}", cfg.prefix, kind.name());
            let (tx, rx) = oneshot::channel();
            let base = server.base.clone();
            let task = tokio::spawn(async move { fanout::run(&base, &c, Some(tx)).await });
            // CPU is counted from the first scheduled send: the join storm is not charged.
            let usage = rx.await.ok().map(|_| Usage::start(&server));
            let run = task.await?;
            let usage = usage.map(|u| {
                let frames = run.as_ref().map_or(0.0, |r| r.received as f64);
                u.json(&server, "frame", frames)
            });
            let rss = server.rss_kib();
            server.stop().await;
            let mut run = run?;
            // The server is gone: closing the clients now costs it nothing.
            drop(std::mem::take(&mut run.open));
            let mut v = run.json();
            merge(&mut v, json!({ "server_rss_kib_end": rss }));
            if let Some(u) = usage {
                merge(&mut v, u);
            }
            let latency = run.latency();
            let figures = FanoutFigures {
                fps: run.frames_per_s(),
                p50: latency.p50_ms,
                p99: latency.p99_ms,
                cpu_per_frame: v["server_cpu_us_per_frame"].as_f64(),
            };
            rounds.push((kind, figures, v));
        }
    }
    let mut results = Map::new();
    let mut medians: Vec<(Kind, FanoutFigures)> = Vec::new();
    for &kind in kinds {
        let mine: Vec<&(Kind, FanoutFigures, Value)> =
            rounds.iter().filter(|r| r.0 == kind).collect();
        let m = FanoutFigures {
            fps: median(mine.iter().map(|r| r.1.fps).collect()),
            p50: median(mine.iter().map(|r| r.1.p50).collect()),
            p99: median(mine.iter().map(|r| r.1.p99).collect()),
            cpu_per_frame: mine
                .iter()
                .map(|r| r.1.cpu_per_frame)
                .collect::<Option<Vec<f64>>>()
                .map(median),
        };
        let representative = mine
            .iter()
            .min_by(|a, b| (a.1.p99 - m.p99).abs().total_cmp(&(b.1.p99 - m.p99).abs()))
            .map(|r| r.2.clone())
            .unwrap_or(Value::Null);
        let mut v = representative;
        if mine.len() > 1 {
            merge(
                &mut v,
                json!({
                    "rounds": mine.iter().map(|r| json!({
                        "frames_per_s": round3(r.1.fps),
                        "p50_ms": r.1.p50,
                        "p99_ms": r.1.p99,
                        "server_cpu_us_per_frame": r.1.cpu_per_frame,
                        "loadavg_start": r.2["loadavg_start"],
                    })).collect::<Vec<_>>(),
                    "median": {
                        "frames_per_s": round3(m.fps),
                        "p50_ms": m.p50,
                        "p99_ms": m.p99,
                        "server_cpu_us_per_frame": m.cpu_per_frame,
                    },
                }),
            );
        }
        results.insert(kind.name().into(), v);
        medians.push((kind, m));
    }
    let mut ratios = Map::new();
    let find = |k: Kind| medians.iter().find(|r| r.0 == k).map(|r| r.1);
    if let Some(l) = find(Kind::Lodge) {
        for base in [Kind::Native, Kind::NativeNoFsync, Kind::NativeSmallBuffer] {
            if let Some(b) = find(base) {
                let name = base.name();
                ratios.insert(
                    format!("lodge_frames_per_s_over_{name}"),
                    ratio(l.fps, b.fps),
                );
                ratios.insert(
                    format!("lodge_p99_minus_{name}_ms"),
                    json!(round3(l.p99 - b.p99)),
                );
                ratios.insert(
                    format!("lodge_p50_minus_{name}_ms"),
                    json!(round3(l.p50 - b.p50)),
                );
                if let (Some(lc), Some(bc)) = (l.cpu_per_frame, b.cpu_per_frame) {
                    ratios.insert(
                        format!("lodge_server_cpu_per_frame_over_{name}"),
                        ratio(lc, bc),
                    );
                }
            }
        }
    }
    if let (Some(p), Some(l)) = (find(Kind::LodgePostgres), find(Kind::Lodge)) {
        ratios.insert(
            "lodge_postgres_frames_per_s_over_lodge".into(),
            ratio(p.fps, l.fps),
        );
        ratios.insert(
            "lodge_postgres_p99_minus_lodge_ms".into(),
            json!(round3(p.p99 - l.p99)),
        );
    }
    let mut line = json!({ "scenario": "fanout", "rounds": repeat.max(1) });
    merge(&mut line, cfg.json());
    merge(
        &mut line,
        json!({
            "results": results,
            "ratios": ratios,
            "targets": "frames/s >= 0.8x native (fsync); p99 <= native p99 + 1 ms",
        }),
    );
    Ok(line)
}

/// Small rooms alone, then the same small rooms (new names) while a big room broadcasts
/// on the same server; the big room's join storm is over before the small rooms start.
async fn neighbours_scenario(
    paths: &Paths,
    lodge: &LodgeOpts,
    kind: Kind,
    url: Option<&str>,
    big: &fanout::FanoutCfg,
    small: &fanout::FanoutCfg,
) -> Result<Value> {
    let server = start(kind, paths, lodge, url).await?;
    note!(
        "neighbours on {}: {} rooms x {} alone",
        kind.name(),
        small.rooms,
        small.clients
    );
    let mut alone_cfg = small.clone();
    alone_cfg.prefix = format!("{}-alone", small.prefix);
    let mut alone = fanout::run(&server.base, &alone_cfg, None).await?;
    // Its clients leave before the second phase.
    drop(std::mem::take(&mut alone.open));
    note!(
        "neighbours on {}: the same beside 1 room x {} at {}/s",
        kind.name(),
        big.clients,
        big.rate
    );
    let (tx, rx) = oneshot::channel();
    let base = server.base.clone();
    let big_cfg = big.clone();
    let big_task = tokio::spawn(async move { fanout::run(&base, &big_cfg, Some(tx)).await });
    let _ = rx.await;
    let mut beside_cfg = small.clone();
    beside_cfg.prefix = format!("{}-beside", small.prefix);
    let beside = fanout::run(&server.base, &beside_cfg, None).await?;
    let big_run = big_task.await??;
    server.stop().await;
    let (a, b) = (alone.latency(), beside.latency());
    Ok(json!({
        "scenario": "neighbours",
        "target": kind.name(),
        "small": small.json(),
        "big": big.json(),
        "small_alone": alone.json(),
        "small_beside_big": beside.json(),
        "big_room": big_run.json(),
        "ratios": {
            "small_p99_beside_minus_alone_ms": round3(b.p99_ms - a.p99_ms),
            "small_p50_beside_minus_alone_ms": round3(b.p50_ms - a.p50_ms),
            "small_frames_per_s_beside_over_alone": ratio(beside.frames_per_s(), alone.frames_per_s()),
        },
        "targets": "one room does not starve the others: small rooms' p99 beside the big room stays within a few ms of alone",
    }))
}

async fn cold_scenario(
    paths: &Paths,
    lodge: &LodgeOpts,
    kinds: &[Kind],
    url: Option<&str>,
    cfg: &cold::ColdCfg,
) -> Result<Value> {
    let mut results = Map::new();
    for &kind in kinds {
        let server = start(kind, paths, lodge, url).await?;
        note!(
            "cold rooms: {} fresh rooms, {} warm samples on {}",
            cfg.rooms,
            cfg.warm,
            kind.name()
        );
        let before = server.metrics().await.ok();
        let usage = Usage::start(&server);
        let run = cold::run(&server.base, cfg, &nonce()).await;
        let usage = usage.json(&server, "sample", (cfg.rooms + cfg.warm) as f64);
        let after = server.metrics().await.ok();
        server.stop().await;
        let mut v = run?.json();
        merge(&mut v, usage);
        if let (Some(a), Some(b)) = (after, before) {
            let d = |k: &str| a.get(k).zip(b.get(k)).map(|(x, y)| x - y);
            merge(
                &mut v,
                json!({
                    "activations": d("lodge_activations_total"),
                    "evictions": d("lodge_evictions_total"),
                }),
            );
        }
        results.insert(kind.name().into(), v);
    }
    let mut line = json!({ "scenario": "cold" });
    merge(&mut line, cfg.json());
    let lodge_vs_native = match (results.get("lodge"), results.get("native")) {
        (Some(l), Some(n)) => json!({
            "lodge_cold_p50_over_native_cold_p50": ratio(
                l["cold_first_message"]["p50_ms"].as_f64().unwrap_or(0.0),
                n["cold_first_message"]["p50_ms"].as_f64().unwrap_or(0.0)),
            "lodge_warm_p50_over_native_warm_p50": ratio(
                l["warm_first_message"]["p50_ms"].as_f64().unwrap_or(0.0),
                n["warm_first_message"]["p50_ms"].as_f64().unwrap_or(0.0)),
        }),
        _ => Value::Null,
    };
    merge(
        &mut line,
        json!({
            "results": results,
            "ratios": lodge_vs_native,
            "targets": "lodge cold p50 <= 2x warm p50",
        }),
    );
    Ok(line)
}

async fn durable_scenario(
    paths: &Paths,
    lodge: &LodgeOpts,
    kinds: &[Kind],
    url: Option<&str>,
    cfg: &durable::DurableCfg,
) -> Result<Value> {
    // The disk is shared and its fsync rate drifts: measure before and after the
    // targets and compare with the mean.
    note!("measuring this disk's fsyncs/s");
    let dir = std::env::temp_dir();
    let d = dir.clone();
    let before = tokio::task::spawn_blocking(move || durable::probe(&d, 2.0)).await??;
    let mut results = std::collections::BTreeMap::new();
    let mut rates = Vec::new();
    for &kind in kinds {
        let server = start(kind, paths, lodge, url).await?;
        note!(
            "durable writes: {} objects for {} s on {}",
            cfg.objects,
            cfg.secs,
            kind.name()
        );
        let run = durable::run(&server, cfg, &nonce()).await;
        server.stop().await;
        let run = run?;
        results.insert(kind.name().into(), run);
        rates.push(kind);
    }
    let after = tokio::task::spawn_blocking(move || durable::probe(&dir, 2.0)).await??;
    let probe = before.mean(&after);
    // On the private PostgreSQL server, after lodge ran on it: one commit per event.
    let pg_commits_per_s = if kinds.contains(&Kind::LodgePostgres) {
        note!("measuring single-row commits/s on the same PostgreSQL server");
        let url = tokio::task::spawn_blocking(|| {
            servers::postgres()?.create_database(&format!("probe_{}", nonce()))
        })
        .await??;
        Some(durable::probe_postgres(&url, 2.0).await?)
    } else {
        None
    };
    let rates: Vec<(Kind, f64)> = rates
        .into_iter()
        .map(|k| (k, results[k.name()].events_per_s()))
        .collect();
    let results: Map<String, Value> = results
        .into_iter()
        .map(|(k, run)| (k, run.json(&probe)))
        .collect();
    let find = |k: Kind| rates.iter().find(|r| r.0 == k).map(|r| r.1);
    let mut line = json!({ "scenario": "durable" });
    merge(&mut line, cfg.json());
    merge(
        &mut line,
        json!({
            "disk": { "before": before.json(), "after": after.json(), "mean": probe.json() },
            "results": results,
            "ratios": {
                "lodge_events_per_s_over_native": match (find(Kind::Lodge), find(Kind::Native)) {
                    (Some(l), Some(n)) => ratio(l, n),
                    _ => Value::Null,
                },
                "lodge_server_cpu_per_event_over_native": match (
                    results.get("lodge").and_then(|v| v["server_cpu_us_per_event"].as_f64()),
                    results.get("native").and_then(|v| v["server_cpu_us_per_event"].as_f64()),
                ) {
                    (Some(l), Some(n)) => ratio(l, n),
                    _ => Value::Null,
                },
                "lodge_events_per_s_over_fdatasync_per_s": find(Kind::Lodge).map(|l| ratio(l, probe.fdatasync_per_s)),
                "lodge_events_per_s_over_redb_commits_per_s": find(Kind::Lodge).map(|l| ratio(l, probe.redb_commits_per_s)),
                "lodge_postgres_events_per_s_over_pg_commits_per_s": match (find(Kind::LodgePostgres), pg_commits_per_s) {
                    (Some(l), Some(c)) => ratio(l, c),
                    _ => Value::Null,
                },
                "lodge_postgres_events_per_s_over_lodge": match (find(Kind::LodgePostgres), find(Kind::Lodge)) {
                    (Some(p), Some(l)) => ratio(p, l),
                    _ => Value::Null,
                },
            },
            "postgres": { "single_row_commits_per_s": pg_commits_per_s.map(round3) },
            "targets": "durable events/s across 1,000 objects >= 10x one fsync per event (redb), >= 10x one single-row commit per event (PostgreSQL)",
        }),
    );
    Ok(line)
}

async fn hibernate_scenario(
    paths: &Paths,
    lodge: &LodgeOpts,
    kinds: &[Kind],
    cfg: &hibernate::HibernateCfg,
) -> Result<Value> {
    let mut results = Map::new();
    for &kind in kinds {
        if kind == Kind::External {
            bail!("hibernate reads the server's RSS: it needs a server it starts itself");
        }
        let opts = LodgeOpts {
            idle_timeout_ms: cfg.idle_ms,
            ..lodge.clone()
        };
        let server = start(kind, paths, &opts, None).await?;
        note!(
            "hibernation: {} sockets over {} rooms on {}",
            cfg.sockets,
            cfg.rooms,
            kind.name()
        );
        let v = hibernate::run(&server, cfg, &nonce()).await;
        server.stop().await;
        results.insert(kind.name().into(), v?);
    }
    let mut line = json!({ "scenario": "hibernate" });
    merge(&mut line, cfg.json());
    let get = |k: &str, f: &str| results.get(k).and_then(|v| v[f].as_f64());
    let ratios = json!({
        "lodge_kib_per_socket_over_native": match (get("lodge", "kib_per_socket"), get("native", "kib_per_socket")) {
            (Some(l), Some(n)) => ratio(l, n),
            _ => Value::Null,
        },
        "lodge_marginal_over_native_marginal": match (get("lodge", "marginal_kib_per_socket"), get("native", "marginal_kib_per_socket")) {
            (Some(l), Some(n)) => ratio(l, n),
            _ => Value::Null,
        },
    });
    merge(
        &mut line,
        json!({
            "results": results,
            "ratios": ratios,
            "targets": "hibernated socket <= 16 KiB of host RSS",
        }),
    );
    Ok(line)
}

async fn hotswap_scenario(
    paths: &Paths,
    lodge: &LodgeOpts,
    cfg: &hotswap::HotswapCfg,
) -> Result<Value> {
    let server = start(Kind::Lodge, paths, lodge, None).await?;
    note!(
        "hot swap: fan-out {}x{} at {}/s, deploy at {} s, rollback at {} s",
        cfg.fanout.rooms,
        cfg.fanout.clients,
        cfg.fanout.rate,
        cfg.deploy_at,
        cfg.rollback_at
    );
    let v = hotswap::run(&server, &paths.chat_wasm, cfg).await;
    server.stop().await;
    let mut line = json!({ "scenario": "hotswap" });
    merge(&mut line, cfg.fanout.json());
    merge(
        &mut line,
        json!({ "deploy_at_s": cfg.deploy_at, "rollback_at_s": cfg.rollback_at }),
    );
    merge(&mut line, json!({ "lodge": v? }));
    merge(
        &mut line,
        json!({ "targets": "deploy under load drops 0 sockets, loses 0 messages" }),
    );
    Ok(line)
}
