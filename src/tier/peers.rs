//! The live view of the other tier members: up or down, their policy fingerprint, when
//! they were last seen. Updated from heartbeats (or probes); a change is logged once and
//! exported (`mxguard_tier_peer_up`, `mxguard_tier_fingerprint_match`).

use crate::config::{PeerConfig, Role};
use crate::metrics::Metrics;
use std::time::SystemTime;

/// One peer as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether it answers (a fresh heartbeat or a healthy `/healthz`).
    pub up: bool,
    /// Its policy fingerprint, when known.
    pub fingerprint: Option<String>,
    /// Whether that fingerprint equals ours (unknown counts as not matching).
    pub fingerprint_match: bool,
    /// When it was last seen up.
    pub last_seen: Option<SystemTime>,
    /// How it was seen: `heartbeat`, `probe` or `none`.
    pub source: &'static str,
    /// At least one round looked at it (its first state is logged too).
    pub observed: bool,
    /// The fingerprint (or `unknown`) last logged as differing from ours, until it matches
    /// again: each mismatch is logged once, whenever the peer first shows it.
    pub mismatch_logged: Option<String>,
    /// Unix time a client (not a peer, not our own networks) last reached it, or its
    /// start when none has since, from its heartbeat, on this member's clock (see
    /// `Heartbeat::on_our_clock`); `None` when it did not say (a probe, a member of an
    /// older version).
    pub reached_at: Option<u64>,
    /// Unix time it last turned a client away for lack of session room, from its
    /// heartbeat, on this member's clock.
    pub full_at: Option<u64>,
    /// Its heartbeat announces the backup role (whatever this gateway's configuration says).
    pub announced_backup: bool,
}

impl PeerStatus {
    /// A peer not seen yet.
    pub fn unknown(peer: &PeerConfig) -> PeerStatus {
        PeerStatus {
            name: peer.name.clone(),
            role: peer.role,
            up: false,
            fingerprint: None,
            fingerprint_match: false,
            last_seen: None,
            source: "none",
            observed: false,
            mismatch_logged: None,
            reached_at: None,
            full_at: None,
            announced_backup: false,
        }
    }
}

/// What was observed of one peer in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// It answered.
    pub up: bool,
    /// Its fingerprint, when it said.
    pub fingerprint: Option<String>,
    /// `heartbeat`, `probe` or `none`.
    pub source: &'static str,
    /// When a client last reached it, as its heartbeat says (see [`PeerStatus::reached_at`]).
    pub reached_at: Option<u64>,
    /// When it last turned a client away for lack of session room, as its heartbeat says.
    pub full_at: Option<u64>,
    /// Its heartbeat announces the backup role.
    pub announced_backup: bool,
}

/// Applies one round's observation to `status`, logging and exporting what changed.
pub fn apply(
    status: &mut PeerStatus,
    seen: Observation,
    ours: &str,
    now: SystemTime,
    metrics: &Metrics,
) {
    let was_up = status.up;
    status.up = seen.up;
    status.source = seen.source;
    status.reached_at = seen.reached_at;
    status.full_at = seen.full_at;
    status.announced_backup = seen.announced_backup;
    if seen.up {
        status.last_seen = Some(now);
    }
    // A peer that answers without showing its policy this round (a bad heartbeat, a
    // `/policy` that timed out) may have reloaded another one: its match is unknown, not
    // the last round's. The last fingerprint stays for display.
    let shown = seen.fingerprint.is_some();
    if shown {
        status.fingerprint = seen.fingerprint;
    }
    status.fingerprint_match = (shown || !seen.up) && status.fingerprint.as_deref() == Some(ours);
    let first = !status.observed;
    status.observed = true;
    if status.up {
        log_fingerprint_change(status, ours);
    }
    let peer = status.name.as_str();
    if first || was_up != status.up {
        if status.up {
            tracing::info!(
                peer,
                role = status.role.as_str(),
                via = status.source,
                "tier peer is up"
            );
        } else {
            tracing::warn!(peer, role = status.role.as_str(), "tier peer is down");
        }
    }
    metrics
        .tier_peer_up
        .with_label_values(&[peer])
        .set(i64::from(status.up));
    metrics
        .tier_fingerprint_match
        .with_label_values(&[peer])
        .set(i64::from(status.fingerprint_match));
}

