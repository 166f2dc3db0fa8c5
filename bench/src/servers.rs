//! The servers under test: a lodge host and the native baseline, each a child process on
//! 127.0.0.1 with a temporary data dir, plus the small HTTP client the scenarios use for
//! lodge's admin API and the servers' metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::stats::round3;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Where the binaries and components come from.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The repository root (the workspace with host/ and guests/).
    pub root: PathBuf,
    /// `target/release/lodge`.
    pub lodge_bin: PathBuf,
    /// `guests/target/wasm32-wasip2/release/chat.wasm`.
    pub chat_wasm: PathBuf,
}

impl Paths {
    pub fn new(root: Option<PathBuf>, lodge_bin: Option<PathBuf>, chat: Option<PathBuf>) -> Paths {
        let root = root.unwrap_or_else(|| {
            let here = Path::new(env!("CARGO_MANIFEST_DIR"));
            here.parent().unwrap_or(here).to_path_buf()
        });
        let lodge_bin = lodge_bin.unwrap_or_else(|| root.join("target/release/lodge"));
        let chat_wasm =
            chat.unwrap_or_else(|| root.join("guests/target/wasm32-wasip2/release/chat.wasm"));
        Paths {
            root,
            lodge_bin,
            chat_wasm,
        }
    }

    /// `cargo build --release -p lodge` and the chat guest for wasm32-wasip2.
    pub fn build(&self) -> Result<()> {
        crate::note!("building lodge (cargo build --release -p lodge)");
        run_cargo(&self.root, &["build", "--release", "-p", "lodge"])?;
        crate::note!(
            "building the chat guest (cargo build --release --target wasm32-wasip2 -p chat in guests/)"
        );
        run_cargo(
            &self.root.join("guests"),
            &[
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "chat",
            ],
        )?;
        Ok(())
    }

    pub fn check(&self) -> Result<()> {
        for p in [&self.lodge_bin, &self.chat_wasm] {
            if !p.exists() {
                bail!(
                    "{} does not exist (run without --no-build, or build it)",
                    p.display()
                );
            }
        }
        Ok(())
    }
}

fn run_cargo(dir: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running cargo {args:?}"))?;
    if !status.success() {
        bail!("cargo {args:?} in {} failed: {status}", dir.display());
    }
    Ok(())
}

/// Which server a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// lodge with the chat guest.
    Lodge,
    /// The same, with storage in PostgreSQL (a private server this process starts,
    /// a fresh database per run).
    LodgePostgres,
    /// The native baseline, fsync'd group commits (same durability as lodge).
    Native,
    /// The native baseline without fsync.
    NativeNoFsync,
    /// The native baseline (fsync) with a 4 KiB WebSocket read buffer instead of
    /// tungstenite's 128 KiB default: what the per-socket memory would be with that one
    /// setting changed.
    NativeSmallBuffer,
    /// A server someone else started (`--url`).
    External,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Lodge => "lodge",
            Kind::LodgePostgres => "lodge_postgres",
            Kind::Native => "native",
            Kind::NativeNoFsync => "native_nofsync",
            Kind::NativeSmallBuffer => "native_4k_read_buffer",
            Kind::External => "external",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s {
            "lodge" => Kind::Lodge,
            "lodge-postgres" | "lodge_postgres" => Kind::LodgePostgres,
            "native" => Kind::Native,
            "native-nofsync" | "native_nofsync" => Kind::NativeNoFsync,
            "native-4k-read-buffer" | "native_4k_read_buffer" => Kind::NativeSmallBuffer,
            other => bail!(
                "unknown target {other:?}: lodge, lodge-postgres, native, native-nofsync or native-4k-read-buffer"
            ),
        })
    }
}

impl Kind {
    /// Whether this is lodge (on either engine).
    pub fn is_lodge(self) -> bool {
        matches!(self, Kind::Lodge | Kind::LodgePostgres)
    }
}

/// The private PostgreSQL server of this bench process (Debian's binaries, as in the
/// tests), started on first use.
pub fn postgres() -> Result<&'static lodge_tests::postgres::Server> {
    lodge_tests::postgres::Server::shared()
}

/// A fresh database on it, for one server run.
fn postgres_database() -> Result<String> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    postgres()?.create_database(&format!("bench_{}_{n}", std::process::id()))
}

/// lodge settings a scenario may change.
#[derive(Clone, Debug)]
pub struct LodgeOpts {
    pub idle_timeout_ms: u64,
    pub max_live_objects: u32,
}

impl Default for LodgeOpts {
    fn default() -> Self {
        LodgeOpts {
            idle_timeout_ms: 10_000,
            max_live_objects: 1_000,
        }
    }
}

