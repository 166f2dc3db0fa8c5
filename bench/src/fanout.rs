//! Fan-out: R rooms x C clients, one sender per room at a fixed rate, open loop.
//!
//! Every sent text carries its *scheduled* send time; a receiver measures latency from
//! that time, not from when the send actually happened, so a server that stalls the
//! sender is charged for the whole stall (no coordinated omission). Each client checks
//! that entry ids arrive in order with no gaps and counts what never arrived.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, MessageFrame, Ws};
use crate::stats::{Summary, round3};

#[derive(Clone, Debug)]
pub struct FanoutCfg {
    pub rooms: usize,
    pub clients: usize,
    /// Messages per second per room.
    pub rate: f64,
    pub secs: f64,
    /// How long to wait for stragglers after the last send.
    pub drain_secs: f64,
    /// Connections opened at once while joining.
    pub connect_parallel: usize,
    /// Room names are `{prefix}-{i}`.
    pub prefix: String,
}

impl FanoutCfg {
    pub fn per_room(&self) -> u64 {
        (self.rate * self.secs).round().max(1.0) as u64
    }

    pub fn json(&self) -> Value {
        json!({
            "rooms": self.rooms,
            "clients_per_room": self.clients,
            "rate_per_room": self.rate,
            "secs": self.secs,
            "offered_frames_per_s": round3(self.rate * (self.rooms * self.clients) as f64),
        })
    }
}

/// What one receiving client saw.
#[derive(Default)]
struct ClientOutcome {
    /// (scheduled send µs, latency µs) per message frame received.
    samples: Vec<(u64, u64)>,
    received: u64,
    out_of_order: u64,
    id_gaps: u64,
    dropped: bool,
    last_recv_us: u64,
}

/// Everything a fan-out run measured.
pub struct FanoutRun {
    pub connect_secs: f64,
    pub settle_secs: f64,
    /// When the first message was scheduled (µs since the client epoch).
    pub t0_us: u64,
    pub sent: u64,
    pub expected: u64,
    pub received: u64,
    pub out_of_order: u64,
    pub id_gaps: u64,
    pub dropped_sockets: u64,
    pub send_errors: u64,
    pub samples: Vec<(u64, u64)>,
    pub last_recv_us: u64,
    /// The clients' sockets, still open: the caller closes them (dropping them) once it
    /// has taken its measurements, so the leave storm is not charged to the run.
    pub open: Vec<SplitSink<Ws, Message>>,
}

impl FanoutRun {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Delivered message frames per second, from the first scheduled send to the last
    /// frame received.
    pub fn frames_per_s(&self) -> f64 {
        let span = self.last_recv_us.saturating_sub(self.t0_us) as f64 / 1e6;
        if span > 0.0 {
            self.received as f64 / span
        } else {
            0.0
        }
    }

    /// Latencies of messages scheduled in `[from_us, to_us)`.
    pub fn window(&self, from_us: u64, to_us: u64) -> Summary {
        let mut v: Vec<u64> = self
            .samples
            .iter()
            .filter(|(s, _)| *s >= from_us && *s < to_us)
            .map(|(_, l)| *l)
            .collect();
        Summary::of(&mut v)
    }

    pub fn latency(&self) -> Summary {
        let mut v: Vec<u64> = self.samples.iter().map(|(_, l)| *l).collect();
        Summary::of(&mut v)
    }

    pub fn json(&self) -> Value {
        json!({
            "connect_secs": round3(self.connect_secs),
            "settle_secs": round3(self.settle_secs),
            "sent": self.sent,
            "expected_frames": self.expected,
            "delivered_frames": self.received,
            "frames_per_s": round3(self.frames_per_s()),
            "latency": self.latency().json(),
            "lost": self.lost(),
            "out_of_order": self.out_of_order,
            "id_gaps": self.id_gaps,
            "dropped_sockets": self.dropped_sockets,
            "send_errors": self.send_errors,
        })
    }
}

