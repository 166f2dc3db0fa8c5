//! `lodge new`: the crate it scaffolds builds for wasm32-wasip2 and passes its own tests
//! as it is, and the class serves on a real host: its page, HTTP signing, WebSocket
//! broadcast, refused input, the class setting, the auto-response, hibernation, a restart
//! and `lodge dev` (an edit hot-swapped under an open socket; a build error reported while
//! the old version keeps serving). Bad names, taken folders and a missing SDK are refused
//! with a clear message and leave nothing behind.

use std::path::Path;
use std::process::{Command, Output};

use lodge_tests::{HostConfig, Ws, get, http, lodge_bin, post};
use serde_json::{Value, json};

/// Runs `lodge new ARGS...` and returns its output.
fn lodge_new(args: &[&str]) -> Output {
    Command::new(lodge_bin())
        .arg("new")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run lodge new")
}

/// Runs cargo in the scaffolded crate with its own target dir, as a user would: the
/// `cargo` on PATH (with rustup, the crate's rust-toolchain.toml picks the toolchain) and
/// none of the outer cargo's settings (they are for the host build).
fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_class_builds_tests_and_serves_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let out = lodge_new(&["guestbook", "--dir", tmp.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("created the lodge class `guestbook`"),
        "{stdout}"
    );
    let krate = tmp.path().join("guestbook");
    for file in [
        "Cargo.toml",
        "rust-toolchain.toml",
        "README.md",
        "lodge.toml",
        "src/lib.rs",
    ] {
        assert!(krate.join(file).is_file(), "{file} is missing");
    }
    let readme = std::fs::read_to_string(krate.join("README.md")).unwrap();
    for command in [
        "cargo build --release --target wasm32-wasip2",
        "[classes.guestbook]",
        "lodge deploy guestbook",
    ] {
        assert!(readme.contains(command), "README.md lacks {command}");
    }

    // Builds, passes its own unit tests and is formatted, exactly as scaffolded.
    let target = shared_target();
    cargo(
        &krate,
        &target,
        &["build", "--release", "--target", "wasm32-wasip2", "--quiet"],
    );
    let tested = cargo(&krate, &target, &["test", "--quiet"]);
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(report.contains("test result: ok"), "{report}");
    assert!(!report.contains(" 0 passed"), "{report}");
    cargo(&krate, &target, &["fmt", "--check"]);
    let wasm = target.join("wasm32-wasip2/release/guestbook.wasm");
    assert!(wasm.is_file(), "{} was not built", wasm.display());

    let mut host = HostConfig::new()
        .class_file("guestbook", wasm)
        .setting("guestbook", "max_text_len", "20")
        .toml("runtime", "idle_timeout_ms = 300")
        .start()
        .await
        .unwrap();

    // The page, and an empty book.
    let page = get(&host.url("/guestbook/lobby/")).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains("<title>Guestbook</title>"));
    let entries = get(&host.url("/guestbook/lobby/entries")).await.unwrap();
    assert_eq!(entries.status, 200, "{}", entries.body);
    assert_eq!(entries.json(), json!([]));

    // Signing over HTTP reaches the open sockets.
    let mut alice = Ws::connect(&host.ws_url("/guestbook/lobby/ws?name=alice"))
        .await
        .unwrap();
    let hello = alice.recv_type("hello").await.unwrap();
    assert_eq!(hello["name"], "alice");
    assert_eq!(hello["entries"], json!([]));
    let signed = post(
        &host.url("/guestbook/lobby/entries"),
        r#"{"name":"ada","text":"hello"}"#,
    )
    .await
    .unwrap();
    assert_eq!(signed.status, 201, "{}", signed.body);
    assert_eq!(signed.json()["n"], 1);
    let entry = alice.recv_type("entry").await.unwrap();
    assert_eq!(
        (
            &entry["entry"]["n"],
            &entry["entry"]["name"],
            &entry["entry"]["text"]
        ),
        (&json!(1), &json!("ada"), &json!("hello"))
    );

    // Signing over a WebSocket reaches everyone, the sender included.
    let mut bob = Ws::connect(&host.ws_url("/guestbook/lobby/ws?name=bob"))
        .await
        .unwrap();
    let hello = bob.recv_type("hello").await.unwrap();
    assert_eq!(hello["entries"][0]["name"], "ada");
    bob.send_json(&json!({"type": "sign", "text": "hi all"}))
        .await
        .unwrap();
    for ws in [&mut alice, &mut bob] {
        let entry = ws.recv_type("entry").await.unwrap();
        assert_eq!(entry["entry"]["n"], 2);
        assert_eq!(entry["entry"]["name"], "bob");
    }

    // A bad frame gets an error to its sender alone and changes nothing: alice's next
    // frame is her own entry, numbered right after bob's.
    bob.send("nonsense").await.unwrap();
    let error = bob.recv_json().await.unwrap();
    assert_eq!(error["type"], "error", "{error}");
    alice
        .send_json(&json!({"type": "sign", "text": "third"}))
        .await
        .unwrap();
    let next = alice.recv_json().await.unwrap();
    assert_eq!(
        (&next["type"], &next["entry"]["n"]),
        (&json!("entry"), &json!(3))
    );

    // The operator's setting bounds the text (20 characters here); bad bodies are 400.
    let long = post(
        &host.url("/guestbook/lobby/entries"),
        r#"{"name":"ada","text":"this text is longer than twenty"}"#,
    )
    .await
    .unwrap();
    assert_eq!(long.status, 400, "{}", long.body);
    assert!(
        long.json()["error"]
            .as_str()
            .unwrap()
            .contains("20 characters")
    );
    let bad = post(&host.url("/guestbook/lobby/entries"), "{}")
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    let wrong = http("DELETE", &host.url("/guestbook/lobby/entries"), "")
        .await
        .unwrap();
    assert_eq!(wrong.status, 405);

    // Upgrades without a name, or elsewhere than /ws, are refused with HTTP errors.
    let (status, body) = Ws::connect_refused(&host.ws_url("/guestbook/lobby/ws?name=%20"))
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let (status, _) = Ws::connect_refused(&host.ws_url("/guestbook/lobby/elsewhere?name=x"))
        .await
        .unwrap();
    assert_eq!(status, 404);

    // Limits, order, and books that are separate objects.
    let last_two = get(&host.url("/guestbook/lobby/entries?limit=2"))
        .await
        .unwrap()
        .json();
    let numbers: Vec<&Value> = last_two
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["n"])
        .collect();
    assert_eq!(numbers, [&json!(2), &json!(3)]);
    let other = get(&host.url("/guestbook/party/entries")).await.unwrap();
    assert_eq!(other.json(), json!([]));

    // The host answers the auto-response itself.
    alice.send("ping").await.unwrap();
    assert_eq!(alice.recv().await.unwrap(), "pong");

    // Hibernation: once the book is evicted, its sockets stay open and keep their names
    // (attachments); the next frame wakes it and the count comes back from storage.
    host.log
        .wait_for(&["evicted", "name=lobby"], 1)
        .await
        .unwrap();
    alice
        .send_json(&json!({"type": "sign", "text": "after a nap"}))
        .await
        .unwrap();
    let entry = alice.recv_type("entry").await.unwrap();
    assert_eq!(
        (&entry["entry"]["n"], &entry["entry"]["name"]),
        (&json!(4), &json!("alice"))
    );
    bob.recv_type("entry").await.unwrap();

    // Everything acknowledged is durable across a restart.
    host.restart().await.unwrap();
    let all = get(&host.url("/guestbook/lobby/entries"))
        .await
        .unwrap()
        .json();
    let texts: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello", "hi all", "third", "after a nap"]);

    // `lodge dev`: edit the class's source while a client is connected; it rebuilds,
    // hot-swaps, and the open socket is served by the new version.
    let mut carol = Ws::connect(&host.ws_url("/guestbook/lobby/ws?name=carol"))
        .await
        .unwrap();
    carol.recv_type("hello").await.unwrap();
    let mut dev = Command::new(lodge_bin())
        .args(["dev", "--guests"])
        .arg(&krate)
        .arg("--config")
        .arg(host.config_path())
        .args([
            "--admin-url",
            &host.admin_url(""),
            "--token",
            &host.admin_token(),
        ])
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    // The first pass builds (nothing changed) and finds the served version current.
    wait_line(&mut lines, "watching").await;
    wait_line(&mut lines, "building the guests").await;
    let page = krate.join("src/page.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<title>Guestbook</title>"));
    std::fs::write(
        &page,
        html.replace(
            "<title>Guestbook</title>",
            "<title>Guestbook, edited</title>",
        ),
    )
    .unwrap();
    let deployed = wait_line(&mut lines, "deployed version").await;
    assert!(deployed.contains("guestbook"), "{deployed}");
    let page = get(&host.url("/guestbook/lobby/")).await.unwrap();
    assert!(page.body.contains("<title>Guestbook, edited</title>"));
    // carol's socket survived the swap and is served by the new version.
    carol
        .send_json(&json!({"type": "sign", "text": "still here"}))
        .await
        .unwrap();
    assert_eq!(
        carol.recv_type("entry").await.unwrap()["entry"]["text"],
        "still here"
    );
    // A build error is reported and the running version keeps serving.
    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{source}\nfn broken( {{\n")).unwrap();
    wait_line(&mut lines, "the build failed").await;
    let page = get(&host.url("/guestbook/lobby/")).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>Guestbook, edited</title>"));
    carol
        .send_json(&json!({"type": "sign", "text": "after a failed build"}))
        .await
        .unwrap();
    assert_eq!(
        carol.recv_type("entry").await.unwrap()["entry"]["text"],
        "after a failed build"
    );
    let _ = dev.kill();
    let _ = dev.wait();
}

/// One build dir for every crate these tests scaffold, kept between runs: the SDK and
/// its dependencies compile once. (The crates have different names, so their outputs
/// never collide; cargo's lock serialises concurrent builds.)
fn shared_target() -> std::path::PathBuf {
    let dir = lodge_tests::repo_root().join("target/scaffolded");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fenced `sh` block that follows `heading` in a README.
fn sh_block<'a>(readme: &'a str, heading: &str) -> &'a str {
    let section = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}"))..];
    let start = section.find("```sh\n").expect("an sh block") + "```sh\n".len();
    let len = section[start..].find("```").expect("a closed block");
    &section[start..start + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_deploys_a_new_class_into_a_running_host_as_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = lodge_new(&["visitors", "--dir", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("lodge deploy visitors target/wasm32-wasip2/release/visitors.wasm"),
        "{printed}"
    );
    let krate = tmp.path().join("visitors");
    // The crate builds into its own `target/`, as the README's path says; that folder is
    // the shared build dir, so the dependencies compile once per checkout.
    std::os::unix::fs::symlink(shared_target(), krate.join("target")).unwrap();

    // A host already serving another class, with a client connected to it.
    let host = HostConfig::new()
        .class("counter", "counter")
        .start()
        .await
        .unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/steady/ws"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();

    // Every command of the README's deploy block, as printed, from the crate's folder:
    // `lodge` is on PATH; the environment only says where this test's host is (the
    // README's default is 127.0.0.1:8788) and where hosts leave their records.
    let readme = std::fs::read_to_string(krate.join("README.md")).unwrap();
    let bin_dir = lodge_bin().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let run = |line: &str| {
        let out = Command::new("sh")
            .args(["-c", line])
            .current_dir(&krate)
            .env("PATH", &path)
            .env("LODGE_ADMIN_URL", host.admin_url(""))
            .env("LODGE_STATE_DIR", host.state_dir())
            .env("RUST_BACKTRACE", "0")
            .env_remove("LODGE_ADMIN_TOKEN")
            .env_remove("LODGE_CONFIG")
            .env_remove("CARGO")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("run sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let commands = |block: &str| -> Vec<String> {
        block
            .lines()
            .map(|l| l.split(" #").next().unwrap().trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    };
    let deploy = commands(sh_block(&readme, "## Deploy into a running host"));
    assert_eq!(deploy.len(), 3, "{deploy:?}");
    let printed: String = deploy.iter().map(|c| run(c)).collect();
    assert!(
        printed.contains("visitors: created the class, serving version 1"),
        "{printed}"
    );
    assert!(printed.contains("first version"), "{printed}");

    // Served at once, without a restart; the other class's client noticed nothing.
    let page = get(&host.url("/visitors/lobby/")).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<title>Guestbook</title>"));
    let signed = post(
        &host.url("/visitors/lobby/entries"),
        r#"{"name":"ada","text":"hello"}"#,
    )
    .await
    .unwrap();
    assert_eq!(signed.status, 201, "{}", signed.body);
    ws.send("echo still here").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), "still here");

    // The README's next commands: rollback has nothing to go back to yet, remove works.
    let next = commands(sh_block(&readme, "Deploy again after every change"));
    assert_eq!(next.len(), 2, "{next:?}");
    assert!(next[0].starts_with("lodge rollback visitors"));
    let removed = run(&next[1]);
    assert!(removed.contains("visitors: removed"), "{removed}");
    assert_eq!(
        get(&host.url("/visitors/lobby/")).await.unwrap().status,
        404
    );
}

/// The next line of `lodge dev`'s output that contains `needle`.
async fn wait_line(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(300), lines.recv())
            .await
            .expect("lodge dev said nothing in time")
            .expect("lodge dev ended");
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn bad_names_taken_folders_and_a_missing_sdk_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for (name, why) in [
        ("Guestbook", "starts with a lowercase letter"),
        ("2book", "starts with a lowercase letter"),
        ("my book", "is not allowed"),
        ("a/b", "is not allowed"),
        ("..", "starts with a lowercase letter"),
        ("", "empty"),
        ("fn", "Rust keyword"),
        ("lodge-sdk", "reserved"),
    ] {
        let out = lodge_new(&[name, "--dir", dir]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name:?} was accepted");
        assert!(
            stderr.contains("cannot name a class") && stderr.contains(why),
            "{name:?}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "refused names left files behind"
    );

    // A folder that exists is never touched.
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("mine.txt"), "keep me").unwrap();
    let out = lodge_new(&["taken", "--dir", dir]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&taken).unwrap().count(),
        1,
        "the taken folder changed"
    );
    assert_eq!(
        std::fs::read_to_string(taken.join("mine.txt")).unwrap(),
        "keep me"
    );

    // An SDK that is not there is named, with the flag that fixes it.
    let nowhere = tmp.path().join("no-sdk-here");
    let out = lodge_new(&["fresh", "--dir", dir, "--sdk", nowhere.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("SDK was not found") && stderr.contains("--sdk"),
        "{stderr}"
    );
    assert!(!tmp.path().join("fresh").exists());
}
