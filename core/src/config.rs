//! The operator's configuration: one TOML file, every key optional, safe defaults.
//! `lodge.toml` at the repository root documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the public HTTP/WebSocket listener binds.
    pub listen: SocketAddr,
    /// Where the database and compiled components live.
    pub data_dir: PathBuf,
    /// `human` or `json` log lines.
    pub log_format: LogFormat,
    pub runtime: RuntimeConfig,
    pub limits: Limits,
    pub alarms: AlarmConfig,
    pub ai: AiConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub connections: ConnectionsConfig,
    /// Object classes by name: `[classes.chat] component = "path/to/chat.wasm"`.
    pub classes: BTreeMap<String, ClassConfig>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Object lifecycle settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// An object with no event for this long is evicted (its sockets stay open).
    pub idle_timeout_ms: u64,
    /// Live instances at most; the least recently used is evicted beyond it. Also sizes
    /// the pooling allocator, so keep it well below what `vm.max_map_count` allows.
    pub max_live_objects: u32,
    /// Events queued per object before requests get 503 (WebSocket readers wait).
    pub mailbox_capacity: usize,
    /// Frames queued per socket before a slow reader is disconnected (close 1008).
    pub socket_send_queue: usize,
    /// The epoch tick that measures CPU time per event.
    pub epoch_tick_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            idle_timeout_ms: 10_000,
            max_live_objects: 1_000,
            mailbox_capacity: 1_024,
            socket_send_queue: 1_024,
            epoch_tick_ms: 10,
        }
    }
}

/// Per-object limits (the same for every class unless a class overrides them).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU time one event may spend in the guest's code (epoch interruption).
    pub cpu_ms_per_event: u64,
    /// Wall-clock time one event (or an instantiation) may take, host calls and WASI
    /// waits included.
    pub wall_ms_per_event: u64,
    /// Linear memory per instance.
    pub memory_bytes: u64,
    /// Bytes of keys and values per object.
    pub storage_bytes: u64,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_sockets: usize,
    /// Largest WebSocket message accepted or sent.
    pub max_message_bytes: usize,
    pub max_attachment_bytes: usize,
    /// Largest HTTP request body.
    pub max_body_bytes: usize,
    /// AI streams running at once for one object (0: the class may not use AI).
    pub max_ai_streams: usize,
    /// Bytes of keys and values one event may read (get, get-many, list): what the host
    /// materialises for the guest.
    pub max_read_bytes_per_event: usize,
    /// Bytes of keys and values one event may write (held until its commit).
    pub max_write_bytes_per_event: usize,
    /// Bytes one event may queue for sockets: each frame's payload once, plus 64 per
    /// socket it goes to.
    pub max_send_bytes_per_event: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_ms_per_event: 5_000,
            wall_ms_per_event: 10_000,
            memory_bytes: 128 << 20,
            storage_bytes: 1 << 30,
            max_key_bytes: 2 << 10,
            max_value_bytes: 1 << 20,
            max_sockets: 32_768,
            max_message_bytes: 1 << 20,
            max_attachment_bytes: 2 << 10,
            max_body_bytes: 1 << 20,
            max_ai_streams: 4,
            max_read_bytes_per_event: 64 << 20,
            max_write_bytes_per_event: 64 << 20,
            max_send_bytes_per_event: 64 << 20,
        }
    }
}

/// Alarm delivery.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmConfig {
    /// The first retry of a failed `on-alarm` waits this long; each next one twice as long.
    pub retry_base_ms: u64,
    /// Retries after the first attempt before the alarm is dropped.
    pub max_retries: u32,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            retry_base_ms: 2_000,
            max_retries: 6,
        }
    }
}

