//! Latency summaries and the JSON result lines.

use serde_json::{Value, json};

/// Percentiles of a set of latencies given in microseconds, reported in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// Summarises `micros` (sorted in place).
    pub fn of(micros: &mut [u64]) -> Summary {
        if micros.is_empty() {
            return Summary::default();
        }
        micros.sort_unstable();
        let n = micros.len();
        // Nearest-rank percentile.
        let pick = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            micros[rank.clamp(1, n) - 1] as f64 / 1000.0
        };
        let sum: u128 = micros.iter().map(|&m| m as u128).sum();
        Summary {
            count: n,
            p50_ms: pick(50.0),
            p90_ms: pick(90.0),
            p99_ms: pick(99.0),
            p999_ms: pick(99.9),
            max_ms: micros[n - 1] as f64 / 1000.0,
            mean_ms: sum as f64 / n as f64 / 1000.0,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50_ms": round3(self.p50_ms),
            "p90_ms": round3(self.p90_ms),
            "p99_ms": round3(self.p99_ms),
            "p999_ms": round3(self.p999_ms),
            "max_ms": round3(self.max_ms),
            "mean_ms": round3(self.mean_ms),
        })
    }
}

/// Three decimals: enough for milliseconds and ratios, short lines.
pub fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        x
    }
}

/// `a / b`, or null when `b` is zero.
pub fn ratio(a: f64, b: f64) -> Value {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        Value::Null
    } else {
        json!(round3(a / b))
    }
}

/// Prints one result line on stdout (everything else goes to stderr).
pub fn emit(line: &Value) {
    println!("{line}");
}

/// Progress for the operator, on stderr.
#[macro_export]
macro_rules! note {
    ($($t:tt)*) => { eprintln!("[bench] {}", format!($($t)*)) };
}
