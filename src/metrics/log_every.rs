//! A log line that would repeat with every event (a refused admin client, a DNS list that
//! refuses every query) is let through at most once per interval; the metric counts every
//! event.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Whether the next line of a kind is due. Shared across tasks.
#[derive(Debug)]
pub struct LogEvery {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl LogEvery {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> LogEvery {
        LogEvery {
            interval,
            last: Mutex::new(None),
        }
    }

    /// True for the first call, then once `interval` has passed since the last true.
    pub fn due(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval() {
        let every = LogEvery::new(Duration::from_secs(60));
        assert!(every.due());
        assert!(!every.due());
        let never = LogEvery::new(Duration::ZERO);
        assert!(never.due() && never.due());
    }
}
