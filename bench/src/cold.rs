//! Cold rooms: thousands of fresh rooms, each joined once and sent one message, against
//! the same sequence on a warm room (live, with a resident member). The first-message
//! latency runs from opening the socket to receiving the room's `message` frame with our
//! text, so it includes the room's activation (lodge instantiates the object on the join).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use crate::client;
use crate::stats::Summary;

#[derive(Clone, Debug)]
pub struct ColdCfg {
    pub rooms: usize,
    /// Warm samples (interleaved with the cold ones).
    pub warm: usize,
    /// Clients doing samples at once.
    pub parallel: usize,
    /// Cold rooms from this index on need a live-instance slot that only an LRU eviction
    /// frees (lodge's `max_live_objects` minus the warm room); reported separately.
    pub cap: Option<usize>,
}

impl ColdCfg {
    pub fn json(&self) -> Value {
        json!({ "cold_rooms": self.rooms, "warm_samples": self.warm, "parallel": self.parallel, "lodge_max_live_objects_minus_warm_room": self.cap })
    }
}

/// One join + first message, in µs.
struct Sample {
    warm: bool,
    /// The cold room's index.
    index: usize,
    join_us: u64,
    message_us: u64,
    total_us: u64,
}

async fn sample(base: &str, room: &str, name: &str, warm: bool, index: usize) -> Result<Sample> {
    let start = Instant::now();
    let mut ws = client::join(base, room, name).await?;
    let joined = Instant::now();
    let text = format!("first {room} {name}");
    client::send_and_wait(&mut ws, &text, Duration::from_secs(30)).await?;
    let done = Instant::now();
    // Leave politely, off the clock.
    tokio::spawn(async move {
        let _ = ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            use futures_util::StreamExt;
            while ws.next().await.is_some() {}
        })
        .await;
    });
    Ok(Sample {
        warm,
        index,
        join_us: (joined - start).as_micros() as u64,
        message_us: (done - joined).as_micros() as u64,
        total_us: (done - start).as_micros() as u64,
    })
}

pub struct ColdRun {
    pub cold_total: Summary,
    /// Cold rooms activated while live-instance slots were free / only after an eviction.
    pub cold_below_cap: Option<Summary>,
    pub cold_above_cap: Option<Summary>,
    pub cold_join: Summary,
    pub cold_message: Summary,
    pub warm_total: Summary,
    pub warm_join: Summary,
    pub warm_message: Summary,
    pub errors: usize,
    pub secs: f64,
}

impl ColdRun {
    pub fn json(&self) -> Value {
        json!({
            "cold_first_message": self.cold_total.json(),
            "cold_first_message_below_cap": self.cold_below_cap.map(|s| s.json()),
            "cold_first_message_above_cap": self.cold_above_cap.map(|s| s.json()),
            "cold_join": self.cold_join.json(),
            "cold_message_after_join": self.cold_message.json(),
            "warm_first_message": self.warm_total.json(),
            "warm_join": self.warm_join.json(),
            "warm_message_after_join": self.warm_message.json(),
            "cold_over_warm_p50": crate::stats::ratio(self.cold_total.p50_ms, self.warm_total.p50_ms),
            "cold_over_warm_p99": crate::stats::ratio(self.cold_total.p99_ms, self.warm_total.p99_ms),
            "cold_below_cap_over_warm_p50": self.cold_below_cap.map(|c| crate::stats::ratio(c.p50_ms, self.warm_total.p50_ms)),
            "cold_above_cap_over_warm_p50": self.cold_above_cap.map(|c| crate::stats::ratio(c.p50_ms, self.warm_total.p50_ms)),
            "errors": self.errors,
            "secs": crate::stats::round3(self.secs),
        })
    }
}

pub async fn run(base: &str, cfg: &ColdCfg, nonce: &str) -> Result<ColdRun> {
    // The warm room: activated and kept live by a resident member.
    let warm_room = format!("warm-{nonce}");
    let mut resident = client::join(base, &warm_room, "resident").await?;
    client::send_and_wait(&mut resident, "warming up", Duration::from_secs(30)).await?;
    // Keep reading the resident socket so the room never blocks on it.
    let drain = tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = resident.next().await {}
    });

    // Interleave: after every `every`-th cold sample, one warm sample.
    let every = (cfg.rooms / cfg.warm.max(1)).max(1);
    let mut plan = Vec::with_capacity(cfg.rooms + cfg.warm);
    let mut warm_left = cfg.warm;
    for i in 0..cfg.rooms {
        plan.push((false, i));
        if i % every == every - 1 && warm_left > 0 {
            plan.push((true, i));
            warm_left -= 1;
        }
    }
    let started = Instant::now();
    let base_s = base.to_string();
    let nonce_s = nonce.to_string();
    let plan = std::sync::Arc::new(plan);
    let results = client::for_each_parallel(plan.len(), cfg.parallel, |k| {
        let (warm, i) = plan[k];
        let base = base_s.clone();
        let room = if warm {
            warm_room.clone()
        } else {
            format!("cold-{nonce_s}-{i}")
        };
        async move { Ok(sample(&base, &room, &format!("u{k}"), warm, i).await) }
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    drain.abort();

    let mut errors = 0;
    let (mut ct, mut cj, mut cm, mut wt, mut wj, mut wm) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut below, mut above) = (vec![], vec![]);
    for r in results {
        match r {
            Ok(s) if s.warm => {
                wt.push(s.total_us);
                wj.push(s.join_us);
                wm.push(s.message_us);
            }
            Ok(s) => {
                if cfg.cap.is_some_and(|cap| s.index >= cap) {
                    above.push(s.total_us);
                } else {
                    below.push(s.total_us);
                }
                ct.push(s.total_us);
                cj.push(s.join_us);
                cm.push(s.message_us);
            }
            Err(e) => {
                if errors < 3 {
                    crate::note!("cold sample failed: {e:#}");
                }
                errors += 1;
            }
        }
    }
    Ok(ColdRun {
        cold_total: Summary::of(&mut ct),
        cold_below_cap: cfg.cap.map(|_| Summary::of(&mut below)),
        cold_above_cap: cfg.cap.map(|_| Summary::of(&mut above)),
        cold_join: Summary::of(&mut cj),
        cold_message: Summary::of(&mut cm),
        warm_total: Summary::of(&mut wt),
        warm_join: Summary::of(&mut wj),
        warm_message: Summary::of(&mut wm),
        errors,
        secs,
    })
}
