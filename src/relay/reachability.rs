//! Internal servers that recently could not be reached. Without this memory every delivery
//! attempt waited out `relay.connect_timeout` on a blackholed server before it tried the
//! next one, or before it deferred: a dead primary cost each message half a minute, and
//! every worker spent its time waiting. Like Postfix's dead-destination state, a server
//! that fails to connect is held back for `relay.unreachable_hold`; then one attempt
//! probes it again, and the attempts that find it held back meanwhile wait for that
//! probe's outcome instead of deferring.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Which internal servers are held back, and until when.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    held: Mutex<HashMap<SocketAddr, Held>>,
    /// Woken when a probe ends, whatever its outcome.
    probe_ends: tokio::sync::Notify,
}

/// See [`Reachability::connecting`].
pub(crate) struct Connecting<'a> {
    reachability: &'a Reachability,
    server: SocketAddr,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.reachability.probe_ended(self.server);
    }
}

/// One server that failed to take a connection and has not taken one since.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Skipped until then; after that, the next attempt to come to it probes it.
    until: Instant,
    /// Counted by `mxguard_relay_servers_unreachable`: not since a delivery went to a
    /// server before it after its hold ran out, which says nothing about it now.
    counted: bool,
    /// An attempt took the turn to probe it ([`Reachability::probe`]) and has not yet
    /// connected or failed to.
    probing: bool,
}

impl Reachability {
    /// The servers of `targets` to try, in the configured order: those not held back and
    /// those whose hold has run out. No hold is renewed here: an attempt takes the turn
    /// to probe a server only as it comes to connect to it ([`Reachability::probe`]).
    /// Renewed at planning, the hold of a backup behind a primary that took every
    /// message was renewed for good without a probe, and the backup was skipped when
    /// the primary failed (review). A probe keeps its place: put last, behind a server
    /// that takes every message, it was never tried, and a primary that came back got no
    /// mail until the backup failed. Empty when every server is held back. A zero `hold`
    /// (holding switched off, perhaps by a reload) tries every server in order.
    pub(crate) fn plan(&self, targets: &[SocketAddr], hold: Duration) -> Vec<SocketAddr> {
        if hold.is_zero() {
            return targets.to_vec();
        }
        let now = Instant::now();
        let held = self.lock();
        targets
            .iter()
            .copied()
            .filter(|server| held.get(server).is_none_or(|h| h.until <= now))
            .collect()
    }

