//! Support for lodge's end-to-end tests: the real `lodge` binary on loopback with a
//! temporary data dir, the shipped guests built for `wasm32-wasip2`, and small HTTP and
//! WebSocket clients that wait on events (a frame, a log line, a response) with
//! deadlines instead of sleeping.

pub mod fake_ai;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds the guests (once per test binary) and returns the path of `name.wasm`.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let root = repo_root();
    let result = BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .current_dir(root.join("guests"))
            // The outer cargo's settings are for the host build, not this one.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .map_err(|e| format!("cannot run cargo to build the guests: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("building the guests failed: {status}"))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    root.join("guests/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

/// A class: its name, component file, settings and keys of its table (TOML values).
type ClassEntry = (
    String,
    PathBuf,
    Vec<(String, String)>,
    Vec<(String, String)>,
);

/// Builds a variant of a guest with cargo features into its own target dir (once per
/// test binary and variant) and returns its component.
pub fn guest_variant(name: &str, features: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let root = repo_root();
    let target = root.join("guests/target/variants").join(features);
    let key = format!("{name}/{features}");
    let mut built = BUILT.lock().expect("variants lock");
    if !built.contains(&key) {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--quiet",
                "-p",
                name,
            ])
            .args(["--features", features, "--target-dir"])
            .arg(&target)
            .current_dir(root.join("guests"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo");
        assert!(status.success(), "building {key} failed");
        built.push(key);
    }
    target.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

/// How to configure a host before starting it.
#[derive(Clone)]
pub struct HostConfig {
    classes: Vec<ClassEntry>,
    extra: Vec<String>,
    data_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    storage: Option<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HostConfig {
    /// A host with no classes yet.
    pub fn new() -> HostConfig {
        HostConfig {
            classes: Vec::new(),
            extra: Vec::new(),
            data_dir: None,
            env: Vec::new(),
            storage: None,
        }
    }

    /// Serves the guest `guest` as class `class`.
    pub fn class(mut self, class: &str, guest_name: &str) -> HostConfig {
        self.classes
            .push((class.into(), guest(guest_name), Vec::new(), Vec::new()));
        self
    }

    /// Serves an arbitrary component file as class `class`.
    pub fn class_file(mut self, class: &str, path: PathBuf) -> HostConfig {
        self.classes
            .push((class.into(), path, Vec::new(), Vec::new()));
        self
    }

    /// A key of the class's own table, e.g. `("title", "\"Chat\"")`.
    pub fn class_key(mut self, class: &str, key: &str, toml_value: &str) -> HostConfig {
        let entry = self
            .classes
            .iter_mut()
            .find(|(c, ..)| c == class)
            .expect("add the class before its keys");
        entry.3.push((key.into(), toml_value.into()));
        self
    }

    /// A class setting (a TOML value, e.g. `"2000"` or `"\"text\""`).
    pub fn setting(mut self, class: &str, key: &str, toml_value: &str) -> HostConfig {
        let entry = self
            .classes
            .iter_mut()
            .find(|(c, ..)| c == class)
            .expect("add the class before its settings");
        entry.2.push((key.into(), toml_value.into()));
        self
    }

    /// A raw TOML line in a section, e.g. `("runtime", "idle_timeout_ms = 200")`.
    pub fn toml(mut self, section: &str, line: &str) -> HostConfig {
        self.extra.push(format!("[{section}]\n{line}\n"));
        self
    }

    /// Keeps the host's data in `dir` instead of a fresh temp dir.
    pub fn data_dir(mut self, dir: PathBuf) -> HostConfig {
        self.data_dir = Some(dir);
        self
    }

    /// Stores the host's objects in this PostgreSQL database, whatever the run's engine.
    pub fn storage(mut self, url: &str) -> HostConfig {
        self.storage = Some(url.into());
        self
    }

    /// An environment variable for the host process.
    pub fn env(mut self, key: &str, value: &str) -> HostConfig {
        self.env.push((key.into(), value.into()));
        self
    }

    fn render(&self, data_dir: &Path, storage: Option<&str>) -> String {
        let mut sections: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        if let Some(url) = storage {
            sections
                .entry("[storage]".into())
                .or_default()
                .push(format!("url = {url:?}"));
        }
        for block in &self.extra {
            let (head, body) = block.split_once('\n').unwrap_or((block, ""));
            sections
                .entry(head.to_string())
                .or_default()
                .push(body.trim_end().to_string());
        }
        let mut out = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            data_dir.display().to_string()
        );
        sections
            .entry("[admin]".into())
            .or_default()
            .insert(0, "listen = \"127.0.0.1:0\"".into());
        for (head, lines) in sections {
            out.push_str(&format!("{head}\n{}\n", lines.join("\n")));
        }
        for (class, path, settings, keys) in &self.classes {
            out.push_str(&format!(
                "[classes.{class}]\ncomponent = {:?}\n",
                path.display().to_string()
            ));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
            if !settings.is_empty() {
                out.push_str(&format!("[classes.{class}.settings]\n"));
                for (k, v) in settings {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
        out
    }

    /// Starts a `lodge` process with this config.
    pub async fn start(self) -> Result<Host> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let storage = match postgres::engine() {
            _ if self.storage.is_some() => self.storage.clone(),
            postgres::Engine::Redb => None,
            postgres::Engine::Postgres => {
                let data_dir = data_dir.clone();
                Some(
                    tokio::task::spawn_blocking(move || postgres::database_for(&data_dir))
                        .await??,
                )
            }
        };
        let mut host = Host {
            config: self,
            dir,
            storage,
            data_dir,
            child: None,
            addr: "127.0.0.1:0".parse().expect("addr"),
            admin_addr: "127.0.0.1:0".parse().expect("addr"),
            log: Arc::new(LogLines::default()),
        };
        host.spawn().await?;
        Ok(host)
    }
}

/// Lines a host printed to stderr, and a way to wait for one.
#[derive(Default)]
pub struct LogLines {
    lines: Mutex<Vec<String>>,
    changed: Notify,
    /// The process closed its stderr: every line is in.
    ended: std::sync::atomic::AtomicBool,
}

impl LogLines {
    fn push(&self, line: String) {
        self.lines.lock().expect("log lock").push(line);
        self.changed.notify_waiters();
    }

    fn end(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Every line, once the process closed its stderr (or [`WAIT`] passed).
    async fn complete(&self) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.all()
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }

    /// Waits until `count` lines contain every one of `needles`.
    pub async fn wait_for(&self, needles: &[&str], count: usize) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            let hits: Vec<String> = self
                .all()
                .into_iter()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .collect();
            if hits.len() >= count {
                return Ok(hits);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("no {count} log lines with {needles:?} within {WAIT:?}");
            }
        }
    }
}

/// A running `lodge` process.
pub struct Host {
    config: HostConfig,
    dir: tempfile::TempDir,
    /// The PostgreSQL database the host stores its objects in (`LODGE_TEST_ENGINE`).
    storage: Option<String>,
    data_dir: PathBuf,
    child: Option<Child>,
    /// The public listener.
    pub addr: SocketAddr,
    /// The admin API.
    pub admin_addr: SocketAddr,
    /// The process's log lines (of its current run).
    pub log: Arc<LogLines>,
}

/// The `lodge` binary cargo built for these tests.
pub fn lodge_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LODGE_BIN") {
        return PathBuf::from(p);
    }
    // Tests run from target/<profile>/deps; the binary is one level up.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("lodge"))
        .expect("the lodge binary next to the tests")
}