/// A running server under test. Killed when dropped.
pub struct Server {
    pub kind: Kind,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub admin: Option<SocketAddr>,
    token: Option<String>,
    child: Option<Child>,
    /// Kept for the server's lifetime (the data dir and logs), removed after.
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the kind of server asked for (`external` needs `url`).
    pub async fn start(
        kind: Kind,
        paths: &Paths,
        lodge: &LodgeOpts,
        url: Option<&str>,
    ) -> Result<Server> {
        match kind {
            Kind::Lodge => Server::lodge(paths, lodge, None).await,
            Kind::LodgePostgres => {
                let url = tokio::task::spawn_blocking(postgres_database).await??;
                Server::lodge(paths, lodge, Some(&url)).await
            }
            Kind::Native | Kind::NativeNoFsync | Kind::NativeSmallBuffer => {
                Server::native(kind).await
            }
            Kind::External => Ok(Server {
                kind,
                base: url
                    .ok_or_else(|| anyhow!("the external target needs --url"))?
                    .trim_end_matches('/')
                    .to_string(),
                admin: None,
                token: None,
                child: None,
                _dir: None,
            }),
        }
    }

    /// A lodge host serving only the chat class, with a fresh data dir, and its objects
    /// there or in the PostgreSQL database `storage`. Presence lists every name, as the
    /// native baseline does and as the load generator waits for (a real room of 500
    /// sends counts instead: `presence_list_max`).
    pub async fn lodge(paths: &Paths, opts: &LodgeOpts, storage: Option<&str>) -> Result<Server> {
        paths.check()?;
        let dir = tempfile::Builder::new().prefix("lodge-bench-").tempdir()?;
        let data = dir.path().join("data");
        let config = format!(
            "listen = \"127.0.0.1:0\"\n\
             data_dir = {data:?}\n\
             [runtime]\n\
             idle_timeout_ms = {idle}\n\
             max_live_objects = {live}\n\
             [admin]\n\
             listen = \"127.0.0.1:0\"\n\
             [classes.chat]\n\
             component = {chat:?}\n\
             [classes.chat.settings]\n\
             presence_list_max = 100000\n",
            idle = opts.idle_timeout_ms,
            live = opts.max_live_objects,
            chat = paths.chat_wasm,
        );
        let config = match storage {
            Some(url) => format!("{config}[storage]\nurl = {url:?}\n"),
            None => config,
        };
        let config_path = dir.path().join("lodge.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("lodge.log"))?;
        let mut cmd = Command::new(&paths.lodge_bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("LODGE_BENCH_LOG").unwrap_or("warn".into()),
            )
            .env_remove("LODGE_ADMIN_TOKEN")
            .env_remove("LODGE_CONFIG")
            .env_remove("LODGE_LISTEN")
            .env_remove("LODGE_DATA_DIR")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", paths.lodge_bin.display()))?;
        let (base, admin) = read_addrs(
            &mut child,
            "lodge listening on http://",
            Some("lodge admin on http://"),
        )
        .await
        .with_context(|| {
            format!(
                "lodge did not start (log: {})",
                dir.path().join("lodge.log").display()
            )
        })?;
        let token = std::fs::read_to_string(data.join("admin.token"))
            .context("reading the admin token")?
            .trim()
            .to_string();
        Ok(Server {
            kind: if storage.is_some() {
                Kind::LodgePostgres
            } else {
                Kind::Lodge
            },
            base: format!("http://{base}"),
            admin: Some(admin.ok_or_else(|| anyhow!("no admin address"))?.parse()?),
            token: Some(token),
            child: Some(child),
            _dir: Some(dir),
        })
    }

    /// The native baseline, as a child process of this same binary.
    pub async fn native(kind: Kind) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("native-bench-").tempdir()?;
        let exe = std::env::current_exe()?;
        let log = std::fs::File::create(dir.path().join("native.log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("native")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        match kind {
            Kind::NativeNoFsync => {
                cmd.arg("--no-fsync");
            }
            Kind::NativeSmallBuffer => {
                cmd.arg("--read-buffer-kib").arg("4");
            }
            _ => {}
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting the native baseline")?;
        let (base, _) = read_addrs(&mut child, "native listening on http://", None).await?;
        Ok(Server {
            kind,
            base: format!("http://{base}"),
            admin: None,
            token: None,
            child: Some(child),
            _dir: Some(dir),
        })
    }

    /// The server process id (none for an external server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// User + system CPU seconds the server process has used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        let pid = self.pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name: state is the first, utime the 12th, stime the 13th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some(ticks / hz)
    }

    /// VmRSS of the server process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Where the server's RSS lives (from /proc/PID/smaps): mappings grouped by size and
    /// path, the `n` groups with the most resident memory (malloc arenas, wasmtime's
    /// pooling-allocator slots, the binary, ...).
    pub fn top_mappings(&self, n: usize) -> Value {
        let Some(pid) = self.pid() else {
            return Value::Null;
        };
        let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
            return Value::Null;
        };
        let mut maps: Vec<(u64, u64, String)> = Vec::new();
        for line in smaps.lines() {
            let mut parts = line.split_whitespace();
            let first = parts.next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-')
                && let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
            {
                let path = parts.nth(4).unwrap_or("[anon]").to_string();
                maps.push(((hi - lo) / 1024, 0, path));
            } else if first == "Rss:"
                && let Some(last) = maps.last_mut()
            {
                last.1 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
        // Group same-sized mappings: wasmtime's pool shows up as many equal slots.
        let mut groups: HashMap<(u64, String), (u64, u64)> = HashMap::new();
        for (size, rss, path) in maps {
            let g = groups.entry((size, path)).or_default();
            g.0 += 1;
            g.1 += rss;
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.1.1));
        groups.truncate(n);
        Value::Array(
            groups
                .into_iter()
                .map(|((size, path), (count, rss))| {
                    json!({ "mappings": count, "size_kib_each": size, "rss_kib_total": rss, "path": path })
                })
                .collect(),
        )
    }

    /// The server's counters: lodge's admin `/metrics`, or the baseline's `/metrics`.
    pub async fn metrics(&self) -> Result<HashMap<String, f64>> {
        let (status, body) = match (self.kind, self.admin) {
            (Kind::Lodge | Kind::LodgePostgres, Some(admin)) => {
                let auth = format!("Bearer {}", self.token.as_deref().unwrap_or(""));
                http(admin, "GET", "/metrics", &[("authorization", &auth)], &[]).await?
            }
            _ => {
                let addr: SocketAddr = self
                    .base
                    .trim_start_matches("http://")
                    .parse()
                    .context("the server address")?;
                http(addr, "GET", "/metrics", &[], &[]).await?
            }
        };
        if status != 200 {
            bail!("GET /metrics answered {status}");
        }
        Ok(parse_metrics(&String::from_utf8_lossy(&body)))
    }

    /// Calls lodge's admin API.
    pub async fn admin_call(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, String)> {
        let admin = self
            .admin
            .ok_or_else(|| anyhow!("this server has no admin API"))?;
        let auth = format!("Bearer {}", self.token.as_deref().unwrap_or(""));
        let (status, body) = http(admin, method, path, &[("authorization", &auth)], body).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Stops the server (SIGKILL: the scenarios are done with it).
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        // LODGE_BENCH_KEEP=1 keeps the data dir and the server's log for a look after.
        if std::env::var_os("LODGE_BENCH_KEEP").is_some()
            && let Some(dir) = self._dir.take()
        {
            crate::note!("kept {}", dir.keep().display());
        }
    }
}

async fn read_addrs(
    child: &mut Child,
    public: &str,
    admin: Option<&str>,
) -> Result<(String, Option<String>)> {
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut found_public = None;
    let mut found_admin = None;
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(a) = line.strip_prefix(public) {
                found_public = Some(a.trim().to_string());
            }
            if let Some(prefix) = admin
                && let Some(a) = line.strip_prefix(prefix)
            {
                found_admin = Some(a.trim().to_string());
            }
            if found_public.is_some() && (admin.is_none() || found_admin.is_some()) {
                return Ok::<_, anyhow::Error>(());
            }
        }
        bail!("the server exited before printing its address")
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .map_err(|_| anyhow!("the server did not print its address within 60 s"))??;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((found_public.unwrap_or_default(), found_admin))
}

