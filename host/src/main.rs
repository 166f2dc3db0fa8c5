//! The `lodge` binary: parses the command line, loads the config, runs the host until
//! SIGINT/SIGTERM. Errors here carry context for the operator (anyhow).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use lodge::config::{self, Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "lodge",
    version,
    about = "A self-hosted runtime for stateful durable objects (WebAssembly components)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured object classes over HTTP and WebSockets (the default).
    Serve(ServeArgs),
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        None => ServeArgs::default(),
    };
    let config = load_config(&args)?;
    init_logs(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

fn load_config(args: &ServeArgs) -> Result<Config> {
    let default_file = Path::new("lodge.toml");
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None if default_file.exists() => Config::load(default_file)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
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
