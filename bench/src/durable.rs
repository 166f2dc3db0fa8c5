//! Durable writes: many objects (rooms) writing at once, each with one client that keeps
//! `in_flight` messages outstanding: it sends, and sends the next each time one comes back
//! (the output gate releases it only once it is durable). With one in flight an object never
//! has a second event to run while the first commits; with more, the pipelining of events
//! against commits inside one object is measured too. Durable events per second and the
//! size of the group commits (from the server's commit counters) are compared with what
//! this disk does with one fsync per event, measured by a tiny loop.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::SinkExt;
use serde_json::{Value, json};

use crate::client;
use crate::servers::{Server, Usage};
use crate::stats::{Summary, ratio, round3};

#[derive(Clone, Debug)]
pub struct DurableCfg {
    pub objects: usize,
    pub secs: f64,
    /// Messages each object's client keeps outstanding.
    pub in_flight: usize,
    pub connect_parallel: usize,
}

impl DurableCfg {
    pub fn json(&self) -> Value {
        json!({ "objects": self.objects, "secs": self.secs, "in_flight": self.in_flight })
    }
}

/// What this disk does with one sync per write.
#[derive(Clone, Copy, Debug)]
pub struct FsyncProbe {
    /// `pwrite` 4 KiB at offset 0 + `fdatasync`, in a loop.
    pub fdatasync_per_s: f64,
    /// One redb write transaction of one small key per commit, `Durability::Immediate`.
    pub redb_commits_per_s: f64,
}

impl FsyncProbe {
    pub fn mean(&self, other: &FsyncProbe) -> FsyncProbe {
        FsyncProbe {
            fdatasync_per_s: (self.fdatasync_per_s + other.fdatasync_per_s) / 2.0,
            redb_commits_per_s: (self.redb_commits_per_s + other.redb_commits_per_s) / 2.0,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "fdatasync_per_s": round3(self.fdatasync_per_s),
            "redb_commits_per_s": round3(self.redb_commits_per_s),
        })
    }
}

/// Measures fsyncs/s (and single-event redb commits/s) in a temporary dir under `dir`.
pub fn probe(dir: &Path, secs: f64) -> Result<FsyncProbe> {
    let tmp = tempfile::Builder::new()
        .prefix("fsync-probe-")
        .tempdir_in(dir)?;
    let path = tmp.path().join("probe");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    file.write_all(&block)?;
    file.sync_all()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        file.write_all_at(&block, 0)?;
        file.sync_data()?;
        n += 1;
    }
    let fdatasync_per_s = n as f64 / start.elapsed().as_secs_f64();

    let db = redb::Database::create(tmp.path().join("probe.redb"))?;
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let value = vec![0x5au8; 200];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(T)?;
            t.insert(n, value.as_slice())?;
        }
        txn.commit()?;
        n += 1;
    }
    let redb_commits_per_s = n as f64 / start.elapsed().as_secs_f64();
    Ok(FsyncProbe {
        fdatasync_per_s,
        redb_commits_per_s,
    })
}

/// Single-row commits per second on one connection to the PostgreSQL database `url`:
/// what lodge on PostgreSQL would do with one transaction per event (each `INSERT` in
/// autocommit, waiting for its WAL flush like lodge's commits).
pub async fn probe_postgres(url: &str, secs: f64) -> Result<f64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS commit_probe (id bigint PRIMARY KEY, v bytea)")
        .await?;
    let insert = client
        .prepare("INSERT INTO commit_probe (id, v) VALUES ($1, $2)")
        .await?;
    let value = vec![0x5au8; 200];
    let start = Instant::now();
    let mut n = 0i64;
    while start.elapsed().as_secs_f64() < secs {
        client.execute(&insert, &[&n, &value]).await?;
        n += 1;
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE commit_probe").await?;
    drop(client);
    let _ = driver.await;
    Ok(per_s)
}

pub struct DurableRun {
    pub events: u64,
    pub secs: f64,
    pub latency: Summary,
    pub commits: Option<f64>,
    pub batches: Option<f64>,
    pub errors: usize,
    /// Server and load-generator CPU during the measured phase.
    pub usage: Value,
}