/// Prometheus text -> name -> value (labels are kept in the name).
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A one-shot HTTP/1.1 request (`Connection: close`); returns the status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut raw))
        .await
        .map_err(|_| anyhow!("{method} {path}: no answer within 60 s"))??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: malformed response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = &raw[(end + 2).min(raw.len())..];
    }
    out
}

/// What a target run cost: server and load-generator CPU, and how busy the machine was
/// (it is shared: the load average is part of every figure).
pub struct Usage {
    server_cpu: Option<f64>,
    own_cpu: f64,
    load: Option<f64>,
}

impl Usage {
    pub fn start(server: &Server) -> Usage {
        Usage {
            server_cpu: server.cpu_secs(),
            own_cpu: own_cpu_secs(),
            load: loadavg(),
        }
    }

    /// Server CPU seconds since `start`.
    pub fn server_cpu(&self, server: &Server) -> Option<f64> {
        server.cpu_secs().zip(self.server_cpu).map(|(b, a)| b - a)
    }

    /// The usage figures, with server CPU µs per `unit` if `count` is given.
    pub fn json(&self, server: &Server, unit: &str, count: f64) -> Value {
        let cpu = self.server_cpu(server);
        let mut v = json!({
            "server_cpu_secs": cpu.map(round3),
            "loadgen_cpu_secs": round3(own_cpu_secs() - self.own_cpu),
            "loadavg_start": self.load,
            "loadavg_end": loadavg(),
        });
        if count > 0.0 {
            v[format!("server_cpu_us_per_{unit}")] = json!(cpu.map(|c| round3(c * 1e6 / count)));
        }
        v
    }
}

/// The 1-minute load average: the machine is shared, so every figure carries it.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds this process (the load generator) has used so far.
pub fn own_cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes into the provided struct.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Raises this process's open-file limit to the hard limit (children inherit it).
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}