/// The public listener's connections.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Open connections (HTTP and WebSocket) at most; beyond it new ones get 503. The
    /// host also keeps it below its file-descriptor limit, with a reserve for the admin
    /// API and storage.
    pub max_open: usize,
    /// Open connections from one client address at most (0: no limit). Leave it at 0
    /// behind a reverse proxy, where every client has the proxy's address.
    pub max_per_address: usize,
    /// A WebSocket with no frame from its client for this long is pinged; with none for
    /// as long again, it is dropped as dead.
    pub ping_interval_ms: u64,
    /// Objects one client address may wake per minute (requests and upgrades to objects
    /// that are not live; 0: no limit). Leave it at 0 behind a reverse proxy, where every
    /// client has the proxy's address.
    pub max_wakes_per_minute: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max_open: 10_000,
            max_per_address: 0,
            ping_interval_ms: 30_000,
            max_wakes_per_minute: 0,
        }
    }
}

/// Storage, whatever the engine.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Writes that add data are refused while the data directory's file system has less
    /// than this free (default 256 MiB), so a full disk never wedges the database and
    /// deletes still work. Applies to the redb engine (PostgreSQL's disk is the
    /// database server's).
    pub min_free_bytes: u64,
    /// Store objects in PostgreSQL instead of redb in the data dir:
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `--storage` and
    /// `LODGE_STORAGE`). lodge creates and migrates its tables at start.
    pub url: Option<String>,
    /// How long a PostgreSQL commit or read may take before it counts as failed
    /// (default 10 000): the events of a commit that times out are reported failed.
    pub timeout_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            min_free_bytes: 256 << 20,
            url: None,
            timeout_ms: 10_000,
        }
    }
}

/// The admin API (deploy, rollback, versions, metrics).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where the admin API listens. Off loopback it requires a configured token.
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token. When neither it nor `token`
    /// is set, the host makes a random token and writes it to `<data_dir>/admin.token`
    /// (readable by the operator only), where the `lodge` CLI finds it.
    pub token_env: String,
    /// The bearer token itself (prefer the environment variable).
    pub token: Option<String>,
    /// Largest component upload.
    pub max_upload_bytes: usize,
    /// How long an upload's body may take to arrive, once its headers have (default
    /// 60 000): a client that trickles a body does not hold a connection forever.
    pub upload_timeout_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8788)),
            token_env: "LODGE_ADMIN_TOKEN".into(),
            token: None,
            max_upload_bytes: 64 << 20,
            upload_timeout_ms: 60_000,
        }
    }
}

/// One object class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The component file (`cargo build --target wasm32-wasip2` output).
    pub component: PathBuf,
    /// Values the guest reads with `object.setting(key)`.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// Limits for this class, overriding `[limits]` key by key.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// A short title for the landing page (`/`), e.g. "AI chat room" (default: the
    /// class name).
    #[serde(default)]
    pub title: Option<String>,
    /// One sentence on what an object of the class is.
    #[serde(default)]
    pub description: Option<String>,
    /// The object the landing page links to, e.g. `lobby` for `/chat/lobby` (default
    /// `lobby`).
    #[serde(default)]
    pub start: Option<String>,
    /// The class's docs: a guide bundled with lodge (`chat`, `document`, `game-protocol`,
    /// `plugin-guide`, `operator-guide`) or an `http(s)://` URL.
    #[serde(default)]
    pub docs: Option<String>,
    /// Pages allowed to open this class's WebSockets, as origins
    /// (`"https://chat.example.com"`). Empty (the default): any. A browser always sends its
    /// page's origin with a WebSocket upgrade, so this stops other sites from opening
    /// sockets in their visitors' name; clients that send no `Origin` are not browsers and
    /// are let through.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// Checks an `allowed_origins` entry: `http(s)://host[:port]`, nothing after it.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("{origin:?} is not an origin: it starts with http:// or https://")
        })?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "{origin:?} is not an origin: scheme, host and port only, like \"https://chat.example.com\""
        ));
    }
    Ok(())
}

/// How the landing page presents a class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassAbout {
    pub title: Option<String>,
    pub description: Option<String>,
    pub start: Option<String>,
    pub docs: Option<String>,
}

impl ClassConfig {
    /// Its landing-page keys.
    pub fn about(&self) -> ClassAbout {
        ClassAbout {
            title: self.title.clone(),
            description: self.description.clone(),
            start: self.start.clone(),
            docs: self.docs.clone(),
        }
    }
}