impl Host {
    async fn spawn(&mut self) -> Result<()> {
        let config_path = self.dir.path().join("lodge.toml");
        std::fs::write(
            &config_path,
            self.config.render(&self.data_dir, self.storage.as_deref()),
        )?;
        let mut cmd = Command::new(lodge_bin());
        cmd.args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info,lodge=debug")
            .env("NO_COLOR", "1")
            // The record a host leaves for the local CLI goes to the test's folder.
            .env("LODGE_STATE_DIR", self.state_dir())
            .env_remove("LODGE_AI_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.config.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", lodge_bin().display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(LogLines::default());
        self.log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("LODGE_TEST_ECHO").is_some() {
                    eprintln!("[lodge] {line}");
                }
                log.push(line);
            }
            log.end();
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut public = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("lodge listening on http://") {
                    public = Some(addr.trim().to_string());
                }
                if let Some(admin) = line.strip_prefix("lodge admin on http://")
                    && let (Some(public), Some(tx)) = (public.take(), tx.take())
                {
                    let _ = tx.send((public, admin.trim().to_string()));
                }
            }
        });
        self.child = Some(child);
        let addr = tokio::time::timeout(WAIT, rx)
            .await
            .map_err(|_| {
                anyhow!(
                    "the host did not start within {WAIT:?}: {:?}",
                    self.log.all()
                )
            })?
            .map_err(|_| anyhow!("the host exited at start"));
        let addr = match addr {
            Ok(addr) => addr,
            // Its last words may still be on their way through the stderr reader.
            Err(e) => bail!("{e}: {}", self.log.complete().await.join("\n")),
        };
        self.addr = addr.0.parse()?;
        self.admin_addr = addr.1.parse()?;
        Ok(())
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the host runs").id()
    }

    /// A `kB` figure of the host's `/proc/PID/status` (e.g. `VmHWM`, its peak RSS).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the host's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://ADDR{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://ADMIN{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// The admin token the host generated into its data dir.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("the host wrote its admin token")
            .trim()
            .to_string()
    }

    /// Calls the admin API with the host's token.
    pub async fn admin(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Reply> {
        admin_call(
            &self.admin_url(path),
            method,
            Some(&self.admin_token()),
            body,
        )
        .await
    }

    /// Runs `lodge ARGS` against this host's admin API; returns success, stdout, stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(lodge_bin())
            .args(args)
            .args([
                "--admin-url",
                &self.admin_url(""),
                "--token",
                &self.admin_token(),
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run the lodge binary");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Where the host leaves its record for the local CLI (`LODGE_STATE_DIR`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The config file the host runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("lodge.toml")
    }

    /// The PostgreSQL database the host stores its objects in, when the run uses that
    /// engine.
    pub fn storage_url(&self) -> Option<&str> {
        self.storage.as_deref()
    }

    /// The data dir (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        Ok(child.wait()?)
    }

    /// Starts the process again on the same data dir (a new port).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn().await
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.log.all();
            let tail = lines.len().saturating_sub(60);
            eprintln!("--- last host log lines ---\n{}", lines[tail..].join("\n"));
        }
        self.kill();
    }
}