async fn receive(
    mut stream: SplitStream<Ws>,
    expect: u64,
    room_size: usize,
    present: usize,
    settled: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> ClientOutcome {
    let mut out = ClientOutcome::default();
    let mut is_settled = present >= room_size;
    if is_settled {
        settled.fetch_add(1, Ordering::Relaxed);
    }
    let mut last_id = 0u64;
    let mut last_seq: Option<u64> = None;
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = stop.wait_for(|s| *s) => break,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                out.dropped = true;
                break;
            }
            Some(Ok(_)) => continue,
        };
        let now = client::now_us();
        match client::frame_type(text.as_str()) {
            Some("message") => {
                let Ok(m) = serde_json::from_str::<MessageFrame>(text.as_str()) else {
                    continue;
                };
                let Some((seq, sched)) = client::parse_bench_text(&m.text) else {
                    continue;
                };
                out.samples.push((sched, now.saturating_sub(sched)));
                out.received += 1;
                out.last_recv_us = now;
                if last_id != 0 {
                    if m.id <= last_id {
                        out.out_of_order += 1;
                    } else if m.id > last_id + 1 {
                        out.id_gaps += m.id - last_id - 1;
                    }
                }
                if let Some(prev) = last_seq
                    && seq <= prev
                {
                    out.out_of_order += 1;
                }
                last_id = last_id.max(m.id);
                last_seq = Some(last_seq.map_or(seq, |p| p.max(seq)));
                if out.received >= expect {
                    break;
                }
            }
            Some("presence")
                if !is_settled && client::presence_count(text.as_str()) >= room_size =>
            {
                is_settled = true;
                settled.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    if !is_settled {
        settled.fetch_add(1, Ordering::Relaxed);
    }
    out
}

async fn send(
    mut sink: SplitSink<Ws, Message>,
    t0_us: u64,
    interval_us: f64,
    n: u64,
    errors: Arc<AtomicU64>,
) -> (SplitSink<Ws, Message>, u64) {
    let mut sent = 0;
    for k in 0..n {
        let sched = t0_us + (k as f64 * interval_us) as u64;
        tokio::time::sleep_until(client::at_us(sched).into()).await;
        if sink
            .send(client::message_out(&client::bench_text(k, sched)))
            .await
            .is_err()
        {
            errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        sent += 1;
    }
    (sink, sent)
}

/// Runs fan-out against the server at `base`. `started` learns the first scheduled send
/// time (µs since the client epoch), for scenarios that act during the run.
pub async fn run(
    base: &str,
    cfg: &FanoutCfg,
    started: Option<oneshot::Sender<u64>>,
) -> Result<FanoutRun> {
    let n = cfg.per_room();
    let total = cfg.rooms * cfg.clients;
    let settled = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let connect_start = std::time::Instant::now();

    // Join everyone; each client starts reading at once so join storms keep flowing.
    let base_s = base.to_string();
    let joined = client::for_each_parallel(total, cfg.connect_parallel, |i| {
        let (room, idx) = (i / cfg.clients, i % cfg.clients);
        let room_name = format!("{}-{room}", cfg.prefix);
        let name = format!("r{room}c{idx}");
        let base = base_s.clone();
        let settled = settled.clone();
        let stop = stop_rx.clone();
        let room_size = cfg.clients;
        async move {
            let (ws, present) = client::join_counted(&base, &room_name, &name).await?;
            let (sink, stream) = ws.split();
            let reader = tokio::spawn(receive(stream, n, room_size, present, settled, stop));
            Ok((room, sink, reader))
        }
    })
    .await?;
    let connect_secs = connect_start.elapsed().as_secs_f64();

    // Wait until every client saw the full room in a presence frame: the join storm is over.
    let settle_start = std::time::Instant::now();
    while settled.load(Ordering::Relaxed) < total {
        if settle_start.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!(
                "only {} of {total} clients saw their full room after 120 s",
                settled.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settle_secs = settle_start.elapsed().as_secs_f64();

    let interval_us = 1e6 / cfg.rate;
    let t0_us = client::now_us() + 100_000;
    if let Some(tx) = started {
        let _ = tx.send(t0_us);
    }
    let errors = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(total);
    let mut senders = Vec::new();
    let mut keep = Vec::new();
    for (i, (room, sink, reader)) in joined.into_iter().enumerate() {
        readers.push(reader);
        if i % cfg.clients == 0 {
            // The first client of each room sends; rooms are staggered over one interval.
            let offset = (room as f64 * interval_us / cfg.rooms as f64) as u64;
            senders.push(tokio::spawn(send(
                sink,
                t0_us + offset,
                interval_us,
                n,
                errors.clone(),
            )));
        } else {
            keep.push(sink);
        }
    }
    let mut sent_per_room = Vec::with_capacity(cfg.rooms);
    for s in senders {
        let (sink, sent) = s.await?;
        keep.push(sink);
        sent_per_room.push(sent);
    }
    // Give stragglers the drain time, then stop whoever is still waiting.
    let drain_until = tokio::time::Instant::now() + Duration::from_secs_f64(cfg.drain_secs);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(drain_until).await;
        let _ = stop_tx.send(true);
    });
    let mut outcomes = Vec::with_capacity(total);
    for h in readers {
        outcomes.push(h.await?);
    }
    stopper.abort();

    let mut run = FanoutRun {
        connect_secs,
        settle_secs,
        t0_us,
        sent: sent_per_room.iter().sum(),
        expected: sent_per_room.iter().map(|s| s * cfg.clients as u64).sum(),
        received: 0,
        out_of_order: 0,
        id_gaps: 0,
        dropped_sockets: 0,
        send_errors: errors.load(Ordering::Relaxed),
        samples: Vec::new(),
        last_recv_us: 0,
        open: keep,
    };
    for o in outcomes {
        run.received += o.received;
        run.out_of_order += o.out_of_order;
        run.id_gaps += o.id_gaps;
        run.dropped_sockets += u64::from(o.dropped);
        run.last_recv_us = run.last_recv_us.max(o.last_recv_us);
        run.samples.extend(o.samples);
    }
    Ok(run)
}
