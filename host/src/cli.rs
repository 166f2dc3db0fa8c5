//! The operator commands that talk to a running host's admin API (deploy, rollback,
//! versions, classes, remove, objects, inspect, evict, delete, backup) and the `dev` loop
//! (watch, rebuild, hot-swap). Replies are the typed bodies of `lodge::admin::api`;
//! `--json` prints them as the API sent them, for scripts, and without it they become
//! aligned tables with times a person reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use lodge::admin::api;
use lodge::config::Config;
use lodge_core::time::now_ms;
use serde::de::DeserializeOwned;

/// A blocking client for the admin API.
pub struct AdminClient {
    base: String,
    token: String,
    /// Print the API's JSON replies instead of tables.
    pub json: bool,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8788`).
    pub fn new(base: String, token: String, json: bool) -> Result<AdminClient> {
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            json,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the CLI's async runtime")?,
            // No pooled connections: the admin listener drops idle ones (its header read
            // timeout), and `lodge dev` calls it again after arbitrary pauses.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .no_proxy()
                .build()
                .context("building the CLI's HTTP client")?,
        })
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let text = self.call_text(method, path, body)?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the admin API at {} sent a reply this CLI does not understand (is it another lodge version?): {}",
                self.base,
                text.chars().take(200).collect::<String>()
            )
        })
    }

    fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<String> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut req = self.http.request(method, &url).bearer_auth(&self.token);
            if let Some(body) = body {
                req = req.body(body);
            }
            let resp = req.send().await.map_err(|e| {
                anyhow!(
                    "cannot reach the lodge admin API at {} ({}). Is the host running? Start it with `lodge serve` (`cargo xtask serve` in a checkout), or point --admin-url at it",
                    self.base,
                    root_cause(&e)
                )
            })?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok(text);
            }
            if status == reqwest::StatusCode::UNAUTHORIZED {
                bail!(
                    "the host at {} refused the admin token (401). Use the token it runs with: --token, $LODGE_ADMIN_TOKEN, or run where its lodge.toml and data dir are",
                    self.base
                );
            }
            let message = serde_json::from_str::<api::ErrorReply>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            bail!("{} ({status})", message.trim());
        })
    }

    /// Prints `reply` as JSON when asked to, else runs `human`.
    fn show<T: serde::Serialize>(&self, reply: &T, human: impl FnOnce(&T)) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(reply)?);
        } else {
            human(reply);
        }
        Ok(())
    }
}

/// The innermost error's text (reqwest wraps the OS error several times).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Reads a component file, saying how to make one when it is missing.
pub fn read_component(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "{} does not exist: build the class first (`cargo build --release --target wasm32-wasip2` in its crate)",
                file.display()
            )
        } else {
            anyhow!("cannot read {}: {e}", file.display())
        }
    })
}

/// `lodge deploy CLASS FILE`, with the bytes of FILE (read before any host is asked).
pub fn deploy(
    client: &AdminClient,
    class: &str,
    file: &Path,
    bytes: Vec<u8>,
    label: Option<&str>,
) -> Result<()> {
    let reply = deploy_bytes(client, class, bytes, label)
        .with_context(|| format!("deploy of {} as '{class}' refused", file.display()))?;
    client.show(&reply, |r| {
        if r.unchanged {
            println!(
                "{class}: version {} is already current (same bytes)",
                r.version
            );
        } else if r.created {
            println!(
                "{class}: created the class, serving version {} (open /{class}/NAME/ on the host)",
                r.version
            );
        } else {
            println!("{class}: deployed version {}", r.version);
        }
    })
}

fn deploy_bytes(
    client: &AdminClient,
    class: &str,
    bytes: Vec<u8>,
    label: Option<&str>,
) -> Result<api::DeployReply> {
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
    let reply: api::RollbackReply = client
        .call(reqwest::Method::POST, &path, None)
        .context("rollback refused")?;
    client.show(&reply, |r| {
        println!("{class}: now serving version {}", r.version)
    })
}

/// `lodge remove CLASS`.
pub fn remove(client: &AdminClient, class: &str) -> Result<()> {
    let reply: api::RemoveReply = client
        .call(
            reqwest::Method::DELETE,
            &format!("/classes/{}", encode(class)),
            None,
        )
        .context("remove refused")?;
    client.show(&reply, |r| {
        println!(
            "{class}: removed ({} sockets closed); its objects and versions are kept: `lodge deploy {class} FILE` serves them again",
            r.sockets_closed
        )
    })
}

/// `lodge classes`.
pub fn classes(client: &AdminClient) -> Result<()> {
    let reply: Vec<api::ClassSummary> = client.call(reqwest::Method::GET, "/classes", None)?;
    client.show(&reply, |classes| {
        let rows = classes
            .iter()
            .map(|c| {
                vec![
                    c.class.clone(),
                    c.current.to_string(),
                    match c.origin {
                        api::ClassOrigin::Config => "config file",
                        api::ClassOrigin::Deploy => "deploy",
                    }
                    .to_string(),
                ]
            })
            .collect();
        print!("{}", table(&["CLASS", "VERSION", "FROM"], rows, &[1]));
    })
}

/// `lodge versions CLASS`.
pub fn versions(client: &AdminClient, class: &str) -> Result<()> {
    let reply: api::Versions = client.call(
        reqwest::Method::GET,
        &format!("/classes/{}/versions", encode(class)),
        None,
    )?;
    let now = now_ms();
    client.show(&reply, |v| {
        let rows = v
            .versions
            .iter()
            .map(|version| {
                vec![
                    if version.current { "*" } else { "" }.to_string(),
                    version.version.to_string(),
                    version.source.clone(),
                    iso_minute(version.deployed_at_ms),
                    relative(version.deployed_at_ms, now),
                    version.hash.get(..12).unwrap_or("").to_string(),
                    version.label.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["", "VERSION", "SOURCE", "DEPLOYED", "", "HASH", "LABEL"],
                rows,
                &[1]
            )
        );
    })
}

fn object_path(class: &str, name: &str) -> String {
    format!("/classes/{}/objects/{}", encode(class), encode(name))
}

/// `lodge objects CLASS`.
pub fn objects(client: &AdminClient, class: &str) -> Result<()> {
    let reply: Vec<api::ObjectSummary> = client.call(
        reqwest::Method::GET,
        &format!("/classes/{}/objects", encode(class)),
        None,
    )?;
    let now = now_ms();
    client.show(&reply, |objects| {
        let rows = objects
            .iter()
            .map(|o| {
                vec![
                    o.name.clone(),
                    if o.live { "live" } else { "asleep" }.to_string(),
                    o.sockets.to_string(),
                    bytes(o.storage_bytes),
                    o.next_alarm_ms
                        .map(|at| format!("{} ({})", iso_minute(at), relative(at, now)))
                        .unwrap_or_else(|| "-".into()),
                    o.id.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["NAME", "STATE", "SOCKETS", "STORAGE", "NEXT ALARM", "ID"],
                rows,
                &[2, 3]
            )
        );
    })
}

/// `lodge inspect CLASS NAME`.
pub fn inspect(client: &AdminClient, class: &str, name: &str) -> Result<()> {
    let reply: api::ObjectDetail =
        client.call(reqwest::Method::GET, &object_path(class, name), None)?;
    let now = now_ms();
    client.show(&reply, |v| {
        let alarm = v.alarm.as_ref().map_or_else(
            || "none".to_string(),
            |a| format!("{} ({})", iso_minute(a.at_ms), relative(a.at_ms, now)),
        );
        println!(
            "{} ({}): {}, {} sockets, alarm {alarm}",
            v.object,
            v.id,
            if v.live { "live" } else { "asleep" },
            v.sockets
        );
        for e in &v.entries {
            println!("{} = {}", e.key, e.value);
        }
    })
}

/// `lodge evict CLASS NAME`.
pub fn evict(client: &AdminClient, class: &str, name: &str) -> Result<()> {
    let reply: api::EvictReply = client.call(
        reqwest::Method::POST,
        &format!("{}/evict", object_path(class, name)),
        None,
    )?;
    client.show(&reply, |r| {
        if r.evicted {
            println!("{class}/{name}: evicted");
        } else {
            println!("{class}/{name}: not live on this host");
        }
    })
}

/// `lodge delete CLASS NAME`.
pub fn delete(client: &AdminClient, class: &str, name: &str) -> Result<()> {
    let reply: api::DeleteReply =
        client.call(reqwest::Method::DELETE, &object_path(class, name), None)?;
    client.show(&reply, |_| println!("{class}/{name}: deleted"))
}

/// `lodge backup DIR`.
pub fn backup(client: &AdminClient, dir: &Path) -> Result<()> {
    let path = format!("/backup?dir={}", encode(&dir.display().to_string()));
    let reply: api::BackupReply = client
        .call(reqwest::Method::POST, &path, None)
        .context("backup refused")?;
    client.show(&reply, |r| {
        println!(
            "backed up {} objects and {} components into {}",
            r.objects,
            r.components,
            dir.display()
        )
    })
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

/// Rows under headers, each column as wide as its widest cell; the columns in `right`
/// are right-aligned (numbers). No trailing spaces.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if widths[i] == 0 {
                continue;
            }
            if !out.is_empty() {
                out.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - width(cell));
            if right.contains(&i) {
                out.push_str(&pad);
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&pad);
            }
        }
        format!("{}\n", out.trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `2026-12-06 23:41 UTC`.
pub fn iso_minute(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `just now`, `3 min ago`, `in 2 h`, ...
pub fn relative(at_ms: u64, now_ms: u64) -> String {
    let (secs, past) = if at_ms <= now_ms {
        ((now_ms - at_ms) / 1000, true)
    } else {
        ((at_ms - now_ms) / 1000, false)
    };
    let amount = match secs {
        0..10 => return if past { "just now" } else { "now" }.to_string(),
        10..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ if secs / 86_400 == 1 => "1 day".to_string(),
        _ => format!("{} days", secs / 86_400),
    };
    if past {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
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
            .context("cannot run cargo (is the Rust toolchain installed?)")?;
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
        Ok(r) if r.unchanged => {}
        Ok(r) => println!("lodge dev: {class}: deployed version {}", r.version),
        Err(e) => {
            println!("lodge dev: {class}: deploy refused: {e:#}");
            return;
        }
    }
    deployed.insert(class.to_string(), bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_and_ages_read_as_words() {
        assert_eq!(iso_minute(0), "1970-01-01 00:00 UTC");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(iso_minute(1_709_210_096_000), "2024-02-29 12:34 UTC");
        assert_eq!(iso_minute(1_798_761_600_000), "2027-01-01 00:00 UTC");
        let now = 1_000_000_000_000;
        assert_eq!(relative(now - 2_000, now), "just now");
        assert_eq!(relative(now - 42_000, now), "42 s ago");
        assert_eq!(relative(now - 180_000, now), "3 min ago");
        assert_eq!(relative(now - 5 * 3_600_000, now), "5 h ago");
        assert_eq!(relative(now - 86_400_000, now), "1 day ago");
        assert_eq!(relative(now - 3 * 86_400_000, now), "3 days ago");
        assert_eq!(relative(now + 120_000, now), "in 2 min");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(
            &["NAME", "N", "NOTE"],
            vec![
                vec!["a".into(), "1".into(), "x".into()],
                vec!["longer".into(), "100".into(), String::new()],
            ],
            &[1],
        );
        assert_eq!(
            t, "NAME      N  NOTE\na         1  x\nlonger  100\n",
            "\n{t}"
        );
    }
}
