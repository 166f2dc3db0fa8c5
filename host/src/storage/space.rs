//! The free-space watermark: while the data directory's file system has less than
//! `[storage] min_free_bytes` free, batches that add data are refused before they reach
//! the database. A database that fills its disk fails mid-commit and must be reopened;
//! refusing early keeps it healthy, keeps deletes (which free space) working, and gives
//! clients a clear error instead of a wedged host.
//!
//! Trade-off: one `statvfs` per group commit (a microsecond or two), so the figure is never
//! stale, against a cached figure that a fast writer could outrun.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::writer::Pending;

/// The data directory's free space, as the writer last measured it.
pub(super) struct Space {
    dir: PathBuf,
    min_free: u64,
    /// When it was last measured, and why writes are refused (`None`: there is room).
    low: Mutex<(Instant, Option<String>)>,
}

/// How old a measurement may be when a guest asks; the writer measures at every commit,
/// but while writes are refused no commit may come to measure again.
const FRESH: Duration = Duration::from_millis(500);

/// The least free space with which the database is reopened after the disk filled up.
const RECOVERY_ROOM: u64 = 8 << 20;

impl Space {
    pub fn new(dir: &Path, min_free: u64) -> Space {
        let space = Space {
            dir: dir.to_owned(),
            min_free,
            low: Mutex::new((Instant::now(), None)),
        };
        space.measure();
        space
    }

    /// Why writes that add data are refused, if they are.
    pub fn low(&self) -> Option<String> {
        let (at, low) = self.low.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if low.is_some() && at.elapsed() > FRESH {
            self.measure();
            return self.low.lock().unwrap_or_else(|p| p.into_inner()).1.clone();
        }
        low
    }

    /// Measures again; returns whether space is low.
    fn measure(&self) -> bool {
        let low = match free_bytes(&self.dir) {
            Some(free) if free < self.min_free => Some(format!(
                "the host's data disk has {} free, less than its reserve of {} (`[storage] \
                 min_free_bytes`): writes that add data are refused until space is freed",
                mib(free),
                mib(self.min_free)
            )),
            _ => None,
        };
        let mut slot = self.low.lock().unwrap_or_else(|p| p.into_inner());
        match (&slot.1, &low) {
            (None, Some(why)) => tracing::error!("{why}"),
            (Some(_), None) => tracing::warn!("the data disk has room again: writes are accepted"),
            _ => {}
        }
        *slot = (Instant::now(), low);
        slot.1.is_some()
    }

    /// After the disk filled up under the database: `Ok` once it has room to reopen it
    /// and commit again (the reserve, and never less than [`RECOVERY_ROOM`]).
    pub fn room_to_recover(&self) -> Result<(), String> {
        let needed = self.min_free.max(RECOVERY_ROOM);
        match free_bytes(&self.dir) {
            Some(free) if free >= needed => Ok(()),
            free => Err(format!(
                "{} free, the database is reopened once {} are (free space on the data disk)",
                free.map_or_else(|| "unknown".into(), mib),
                mib(needed)
            )),
        }
    }

    /// Splits a group into the batches to commit and those refused because they add data
    /// while space is low.
    pub fn sort(&self, group: Vec<Pending>) -> (Vec<Pending>, Vec<Pending>) {
        if self.min_free == 0 || !self.measure() {
            return (group, Vec::new());
        }
        group.into_iter().partition(|(batch, _)| {
            batch
                .as_ref()
                .is_none_or(|b| b.writes.iter().all(|(_, v)| v.is_none()))
        })
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Bytes an unprivileged process may still write on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stat` is writable memory of the
    // right type; statvfs initialises it when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        assert_eq!(free_bytes(Path::new("/no/such/dir")), None);
    }

    #[test]
    fn a_reserve_above_the_free_space_refuses_puts_but_not_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path(), u64::MAX);
        assert!(space.low().unwrap().contains("min_free_bytes"));
        let batch = |value: Option<&str>| -> Pending {
            let b = super::super::Batch {
                object: crate::object::ObjectId([1; 16]),
                class: "c".into(),
                name: "n".into(),
                clear: false,
                writes: vec![(b"k".to_vec(), value.map(|v| v.as_bytes().to_vec()))],
                alarm: None,
                from_durable: false,
            };
            (Some(b), tokio::sync::oneshot::channel().0)
        };
        let (commit, refused) = space.sort(vec![batch(Some("v")), batch(None)]);
        assert_eq!(commit.len(), 1);
        assert_eq!(refused.len(), 1);
        let roomy = Space::new(dir.path(), 1);
        assert_eq!(roomy.low(), None);
        let (commit, refused) = roomy.sort(vec![batch(Some("v"))]);
        assert_eq!((commit.len(), refused.len()), (1, 0));
    }
}
