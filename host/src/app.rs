//! Wiring: builds every part from the configuration and runs them together. The binary
//! and the in-process tests both start the host through [`Host::start`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ai::AiService;
use crate::bindings;
use crate::config::{Config, setting_text};
use crate::registry::{Registry, RegistryError};
use crate::runtime::Runtime;
use crate::runtime::engine::{EpochTicker, build_engine};
use crate::storage::{StorageError, Store};
use lodge_core::time::now_ms;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("class '{class}': {source}")]
    Class {
        class: String,
        source: RegistryError,
    },
    #[error("the wasmtime engine could not be configured: {0}")]
    Engine(String),
    #[error(
        "cannot listen on {addr}: {source} (another lodge or program may hold it: stop it, or choose other addresses with `listen` / `[admin] listen` in lodge.toml)"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no object classes are configured")]
    NoClasses,
    #[error(transparent)]
    AdminToken(#[from] crate::admin::TokenError),
    #[error(transparent)]
    Starting(crate::runtime::DeployError),
    #[error("cannot make the data dir {path} private: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Creates the data dir if needed and makes it the operator's alone (0700): it holds
/// every object's data, the components and the admin token. (The binary also sets a
/// umask of 077, so what the host writes inside is 0600.)
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A running host.
pub struct Host {
    /// Where the public listener is bound.
    pub addr: SocketAddr,
    /// Where the admin API is bound.
    pub admin_addr: SocketAddr,
    pub runtime: Runtime,
    record: Option<crate::admin::HostRecord>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    admin: JoinHandle<()>,
    alarms: JoinHandle<()>,
    life: JoinHandle<()>,
    _ticker: EpochTicker,
}

/// The host's sign of life: `<data_dir>/alive` holds the last second the host was running
/// (ms since the epoch), rewritten every second (renamed into place, not fsynced: after a
/// machine crash it may be older, which counts a little more time as downtime, never less).
/// At start it tells how long the host was down.
struct LifeRecord {
    path: std::path::PathBuf,
    started: u64,
}

/// How often the sign of life is rewritten.
const LIFE_TICK: Duration = Duration::from_secs(1);

impl LifeRecord {
    fn new(data_dir: &std::path::Path) -> LifeRecord {
        LifeRecord {
            path: data_dir.join("alive"),
            started: now_ms(),
        }
    }

    /// From the last sign of life to this start, if the host ran here before and the gap
    /// is more than a tick.
    fn last_outage(&self) -> Option<(u64, u64)> {
        let last: u64 = std::fs::read_to_string(&self.path)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (self.started > last + LIFE_TICK.as_millis() as u64).then_some((last, self.started))
    }

    async fn run(self) {
        let tmp = self.path.with_extension("tmp");
        let mut tick = tokio::time::interval(LIFE_TICK);
        loop {
            tick.tick().await;
            let written = std::fs::write(&tmp, now_ms().to_string())
                .and_then(|()| std::fs::rename(&tmp, &self.path));
            if let Err(e) = written {
                tracing::debug!(error = %e, "cannot write the host's sign of life");
            }
        }
    }
}

impl Host {
    /// Opens the data dir, loads every class and starts listening.
    pub async fn start(config: Config) -> Result<Host, StartError> {
        if config.classes.is_empty() {
            return Err(StartError::NoClasses);
        }
        private_dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let (admin_token, token_file) =
            crate::admin::resolve_token(&config.admin, &config.data_dir)?;
        let store = Store::open(&config.data_dir, &config.storage).await?;
        tracing::info!(storage = %store.describe(), "storage opened");
        let engine = build_engine(&config.runtime, config.max_memory_bytes())
            .map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let linker = bindings::linker(&engine).map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let registry = Registry::open(
            engine.clone(),
            linker,
            &config.data_dir,
            Some(&store),
            config.limits.clone(),
        )
        .map_err(|source| StartError::Class {
            class: "*".into(),
            source,
        })?;
        for (name, class) in &config.classes {
            let settings: BTreeMap<String, String> = class
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), setting_text(v)))
                .collect();
            registry
                .load_configured(
                    name,
                    &class.component,
                    settings,
                    config.class_limits(name),
                    class.about(),
                )
                .map_err(|source| StartError::Class {
                    class: name.clone(),
                    source,
                })?;
            let (current, _) = registry.versions(name).unwrap_or_default();
            tracing::info!(class = %name, version = current, "class loaded");
        }
        for (name, loaded) in registry.load_deployed() {
            match loaded {
                Ok(version) => tracing::info!(class = %name, version, "deployed class loaded"),
                // One bad record must not keep every other class from serving.
                Err(e) => tracing::error!(class = %name, error = %e, "deployed class not served"),
            }
        }
        let registry = Arc::new(registry);
        let ticker =
            EpochTicker::start(engine, Duration::from_millis(config.runtime.epoch_tick_ms));
        let ai = AiService::new(config.ai.clone());
        let runtime = Runtime::new(registry, store, &config, ai);
        // Time the host was not running is nobody's: guests that keep clocks ask for it.
        let life = LifeRecord::new(&config.data_dir);
        if let Some((from, to)) = life.last_outage() {
            tracing::info!(
                down_ms = to - from,
                "the host was down since its last sign of life"
            );
            runtime.record_outage(from, to);
        }
        // The same probe a deploy passes: never start on a version that cannot start.
        runtime.probe_loaded().await.map_err(StartError::Starting)?;

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let origins = config
            .classes
            .iter()
            .map(|(name, class)| (name.clone(), class.allowed_origins.clone()))
            .collect();
        let server = tokio::spawn(crate::server::serve(
            listener,
            runtime.clone(),
            config.connections.clone(),
            origins,
            stop_rx,
        ));
        let admin_listener = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.admin.listen,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: config.admin.listen,
                source,
            })?;
        // The local CLI finds a generated token from any folder through this record.
        let record = token_file.map(|token_file| crate::admin::HostRecord {
            admin_url: format!("http://{admin_addr}"),
            token_file,
        });
        if let Some(record) = &record {
            record.write(admin_addr);
        }
        let admin = tokio::spawn({
            let runtime = runtime.clone();
            let admin_config = config.admin.clone();
            let stop = stop.subscribe();
            async move {
                crate::admin::serve(admin_listener, runtime, &admin_config, admin_token, stop).await
            }
        });
        let alarms = tokio::spawn(crate::alarms::run(runtime.clone()));
        let life = tokio::spawn(life.run());
        Ok(Host {
            addr,
            admin_addr,
            record,
            admin,
            runtime,
            stop,
            server,
            alarms,
            life,
            _ticker: ticker,
        })
    }

    /// Stops accepting, lets queued events finish (at most `grace`), closes sockets with
    /// 1001 and waits for the last commits.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        if let Some(record) = &self.record {
            record.remove(self.admin_addr);
        }
        let _ = self.server.await;
        let _ = self.admin.await;
        self.alarms.abort();
        // Its last write (within a second) marks when the outage starts.
        self.life.abort();
        self.runtime.shutdown(grace).await;
    }
}
