//! What a listener does when `accept` fails. Out of file descriptors, every retry fails
//! until a connection closes: the listener backs off, longer while it lasts, and says so
//! once a minute; one client's connection gone before it was taken is retried at once.
//! The SMTP and the admin listeners share it, so one count covers both.

use crate::metrics::{LogEvery, Metrics};
use std::time::Duration;

/// The first pause after an accept error that is not one client's, doubled while errors
/// last up to [`BACKOFF_MOST`].
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The longest pause after accept errors.
const BACKOFF_MOST: Duration = Duration::from_secs(1);
/// At most one warning per listener in this interval; the metric counts every error.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One listener's accept errors: their back-off and their log line.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    logged: LogEvery,
    backoff: Duration,
}

impl AcceptErrors {
    /// For the listener named `listener` in its warnings (`smtp`, `admin`).
    pub fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors {
            listener,
            logged: LogEvery::new(LOG_INTERVAL),
            backoff: BACKOFF_FIRST,
        }
    }

    /// A connection was accepted: the next error starts the back-off afresh.
    pub fn accepted(&mut self) {
        self.backoff = BACKOFF_FIRST;
    }

    /// Counts `e` in `mxguard_accept_errors_total` and returns how long to wait before
    /// the next accept (`None`: at once).
    pub fn failed(&mut self, e: &std::io::Error, metrics: &Metrics) -> Option<Duration> {
        let kind = kind(e);
        metrics.accept_errors_total.with_label_values(&[kind]).inc();
        if kind == "connection" {
            return None;
        }
        let pause = self.backoff;
        if self.logged.due() {
            tracing::warn!(listener = self.listener, error = %e, kind, retry_in = ?pause, "accept failed");
        }
        self.backoff = (self.backoff * 2).min(BACKOFF_MOST);
        Some(pause)
    }
}

/// The kind of an accept error, as `mxguard_accept_errors_total` names it: `connection`
/// when only the connection being accepted is gone, `descriptors` when the process is out
/// of file descriptors or memory, `other` otherwise.
fn kind(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionAborted
        | ErrorKind::ConnectionReset
        | ErrorKind::Interrupted
        | ErrorKind::WouldBlock => return "connection",
        ErrorKind::OutOfMemory => return "descriptors",
        _ => {}
    }
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => "descriptors",
        Some(libc::EPROTO | libc::EPERM | libc::ENETDOWN | libc::EHOSTUNREACH) => "connection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn accept_errors_are_told_apart() {
        assert_eq!(kind(&Error::from_raw_os_error(libc::EMFILE)), "descriptors");
        assert_eq!(kind(&Error::from_raw_os_error(libc::ENFILE)), "descriptors");
        assert_eq!(
            kind(&Error::from(ErrorKind::ConnectionAborted)),
            "connection"
        );
        assert_eq!(kind(&Error::from_raw_os_error(libc::EPROTO)), "connection");
        assert_eq!(kind(&Error::from_raw_os_error(libc::EINVAL)), "other");
    }

    /// Regression (review): the admin listener warned every 100 ms and counted nothing
    /// while the process was out of descriptors (80 lines in 8 s, none in the metric).
    #[test]
    fn out_of_descriptors_backs_off_and_is_counted() {
        let metrics = Metrics::new();
        let mut errors = AcceptErrors::new("admin");
        let emfile = Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<_> = (0..7).map(|_| errors.failed(&emfile, &metrics)).collect();
        let ms: Vec<_> = pauses.iter().map(|p| p.map(|d| d.as_millis())).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000].map(Some).to_vec());
        let count = metrics
            .accept_errors_total
            .with_label_values(&["descriptors"])
            .get();
        assert_eq!(count, 7);
        let gone = Error::from(ErrorKind::ConnectionAborted);
        assert_eq!(errors.failed(&gone, &metrics), None);
        errors.accepted();
        assert_eq!(errors.failed(&emfile, &metrics), Some(BACKOFF_FIRST));
    }
}