/// `[classes.NAME.limits]`: any `[limits]` key, for one class.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub cpu_ms_per_event: Option<u64>,
    pub wall_ms_per_event: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub storage_bytes: Option<u64>,
    pub max_key_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub max_sockets: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub max_attachment_bytes: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub max_ai_streams: Option<usize>,
    pub max_read_bytes_per_event: Option<usize>,
    pub max_write_bytes_per_event: Option<usize>,
    pub max_send_bytes_per_event: Option<usize>,
}

impl Limits {
    /// These limits with a class's overrides applied.
    pub fn with(&self, o: &LimitOverrides) -> Limits {
        Limits {
            cpu_ms_per_event: o.cpu_ms_per_event.unwrap_or(self.cpu_ms_per_event),
            wall_ms_per_event: o.wall_ms_per_event.unwrap_or(self.wall_ms_per_event),
            memory_bytes: o.memory_bytes.unwrap_or(self.memory_bytes),
            storage_bytes: o.storage_bytes.unwrap_or(self.storage_bytes),
            max_key_bytes: o.max_key_bytes.unwrap_or(self.max_key_bytes),
            max_value_bytes: o.max_value_bytes.unwrap_or(self.max_value_bytes),
            max_sockets: o.max_sockets.unwrap_or(self.max_sockets),
            max_message_bytes: o.max_message_bytes.unwrap_or(self.max_message_bytes),
            max_attachment_bytes: o.max_attachment_bytes.unwrap_or(self.max_attachment_bytes),
            max_body_bytes: o.max_body_bytes.unwrap_or(self.max_body_bytes),
            max_ai_streams: o.max_ai_streams.unwrap_or(self.max_ai_streams),
            max_read_bytes_per_event: o
                .max_read_bytes_per_event
                .unwrap_or(self.max_read_bytes_per_event),
            max_write_bytes_per_event: o
                .max_write_bytes_per_event
                .unwrap_or(self.max_write_bytes_per_event),
            max_send_bytes_per_event: o
                .max_send_bytes_per_event
                .unwrap_or(self.max_send_bytes_per_event),
        }
    }
}

impl Config {
    /// The limits of one class.
    pub fn class_limits(&self, class: &str) -> Limits {
        match self.classes.get(class) {
            Some(c) => self.limits.with(&c.limits),
            None => self.limits.clone(),
        }
    }

    /// The largest linear memory any class may use (sizes the instance pool's slots):
    /// the configured classes' and `[limits]`'s, which a class created by a deploy gets.
    pub fn max_memory_bytes(&self) -> u64 {
        self.classes
            .keys()
            .map(|c| self.class_limits(c).memory_bytes)
            .fold(self.limits.memory_bytes, u64::max)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Human,
            runtime: RuntimeConfig::default(),
            limits: Limits::default(),
            alarms: AlarmConfig::default(),
            ai: AiConfig::default(),
            admin: AdminConfig::default(),
            storage: StorageConfig::default(),
            connections: ConnectionsConfig::default(),
            classes: BTreeMap::new(),
        }
    }
}

/// The `[ai]` section of the host's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AiConfig {
    /// The provider's OpenAI-compatible API base, e.g. `"https://api.openai.com/v1"`,
    /// `"http://127.0.0.1:11434/v1"` (Ollama) or `"http://127.0.0.1:8080/v1"` (llama.cpp).
    /// `None`: AI is not available to objects.
    pub base_url: Option<String>,
    /// The environment variable holding the API key (default `LODGE_AI_API_KEY`). Unset or
    /// empty: requests are sent without `Authorization` (fine for a local Ollama).
    pub api_key_env: String,
    /// The model used when a request names none (default `gpt-4o-mini`).
    pub model: String,
    /// How long the provider may take to send the first piece of the reply, connecting
    /// included (default 30 000). 0: no limit.
    pub first_token_timeout_ms: u64,
    /// How long the provider may pause between two chunks once the reply has started
    /// (default 60 000). 0: no limit.
    pub idle_timeout_ms: u64,
    /// Streams running at once on the whole host (default 64). 0 switches AI off. (The
    /// bound per object is a class limit: `max_ai_streams`.)
    pub max_streams: usize,
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            base_url: None,
            api_key_env: "LODGE_AI_API_KEY".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            first_token_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_streams: 64,
        }
    }
}

