//! Project tasks, run as `cargo xtask <task>` (an alias in .cargo/config.toml):
//!
//! - `serve [lodge serve args...]`: build the guests and the host (release) and serve
//!   the shipped classes on 127.0.0.1:8787 with data in ./data.
//! - `test`: install what the tests need (the wasm32-wasip2 target, npm packages,
//!   Debian's chromium and postgresql) and run the whole suite: every test with storage
//!   on redb, then the end-to-end tests again with storage on PostgreSQL.
//! - `build-guests`: build every guest component for wasm32-wasip2.
//!
//! Plain std only, so this builds in seconds on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a command in `dir`, failing with its description if it fails.
fn run(mut cmd: Command, dir: &Path, what: &str) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = cmd
        .current_dir(dir)
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({status})"))
    }
}

/// The target guests are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// Adds the guests' target to the pinned toolchain when its standard library is missing.
/// rust-toolchain.toml lists it, but rustup only installs listed targets together with a
/// toolchain it installs itself, and not at all with `RUSTUP_AUTO_INSTALL=0`.
fn ensure_guest_target() -> Result<(), String> {
    let root = root();
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    let has_std = std::fs::read_dir(&libdir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    });
    if has_std {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", GUEST_TARGET]);
    run_quietly(
        add,
        &root,
        &format!("installing the {GUEST_TARGET} target (rustup target add {GUEST_TARGET})"),
    )
    .map_err(|e| {
        format!("{e}\nxtask: the guests need the {GUEST_TARGET} standard library; install it with `rustup target add {GUEST_TARGET}`")
    })
}

/// Like [`run`], for installers: their own output is shown only when they fail, so each
/// install is the one line that says what it is doing.
fn run_quietly(mut cmd: Command, dir: &Path, what: &str) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let out = cmd
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(format!("{what}: failed ({})", out.status))
}

fn build_guests() -> Result<(), String> {
    ensure_guest_target()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    run(
        cmd,
        &root().join("guests"),
        "building the guests for wasm32-wasip2",
    )
}

/// Test dependencies that do not come from cargo: npm packages and a browser.
fn install_test_tools() -> Result<(), String> {
    let root = root();
    for dir in ["tests/js", "tests/browser", "tests/game-browser"] {
        let dir = root.join(dir);
        if dir.join("package.json").exists() && !dir.join("node_modules").exists() {
            let mut cmd = Command::new("npm");
            cmd.args(["ci", "--no-audit", "--no-fund"]);
            run_quietly(
                cmd,
                &dir,
                &format!("installing npm packages in {}", dir.display()),
            )?;
        }
    }
    let mut packages = Vec::new();
    if !Path::new("/usr/bin/chromium").exists() {
        packages.push("chromium");
    }
    if !has_postgres_server() {
        packages.push("postgresql");
        // The tests start private servers of their own: the package need not create and
        // start a cluster of its own.
        let conf = Path::new("/etc/postgresql-common/createcluster.conf");
        if !conf.exists() {
            std::fs::create_dir_all("/etc/postgresql-common")
                .and_then(|()| std::fs::write(conf, "create_main_cluster = false\n"))
                .map_err(|e| format!("writing {}: {e}", conf.display()))?;
        }
    }
    if packages.is_empty() {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run_quietly(update, &root, "apt-get update")?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_quietly(
        install,
        &root,
        &format!(
            "installing Debian's {} for the browser and PostgreSQL tests",
            packages.join(" and ")
        ),
    )
}

/// Whether Debian's PostgreSQL server binaries are installed (the tests run them).
fn has_postgres_server() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("bin/postgres").exists())
}

/// Formatting of both workspaces, and clippy on the template `lodge new` scaffolds (its
/// users start from it, so it must be as clean as we ask their code to be).
fn lint(root: &Path) -> Result<(), String> {
    // rust-toolchain.toml lists both; rustup adds listed components only together with a
    // toolchain it installs itself.
    for (tool, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        let present = cargo()
            .args([tool, "--version"])
            .current_dir(root)
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            let mut add = Command::new("rustup");
            add.args(["component", "add", component]);
            run(
                add,
                root,
                &format!("installing {component} (rustup component add {component})"),
            )?;
        }
    }
    for dir in [root.to_path_buf(), root.join("guests")] {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        run(
            fmt,
            &dir,
            &format!("checking the formatting in {}", dir.display()),
        )?;
    }
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--quiet",
        "-p",
        "lodge-class-template",
        "--target",
        GUEST_TARGET,
        "--",
        "-D",
        "warnings",
    ]);
    run(
        clippy,
        &root.join("guests"),
        "clippy on the class template (guests/template)",
    )
}

fn test() -> Result<(), String> {
    install_test_tools()?;
    build_guests()?;
    let root = root();
    lint(&root)?;
    let mut host = cargo();
    host.args(["test", "--workspace"]);
    run(
        host,
        &root,
        "running the host and end-to-end tests (storage: redb)",
    )?;
    // The same end-to-end suite, same build, with every host's objects in PostgreSQL
    // (each test process starts a private server: tests/support/postgres.rs).
    let mut on_postgres = cargo();
    on_postgres
        .args(["test", "-p", "lodge", "--test", "*"])
        .env("LODGE_TEST_ENGINE", "postgres");
    run(
        on_postgres,
        &root,
        "running the end-to-end tests again with storage on PostgreSQL",
    )?;
    // The guests' own unit tests (pure logic) run natively.
    let mut guests = cargo();
    guests.args(["test", "--workspace"]);
    run(
        guests,
        &root.join("guests"),
        "running the guests' unit tests",
    )?;
    fuzz_smoke(&root)
}

/// A short run of every fuzz target (fuzz/smoke.sh; `LODGE_FUZZ=0` skips it). cargo-fuzz
/// is installed from crates.io into `target/tools` when `cargo fuzz` is missing. The
/// targets build against `lodge-core` only (no wasmtime), so their sanitizer build takes
/// about a minute.
fn fuzz_smoke(root: &Path) -> Result<(), String> {
    if std::env::var_os("LODGE_FUZZ").is_some_and(|v| v == "0") {
        eprintln!("xtask: fuzz smoke skipped (LODGE_FUZZ=0)");
        return Ok(());
    }
    let tools = root.join("target/tools");
    let path = std::env::join_paths(std::iter::once(tools.join("bin")).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .map_err(|e| format!("PATH: {e}"))?;
    let has_cargo_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .env("PATH", &path)
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        let mut install = cargo();
        install
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                "0.13.2",
                "--root",
            ])
            .arg(&tools);
        run(install, root, "installing cargo-fuzz into target/tools")?;
    }
    let mut smoke = Command::new("bash");
    smoke.arg("fuzz/smoke.sh").env("PATH", &path);
    run(smoke, root, "fuzzing every target briefly")
}

fn serve(args: &[String]) -> Result<(), String> {
    build_guests()?;
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--package", "lodge", "--", "serve"])
        .args(args);
    run(cmd, &root(), "building and starting lodge")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("test") => test(),
        Some("build-guests") => build_guests(),
        _ => Err("usage: cargo xtask serve [args...] | test | build-guests".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
