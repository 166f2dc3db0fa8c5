//! Hot swap under load: a fan-out run on lodge during which a new version of the chat
//! class is deployed (the same component with one extra custom section, so its hash
//! differs and every room moves to a freshly compiled version), and later rolled back.
//! Reports dropped sockets, lost and out-of-order messages, and latency right after each
//! switch next to the latency before the first one.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::client;
use crate::fanout::{self, FanoutCfg};
use crate::servers::Server;
use crate::stats::{ratio, round3};

#[derive(Clone, Debug)]
pub struct HotswapCfg {
    pub fanout: FanoutCfg,
    /// Seconds after the first send when the new version is deployed.
    pub deploy_at: f64,
    /// Seconds after the first send when the class is rolled back.
    pub rollback_at: f64,
    /// The window after each switch whose latency is reported.
    pub window_secs: f64,
}

/// Appends a custom section (id 0) named `lodge-bench` to a component: a valid,
/// behaviourally identical component with a different hash.
pub fn variant(component: &[u8], label: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"lodge-bench";
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(label.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// Events that failed, from either form of lodge's metrics (one counter, or
/// `lodge_events_total{kind=...,outcome="failed"}` per kind).
fn failures(m: &std::collections::HashMap<String, f64>) -> Option<f64> {
    if let Some(v) = m.get("lodge_event_failures_total") {
        return Some(*v);
    }
    let failed: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with("lodge_events_total{") && k.contains("outcome=\"failed\""))
        .map(|(_, v)| *v)
        .collect();
    (!failed.is_empty()).then(|| failed.iter().sum())
}

/// One admin action during the run.
#[derive(Default)]
struct Action {
    at_us: u64,
    took_ms: f64,
    status: u16,
    body: String,
}

impl Action {
    fn json(&self) -> Value {
        json!({ "status": self.status, "took_ms": round3(self.took_ms), "answer": serde_json::from_str::<Value>(&self.body).unwrap_or(Value::String(self.body.clone())) })
    }
}

async fn act(server: &Server, path: &str, body: &[u8]) -> Action {
    let at_us = client::now_us();
    let started = Instant::now();
    let (status, body) = match server.admin_call("POST", path, body).await {
        Ok(r) => r,
        Err(e) => (0, e.to_string()),
    };
    Action {
        at_us,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
        status,
        body,
    }
}

pub async fn run(server: &Server, chat_wasm: &Path, cfg: &HotswapCfg) -> Result<Value> {
    let original = std::fs::read(chat_wasm)?;
    let swapped = variant(&original, &format!("swap {}", client::now_us()));
    let before = server.metrics().await.unwrap_or_default();

    let (tx, rx) = oneshot::channel();
    let base = server.base.clone();
    let fcfg = cfg.fanout.clone();
    let load = tokio::spawn(async move { fanout::run(&base, &fcfg, Some(tx)).await });
    let t0 = match rx.await {
        Ok(t0) => t0,
        Err(_) => {
            // The run failed before sending: surface its error.
            load.await??;
            bail!("the fan-out run ended before it started sending");
        }
    };
    tokio::time::sleep_until(client::at_us(t0 + (cfg.deploy_at * 1e6) as u64).into()).await;
    let deploy = act(server, "/classes/chat/versions?label=bench-swap", &swapped).await;
    tokio::time::sleep_until(client::at_us(t0 + (cfg.rollback_at * 1e6) as u64).into()).await;
    let rollback = act(server, "/classes/chat/rollback", &[]).await;
    let run = load.await??;
    let after = server.metrics().await.unwrap_or_default();
    let versions = server
        .admin_call("GET", "/classes/chat/versions", &[])
        .await
        .map(|(_, b)| serde_json::from_str::<Value>(&b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);

    let w = (cfg.window_secs * 1e6) as u64;
    let before_swap = run.window(t0, deploy.at_us);
    let after_deploy = run.window(deploy.at_us, deploy.at_us + w);
    let after_rollback = run.window(rollback.at_us, rollback.at_us + w);
    let delta = |k: &str| after.get(k).zip(before.get(k)).map(|(a, b)| a - b);
    Ok(json!({
        "fanout": run.json(),
        "deploy": deploy.json(),
        "rollback": rollback.json(),
        "current_version_after": versions.get("current").cloned().unwrap_or(Value::Null),
        "activations": delta("lodge_activations_total"),
        "event_failures": failures(&after).zip(failures(&before)).map(|(a, b)| a - b),
        "latency_before_swap": before_swap.json(),
        "latency_after_deploy": after_deploy.json(),
        "latency_after_rollback": after_rollback.json(),
        "p99_after_deploy_over_before": ratio(after_deploy.p99_ms, before_swap.p99_ms),
        "p99_after_rollback_over_before": ratio(after_rollback.p99_ms, before_swap.p99_ms),
        "window_secs": cfg.window_secs,
        "dropped_sockets": run.dropped_sockets,
        "lost": run.lost(),
        "out_of_order": run.out_of_order,
        "id_gaps": run.id_gaps,
    }))
}
