//! The async runtime's rule for CPU-heavy work on one message: a session's worker must not
//! spend long on it while the worker's other sessions wait.

use tokio::runtime::{Handle, RuntimeFlavor};

/// A message from this size on is heavy work to parse, to hash for DKIM, to run the rules
/// on, or to tokenize: milliseconds and more, against the hand-over's tens of microseconds.
pub const HEAVY_MESSAGE_BYTES: usize = 64 * 1024;

/// Runs `work`, synchronous CPU work on a message of `message_bytes`, where it cannot
/// stall other sessions. For a heavy message on tokio's multi-threaded runtime it runs
/// under `block_in_place`, which hands the worker's other tasks to another thread
/// meanwhile; otherwise in place: a current-thread runtime (tests, offline tools) cannot
/// hand its thread over, and light work is not worth the hand-over.
pub fn off_the_session_threads<T>(message_bytes: usize, work: impl FnOnce() -> T) -> T {
    let multi_threaded =
        || Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if message_bytes >= HEAVY_MESSAGE_BYTES && multi_threaded() {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Runs `work`, synchronous work that reads files or compiles (a reload, a policy
/// rebuild), as [`off_the_session_threads`] runs a heavy message's: on a one-worker
/// runtime (a 1-vCPU host) it held every session, the accept loop and `/healthz` for as
/// long as it took.
pub fn off_the_async_threads<T>(work: impl FnOnce() -> T) -> T {
    off_the_session_threads(HEAVY_MESSAGE_BYTES, work)
}

#[cfg(test)]
mod tests {
    use super::{off_the_session_threads, HEAVY_MESSAGE_BYTES};

    /// `block_in_place` panics on a current-thread runtime (`#[tokio::test]`'s); the work
    /// runs everywhere, with the same result.
    #[test]
    fn heavy_work_runs_on_every_runtime() {
        let work = || off_the_session_threads(HEAVY_MESSAGE_BYTES, || 6 * 7);
        assert_eq!(work(), 42);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(current.block_on(async { work() }), 42);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(multi.block_on(async { work() }), 42);
        let on_a_worker = multi.block_on(async { tokio::spawn(async move { work() }).await });
        assert_eq!(on_a_worker.unwrap(), 42);
        let on_the_blocking_pool = multi.block_on(multi.spawn_blocking(work));
        assert_eq!(on_the_blocking_pool.unwrap(), 42);
    }
}
