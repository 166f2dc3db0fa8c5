//! Guest stdout/stderr, captured into the host's logs line by line with the object's
//! class and id, so a plugin author's `println!` shows up where the operator looks.
//!
//! Lines are rate-limited per object (a token bucket: [`BURST`] lines, refilled at
//! [`PER_SECOND`]), so a guest printing in a loop cannot flood the host's log or its disk;
//! what is dropped is counted and reported in one line once lines flow again.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::shared::ObjectShared;

/// The longest line kept; longer output is split so a guest cannot grow host memory.
const MAX_LINE: usize = 4096;
/// Lines an object may log at once.
pub const BURST: f64 = 200.0;
/// Lines per second an object may log over time.
pub const PER_SECOND: f64 = 50.0;

/// An object's log allowance (rank `Logs` in its [`ObjectShared`]).
#[derive(Debug)]
pub struct LogBudget {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget {
            tokens: BURST,
            at: Instant::now(),
            dropped: 0,
        }
    }
}

impl LogBudget {
    /// Whether one more line may be logged now; when it may after some were dropped, also
    /// how many were.
    fn take(&mut self) -> (bool, u64) {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            (true, std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            crate::metrics::refusals::count("guest_log_lines");
            (false, 0)
        }
    }
}

/// One of a guest's output streams.
#[derive(Clone)]
pub struct GuestLog {
    object: Arc<ObjectShared>,
    stream: &'static str,
}

impl GuestLog {
    /// The guest's stdout.
    pub fn stdout(object: &Arc<ObjectShared>) -> GuestLog {
        GuestLog {
            object: object.clone(),
            stream: "stdout",
        }
    }

    /// The guest's stderr.
    pub fn stderr(object: &Arc<ObjectShared>) -> GuestLog {
        GuestLog {
            object: object.clone(),
            stream: "stderr",
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let (allowed, dropped) = self.log.object.log_budget().take();
        let object = &self.log.object.object;
        if dropped > 0 {
            tracing::warn!(
                target: "lodge::guest",
                class = %object.class,
                object = %object.id,
                dropped,
                "guest log lines dropped: over {PER_SECOND} lines/s (burst {BURST})"
            );
        }
        if allowed {
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches(['\r', '\n']);
            tracing::info!(
                target: "lodge::guest",
                class = %object.class,
                object = %object.id,
                stream = self.log.stream,
                "{text}"
            );
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &b in buf {
            self.line.push(b);
            if b == b'\n' || self.line.len() >= MAX_LINE {
                self.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
    }
}