/// Where the shipped guests land when built from this repository.
pub const SHIPPED_GUESTS_DIR: &str = "guests/target/wasm32-wasip2/release";

/// The classes served when no config file names any: the three shipped apps.
pub fn shipped_classes(root: &Path) -> BTreeMap<String, ClassConfig> {
    [
        (
            "chat",
            "chat",
            "AI chat room",
            "A chat room per name, with an AI that answers messages starting with @ai.",
            "lobby",
            "chat",
        ),
        (
            "doc",
            "document",
            "Collaborative document",
            "A shared text per name: edit it together, live, and restore older versions.",
            "notes",
            "document",
        ),
        (
            "game",
            "game",
            "Connect Four",
            "A game lobby per name: get paired with another player and play in real time.",
            "lobby",
            "game-protocol",
        ),
    ]
    .into_iter()
    .map(|(class, file, title, description, start, docs)| {
        (
            class.to_string(),
            ClassConfig {
                component: root.join(SHIPPED_GUESTS_DIR).join(format!("{file}.wasm")),
                settings: BTreeMap::new(),
                limits: LimitOverrides::default(),
                title: Some(title.into()),
                description: Some(description.into()),
                start: Some(start.into()),
                docs: Some(docs.into()),
                allowed_origins: Vec::new(),
            },
        )
    })
    .collect()
}

