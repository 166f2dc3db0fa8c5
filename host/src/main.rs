//! The `lodge` binary: parses the command line, loads the config, runs the host until
//! SIGINT/SIGTERM. Errors here carry context for the operator (anyhow) and are printed
//! as one line saying what went wrong and what to do; the chain with a backtrace only
//! with `-v` or `RUST_BACKTRACE=full` (a panic, a real bug, still prints its own).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use lodge::config::{self, Config, LogFormat};

mod cli;

#[derive(Parser)]
#[command(
    name = "lodge",
    version,
    about = "A self-hosted runtime for stateful durable objects (WebAssembly components)."
)]
struct Cli {
    /// On an error, print its whole chain and backtrace.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured object classes over HTTP and WebSockets (the default).
    Serve(ServeArgs),
    /// Deploy a new version of a class to the running host (compiled and validated
    /// before it switches; open WebSockets stay connected). A class the host does not
    /// serve yet is created.
    Deploy {
        /// The class, e.g. `chat`.
        class: String,
        /// The component (`cargo build --target wasm32-wasip2` output).
        file: PathBuf,
        /// A label kept with the version.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Switch a class back to a kept version (default: the one before the current).
    Rollback {
        class: String,
        version: Option<u64>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List a class's kept versions.
    Versions {
        class: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the classes the host serves.
    Classes {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop serving a class that a deploy created (its sockets close; its objects and
    /// versions are kept, and deploying it again serves them).
    Remove {
        class: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Watch the guests' sources, rebuild on change and hot-swap the changed classes
    /// into the running host (a build error leaves the old version serving).
    Dev {
        /// The guests workspace to build.
        #[arg(long, default_value = "guests")]
        guests: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Scaffold a new class: a guest crate (a small guestbook) that builds, tests and
    /// runs as it is.
    New {
        /// The class and crate name (a-z, 0-9, '-', '_'; starts with a letter).
        name: String,
        /// Where to create the crate's folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The lodge SDK to depend on (default: guests/sdk of this lodge's repository).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    #[command(flatten)]
    Ops(Ops),
}

/// Operator commands that inspect or change objects, and backups.
#[derive(Subcommand)]
enum Ops {
    /// List a class's stored objects: name, id, live, sockets, storage, next alarm.
    Objects {
        class: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show an object's keys and values (read-only; values as text or hex).
    Inspect {
        class: String,
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drop an object's live instance (its WebSockets stay open).
    Evict {
        class: String,
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete an object's storage and alarm and close its sockets (asks first).
    Delete {
        class: String,
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Write a consistent backup of the running host's data into a new folder.
    Backup {
        dir: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Restore a backup into the data dir of a stopped host.
    Restore {
        dir: PathBuf,
        /// The data dir to restore into (default: `data_dir` of the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Replace an existing database (it is kept aside as lodge.redb.replaced).
        #[arg(long)]
        force: bool,
        #[arg(long, short, env = "LODGE_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// How the CLI reaches the admin API of a running host.
#[derive(clap::Args)]
struct AdminArgs {
    /// The config file of the running host (for its admin address and data dir).
    #[arg(long, short, env = "LODGE_CONFIG")]
    config: Option<PathBuf>,
    /// The admin API, e.g. http://127.0.0.1:8788 (default: `admin.listen` of the config).
    #[arg(long, env = "LODGE_ADMIN_URL")]
    admin_url: Option<String>,
    /// The bearer token (default: $LODGE_ADMIN_TOKEN, else <data_dir>/admin.token, else
    /// the token file of the host listening on the admin address).
    #[arg(long, env = "LODGE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the admin API's JSON reply instead of a table or sentence.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// The config file. Default: ./lodge.toml if it exists, else built-in defaults
    /// serving the shipped classes from guests/target.
    #[arg(long, short, env = "LODGE_CONFIG")]
    config: Option<PathBuf>,
    /// Override `listen` (e.g. 127.0.0.1:8787; port 0 picks a free port).
    #[arg(long, env = "LODGE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Override `data_dir`.
    #[arg(long, env = "LODGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store objects in PostgreSQL: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    /// (overrides `[storage] url`). Without it: redb in the data dir.
    #[arg(long, env = "LODGE_STORAGE", hide_env_values = true)]
    storage: Option<String>,
}

/// mimalloc instead of glibc's malloc: events allocate on the worker threads and their
/// batches are freed on the storage writer, a cross-thread pattern glibc pays for in
/// arena locks and chunk consolidation (bench/README.md: CPU per durable event).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, verbose);
            ExitCode::FAILURE
        }
    }
}

/// One line for the person at the terminal; the chain and backtrace (captured when
/// `RUST_BACKTRACE` is set) only when asked for with `-v` or `RUST_BACKTRACE=full`.
fn report(e: &anyhow::Error, verbose: bool) {
    // The chain joined by ": ", leaving out a cause its wrapper already quotes.
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text.trim());
    }
    eprintln!("lodge: {line}");
    let full = std::env::var("RUST_BACKTRACE").is_ok_and(|v| v == "full");
    if verbose || full {
        eprintln!("\n{e:?}");
    }
}

fn run(cli: Cli) -> Result<()> {
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        None => ServeArgs::default(),
        Some(Command::Deploy {
            class,
            file,
            label,
            admin,
        }) => {
            // A missing file is the user's to fix before any host is asked.
            let bytes = cli::read_component(&file)?;
            return cli::deploy(&admin.client()?, &class, &file, bytes, label.as_deref());
        }
        Some(Command::Rollback {
            class,
            version,
            admin,
        }) => return cli::rollback(&admin.client()?, &class, version),
        Some(Command::Versions { class, admin }) => {
            return cli::versions(&admin.client()?, &class);
        }
        Some(Command::Classes { admin }) => return cli::classes(&admin.client()?),
        Some(Command::Remove { class, admin }) => return cli::remove(&admin.client()?, &class),
        Some(Command::Ops(op)) => return ops(op),
        Some(Command::Dev { guests, admin }) => {
            let config = admin.config()?;
            return cli::dev(&admin.client()?, &config, &guests);
        }
        Some(Command::New { name, dir, sdk }) => {
            return Ok(lodge::scaffold::cli(&dir, &name, sdk.as_deref())?);
        }
    };
    private_files();
    let config = load_config(&args)?;
    init_logs(config.log_format);
    lodge::runtime::engine::reserve_a_core_for_serving();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

impl AdminArgs {
    fn config(&self) -> Result<Config> {
        let mut config = read_config(self.config.as_deref())?;
        // The same override `lodge serve` honours, so the CLI finds that host's token.
        if let Some(dir) = std::env::var_os("LODGE_DATA_DIR") {
            config.data_dir = dir.into();
        }
        Ok(config)
    }

    fn client(&self) -> Result<cli::AdminClient> {
        let config = self.config()?;
        let base = self
            .admin_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.admin.listen));
        let token = match &self.token {
            Some(t) => t.clone(),
            None => {
                let admin =
                    admin_addr(&base).or(self.admin_url.is_none().then_some(config.admin.listen));
                lodge::admin::token_for_cli(&config.admin, &config.data_dir, admin)?
            }
        };
        cli::AdminClient::new(base, token, self.json)
    }
}

/// Files the host writes (database, components, artifacts, token, backups) are its
/// operator's alone: umask 077. Not for `lodge new`, whose files are the user's sources.
fn private_files() {
    // SAFETY: umask(2) only sets this process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// The socket address in an admin URL such as `http://127.0.0.1:8788/`.
fn admin_addr(url: &str) -> Option<std::net::SocketAddr> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.split('/').next()?.parse().ok()
}

/// The config file named, else ./lodge.toml, else the defaults.
fn read_config(path: Option<&Path>) -> Result<Config> {
    let default_file = Path::new("lodge.toml");
    Ok(match path {
        Some(path) => Config::load(path)?,
        None if default_file.exists() => Config::load(default_file)?,
        None => Config::default(),
    })
}

fn load_config(args: &ServeArgs) -> Result<Config> {
    let mut config = read_config(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &args.storage {
        config.storage.url = Some(url.clone());
    }
    if config.classes.is_empty() {
        config.classes = config::shipped_classes(Path::new("."));
    }
    for (name, class) in &config.classes {
        if !class.component.exists() {
            bail!(
                "class '{name}': component {} does not exist (build the guests first: `cargo xtask build-guests`)",
                class.component.display()
            );
        }
    }
    Ok(config)
}

fn ops(op: Ops) -> Result<()> {
    match op {
        Ops::Objects { class, admin } => cli::objects(&admin.client()?, &class),
        Ops::Inspect { class, name, admin } => cli::inspect(&admin.client()?, &class, &name),
        Ops::Evict { class, name, admin } => cli::evict(&admin.client()?, &class, &name),
        Ops::Delete {
            class,
            name,
            yes,
            admin,
        } => {
            if !yes
                && !cli::confirm(&format!(
                    "Delete {class}/{name}: its storage, alarm and sockets?"
                ))?
            {
                bail!("not deleted");
            }
            cli::delete(&admin.client()?, &class, &name)
        }
        Ops::Backup { dir, admin } => {
            let dir = std::path::absolute(&dir).context("resolving the backup folder")?;
            cli::backup(&admin.client()?, &dir)
        }
        Ops::Restore {
            dir,
            data_dir,
            force,
            config,
        } => {
            let data_dir = match data_dir {
                Some(d) => d,
                None => read_config(config.as_deref())?.data_dir,
            };
            private_files();
            lodge::backup::restore(&dir, &data_dir, force).with_context(|| {
                format!("restoring {} into {}", dir.display(), data_dir.display())
            })?;
            println!("restored {} into {}", dir.display(), data_dir.display());
            Ok(())
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(config: Config) -> Result<()> {
    let data_dir = config.data_dir.clone();
    let host = lodge::app::Host::start(config)
        .await
        .with_context(|| format!("starting lodge with data in {}", data_dir.display()))?;
    // Tests and scripts read this line to learn the port.
    println!("lodge listening on http://{}", host.addr);
    println!("lodge admin on http://{}", host.admin_addr);
    tracing::info!(addr = %host.addr, data = %data_dir.display(), "serving");
    shutdown_signal().await;
    tracing::info!("shutting down");
    host.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
