//! Whether the spool can take mail: a probe write and the file system's free space, asked
//! by `/healthz` and by the tier's heartbeat.
//!
//! The probe blocks (a write, `statvfs`) and runs on tokio's blocking pool. On a file
//! system that hangs (NFS whose server is gone) it never returns, and a thread started per
//! load-balancer probe or heartbeat would stay stuck each time until the pool (512
//! threads) was full and every other blocking task of the gateway queued behind them. So
//! at most one probe runs per spool: a caller that finds one running waits for its answer
//! instead of starting another, and each caller waits at most its own limit.

use super::Spool;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long `/healthz` waits for the probe: a hung file system must not keep a health
/// check, and its connection slot, busy. (The tier's heartbeat waits longer.)
pub const CAPACITY_PROBE_LIMIT: Duration = Duration::from_secs(2);

/// What [`Spool::capacity_within`] found. `/healthz` answers 503 and a tier member stops
/// announcing itself unless it is `Room`: soon every message would get 452, and senders
/// should go to another MX without a backup scoring them as bypassers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Writable, with room to spare.
    Room {
        /// Bytes left; `None` when the file system cannot tell.
        free: Option<u64>,
    },
    /// A probe write failed, or the probe did not answer in time.
    NotWritable,
    /// Writable, but under `spool.min_free_bytes`.
    Low {
        /// Bytes left.
        free: u64,
    },
}

/// What one probe found, before any caller's `min_free` is applied (callers sharing a
/// probe may hold different configurations during a reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    writable: bool,
    free: Option<u64>,
}

impl Found {
    fn against(self, min_free: u64) -> Capacity {
        match self.free {
            _ if !self.writable => Capacity::NotWritable,
            Some(free) if free < min_free => Capacity::Low { free },
            free => Capacity::Room { free },
        }
    }
}

/// How old the free space [`Spool::short_of_space`] reads may be before it starts a new
/// probe.
const FREE_SPACE_MAX_AGE: Duration = Duration::from_secs(1);

/// The free space the last probe measured, and when a probe was last started for it.
#[derive(Debug, Default)]
pub(super) struct LastFree(Mutex<LastFreeState>);

#[derive(Debug, Default)]
struct LastFreeState {
    free: Option<u64>,
    asked: Option<Instant>,
}

impl LastFree {
    fn lock(&self) -> MutexGuard<'_, LastFreeState> {
        // Two plain fields, each written whole: a panic elsewhere cannot leave them torn.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The probe running now, if any: its answer arrives on the channel.
#[derive(Debug, Default)]
pub(super) struct InFlight(Mutex<Option<watch::Receiver<Option<Found>>>>);

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Option<watch::Receiver<Option<Found>>>> {
        // Only set and taken whole: a panic elsewhere cannot leave it half-done.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Spool {
    /// Whether the spool can write a file now (a probe file in `tmp/`). Blocking.
    fn writable(&self) -> bool {
        let probe = self.tmp.join(".probe");
        let ok = fs::write(&probe, b"ok").is_ok();
        let _ = fs::remove_file(&probe);
        ok
    }

    /// Whether the spool can take mail now, against `min_free` bytes
    /// (`spool.min_free_bytes`): `NotWritable` when the probe did not answer within
    /// `limit`. At most one probe runs at a time (see the module's comment).
    pub async fn capacity_within(self: &Arc<Self>, min_free: u64, limit: Duration) -> Capacity {
        let mut answer = self.probe_answer();
        let waited = tokio::time::timeout(limit, answer.wait_for(Option::is_some))
            .await
            .map(|found| found.map(|f| *f));
        match waited {
            Ok(Ok(found)) => found.map_or(Capacity::NotWritable, |f| f.against(min_free)),
            Ok(Err(_)) => {
                // The probe ended without an answer (it panicked, or the runtime is
                // shutting down): forget it, so the next caller starts another.
                let mut in_flight = self.capacity_probe.lock();
                if in_flight.as_ref().is_some_and(|r| r.same_channel(&answer)) {
                    *in_flight = None;
                }
                Capacity::NotWritable
            }
            Err(_) => {
                tracing::warn!("the spool's capacity probe took longer than {limit:?}");
                Capacity::NotWritable
            }
        }
    }

    /// Whether the spool lacks room for a message of `bytes` while keeping `min_free`
    /// bytes (`spool.min_free_bytes`; 0: never), by the free space last measured: a probe
    /// is started in the background once that is a second old, and until one has measured
    /// (or where the file system cannot tell) there is room. For SMTP sessions, which must
    /// not wait on the file system. Must be called within a Tokio runtime.
    pub fn short_of_space(self: &Arc<Self>, min_free: u64, bytes: u64) -> bool {
        if min_free == 0 {
            return false;
        }
        let (free, due) = {
            let mut last = self.last_free.lock();
            let now = Instant::now();
            let due = last
                .asked
                .is_none_or(|at| now.duration_since(at) >= FREE_SPACE_MAX_AGE);
            if due {
                last.asked = Some(now);
            }
            (last.free, due)
        };
        if due {
            drop(self.probe_answer());
        }
        free.is_some_and(|free| free < min_free.saturating_add(bytes))
    }

    /// The answer of the probe running now, or of one started for this call.
    fn probe_answer(self: &Arc<Self>) -> watch::Receiver<Option<Found>> {
        let mut in_flight = self.capacity_probe.lock();
        if let Some(running) = in_flight.as_ref() {
            return running.clone();
        }
        let (tx, rx) = watch::channel(None);
        *in_flight = Some(rx.clone());
        drop(in_flight);
        let spool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let found = Found {
                writable: spool.writable(),
                free: free_bytes(&spool.dir),
            };
            spool.last_free.lock().free = found.free;
            // Cleared before the answer is sent, so a caller that sees the answer and asks
            // again gets a new probe, not this one; and the spool let go of first, so no
            // spool outlives the last of its callers' handles because of a probe.
            *spool.capacity_probe.lock() = None;
            drop(spool);
            let _ = tx.send(Some(found));
        });
        rx
    }
}

