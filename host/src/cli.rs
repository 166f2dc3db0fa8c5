//! The operator commands that talk to a running host's admin API: deploy, rollback,
//! versions, and the `dev` loop (watch, rebuild, hot-swap).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use lodge::config::Config;
use serde_json::Value;

/// A blocking client for the admin API.
pub struct AdminClient {
    base: String,
    token: String,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8788`).
    pub fn new(base: String, token: String) -> AdminClient {
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime"),
            // No pooled connections: the admin listener drops idle ones (its header read
            // timeout), and `lodge dev` calls it again after arbitrary pauses.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut req = self.http.request(method, &url).bearer_auth(&self.token);
            if let Some(body) = body {
                req = req.body(body);
            }
            let resp = req.send().await.with_context(|| {
                format!(
                    "cannot reach the lodge admin API at {} (is the host running?)",
                    self.base
                )
            })?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if !status.is_success() {
                let msg = value["error"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| value.to_string());
                bail!("{status}: {msg}");
            }
            Ok(value)
        })
    }
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `lodge deploy CLASS FILE`.
pub fn deploy(client: &AdminClient, class: &str, file: &Path, label: Option<&str>) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let v = deploy_bytes(client, class, bytes, label)?;
    if v["unchanged"] == true {
        println!(
            "{class}: version {} is already current (same bytes)",
            v["version"]
        );
    } else {
        println!("{class}: deployed version {}", v["version"]);
    }
    Ok(())
}

fn deploy_bytes(
    client: &AdminClient,
    class: &str,
    bytes: Vec<u8>,
    label: Option<&str>,
) -> Result<Value> {
    let mut path = format!("/classes/{}/versions", encode(class));
    if let Some(l) = label {
        path.push_str(&format!("?label={}", encode(l)));
    }
    client.call(reqwest::Method::POST, &path, Some(bytes))
}

/// `lodge rollback CLASS [VERSION]`.
pub fn rollback(client: &AdminClient, class: &str, version: Option<u64>) -> Result<()> {
    let mut path = format!("/classes/{}/rollback", encode(class));
    if let Some(v) = version {
        path.push_str(&format!("?version={v}"));
    }
    let v = client.call(reqwest::Method::POST, &path, None)?;
    println!("{class}: now serving version {}", v["version"]);
    Ok(())
}

/// `lodge versions CLASS`.
pub fn versions(client: &AdminClient, class: &str) -> Result<()> {
    let v = client.call(
        reqwest::Method::GET,
        &format!("/classes/{}/versions", encode(class)),
        None,
    )?;
    println!(
        "{:<8} {:<8} {:<14} {:<24} label",
        "version", "source", "hash", "deployed (ms)"
    );
    for version in v["versions"].as_array().into_iter().flatten() {
        let current = if version["current"] == true { "*" } else { " " };
        println!(
            "{current}{:<7} {:<8} {:<14} {:<24} {}",
            version["version"],
            version["source"].as_str().unwrap_or(""),
            version["hash"]
                .as_str()
                .unwrap_or("")
                .get(..12)
                .unwrap_or(""),
            version["deployed_at_ms"],
            version["label"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn object_path(class: &str, name: &str) -> String {
    format!("/classes/{}/objects/{}", encode(class), encode(name))
}

/// `lodge objects CLASS`.
pub fn objects(client: &AdminClient, class: &str) -> Result<()> {
    let v = client.call(
        reqwest::Method::GET,
        &format!("/classes/{}/objects", encode(class)),
        None,
    )?;
    println!(
        "{:<32} {:<5} {:>7} {:>12} {:<16} name",
        "id", "live", "sockets", "storage (B)", "next alarm (ms)"
    );
    for o in v.as_array().into_iter().flatten() {
        println!(
            "{:<32} {:<5} {:>7} {:>12} {:<16} {}",
            o["id"].as_str().unwrap_or(""),
            o["live"],
            o["sockets"],
            o["storage_bytes"],
            o["next_alarm_ms"]
                .as_u64()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            o["name"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn shown(v: &Value) -> String {
    match (v["text"].as_str(), v["hex"].as_str()) {
        (Some(t), _) => t.to_string(),
        (None, Some(h)) => format!("0x{h}"),
        _ => String::new(),
    }
}

/// `lodge inspect CLASS NAME`.
pub fn inspect(client: &AdminClient, class: &str, name: &str) -> Result<()> {
    let v = client.call(reqwest::Method::GET, &object_path(class, name), None)?;
    println!(
        "{} ({}) live={} sockets={} alarm={}",
        v["object"].as_str().unwrap_or(""),
        v["id"].as_str().unwrap_or(""),
        v["live"],
        v["sockets"],
        v["alarm"]
    );
    for e in v["entries"].as_array().into_iter().flatten() {
        println!("{} = {}", shown(&e["key"]), shown(&e["value"]));
    }
    Ok(())
}

/// `lodge evict CLASS NAME`.
pub fn evict(client: &AdminClient, class: &str, name: &str) -> Result<()> {
    let v = client.call(
        reqwest::Method::POST,
        &format!("{}/evict", object_path(class, name)),
        None,
    )?;
    if v["evicted"] == true {
        println!("{class}/{name}: evicted");
    } else {
        println!("{class}/{name}: not live on this host");
    }
    Ok(())
}

/// `lodge delete CLASS NAME`.
pub fn delete(client: &AdminClient, class: &str, name: &str) -> Result<()> {
    client.call(reqwest::Method::DELETE, &object_path(class, name), None)?;
    println!("{class}/{name}: deleted");
    Ok(())
}

/// `lodge backup DIR`.
pub fn backup(client: &AdminClient, dir: &Path) -> Result<()> {
    let path = format!("/backup?dir={}", encode(&dir.display().to_string()));
    let v = client.call(reqwest::Method::POST, &path, None)?;
    println!(
        "backed up {} objects and {} components into {}",
        v["objects"],
        v["components"],
        dir.display()
    );
    Ok(())
}

/// Asks on the terminal; anything but y/yes is no.
pub fn confirm(question: &str) -> Result<bool> {
    use std::io::Write;
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The newest modification time of the sources under `dir` (Rust, WIT, HTML, manifests).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != "node_modules" && name != ".git" {
                    stack.push(path);
                }
                continue;
            }
            let watched = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "rs" | "wit" | "html" | "js" | "css" | "toml"));
            if watched && let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}

/// `lodge dev`: rebuild the guests when their sources change and deploy every class whose
/// component changed. Runs until interrupted.
pub fn dev(client: &AdminClient, config: &Config, guests: &Path) -> Result<()> {
    let wit = guests.parent().unwrap_or(Path::new(".")).join("wit");
    let mut deployed: HashMap<String, Vec<u8>> = HashMap::new();
    let mut seen: Option<SystemTime> = None;
    println!(
        "lodge dev: watching {} (and {}); Ctrl-C to stop",
        guests.display(),
        wit.display()
    );
    loop {
        let newest = newest_source(guests).max(newest_source(&wit));
        if newest != seen {
            seen = newest;
            println!("lodge dev: building the guests...");
            let status = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(guests)
            .status()
            .context("running cargo")?;
            if !status.success() {
                println!(
                    "lodge dev: the build failed (see above); the running versions keep serving"
                );
            } else {
                for (class, entry) in &config.classes {
                    deploy_if_changed(client, class, &entry.component, &mut deployed);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn deploy_if_changed(
    client: &AdminClient,
    class: &str,
    component: &PathBuf,
    deployed: &mut HashMap<String, Vec<u8>>,
) {
    let Ok(bytes) = std::fs::read(component) else {
        println!("lodge dev: {class}: {} is missing", component.display());
        return;
    };
    if deployed.get(class) == Some(&bytes) {
        return;
    }
    match deploy_bytes(client, class, bytes.clone(), Some("lodge dev")) {
        Ok(v) if v["unchanged"] == true => {}
        Ok(v) => println!("lodge dev: {class}: deployed version {}", v["version"]),
        Err(e) => {
            println!("lodge dev: {class}: deploy refused: {e:#}");
            return;
        }
    }
    deployed.insert(class.to_string(), bytes);
}
