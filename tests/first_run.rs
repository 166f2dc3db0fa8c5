//! The first ten minutes of a new user: the landing page and the guides it links to, a
//! class created by `lodge deploy` on a running host while a socket of another class stays
//! open (listed, kept across a restart, removable), and the CLI speaking to people: one
//! line per error a user causes (no backtrace even with `RUST_BACKTRACE=1`), tables with
//! aligned columns and readable times, `--json` for scripts.

use std::process::{Command, Output, Stdio};

use lodge_tests::{HostConfig, Ws, get, guest, guest_variant, http, http_with_headers, lodge_bin};
use serde_json::Value;

/// `lodge ARGS` with `RUST_BACKTRACE=1`, as a user who once debugged something has it.
fn lodge(args: &[&str]) -> Output {
    Command::new(lodge_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        // `serve` logs its start-up; the error line is what this file is about.
        .env("RUST_LOG", "warn")
        .env_remove("LODGE_ADMIN_TOKEN")
        .env_remove("LODGE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run lodge")
}

/// Asserts a failed command printed exactly one line to stderr, and returns it.
fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success(), "the command succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{err}");
    assert!(lines[0].starts_with("lodge: "), "{err}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    lines[0].to_string()
}

/// Every `href="..."` of a page.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|l| l.replace("&amp;", "&"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_landing_page_shows_each_class_with_links_that_resolve() {
    let host = HostConfig::new()
        .class("chat", "chat")
        .class_key("chat", "title", "\"AI chat room\"")
        .class_key("chat", "docs", "\"chat\"")
        .class("doc", "document")
        .class_key("doc", "title", "\"Collaborative document\"")
        .class_key("doc", "start", "\"notes\"")
        .class_key("doc", "docs", "\"document\"")
        .class("game", "game")
        .class_key("game", "docs", "\"game-protocol\"")
        .start()
        .await
        .unwrap();
    let page = get(&host.url("/")).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    for text in ["AI chat room", "Collaborative document", "game"] {
        assert!(page.body.contains(text), "the page lacks {text}");
    }
    let links = links(&page.body);
    for expected in [
        "/chat/lobby",
        "/doc/notes",
        "/game/lobby",
        "/_lodge/docs/chat",
        "/_lodge/docs/document",
        "/_lodge/docs/game-protocol",
        "/_lodge/docs/plugin-guide",
        "/_lodge/docs/operator-guide",
    ] {
        assert!(
            links.iter().any(|l| l == expected),
            "no link to {expected}: {links:?}"
        );
    }
    // Every link on the page, and every link between the guides, resolves.
    let mut seen = std::collections::BTreeSet::new();
    let mut queue: Vec<String> = links;
    while let Some(link) = queue.pop() {
        let path = link.split('#').next().unwrap().to_string();
        if path.is_empty() || !path.starts_with('/') || !seen.insert(path.clone()) {
            continue;
        }
        let r = get(&host.url(&path)).await.unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.content_type.starts_with("text/html"), "{path}");
        if path.starts_with("/_lodge/docs") {
            queue.extend(self::links(&r.body));
        }
    }
    assert!(seen.len() >= 10, "{seen:?}");
    let guide = get(&host.url("/_lodge/docs/chat")).await.unwrap();
    assert!(guide.body.contains("<h1"), "rendered, not raw Markdown");

    // Scripts still get JSON; an unknown guide is a JSON 404.
    let r = http_with_headers("GET", &host.url("/"), &[("accept", "application/json")], "")
        .await
        .unwrap();
    assert!(r.content_type.starts_with("application/json"), "{r:?}");
    let r = r.json();
    assert_eq!(r["service"], "lodge");
    assert_eq!(r["classes"][0]["class"], "chat");
    assert_eq!(r["classes"][0]["open"], "/chat/lobby");
    let missing = get(&host.url("/_lodge/docs/nope")).await.unwrap();
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_a_class_while_another_class_keeps_its_socket() {
    let mut host = HostConfig::new()
        .class("counter", "counter")
        .start()
        .await
        .unwrap();
    let mut ws = Ws::connect(&host.ws_url("/counter/steady/ws"))
        .await
        .unwrap();
    ws.recv_type("hello").await.unwrap();
    ws.send("echo before").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), "before");

    // A class the config does not name: created by the deploy, served at once.
    let missing = get(&host.url("/visits/home/")).await.unwrap();
    assert_eq!(missing.status, 404);
    let component = guest("counter");
    let (ok, out, err) = host.cli(&["deploy", "visits", component.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("visits: created the class, serving version 1"),
        "{out}"
    );
    let r = http("POST", &host.url("/visits/home/increment"), "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["count"], 1);
    // The other class's socket never noticed.
    ws.send("echo after").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), "after");

    // Listed like any class, with its versions; a second deploy is a new version.
    let (ok, out, _) = host.cli(&["classes"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("visits") && l.ends_with("deploy")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("counter") && l.ends_with("config file")),
        "{out}"
    );
    let v2 = guest_variant("counter", "v2");
    let (ok, out, err) = host.cli(&["deploy", "visits", v2.to_str().unwrap(), "--label", "two"]);
    assert!(ok, "{err}");
    assert!(out.contains("visits: deployed version 2"), "{out}");
    let (ok, out, _) = host.cli(&["versions", "visits"]);
    assert!(ok);
    check_table(&out, &["SOURCE", "DEPLOYED", "HASH", "LABEL"], &["VERSION"]);
    assert!(out.contains("just now"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with('*') && l.contains("two")),
        "{out}"
    );
    let (ok, json, _) = host.cli(&["versions", "visits", "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["current"], 2);
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);

    // Persisted: after a restart the class is served from its current version, with
    // the state its objects stored.
    host.restart().await.unwrap();
    let r = get(&host.url("/visits/home/version")).await.unwrap();
    assert_eq!(r.json()["version"], "v2", "{}", r.body);
    let r = get(&host.url("/visits/home/")).await.unwrap();
    assert_eq!(r.json()["count"], 1, "{}", r.body);

    // Removable: its sockets close, it is gone from the listing and the routes, and a
    // configured class cannot be removed this way.
    let mut visitor = Ws::connect(&host.ws_url("/visits/home/ws")).await.unwrap();
    visitor.recv_type("hello").await.unwrap();
    visitor.send("echo hi").await.unwrap();
    assert_eq!(visitor.recv().await.unwrap(), "hi");
    let mut steady = Ws::connect(&host.ws_url("/counter/steady/ws"))
        .await
        .unwrap();
    steady.recv_type("hello").await.unwrap();
    let (ok, out, err) = host.cli(&["remove", "visits"]);
    assert!(ok, "{err}");
    assert!(out.contains("visits: removed (1 sockets closed)"), "{out}");
    assert_eq!(visitor.closed().await.unwrap().code, 1001);
    let gone = get(&host.url("/visits/home/")).await.unwrap();
    assert_eq!(gone.status, 404, "{}", gone.body);
    let (ok, out, _) = host.cli(&["classes"]);
    assert!(ok && !out.contains("visits"), "{out}");
    let (ok, _, err) = host.cli(&["remove", "counter"]);
    assert!(!ok);
    assert!(err.contains("named in the host's config file"), "{err}");
    steady.send("echo still").await.unwrap();
    assert_eq!(steady.recv().await.unwrap(), "still");

    // Gone across a restart too; deploying it again brings back its objects.
    host.restart().await.unwrap();
    assert_eq!(get(&host.url("/visits/home/")).await.unwrap().status, 404);
    let (ok, out, err) = host.cli(&["deploy", "visits", component.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("created the class"), "{out}");
    let r = get(&host.url("/visits/home/")).await.unwrap();
    assert_eq!(r.json()["count"], 1, "{}", r.body);
    let page = get(&host.url("/")).await.unwrap();
    assert!(links(&page.body).contains(&"/visits/lobby".to_string()));

    // A name that cannot be a class is refused with the rule.
    let (ok, _, err) = host.cli(&["deploy", "Bad Name", component.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("not a valid class name"), "{err}");
}

/// Columns line up: every row's cells start where the header of a left-aligned column
/// starts, and end where the header of a right-aligned one ends.
fn check_table(out: &str, left: &[&str], right: &[&str]) {
    let mut lines = out.lines();
    let head = lines.next().expect("a header line");
    let find = |h: &str| head.find(h).unwrap_or_else(|| panic!("no {h} in {head}"));
    for row in lines {
        let row = row.as_bytes();
        for h in left {
            let start = find(h);
            if *h == "LABEL" && row.len() <= start {
                continue;
            }
            assert!(row.len() > start, "row too short for {h}:\n{out}");
            assert!(
                start == 0 || row[start - 1] == b' ',
                "{h} is not aligned:\n{out}"
            );
            assert_ne!(row[start], b' ', "{h} is not aligned:\n{out}");
        }
        for h in right {
            let end = find(h) + h.len();
            assert!(row.len() > end, "row too short for {h}:\n{out}");
            assert_ne!(row[end - 1], b' ', "{h} is not right-aligned:\n{out}");
            assert_eq!(row[end], b' ', "{h} is not right-aligned:\n{out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_what_went_wrong_in_one_line() {
    let host = HostConfig::new()
        .class("counter", "counter")
        .start()
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let admin = host.admin_url("");

    // Nothing listens there.
    let line = one_error_line(&lodge(&[
        "versions",
        "counter",
        "--admin-url",
        "http://127.0.0.1:9",
        "--token",
        "x",
    ]));
    assert!(
        line.contains("cannot reach the lodge admin API at http://127.0.0.1:9"),
        "{line}"
    );
    assert!(line.contains("Is the host running?"), "{line}");

    // The wrong token.
    let line = one_error_line(&lodge(&[
        "versions",
        "counter",
        "--admin-url",
        &admin,
        "--token",
        "wrong",
    ]));
    assert!(line.contains("refused the admin token (401)"), "{line}");
    assert!(line.contains("--token"), "{line}");

    // No token anywhere: says where it looked and what to pass.
    let out = Command::new(lodge_bin())
        .args(["versions", "counter", "--admin-url", &admin])
        .current_dir(tmp.path())
        .env("RUST_BACKTRACE", "1")
        .env("LODGE_STATE_DIR", tmp.path().join("nothing"))
        .env_remove("LODGE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let line = one_error_line(&out);
    assert!(line.contains("no admin token for the host"), "{line}");

    // A component file that is not there, and one that is not a component.
    let line = one_error_line(&lodge(&[
        "deploy",
        "counter",
        "/nonexistent/counter.wasm",
        "--admin-url",
        &admin,
        "--token",
        &host.admin_token(),
    ]));
    assert!(
        line.contains("/nonexistent/counter.wasm does not exist: build the class first"),
        "{line}"
    );
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let line = one_error_line(&lodge(&[
        "deploy",
        "counter",
        junk.to_str().unwrap(),
        "--admin-url",
        &admin,
        "--token",
        &host.admin_token(),
    ]));
    assert!(line.contains("refused"), "{line}");
    assert!(line.contains("not a valid WebAssembly component"), "{line}");
    assert!(line.contains("(400 Bad Request)"), "{line}");

    // A class that does not exist.
    let line = one_error_line(&lodge(&[
        "versions",
        "nope",
        "--admin-url",
        &admin,
        "--token",
        &host.admin_token(),
    ]));
    assert!(
        line.contains("no class named 'nope' (404 Not Found)"),
        "{line}"
    );

    // A config with a mistake names the file, the line and the key.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:0\"\n[runtime]\nidle_timeout = 5\n",
    )
    .unwrap();
    let line = one_error_line(&lodge(&["serve", "--config", bad.to_str().unwrap()]));
    assert!(line.contains("bad.toml"), "{line}");
    assert!(line.contains("line 3"), "{line}");
    assert!(line.contains("idle_timeout"), "{line}");
    let line = one_error_line(&lodge(&["serve", "--config", "/nonexistent/lodge.toml"]));
    assert!(
        line.contains("cannot read config file /nonexistent/lodge.toml"),
        "{line}"
    );

    // A port that is taken.
    let taken = tmp.path().join("taken.toml");
    std::fs::write(
        &taken,
        format!(
            "listen = \"{}\"\ndata_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n[classes.counter]\ncomponent = {:?}\n",
            host.addr,
            tmp.path().join("data").display().to_string(),
            guest("counter").display().to_string()
        ),
    )
    .unwrap();
    let line = one_error_line(&lodge(&["serve", "--config", taken.to_str().unwrap()]));
    assert!(
        line.contains(&format!("cannot listen on {}", host.addr)),
        "{line}"
    );
    assert!(line.contains("listen"), "{line}");

    // -v shows the whole chain for whoever debugs it.
    let out = lodge(&[
        "-v",
        "versions",
        "counter",
        "--admin-url",
        "http://127.0.0.1:9",
        "--token",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).lines().count() > 1);

    // Objects: aligned, readable, and JSON on request.
    for name in ["alpha", "a-much-longer-object-name"] {
        http("POST", &host.url(&format!("/counter/{name}/increment")), "")
            .await
            .unwrap();
    }
    http("PUT", &host.url("/counter/alpha/alarm?in=600000"), "")
        .await
        .unwrap();
    let (ok, out, err) = host.cli(&["objects", "counter"]);
    assert!(ok, "{err}");
    check_table(
        &out,
        &["NAME", "STATE", "NEXT ALARM", "ID"],
        &["SOCKETS", "STORAGE"],
    );
    assert!(
        out.contains(" UTC (in 9 min)") || out.contains(" UTC (in 10 min)"),
        "{out}"
    );
    assert!(out.contains(" B "), "sizes in bytes: {out}");
    let (ok, json, _) = host.cli(&["objects", "counter", "--json"]);
    assert!(ok);
    let objects: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(objects.as_array().unwrap().len(), 2);
}
