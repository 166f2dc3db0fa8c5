//! Hibernation memory: N open sockets over many rooms, every room evicted (lodge runs with
//! a small idle timeout), and the server's RSS (VmRSS of its process) per open socket.
//!
//! The sockets are opened in two halves over two disjoint sets of rooms. The first half
//! also pays for whatever the host keeps after instances come and go (allocator pools,
//! caches); the second half reuses it, so its RSS growth divided by its socket count is
//! the marginal cost of one hibernated socket. Both figures are reported.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::servers::Server;
use crate::stats::round3;

#[derive(Clone, Debug)]
pub struct HibernateCfg {
    pub sockets: usize,
    pub rooms: usize,
    /// lodge's `[runtime] idle_timeout_ms` for this scenario.
    pub idle_ms: u64,
    pub connect_parallel: usize,
}

impl HibernateCfg {
    pub fn json(&self) -> Value {
        json!({ "sockets": self.sockets, "rooms": self.rooms, "idle_timeout_ms": self.idle_ms })
    }
}

async fn live_objects(server: &Server) -> Option<f64> {
    server
        .metrics()
        .await
        .ok()
        .and_then(|m| m.get("lodge_live_objects").copied())
}

/// Waits until lodge evicted every instance (no-op for other servers), then lets the
/// allocator settle.
async fn wait_evicted(server: &Server, idle_ms: u64) -> Result<f64> {
    let start = Instant::now();
    if server.kind.is_lodge() {
        tokio::time::sleep(Duration::from_millis(idle_ms)).await;
        loop {
            match live_objects(server).await {
                Some(0.0) => break,
                _ if start.elapsed() > Duration::from_secs(60) => {
                    bail!("instances still live 60 s after the last event")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(start.elapsed().as_secs_f64())
}

/// Opens `count` sockets spread over rooms `first_room..first_room+rooms`.
async fn open(
    base: &str,
    nonce: &str,
    first_room: usize,
    rooms: usize,
    count: usize,
    parallel: usize,
) -> Result<Vec<Ws>> {
    let base = base.to_string();
    let nonce = nonce.to_string();
    client::for_each_parallel(count, parallel, move |i| {
        let room = format!("hib-{nonce}-{}", first_room + i % rooms);
        let base = base.clone();
        async move { client::join(&base, &room, &format!("s{i}")).await }
    })
    .await
}

/// Drops whatever join storms left in the sockets' buffers.
fn drain(sockets: &mut [Ws]) {
    use futures_util::FutureExt;
    for ws in sockets.iter_mut() {
        while let Some(Some(Ok(_))) = ws.next().now_or_never() {}
    }
}

pub async fn run(server: &Server, cfg: &HibernateCfg, nonce: &str) -> Result<Value> {
    let rss = || {
        server
            .rss_kib()
            .ok_or_else(|| anyhow!("cannot read the server's VmRSS"))
    };
    // Warm up: one room comes and goes, so start-up costs are not charged to sockets.
    {
        let mut ws = client::join(&server.base, &format!("hib-{nonce}-warmup"), "w").await?;
        client::send_and_wait(&mut ws, "warm up", Duration::from_secs(30)).await?;
        let _ = ws.close(None).await;
    }
    wait_evicted(server, cfg.idle_ms).await?;
    let rss0 = rss()?;

    let half = cfg.sockets / 2;
    let half_rooms = (cfg.rooms / 2).max(1);
    let mut first = open(
        &server.base,
        nonce,
        0,
        half_rooms,
        half,
        cfg.connect_parallel,
    )
    .await?;
    wait_evicted(server, cfg.idle_ms).await?;
    drain(&mut first);
    let rss1 = rss()?;

    let rest = cfg.sockets - half;
    let mut second = open(
        &server.base,
        nonce,
        half_rooms,
        cfg.rooms - half_rooms,
        rest,
        cfg.connect_parallel,
    )
    .await?;
    wait_evicted(server, cfg.idle_ms).await?;
    drain(&mut second);
    let rss2 = rss()?;
    let mappings = server.top_mappings(6);
    let live_after = live_objects(server).await;

    // Every socket is still open: a heartbeat gets its pong (from the host's
    // auto-response on lodge, without waking the room).
    let mut all: Vec<Ws> = first.into_iter().chain(second).collect();
    let mut pongs = 0usize;
    for ws in all.iter_mut() {
        if ws
            .send(Message::Text(r#"{"type":"heartbeat"}"#.into()))
            .await
            .is_err()
        {
            continue;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
            if let Message::Text(t) = m
                && client::frame_type(t.as_str()) == Some("pong")
            {
                pongs += 1;
                break;
            }
        }
    }
    let live_after_heartbeats = live_objects(server).await;
    // A message wakes a hibernated room and reaches its members.
    let woke = client::send_and_wait(&mut all[0], "wake up", Duration::from_secs(30))
        .await
        .is_ok();

    let n = cfg.sockets as f64;
    let per_socket = (rss2 as f64 - rss0 as f64) / n;
    let marginal = (rss2 as f64 - rss1 as f64) / rest as f64;
    Ok(json!({
        "rss_start_kib": rss0,
        "rss_half_kib": rss1,
        "rss_all_kib": rss2,
        "kib_per_socket": round3(per_socket),
        "marginal_kib_per_socket": round3(marginal),
        "first_half_fixed_kib": round3((rss1 as f64 - rss0 as f64) - marginal * half as f64),
        "live_objects_after": live_after,
        "live_objects_after_heartbeats": live_after_heartbeats,
        "pongs": pongs,
        "woke_on_message": woke,
        "rss_by_mapping": mappings,
    }))
}
