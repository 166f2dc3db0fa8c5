//! Which connections the public listener takes: at most `max_open` at once, at most
//! `max_per_address` from one client address, the rest answered with a short 503 and
//! closed. A connection holds its slot for as long as its socket is open, WebSocket
//! included: the slot lives in the stream wrapper ([`Admitted`]) that hyper hands to the
//! upgrade, so it is released exactly when the last owner of the socket drops it.
//!
//! Trade-off: one mutex taken twice per connection (open and close), against counters that
//! could drift if they were kept where requests are handled instead.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The caps, and who holds a slot now.
#[derive(Debug)]
pub struct Admission {
    max_open: usize,
    max_per_address: usize,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    /// Caps of `max_open` connections, and `max_per_address` per address (0: none).
    pub fn new(max_open: usize, max_per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_open,
            max_per_address,
            state: Mutex::default(),
        })
    }

    /// A slot for a connection from `address`, or why there is none.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Slot, String> {
        let mut counts = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if counts.open >= self.max_open {
            crate::metrics::refusals::count("max_open");
            return Err(format!(
                "the server has its maximum of {} connections open (`[connections] max_open`): try again later",
                self.max_open
            ));
        }
        let mine = counts.per_address.get(&address).copied().unwrap_or(0);
        if self.max_per_address > 0 && mine >= self.max_per_address {
            crate::metrics::refusals::count("max_per_address");
            return Err(format!(
                "this address has its maximum of {} connections open (`[connections] max_per_address`)",
                self.max_per_address
            ));
        }
        counts.open += 1;
        *counts.per_address.entry(address).or_insert(0) += 1;
        Ok(Slot {
            admission: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.open = counts.open.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.address);
            }
        }
    }
}

/// File descriptors kept for everything but public connections: the admin API, the
/// database, components, logs.
const FD_RESERVE: u64 = 512;

/// `wanted`, lowered if the process's file-descriptor limit (raised to its hard limit
/// first) could not hold that many connections plus [`FD_RESERVE`]: running out of
/// descriptors would take the admin API and storage down with the public listener.
pub fn within_fd_limit(wanted: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let room = limit.rlim_cur.saturating_sub(FD_RESERVE) as usize;
    if room < wanted {
        tracing::warn!(
            wanted,
            allowed = room,
            fd_limit = limit.rlim_cur,
            "`[connections] max_open` lowered to fit the file-descriptor limit (raise `ulimit -n` for more)"
        );
    }
    wanted.min(room.max(1))
}

/// A TCP stream that holds its connection's slot.
pub struct Admitted {
    tcp: TcpStream,
    _slot: Option<Slot>,
}

impl Admitted {
    pub fn new(tcp: TcpStream, slot: Option<Slot>) -> Admitted {
        Admitted { tcp, _slot: slot }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_overall_and_per_address_and_slots_free_on_drop() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let admission = Admission::new(3, 2);
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert!(admission.admit(a).unwrap_err().contains("max_per_address"));
        let _b1 = admission.admit(b).unwrap();
        assert!(admission.admit(b).unwrap_err().contains("max_open"));
        assert_eq!(admission.open(), 3);
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _b2 = admission.admit(b).unwrap();
        let unlimited = Admission::new(10, 0);
        let _many: Vec<_> = (0..10).map(|_| unlimited.admit(a).unwrap()).collect();
        assert!(unlimited.admit(a).unwrap_err().contains("max_open"));
    }
}
