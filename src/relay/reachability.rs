//! Internal servers that recently could not be reached. Without this memory every delivery
//! attempt waited out `relay.connect_timeout` on a blackholed server before it tried the
//! next one, or before it deferred: a dead primary cost each message half a minute, and
//! every worker spent its time waiting. Like Postfix's dead-destination state, a server
//! that fails to connect is held back for `relay.unreachable_hold`; then one attempt
//! probes it again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Which internal servers are held back, and until when.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    held: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Reachability {
    /// The servers of `targets` to try, in the configured order: those not held back and
    /// those whose hold has run out. Trying one of the latter is a probe, so its hold is
    /// renewed for `hold` at once: other attempts meanwhile skip it instead of all waiting
    /// on the same dead address. A probe keeps its place: put last, behind a server that
    /// takes every message, it was never tried, and a primary that came back got no mail
    /// until the backup failed. Empty when every server is held back. A zero `hold`
    /// (holding switched off, perhaps by a reload) tries every server in order.
    pub(crate) fn plan(&self, targets: &[SocketAddr], hold: Duration) -> Vec<SocketAddr> {
        if hold.is_zero() {
            return targets.to_vec();
        }
        let now = Instant::now();
        let mut held = self.lock();
        let mut up = Vec::with_capacity(targets.len());
        for &server in targets {
            match held.get_mut(&server) {
                None => up.push(server),
                Some(until) if *until <= now => {
                    *until = now + hold;
                    up.push(server);
                }
                Some(_) => {}
            }
        }
        up
    }

    /// The server a plan made now would try first (a server whose hold ran out counts,
    /// as the plan would probe it), without renewing any hold: a kept connection to
    /// another one is not reused, so mail goes back to a primary that came back.
    pub(crate) fn preferred(&self, targets: &[SocketAddr], hold: Duration) -> Option<SocketAddr> {
        if hold.is_zero() {
            return targets.first().copied();
        }
        let now = Instant::now();
        let held = self.lock();
        targets
            .iter()
            .copied()
            .find(|server| held.get(server).is_none_or(|until| *until <= now))
    }

    /// `server` did not take a connection: hold it back for `hold`. A zero `hold` holds
    /// nothing back (every attempt tries every server), but the server is still failing
    /// until it takes a connection: `mxguard_relay_servers_unreachable` said 0 with every
    /// server dead.
    pub(crate) fn unreachable(&self, server: SocketAddr, hold: Duration) {
        self.lock().insert(server, Instant::now() + hold);
    }

    /// `server` took a connection; whether it was failing until now.
    pub(crate) fn reached(&self, server: SocketAddr) -> bool {
        self.lock().remove(&server).is_some()
    }

    /// How many servers that `counted` failed to connect and have not taken a connection
    /// since.
    pub(crate) fn failing(&self, counted: impl Fn(&SocketAddr) -> bool) -> usize {
        self.lock().keys().filter(|s| counted(s)).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Instant>> {
        // The map is valid after any panic (single inserts and removes), so a poisoned
        // lock is taken as it is.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn a_dead_server_is_skipped_then_probed_once() {
        let r = Reachability::default();
        let (a, b) = (addr(1), addr(2));
        let hold = Duration::from_secs(2);
        assert_eq!(r.plan(&[a, b], hold), [a, b]);
        r.unreachable(a, hold);
        assert_eq!(r.plan(&[a, b], hold), [b], "held back while others are up");
        assert_eq!(
            r.plan(&[a], hold),
            Vec::<SocketAddr>::new(),
            "nothing to try"
        );
        assert_eq!(r.failing(|_| true), 1);
        tokio::time::sleep(hold + Duration::from_millis(200)).await;
        assert_eq!(
            r.plan(&[a, b], hold),
            [a, b],
            "probed in its place once the hold is over"
        );
        assert_eq!(r.plan(&[a, b], hold), [b], "one probe at a time");
        assert_eq!(
            r.failing(|_| true),
            1,
            "failing until it takes a connection"
        );
        assert!(r.reached(a));
        assert!(!r.reached(a));
        assert_eq!(r.plan(&[a, b], hold), [a, b]);
        assert_eq!(r.failing(|_| true), 0);
    }

    #[tokio::test]
    async fn a_zero_hold_holds_nothing_back() {
        let r = Reachability::default();
        r.unreachable(addr(1), Duration::ZERO);
        assert_eq!(r.plan(&[addr(1)], Duration::ZERO), [addr(1)]);
        // Regression (review): failing all the same, for the gauge.
        assert_eq!(r.failing(|_| true), 1);
        // A hold a reload then turns on does not hold it back: its hold ran out.
        assert_eq!(r.plan(&[addr(1)], Duration::from_secs(60)), [addr(1)]);
        r.unreachable(addr(1), Duration::from_secs(60));
        assert_eq!(r.plan(&[addr(1)], Duration::ZERO), [addr(1)]);
    }
}
