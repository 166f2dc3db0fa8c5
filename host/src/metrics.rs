//! Prometheus-style counters and histograms, lock-free (atomics), rendered as text by
//! the admin API. Small on purpose: a fixed set of series with static labels.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets in seconds, from 50 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Size buckets (e.g. batches per commit).
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the series `name{labels}` in the text exposition format.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Writes a `# HELP` / `# TYPE` header.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(5.0);
        let mut out = String::new();
        h.render(&mut out, "x", "k=\"v\"");
        assert!(out.contains("x_bucket{k=\"v\",le=\"1\"} 1"), "{out}");
        assert!(out.contains("x_bucket{k=\"v\",le=\"2\"} 2"), "{out}");
        assert!(out.contains("x_bucket{k=\"v\",le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count{k=\"v\"} 3"), "{out}");
    }
}

/// How often each bound refused something, by the config key that sets it: the one
/// series `lodge_limit_refusals_total{limit=KEY}` that the operator guide's "limits and
/// defences" table points at. Process-wide (one host per process), so any layer counts
/// without a handle.
pub mod refusals {
    use std::fmt::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Every bound counted, by its config key.
    pub const LIMITS: [&str; 24] = [
        "cpu_ms_per_event",
        "wall_ms_per_event",
        "memory_bytes",
        "storage_bytes",
        "max_key_bytes",
        "max_value_bytes",
        "max_sockets",
        "max_message_bytes",
        "max_attachment_bytes",
        "max_body_bytes",
        "max_ai_streams",
        "max_read_bytes_per_event",
        "max_write_bytes_per_event",
        "max_send_bytes_per_event",
        "min_free_bytes",
        "mailbox_capacity",
        "socket_send_queue",
        "max_open",
        "max_per_address",
        "max_wakes_per_minute",
        "allowed_origins",
        "ping_interval_ms",
        "max_upload_bytes",
        "guest_log_lines",
    ];

    static COUNTS: [AtomicU64; LIMITS.len()] = [const { AtomicU64::new(0) }; LIMITS.len()];

    /// `limit` refused something once.
    pub fn count(limit: &str) {
        match LIMITS.iter().position(|l| *l == limit) {
            Some(i) => {
                COUNTS[i].fetch_add(1, Ordering::Relaxed);
            }
            None => debug_assert!(false, "{limit} is not a counted limit"),
        }
    }

    /// How often `limit` refused something so far.
    pub fn get(limit: &str) -> u64 {
        LIMITS
            .iter()
            .position(|l| *l == limit)
            .map_or(0, |i| COUNTS[i].load(Ordering::Relaxed))
    }

    /// The series in the text exposition format.
    pub fn render(out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP lodge_limit_refusals_total Things a bound refused (a call, a request, a frame, a connection), by its config key."
        );
        let _ = writeln!(out, "# TYPE lodge_limit_refusals_total counter");
        for (limit, count) in LIMITS.iter().zip(&COUNTS) {
            let _ = writeln!(
                out,
                "lodge_limit_refusals_total{{limit=\"{limit}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}