/// Logs a peer that is up with a fingerprint other than ours, once per fingerprint it
/// shows (whether it differed at our first look or came up differing later), and the
/// moment it matches again.
fn log_fingerprint_change(status: &mut PeerStatus, ours: &str) {
    if status.fingerprint_match {
        if status.mismatch_logged.take().is_some() {
            tracing::info!(
                peer = status.name,
                "tier peer runs our policy fingerprint again"
            );
        }
        return;
    }
    if status.fingerprint.as_deref() == Some(ours) {
        // Not shown this round: unknown, which is no mismatch to report.
        return;
    }
    let peer = status.name.as_str();
    let theirs = status.fingerprint.as_deref().unwrap_or("unknown");
    if status.mismatch_logged.as_deref() != Some(theirs) {
        tracing::error!(
            peer,
            theirs,
            ours,
            "tier peer runs a different policy fingerprint"
        );
        status.mismatch_logged = Some(theirs.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerStatus {
        PeerStatus::unknown(&PeerConfig {
            name: "gw2".into(),
            smtp: "127.0.0.1:25".parse().unwrap(),
            admin: None,
            role: Role::Primary,
        })
    }

    #[test]
    fn observations_move_up_down_and_fingerprint_match() {
        let m = Metrics::new();
        let mut p = peer();
        let now = SystemTime::now();
        apply(
            &mut p,
            Observation {
                up: true,
                fingerprint: Some("aa".into()),
                source: "heartbeat",
                reached_at: None,
                full_at: None,
                announced_backup: false,
            },
            "aa",
            now,
            &m,
        );
        assert!(p.up && p.fingerprint_match);
        assert_eq!(m.tier_peer_up.with_label_values(&["gw2"]).get(), 1);
        apply(
            &mut p,
            Observation {
                up: true,
                fingerprint: Some("bb".into()),
                source: "probe",
                reached_at: None,
                full_at: None,
                announced_backup: false,
            },
            "aa",
            now,
            &m,
        );
        assert!(!p.fingerprint_match);
        assert_eq!(
            m.tier_fingerprint_match.with_label_values(&["gw2"]).get(),
            0
        );
        apply(
            &mut p,
            Observation {
                up: false,
                fingerprint: None,
                source: "none",
                reached_at: None,
                full_at: None,
                announced_backup: false,
            },
            "aa",
            now,
            &m,
        );
        assert!(!p.up);
        assert_eq!(
            p.fingerprint.as_deref(),
            Some("bb"),
            "the last known fingerprint stays"
        );
        assert_eq!(m.tier_peer_up.with_label_values(&["gw2"]).get(), 0);
    }

    /// Regression (review): a peer down at our first look that came up with another
    /// fingerprint (a rolling start) was never logged: the match flag went from false to
    /// false. The mismatch is logged once per fingerprint shown, and its end too.
    #[test]
    fn a_peer_that_comes_up_with_another_fingerprint_is_logged_once() {
        let m = Metrics::new();
        let mut p = peer();
        let now = SystemTime::now();
        let seen = |up: bool, fingerprint: Option<&str>| Observation {
            up,
            fingerprint: fingerprint.map(str::to_owned),
            source: if up { "heartbeat" } else { "none" },
            reached_at: None,
            full_at: None,
            announced_backup: false,
        };
        apply(&mut p, seen(false, None), "aa", now, &m);
        assert_eq!(
            p.mismatch_logged, None,
            "a peer that is down is not compared"
        );
        apply(&mut p, seen(true, Some("bb")), "aa", now, &m);
        assert_eq!(
            p.mismatch_logged.as_deref(),
            Some("bb"),
            "coming up with bb not logged"
        );
        apply(&mut p, seen(true, Some("cc")), "aa", now, &m);
        assert_eq!(
            p.mismatch_logged.as_deref(),
            Some("cc"),
            "a new mismatch not logged"
        );
        apply(&mut p, seen(true, Some("aa")), "aa", now, &m);
        assert_eq!(p.mismatch_logged, None, "the match again not logged");
    }

    /// Regression (review): a round in which an up peer showed no fingerprint kept the
    /// last round's match, so a peer that had reloaded another policy and whose `/policy`
    /// then timed out still counted as matching.
    #[test]
    fn an_up_peer_that_shows_no_fingerprint_does_not_count_as_matching() {
        let m = Metrics::new();
        let mut p = peer();
        let now = SystemTime::now();
        let seen = |fingerprint: Option<&str>| Observation {
            up: true,
            fingerprint: fingerprint.map(str::to_owned),
            source: "probe",
            reached_at: None,
            full_at: None,
            announced_backup: false,
        };
        apply(&mut p, seen(Some("aa")), "aa", now, &m);
        assert!(p.fingerprint_match);
        apply(&mut p, seen(None), "aa", now, &m);
        assert!(!p.fingerprint_match);
        assert_eq!(
            m.tier_fingerprint_match.with_label_values(&["gw2"]).get(),
            0
        );
        assert_eq!(p.fingerprint.as_deref(), Some("aa"), "kept for display");
        apply(&mut p, seen(Some("aa")), "aa", now, &m);
        assert!(p.fingerprint_match);
    }
}
