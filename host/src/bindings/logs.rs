//! Guest stdout/stderr, captured into the host's logs line by line with the object's
//! class and id, so a plugin author's `println!` shows up where the operator looks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::object::ObjectRef;

/// The longest line kept; longer output is split so a guest cannot grow host memory.
const MAX_LINE: usize = 4096;

/// One of a guest's output streams.
#[derive(Clone)]
pub struct GuestLog {
    class: String,
    object: String,
    stream: &'static str,
}

impl GuestLog {
    /// The guest's stdout.
    pub fn stdout(object: &ObjectRef) -> GuestLog {
        GuestLog::new(object, "stdout")
    }

    /// The guest's stderr.
    pub fn stderr(object: &ObjectRef) -> GuestLog {
        GuestLog::new(object, "stderr")
    }

    fn new(object: &ObjectRef, stream: &'static str) -> GuestLog {
        GuestLog {
            class: object.class.to_string(),
            object: object.id.to_hex(),
            stream,
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
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\r', '\n']);
        tracing::info!(
            target: "lodge::guest",
            class = %self.log.class,
            object = %self.log.object,
            stream = self.log.stream,
            "{text}"
        );
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