    /// Whether to connect to `server` now, asked just before: yes unless it is held back.
    /// Connecting to a server whose hold ran out probes it, and one attempt at a time
    /// does: its hold is renewed for `hold` at once, so that other attempts meanwhile skip
    /// it instead of all waiting on the same dead address (the hold ends when the server
    /// takes the connection).
    pub(crate) fn probe(&self, server: SocketAddr, hold: Duration) -> bool {
        if hold.is_zero() {
            return true;
        }
        let now = Instant::now();
        match self.lock().get_mut(&server) {
            None => true,
            Some(h) if h.until <= now => {
                h.until = now + hold;
                h.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    /// A connection to `server` is being opened: when the returned guard is dropped (after
    /// [`Reachability::reached`] or [`Reachability::unreachable`], or with the attempt cut
    /// short by a panic), a probe of it is over ([`Reachability::probe_ended`]). Without
    /// the guard, a probe cut short stayed under way, and its waiters waited it out.
    pub(crate) fn connecting(&self, server: SocketAddr) -> Connecting<'_> {
        Connecting {
            reachability: self,
            server,
        }
    }

    /// The connection to `server` was made or failed: a probe of it, if it was one, is
    /// over. Told after [`Reachability::reached`] or [`Reachability::unreachable`], so the
    /// attempts that wake see the outcome. Told of every connection, probe or not, and
    /// waking every waiter: a waiter looks again whether its probe is still under way.
    pub(crate) fn probe_ended(&self, server: SocketAddr) {
        if let Some(h) = self.lock().get_mut(&server) {
            h.probing = false;
        }
        self.probe_ends.notify_waiters();
    }

    /// When a server of `targets` is held back by a probe another attempt is making: a
    /// future that ends when a connection's opening ends (that probe's or any other), and
    /// the longest to wait for it (the end of the probe's hold, when a probe that never
    /// ended is given up on).
    pub(crate) fn probe_under_way(
        &self,
        targets: &[SocketAddr],
    ) -> Option<(tokio::sync::futures::Notified<'_>, Duration)> {
        // Made before the look, so a probe that ends right after it still wakes it.
        let ends = self.probe_ends.notified();
        let now = Instant::now();
        let held = self.lock();
        let longest = targets
            .iter()
            .filter_map(|server| held.get(server))
            .filter(|h| h.probing && h.until > now)
            .map(|h| h.until - now)
            .max()?;
        Some((ends, longest))
    }

    /// A delivery went to a server placed before each of `after`: those whose hold ran
    /// out were not needed, and nothing says they are down now, so they are no longer
    /// counted as failing (review: a backup that failed once was counted for as long as
    /// the primary took the mail). They stay known, for the next attempt to come to one
    /// to probe it alone. Whether the count changed.
    pub(crate) fn passed_over(&self, after: &[SocketAddr]) -> bool {
        let now = Instant::now();
        let mut changed = false;
        for (server, h) in self.lock().iter_mut() {
            if h.counted && h.until <= now && after.contains(server) {
                h.counted = false;
                changed = true;
            }
        }
        changed
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
            .find(|server| held.get(server).is_none_or(|h| h.until <= now))
    }

    /// How long until the first of `targets` that is held back may be tried again; `None`
    /// when none is.
    pub(crate) fn next_release(&self, targets: &[SocketAddr]) -> Option<Duration> {
        let now = Instant::now();
        let held = self.lock();
        targets
            .iter()
            .filter_map(|server| held.get(server))
            .map(|h| h.until.saturating_duration_since(now))
            .min()
    }

    /// `server` did not take a connection: hold it back for `hold`. A zero `hold` holds
    /// nothing back (every attempt tries every server), but the server is still failing
    /// until it takes a connection: `mxguard_relay_servers_unreachable` said 0 with every
    /// server dead.
    pub(crate) fn unreachable(&self, server: SocketAddr, hold: Duration) {
        let until = Instant::now() + hold;
        self.lock().insert(
            server,
            Held {
                until,
                counted: true,
                probing: false,
            },
        );
    }

    /// `server` took a connection; whether it was counted as failing until now.
    pub(crate) fn reached(&self, server: SocketAddr) -> bool {
        self.lock().remove(&server).is_some_and(|h| h.counted)
    }

    /// How many servers that `counted` failed to connect and have not taken a connection
    /// since (less those passed over once their hold ran out).
    pub(crate) fn failing(&self, counted: impl Fn(&SocketAddr) -> bool) -> usize {
        self.lock()
            .iter()
            .filter(|(s, h)| h.counted && counted(s))
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Held>> {
        // The map is valid after any panic (single inserts, updates and removes), so a
        // poisoned lock is taken as it is.
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
    async fn a_probe_under_way_wakes_its_waiters_when_it_ends() {
        let r = Reachability::default();
        let (a, b) = (addr(1), addr(2));
        let hold = Duration::from_millis(300);
        assert!(r.probe_under_way(&[a]).is_none(), "nothing held back");
        r.unreachable(a, hold);
        assert!(r.probe_under_way(&[a]).is_none(), "held back, not probed");
        tokio::time::sleep(hold + Duration::from_millis(50)).await;
        assert!(r.probe(a, hold));
        let (ends, longest) = r.probe_under_way(&[a, b]).expect("a probe under way");
        assert!(longest <= hold, "{longest:?}");
        assert!(r.probe_under_way(&[b]).is_none(), "none of these");
        assert!(r.reached(a));
        r.probe_ended(a);
        // Woken at once, not at the end of the hold.
        tokio::time::timeout(Duration::from_millis(100), ends)
            .await
            .expect("woken by the probe's end");
        assert!(r.probe_under_way(&[a]).is_none());

        // A probe that fails leaves the server held back, and no probe under way.
        r.unreachable(a, hold);
        tokio::time::sleep(hold + Duration::from_millis(50)).await;
        assert!(r.probe(a, hold));
        r.unreachable(a, hold);
        r.probe_ended(a);
        assert!(r.probe_under_way(&[a]).is_none());
        assert!(r.plan(&[a], hold).is_empty());
    }

    /// A probe cut short (its attempt's future dropped mid-connection, as a panic unwinds
    /// it) ends with its guard: no waiter waits it out.
    #[tokio::test]
    async fn a_probe_cut_short_is_over() {
        let r = Reachability::default();
        let a = addr(1);
        let hold = Duration::from_millis(100);
        r.unreachable(a, hold);
        tokio::time::sleep(hold + Duration::from_millis(50)).await;
        assert!(r.probe(a, Duration::from_secs(60)));
        let cut_short = async {
            let _probe = r.connecting(a);
            std::future::pending::<()>().await;
        };
        assert!(tokio::time::timeout(Duration::from_millis(10), cut_short)
            .await
            .is_err());
        assert!(r.probe_under_way(&[a]).is_none());
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
        assert_eq!(r.plan(&[a, b], hold), [a, b], "planning probes nothing");
        assert!(r.probe(b, hold), "a server never held back");
        assert!(
            r.probe(a, hold),
            "the first attempt to come to it probes it"
        );
        assert!(!r.probe(a, hold), "one probe at a time");
        assert_eq!(r.plan(&[a, b], hold), [b]);
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

    /// Regression (review of the relay): planning renewed the hold of every server whose
    /// hold ran out, so a backup behind a primary that took every message was held back
    /// for good, never probed, and counted unreachable all along.
    #[tokio::test]
    async fn a_server_passed_over_after_its_hold_is_neither_held_nor_counted() {
        let r = Reachability::default();
        let (primary, backup) = (addr(1), addr(2));
        let hold = Duration::from_millis(300);
        r.unreachable(backup, hold);
        assert!(!r.passed_over(&[backup]), "still held back: still counted");
        assert_eq!(r.failing(|_| true), 1);
        tokio::time::sleep(hold + Duration::from_millis(100)).await;
        for _ in 0..3 {
            assert_eq!(r.plan(&[primary, backup], hold), [primary, backup]);
        }
        assert!(r.passed_over(&[backup]));
        assert!(!r.passed_over(&[backup]));
        assert_eq!(r.failing(|_| true), 0);
        assert!(!r.reached(backup), "reaching it changes no count");
        // Not counted, but still probed by one attempt at a time.
        r.unreachable(backup, hold);
        tokio::time::sleep(hold + Duration::from_millis(100)).await;
        assert!(r.passed_over(&[backup]));
        assert!(r.probe(backup, hold));
        assert!(!r.probe(backup, hold));
        assert_eq!(r.plan(&[primary, backup], hold), [primary]);
    }
}
