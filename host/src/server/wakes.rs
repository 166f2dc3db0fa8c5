//! How many objects one client address may wake (activate: not live when its request or
//! upgrade arrived) per minute, `[connections] max_wakes_per_minute`. Every fresh object
//! name a client uses is a new object that can store data; this makes filling the disk
//! through fresh names slow and visible (429s, `lodge_limit_refusals_total`) without
//! touching clients of objects that are already live.
//!
//! Trade-off: fixed one-minute windows per address (a burst of twice the limit across a
//! window's edge is possible) in one map under a mutex, pruned when it grows large,
//! against a sliding window's bookkeeping per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// Addresses remembered before old windows are pruned.
const PRUNE_ABOVE: usize = 100_000;

/// The limit and each address's current window.
#[derive(Debug)]
pub struct WakeLimit {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl WakeLimit {
    /// `per_minute` wakes per address (0: no limit, and no bookkeeping).
    pub fn new(per_minute: u32) -> Option<WakeLimit> {
        (per_minute > 0).then(|| WakeLimit {
            per_minute,
            windows: Mutex::default(),
        })
    }

    /// Counts one wake for `address` at `now`; `Err(why)` when it would pass the limit.
    pub fn charge(&self, address: IpAddr, now: Instant) -> Result<(), String> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(address).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_minute {
            let wait = WINDOW.saturating_sub(now.duration_since(*start)).as_secs() + 1;
            return Err(format!(
                "this address woke {} objects in the last minute, the limit \
                 (`[connections] max_wakes_per_minute`): retry in {wait} s, or use objects \
                 that are already live",
                self.per_minute
            ));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_window() {
        let limit = WakeLimit::new(2).unwrap();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(limit.charge(a, t0).is_ok());
        assert!(limit.charge(a, t0).is_ok());
        let refused = limit.charge(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert!(refused.contains("max_wakes_per_minute"), "{refused}");
        assert!(refused.contains("retry in 51 s"), "{refused}");
        assert!(
            limit.charge(b, t0).is_ok(),
            "another address is not charged"
        );
        assert!(limit.charge(a, t0 + WINDOW).is_ok(), "a new window");
        assert!(WakeLimit::new(0).is_none());
    }
}