impl DurableRun {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.secs
    }

    pub fn json(&self, probe: &FsyncProbe) -> Value {
        let per_commit = match (self.commits, self.batches) {
            (Some(c), Some(b)) if c > 0.0 => json!(round3(b / c)),
            _ => Value::Null,
        };
        let mut v = json!({
            "durable_events": self.events,
            "durable_events_per_s": round3(self.events_per_s()),
            "latency": self.latency.json(),
            "commits": self.commits,
            "committed_batches": self.batches,
            "batches_per_commit": per_commit,
            "commits_per_s": self.commits.map(|c| round3(c / self.secs)),
            "events_per_s_over_fdatasync_per_s": ratio(self.events_per_s(), probe.fdatasync_per_s),
            "events_per_s_over_redb_commits_per_s": ratio(self.events_per_s(), probe.redb_commits_per_s),
            "errors": self.errors,
        });
        if let (Value::Object(a), Value::Object(b)) = (&mut v, &self.usage) {
            a.extend(b.clone());
        }
        v
    }
}

/// Keeps `window` messages outstanding on one socket until `stop`, then waits for the
/// outstanding ones. Echoes come back in the order sent (one object, events in order);
/// each latency is from its own send.
async fn keep_in_flight(
    ws: &mut client::Ws,
    writer: usize,
    window: usize,
    stop: &AtomicBool,
    lat: &mut Vec<u64>,
) -> Result<()> {
    const ECHO_TIMEOUT: Duration = Duration::from_secs(30);
    let mut outstanding: VecDeque<(String, Instant)> = VecDeque::with_capacity(window);
    let mut k = 0u64;
    loop {
        while outstanding.len() < window && !stop.load(Ordering::Relaxed) {
            let text = format!("w {writer} {k}");
            k += 1;
            ws.send(client::message_out(&text)).await?;
            outstanding.push_back((text, Instant::now()));
        }
        let Some((text, sent)) = outstanding.front() else {
            return Ok(());
        };
        client::wait_for_echo(ws, text, ECHO_TIMEOUT).await?;
        lat.push(sent.elapsed().as_micros() as u64);
        outstanding.pop_front();
    }
}

/// The commit counters of whichever server this is.
async fn counters(server: &Server) -> (Option<f64>, Option<f64>) {
    match server.metrics().await {
        Ok(m) => {
            let get = |a: &str, b: &str| m.get(a).or_else(|| m.get(b)).copied();
            (
                get("lodge_commits_total", "native_commits_total"),
                get(
                    "lodge_committed_batches_total",
                    "native_committed_batches_total",
                ),
            )
        }
        Err(_) => (None, None),
    }
}

pub async fn run(server: &Server, cfg: &DurableCfg, nonce: &str) -> Result<DurableRun> {
    let base = server.base.clone();
    let nonce_s = nonce.to_string();
    let sockets = client::for_each_parallel(cfg.objects, cfg.connect_parallel, |i| {
        let base = base.clone();
        let room = format!("durable-{nonce_s}-{i}");
        async move { client::join(&base, &room, "writer").await }
    })
    .await?;

    let (c0, b0) = counters(server).await;
    let usage = Usage::start(server);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(sockets.len());
    let window = cfg.in_flight.max(1);
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let result = keep_in_flight(&mut ws, i, window, &stop, &mut lat).await;
            (lat, result.err(), ws)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(cfg.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    let mut keep = Vec::new();
    for h in handles {
        let (lat, error, ws) = h.await?;
        all.extend(lat);
        if let Some(e) = error {
            if errors < 3 {
                crate::note!("durable writer failed: {e:#}");
            }
            errors += 1;
        }
        keep.push(ws);
    }
    let secs = start.elapsed().as_secs_f64();
    let (c1, b1) = counters(server).await;
    let usage = usage.json(server, "event", all.len() as f64);
    drop(keep);
    Ok(DurableRun {
        events: all.len() as u64,
        secs,
        latency: Summary::of(&mut all),
        commits: c0.zip(c1).map(|(a, b)| b - a),
        batches: b0.zip(b1).map(|(a, b)| b - a),
        errors,
        usage,
    })
}
