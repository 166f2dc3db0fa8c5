//! A private PostgreSQL server for the tests: Debian's binaries, a fresh cluster in a temp
//! dir, on a free loopback port, stopped when its owner drops it or when the test process
//! ends, whichever comes first.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
//! `postgres` system user Debian's package creates. It is started from one keeper thread
//! that lives as long as the test process, with `PR_SET_PDEATHSIG`: the kernel sends it
//! SIGQUIT (an immediate shutdown that also ends its backends) when the process exits, so a
//! failed or interrupted test run never leaves a server behind.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// The role the tests connect as (a superuser of the private cluster, trusted on loopback).
pub const USER: &str = "lodge";

/// Where Debian puts the server's binaries (`/usr/lib/postgresql/<version>/bin`), newest
/// version first.
pub fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/postgres): \
             `cargo xtask test` installs Debian's postgresql package, or run \
             `apt-get install postgresql`"
        )
    })
}

/// The user and group the server runs as: `postgres` when we are root, else ourselves.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres"))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
            .flatten()
    })
}

/// A command run as the server's user.
fn command(bin: &Path) -> Result<Command> {
    let mut cmd = Command::new(bin);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let (uid, gid) = run_as().ok_or_else(|| {
            anyhow!("running as root, but there is no `postgres` user to run PostgreSQL as")
        })?;
        cmd.uid(uid).gid(gid);
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
    Ok(cmd)
}

/// Asks the keeper thread to start a process (see the module comment).
fn spawn_kept(mut cmd: Command) -> Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || {
                // Lives until the process exits: its children get SIGQUIT then.
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    cmd.stdin(Stdio::null());
    keeper
        .lock()
        .expect("keeper")
        .send((cmd, tx))
        .map_err(|_| anyhow!("the keeper thread is gone"))?;
    Ok(rx.recv().context("keeper reply")??)
}

/// A running private server.
pub struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    child: Mutex<Option<Child>>,
    /// The server's log (stderr), for failures.
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// initdb in a fresh temp dir and start the server on a free loopback port.
    pub fn start() -> Result<Server> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("lodge-pg-")
            .tempdir()
            .context("temp dir for PostgreSQL")?;
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("handing the temp dir to the postgres user")?;
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"))?
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = Server {
            dir,
            bin,
            port,
            child: Mutex::new(None),
            log: Default::default(),
        };
        server.start_again()?;
        Ok(server)
    }

    /// The server every host of this test process shares (one database per host). It is
    /// never dropped: it ends with the process, and the next run removes its temp dir.
    pub fn shared() -> Result<&'static Server> {
        static SHARED: OnceLock<std::result::Result<Server, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                remove_stale_dirs();
                let server = Server::start().map_err(|e| format!("{e:#}"))?;
                let _ = std::fs::write(
                    server.dir.path().join("owner.pid"),
                    std::process::id().to_string(),
                );
                Ok(server)
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// `postgres://lodge@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server (again, after [`stop`](Server::stop)) on its data dir and port,
    /// and waits until it accepts connections.
    pub fn start_again(&self) -> Result<()> {
        let mut slot = self.child.lock().expect("child");
        if slot.is_some() {
            return Ok(());
        }
        let mut cmd = command(&self.bin.join("postgres"))?;
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "logging_collector=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_kept(cmd).context("starting postgres")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("ready to accept connections") {
                    let _ = ready_tx.send(());
                }
                log.lock().expect("log").push(line);
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => {
                *slot = Some(child);
                Ok(())
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "PostgreSQL did not start: {}",
                    self.log.lock().expect("log").join("\n")
                )
            }
        }
    }

    /// Stops the server with a fast shutdown (SIGINT: connections are cut, the data is
    /// kept), as an operator restarting it would.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().expect("child").take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }

    /// Runs SQL as the superuser, with psql.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", USER, "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Creates an empty database; returns its URL.
    pub fn create_database(&self, db: &str) -> Result<String> {
        self.sql("postgres", &format!("CREATE DATABASE \"{db}\""))?;
        Ok(self.url(db))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().expect("child").take() {
            // SAFETY: kill(2) on our own child's pid. SIGQUIT: immediate shutdown.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGQUIT);
            }
            let _ = child.wait();
        }
    }
}

/// Removes the temp dirs of shared servers whose test process has ended.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("lodge-pg-"));
        let Some(pid) = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill(pid, 0) only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if is_ours && !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Which engine the end-to-end hosts run on: `LODGE_TEST_ENGINE=postgres` puts each
/// host's objects in its own database on the shared private server; unset or `redb`,
/// in its data dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Redb,
    Postgres,
}

/// The engine of this test run.
pub fn engine() -> Engine {
    match std::env::var("LODGE_TEST_ENGINE").as_deref() {
        Ok("postgres") => Engine::Postgres,
        Ok("redb") | Err(_) => Engine::Redb,
        Ok(other) => panic!("LODGE_TEST_ENGINE={other}: expected redb or postgres"),
    }
}

/// The database URL for a host whose data dir is `data_dir` (one database per data dir,
/// so a host restarted on its data dir finds its objects), created on first use.
pub fn database_for(data_dir: &Path) -> Result<String> {
    static DATABASES: OnceLock<Mutex<std::collections::HashMap<PathBuf, String>>> = OnceLock::new();
    let server = Server::shared()?;
    let mut known = DATABASES
        .get_or_init(Default::default)
        .lock()
        .expect("databases");
    if let Some(url) = known.get(data_dir) {
        return Ok(url.clone());
    }
    let name = format!("lodge_{}", known.len() + 1);
    let url = server.create_database(&name)?;
    known.insert(data_dir.to_path_buf(), url.clone());
    Ok(url)
}