/// An HTTP response as tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .expect("http client")
    })
}

/// Sends a request and reads the whole response.
pub async fn http(method: &str, url: &str, body: &str) -> Result<Reply> {
    admin_call(url, method, None, body.as_bytes().to_vec()).await
}

/// Sends a request with an optional bearer token and a binary body (the admin API).
pub async fn admin_call(
    url: &str,
    method: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<Reply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    http_with_headers(method, url, &headers, body).await
}

/// Sends a request with extra headers and reads the whole response.
pub async fn http_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Result<Reply> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = client().request(method, url).body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("request to {url}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok(Reply {
        status,
        body: resp.text().await?,
        content_type,
    })
}

/// `GET url`.
pub async fn get(url: &str) -> Result<Reply> {
    http("GET", url, "").await
}

/// `POST url`.
pub async fn post(url: &str, body: &str) -> Result<Reply> {
    http("POST", url, body).await
}

/// A WebSocket client.
pub struct Ws {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a WebSocket ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Ws {
    /// Connects, failing if the upgrade is refused.
    pub async fn connect(url: &str) -> Result<Ws> {
        let (inner, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| anyhow!("connecting {url} timed out"))?
            .with_context(|| format!("connecting {url}"))?;
        Ok(Ws { inner })
    }

    /// Connects and expects a refusal; returns the HTTP status and body.
    pub async fn connect_refused(url: &str) -> Result<(u16, String)> {
        match tokio_tungstenite::connect_async(url).await {
            Ok(_) => bail!("{url} accepted the upgrade"),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Ok((resp.status().as_u16(), body))
            }
            Err(e) => bail!("{url}: {e}"),
        }
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) -> Result<()> {
        self.inner.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, value: &Value) -> Result<()> {
        self.send(&value.to_string()).await
    }

    /// Sends a raw message.
    pub async fn send_message(&mut self, msg: Message) -> Result<()> {
        self.inner.send(msg).await?;
        Ok(())
    }

    /// The next text or binary frame (as text), skipping pings and pongs.
    pub async fn recv(&mut self) -> Result<String> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .map_err(|_| anyhow!("no frame within {WAIT:?}"))?
                .ok_or_else(|| anyhow!("the socket ended"))??;
            match msg {
                Message::Text(t) => return Ok(t.as_str().to_string()),
                Message::Binary(b) => return Ok(String::from_utf8_lossy(&b).into_owned()),
                Message::Close(f) => bail!("the socket closed: {f:?}"),
                _ => {}
            }
        }
    }

    /// The next frame parsed as JSON.
    pub async fn recv_json(&mut self) -> Result<Value> {
        let text = self.recv().await?;
        serde_json::from_str(&text).with_context(|| format!("frame is not JSON: {text}"))
    }

    /// Frames until one whose `type` is `kind`; returns it.
    pub async fn recv_type(&mut self, kind: &str) -> Result<Value> {
        loop {
            let v = self.recv_json().await?;
            if v["type"] == kind {
                return Ok(v);
            }
        }
    }

    /// Waits for the server to close the socket; returns its close code and reason.
    pub async fn closed(&mut self) -> Result<Closed> {
        loop {
            let next = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .map_err(|_| anyhow!("the socket did not close within {WAIT:?}"))?;
            match next {
                Some(Ok(Message::Close(Some(f)))) => {
                    return Ok(Closed {
                        code: u16::from(f.code),
                        reason: f.reason.as_str().to_string(),
                    });
                }
                Some(Ok(Message::Close(None))) => {
                    return Ok(Closed {
                        code: 1005,
                        reason: String::new(),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("the socket failed before a close frame: {e}"),
                None => bail!("the socket ended without a close frame"),
            }
        }
    }

    /// Closes from the client side with a code and waits for the server's answer.
    pub async fn close(mut self, code: u16) -> Result<()> {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        self.inner
            .close(Some(CloseFrame {
                code: code.into(),
                reason: "bye".into(),
            }))
            .await?;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.inner.next()).await {}
        Ok(())
    }
}

/// Polls `check` until it returns `Some`, for state only observable by asking (an HTTP
/// endpoint). Fails after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes as a request (for paths a normal client would clean up) and returns
/// the raw response text, read until the server closes or [`WAIT`] passes.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(request).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