impl Config {
    /// Parses a config file; relative component paths are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for class in config.classes.values_mut() {
            if class.component.is_relative() {
                class.component = base.join(&class.component);
            }
        }
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Parses TOML text. The error is one line: where, then what (`line 3, column 1:
    /// unknown field ...`).
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let what = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {column}: {what}")
                }
                None => what,
            }
        })
    }

    /// Checks values serde cannot.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        for (name, class) in &self.classes {
            if !crate::object::is_valid_class_name(name) {
                return Err(invalid(format!(
                    "classes.{name}: a class name is 1-64 of a-z, 0-9, '-', '_' and starts with a letter"
                )));
            }
            for origin in &class.allowed_origins {
                check_origin(origin)
                    .map_err(|e| invalid(format!("classes.{name}.allowed_origins: {e}")))?;
            }
            if let Some(start) = &class.start
                && let Err(e) = crate::object::validate_name(start)
            {
                return Err(invalid(format!(
                    "classes.{name}.start: not an object name ({e})"
                )));
            }
            for (key, value) in &class.settings {
                if matches!(value, toml::Value::Array(_) | toml::Value::Table(_)) {
                    return Err(invalid(format!(
                        "classes.{name}.settings.{key}: settings are strings, numbers or booleans"
                    )));
                }
            }
        }
        if self.connections.max_open == 0 || self.connections.ping_interval_ms < 100 {
            return Err(invalid(
                "connections.max_open must be at least 1 and connections.ping_interval_ms at least 100"
                    .into(),
            ));
        }
        if self.runtime.max_live_objects == 0 {
            return Err(invalid(
                "runtime.max_live_objects must be at least 1".into(),
            ));
        }
        if self.runtime.max_live_objects > 10_000 {
            return Err(invalid(
                "runtime.max_live_objects above 10000 exceeds what vm.max_map_count (65530 by default) allows".into(),
            ));
        }
        if self.runtime.epoch_tick_ms == 0
            || self.limits.cpu_ms_per_event == 0
            || self.limits.wall_ms_per_event == 0
        {
            return Err(invalid(
                "runtime.epoch_tick_ms, limits.cpu_ms_per_event and limits.wall_ms_per_event \
                 must be positive"
                    .into(),
            ));
        }
        if self.runtime.mailbox_capacity == 0 || self.runtime.socket_send_queue == 0 {
            return Err(invalid(
                "runtime.mailbox_capacity and runtime.socket_send_queue must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// A setting value as the guest sees it (a string).
pub fn setting_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_has_safe_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.runtime.idle_timeout_ms, 10_000);
        assert_eq!(c.limits.memory_bytes, 128 << 20);
    }

    #[test]
    fn the_shipped_config_file_parses_and_matches_the_defaults() {
        let c = Config::parse(include_str!("../../lodge.toml")).unwrap();
        c.validate("lodge.toml").unwrap();
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.limits, d.limits);
        assert_eq!(c.ai, d.ai);
        assert_eq!(c.admin, d.admin);
        assert_eq!(c.runtime.idle_timeout_ms, d.runtime.idle_timeout_ms);
        assert_eq!(c.runtime.max_live_objects, d.runtime.max_live_objects);
        assert_eq!(c.alarms.retry_base_ms, d.alarms.retry_base_ms);
        assert_eq!(
            c.classes.keys().collect::<Vec<_>>(),
            shipped_classes(Path::new(".")).keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[runtime]\nidle_timeout = 5").unwrap_err();
        assert!(err.contains("idle_timeout"), "{err}");
        assert!(err.starts_with("line 2, column 1: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn class_limits_override_the_defaults_key_by_key() {
        let c = Config::parse(
            "[limits]\ncpu_ms_per_event = 100\n[classes.a]\ncomponent = \"a.wasm\"\n[classes.a.limits]\nmemory_bytes = 1048576\nmax_ai_streams = 0\n",
        )
        .unwrap();
        let a = c.class_limits("a");
        assert_eq!(a.memory_bytes, 1 << 20);
        assert_eq!(a.max_ai_streams, 0);
        assert_eq!(a.cpu_ms_per_event, 100);
        assert_eq!(c.class_limits("other").max_ai_streams, 4);
        // A class created by a deploy gets `[limits]`, so the pool's slots fit those too.
        assert_eq!(c.max_memory_bytes(), c.limits.memory_bytes);
        let c = Config::parse(
            "[classes.a]\ncomponent = \"a.wasm\"\n[classes.a.limits]\nmemory_bytes = 1073741824\n",
        )
        .unwrap();
        assert_eq!(c.max_memory_bytes(), 1 << 30);
    }

    #[test]
    fn class_names_are_checked() {
        let c = Config::parse("[classes.Bad]\ncomponent = \"x.wasm\"").unwrap();
        let err = c.validate("test").unwrap_err().to_string();
        assert!(err.contains("classes.Bad"), "{err}");
    }

    #[test]
    fn the_documented_config_is_the_default_and_presents_the_shipped_classes_alike() {
        let text = include_str!("../../lodge.toml");
        let documented = Config::parse(text).unwrap();
        documented.validate("lodge.toml").unwrap();
        let shipped = shipped_classes(Path::new(""));
        assert_eq!(
            documented.classes.keys().collect::<Vec<_>>(),
            shipped.keys().collect::<Vec<_>>()
        );
        for (name, class) in &documented.classes {
            assert_eq!(class.about(), shipped[name].about(), "classes.{name}");
            assert_eq!(class.component, shipped[name].component, "classes.{name}");
        }
        let defaults = Config::default();
        assert_eq!(documented.limits, defaults.limits);
        assert_eq!(documented.listen, defaults.listen);
        assert_eq!(documented.data_dir, defaults.data_dir);
        assert_eq!(documented.admin, defaults.admin);
        assert_eq!(documented.runtime, defaults.runtime);
        assert_eq!(documented.alarms, defaults.alarms);
        assert_eq!(documented.ai, defaults.ai);
        assert_eq!(documented.storage, defaults.storage);
        assert_eq!(documented.connections, defaults.connections);
    }

    #[test]
    fn allowed_origins_must_be_origins() {
        assert!(check_origin("https://chat.example.com").is_ok());
        assert!(check_origin("http://127.0.0.1:8787").is_ok());
        for bad in [
            "chat.example.com",
            "https://",
            "https://a.com/path",
            "ftp://a.com",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        let config = Config::parse(
            "[classes.chat]\ncomponent = \"c.wasm\"\nallowed_origins = [\"https://a.com/x\"]\n",
        )
        .unwrap();
        let e = config.validate("t").unwrap_err().to_string();
        assert!(e.contains("classes.chat.allowed_origins"), "{e}");
    }
}