/// Bytes an unprivileged writer can still use on the file system holding `dir` (what the
/// spool has left before writes fail); `None` when the file system cannot tell.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer for statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // Both fields are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_read_against_each_callers_minimum() {
        let found = Found {
            writable: true,
            free: Some(1000),
        };
        assert_eq!(found.against(10), Capacity::Room { free: Some(1000) });
        assert_eq!(found.against(5000), Capacity::Low { free: 1000 });
        let unknown = Found {
            writable: true,
            free: None,
        };
        assert_eq!(unknown.against(5000), Capacity::Room { free: None });
        let broken = Found {
            writable: false,
            free: Some(1000),
        };
        assert_eq!(broken.against(0), Capacity::NotWritable);
    }

    #[tokio::test]
    async fn a_writable_spool_has_room() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _ready) = Spool::open(dir.path()).unwrap();
        let spool = Arc::new(spool);
        let capacity = spool.capacity_within(0, Duration::from_secs(10)).await;
        assert!(matches!(capacity, Capacity::Room { .. }), "{capacity:?}");
        let capacity = spool
            .capacity_within(u64::MAX, Duration::from_secs(10))
            .await;
        assert!(matches!(capacity, Capacity::Low { .. }), "{capacity:?}");
    }

    /// Regression (review): every `/healthz` request and every heartbeat started a probe
    /// of its own on the blocking pool, so on a hung file system each left one more thread
    /// stuck until the pool was full. Callers meeting a probe that has not answered share
    /// it: however many ask, one probe runs.
    #[tokio::test]
    async fn callers_share_the_probe_that_is_running() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _ready) = Spool::open(dir.path()).unwrap();
        let spool = Arc::new(spool);
        // A probe that never answers: its sender is held here, as a stuck thread holds it.
        let (stuck, answer) = watch::channel(None);
        *spool.capacity_probe.lock() = Some(answer);
        for _ in 0..3 {
            let capacity = spool.capacity_within(0, Duration::from_millis(50)).await;
            assert_eq!(capacity, Capacity::NotWritable);
        }
        assert_eq!(
            stuck.receiver_count(),
            1,
            "no caller started a probe of its own"
        );
        // Once it answers, the waiting ones read it and the next caller probes anew.
        let waiting = {
            let spool = Arc::clone(&spool);
            tokio::spawn(async move { spool.capacity_within(0, Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        stuck
            .send(Some(Found {
                writable: true,
                free: Some(7),
            }))
            .unwrap();
        assert_eq!(waiting.await.unwrap(), Capacity::Room { free: Some(7) });
        *spool.capacity_probe.lock() = None;
        let capacity = spool.capacity_within(0, Duration::from_secs(10)).await;
        assert!(matches!(capacity, Capacity::Room { .. }), "{capacity:?}");
    }
}
