//! The MX bypass defences at connect. A client talking to a backup while a primary is up
//! gets `MX_BYPASS_BACKUP` (or, with `tier.bypass_action = "tempfail"`, `451 4.7.1` at
//! every RCPT); the tier's connection memory in the state backend adds
//! `MX_BYPASS_FIRST_CONTACT` when a backup is the first member the client reached within
//! `connection_memory`, and `MX_FANOUT` when it reached three or more members, a backup
//! among them, within `fanout_window`. When every primary is down the backup is doing its job: no bypass
//! symbol. Tier peers are recognised and never scored.

use crate::config::{BypassAction, OnFailure, Role};
use crate::mail::Reply;
use crate::metrics::Metrics;
use crate::policy::{Check, Context, Decision, Stage};
use crate::state::State;
use crate::tier::Tier;
use async_trait::async_trait;
use std::sync::Arc;

/// Members reached within the fan-out window from which a client scores `MX_FANOUT`.
const FANOUT_MEMBERS: usize = 3;

/// Members a client must reach within the fan-out window to score `MX_FANOUT`: at least
/// [`FANOUT_MEMBERS`], and more than the tier has primaries, so that a backup is among
/// them. A busy sender spreads its sessions over the equal-preference primaries, as RFC
/// 5321 §5.1 asks; only reaching a backup as well is a fan-out.
fn fanout_members(config: &crate::config::TierConfig) -> usize {
    FANOUT_MEMBERS.max(config.primaries() + 1)
}

/// Contacts of clients turned away by a connection limit written at once: a flood of
/// refused connections must not become a flood of state writes.
const TURNED_AWAY_WRITES: usize = 8;

/// The connect-stage tier check.
#[derive(Debug, Clone)]
pub struct TierContact {
    tier: Arc<Tier>,
    state: Option<State>,
    metrics: Option<Arc<Metrics>>,
    turned_away_writes: Arc<tokio::sync::Semaphore>,
}

impl TierContact {
    /// The check for `tier`, with the tier's connection memory in `state`.
    pub fn new(
        tier: Arc<Tier>,
        state: Option<State>,
        metrics: Option<Arc<Metrics>>,
    ) -> TierContact {
        TierContact {
            tier,
            state,
            metrics,
            turned_away_writes: Arc::new(tokio::sync::Semaphore::new(TURNED_AWAY_WRITES)),
        }
    }

    /// Remembers a client the listener turned away with a connection limit's `421`: it
    /// reached this member, and when it falls back to a backup, as RFC 5321 asks, that is
    /// no first contact (`MX_BYPASS_FIRST_CONTACT`). Skipped while
    /// [`TURNED_AWAY_WRITES`] such writes are under way.
    pub async fn remember_turned_away(&self, ip: std::net::IpAddr) {
        if self.tier.peer_at(ip).is_some() {
            return;
        }
        self.tier.note_turned_away(ip);
        let Some(state) = &self.state else { return };
        // Turned away, but it reached us: this member is reachable from outside.
        self.tier.note_client(ip);
        let Ok(_turn) = self.turned_away_writes.try_acquire() else {
            return;
        };
        let _ = record_contact(state, &self.tier.config(), ip).await;
    }

    /// This member turned a client away for lack of session room.
    pub fn note_sessions_full(&self) {
        self.tier.note_sessions_full();
    }

    fn hit(&self, ctx: &mut Context, symbol: &str) {
        ctx.hit(symbol, 0.0);
        if let Some(m) = &self.metrics {
            m.tier_bypass_total.with_label_values(&[symbol]).inc();
        }
    }
}

#[async_trait]
impl Check for TierContact {
    fn name(&self) -> &'static str {
        "tier"
    }

    fn stage(&self) -> Stage {
        Stage::Connect
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        if let Some(peer) = self.tier.peer_at(ctx.client.ip) {
            ctx.client.tier_peer = Some(peer);
            return Decision::Continue;
        }
        if ctx.client.trusted || ctx.client.allowlisted {
            // Our own networks are neither bypassers nor worth remembering.
            return Decision::Continue;
        }
        // A client from outside reached us: the heartbeat says so to the backups.
        self.tier.note_client(ctx.client.ip);
        let config = self.tier.config();
        let bypass = config.role == Role::Backup && self.tier.primaries_up();
        if bypass {
            ctx.client.mx_bypass = true;
            self.hit(ctx, "MX_BYPASS_BACKUP");
        }
        let Some(state) = &self.state else {
            return Decision::Continue;
        };
        match record_contact(state, &config, ctx.client.ip).await {
            Ok(seen) => {
                if bypass && seen.first_contact {
                    self.hit(ctx, "MX_BYPASS_FIRST_CONTACT");
                }
                // At a backup only while a primary is up: with every primary down (or
                // refusing for a full spool) a real MTA going through the MX list after
                // their 4xx reaches the backup too, which then scored it (review). At a
                // primary, not while it turned clients away itself: the MTA it refused
                // went through the list and comes back here (review).
                let fallback = match config.role {
                    Role::Backup => !bypass,
                    Role::Primary => self.tier.refused_lately(ctx.client.ip),
                };
                if seen.members_recently >= fanout_members(&config) && !fallback {
                    self.hit(ctx, "MX_FANOUT");
                }
                Decision::Continue
            }
            Err(failure) => match failure.0 {
                OnFailure::Open => {
                    ctx.hit_once("STATE_UNAVAILABLE", 0.0);
                    Decision::Continue
                }
                OnFailure::Closed => Decision::Tempfail(Reply::new(
                    421,
                    "4.3.0",
                    "Temporary local problem, try again later",
                )),
            },
        }
    }
}

/// Records that the client at `ip` reached this member, and returns what the tier's
/// connection memory knows of it.
async fn record_contact(
    state: &State,
    config: &crate::config::TierConfig,
    ip: std::net::IpAddr,
) -> Result<crate::state::ContactAnswer, crate::state::Unavailable> {
    // By address, also for IPv6: a big sender's outbound pool shares a /64, and one of
    // its hosts falling back to a backup would make the whole pool a fan-out.
    let key = format!("tier:cm:{}", ip.to_canonical());
    // The rule reads "the first member this client reached lately is a backup": a client
    // that went to another backup before this one is still bypassing the primaries, so
    // only their contacts count against a first contact.
    let primaries: Vec<String> = config.primary_peers().map(str::to_owned).collect();
    state
        .contact(
            &key,
            &config.name,
            config.connection_memory,
            config.fanout_window,
            &primaries,
        )
        .await
}

/// With `tier.bypass_action = "tempfail"`: a backup refuses the recipients of a client
/// that bypasses a healthy primary tier, so a real MTA retries at a primary.
#[derive(Debug)]
pub struct BypassTempfail;

#[async_trait]
impl Check for BypassTempfail {
    fn name(&self) -> &'static str {
        "tier_bypass"
    }

    fn stage(&self) -> Stage {
        Stage::Rcpt
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        if !ctx.client.mx_bypass {
            return Decision::Continue;
        }
        Decision::Tempfail(Reply::new(
            451,
            "4.7.1",
            "This is a backup MX and the primary MX hosts are up: deliver there",
        ))
    }
}

/// Whether the tempfail check belongs in the pipeline.
pub fn tempfails(action: BypassAction) -> bool {
    action == BypassAction::Tempfail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TierConfig;
    use crate::policy::ClientInfo;

    /// The symbols a client gets at `config`'s member after it reached `before`, with
    /// every primary peer's heartbeat in the shared state first when `primaries_up`.
    async fn symbols_after_with(
        config: TierConfig,
        before: &[&str],
        primaries_up: bool,
    ) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        let metrics = Arc::new(Metrics::new());
        if primaries_up {
            for peer in config.peers.iter().filter(|p| p.role == Role::Primary) {
                let own =
                    TierConfig::for_test(&peer.name, Role::Primary, &[(&config.name, config.role)]);
                Tier::new(own, Some(state.clone()), metrics.clone())
                    .round()
                    .await;
            }
        }
        let tier = Tier::new(config, Some(state.clone()), metrics);
        tier.round().await;
        symbols_at(&tier, &state, "192.0.2.1", before).await
    }

    /// The symbols the client at `ip` gets at `tier`'s member after it reached `before`.
    async fn symbols_at(tier: &Arc<Tier>, state: &State, ip: &str, before: &[&str]) -> Vec<String> {
        let config = tier.config();
        for name in before {
            state
                .contact(
                    &format!("tier:cm:{ip}"),
                    name,
                    config.connection_memory,
                    config.fanout_window,
                    &[],
                )
                .await
                .unwrap();
        }
        let mut ctx = Context::new(ClientInfo::new(ip.parse().unwrap()));
        TierContact::new(tier.clone(), Some(state.clone()), None)
            .run(&mut ctx)
            .await;
        ctx.symbols.into_iter().map(|s| s.name).collect()
    }

    /// Regression (review): any three members within the window scored `MX_FANOUT`, so a
    /// busy sender spreading its sessions over three equal-preference primaries, as RFC 5321
    /// asks, got 2.5 points on ordinary mail.
    #[tokio::test]
    async fn spreading_over_equal_primaries_is_no_fanout_but_reaching_a_backup_too_is() {
        use Role::{Backup, Primary};
        // (this member, its peers, the members the client reached before, MX_FANOUT?)
        let cases = [
            (
                ("gw3", Primary),
                [("gw1", Primary), ("gw2", Primary)],
                false,
            ),
            (("bk1", Backup), [("gw1", Primary), ("gw2", Primary)], true),
            (("gw2", Primary), [("gw1", Primary), ("bk1", Backup)], true),
        ];
        for ((name, role), peers, fanout) in cases {
            let before: Vec<&str> = peers.iter().map(|(peer, _)| *peer).collect();
            let config = TierConfig::for_test(name, role, &peers);
            let symbols = symbols_after_with(config, &before, true).await;
            assert_eq!(
                symbols.iter().any(|s| s == "MX_FANOUT"),
                fanout,
                "{name} after {before:?}: {symbols:?}"
            );
        }
    }

    /// Regression (review): a tier on the embedded store, which no other member reads,
    /// kept this backup's own record of client contacts: a client that had reached every
    /// primary was a first contact here, and a legitimate fallback scored
    /// `MX_BYPASS_FIRST_CONTACT` too. With no shared store, only `MX_BYPASS_BACKUP` (the
    /// primaries, probed, are up) is scored.
    #[tokio::test]
    async fn contacts_in_a_store_no_other_member_reads_make_no_first_contact() {
        use crate::policy::{Policy, Services, Stage};
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        let metrics = Arc::new(Metrics::new());
        let own = TierConfig::for_test("gw1", Role::Primary, &[("bk1", Role::Backup)]);
        Tier::new(own, Some(state.clone()), metrics.clone())
            .round()
            .await;
        let config = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
        let tier = Tier::new(config.clone(), Some(state.clone()), metrics.clone());
        tier.round().await;
        assert!(tier.primaries_up());
        let text = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let mut gateway =
            crate::config::Config::from_toml(std::path::Path::new("t.toml"), text).unwrap();
        gateway.tier = Some(config);
        let services = Services {
            state: Some(state.clone()),
            tier: Some(tier.clone()),
            metrics: Some(metrics),
            ..Services::default()
        };
        let policy = Policy::build(Arc::new(gateway), &services).unwrap();
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        policy.evaluate(Stage::Connect, &mut ctx).await;
        let symbols: Vec<String> = ctx.symbols.into_iter().map(|s| s.name).collect();
        assert!(
            symbols.iter().any(|s| s == "MX_BYPASS_BACKUP"),
            "{symbols:?}"
        );
        assert!(
            !symbols.iter().any(|s| s == "MX_BYPASS_FIRST_CONTACT"),
            "{symbols:?}"
        );
    }

    /// Regression (review): `MX_FANOUT` was scored at a backup whatever the primaries'
    /// state, so with every primary down, or refusing with a full spool, a real MTA that
    /// went through the MX list after their 4xx scored it at the backup, where the README
    /// promises no bypass score.
    #[tokio::test]
    async fn reaching_the_backup_after_every_primary_failed_is_no_fanout() {
        use Role::{Backup, Primary};
        let peers = [("gw1", Primary), ("gw2", Primary)];
        let config = TierConfig::for_test("bk1", Backup, &peers);
        let symbols = symbols_after_with(config, &["gw1", "gw2"], false).await;
        assert!(symbols.iter().all(|s| !s.starts_with("MX_")), "{symbols:?}");
    }

    /// Regression (review): a primary that had turned clients away for lack of session
    /// room scored `MX_FANOUT` on the real MTA it refused, which went through the whole MX
    /// list (both primaries full, then the backup) and came back when a slot freed.
    #[tokio::test]
    async fn a_primary_that_turned_clients_away_scores_no_fanout_for_coming_back() {
        use Role::{Backup, Primary};
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        let peers = [("gw2", Primary), ("bk1", Backup)];
        let gw1 = Tier::new(
            TierConfig::for_test("gw1", Primary, &peers),
            Some(state.clone()),
            Arc::new(Metrics::new()),
        );
        gw1.round().await;
        let before = ["gw2", "bk1"];
        let fanout = |symbols: Vec<String>| symbols.iter().any(|s| s == "MX_FANOUT");
        assert!(fanout(symbols_at(&gw1, &state, "192.0.2.9", &before).await));
        let contact = TierContact::new(gw1.clone(), Some(state.clone()), None);
        contact
            .remember_turned_away("192.0.2.10".parse().unwrap())
            .await;
        assert!(!fanout(
            symbols_at(&gw1, &state, "192.0.2.10", &before).await
        ));
        // Another client, not turned away, still scores it (review: a flood that filled
        // the sessions switched the score off for every client).
        assert!(fanout(
            symbols_at(&gw1, &state, "192.0.2.11", &before).await
        ));
    }

    /// Regression (review): a first contact meant "no other member", so a client that went
    /// to the second backup, then the first, scored no `MX_BYPASS_FIRST_CONTACT` at the
    /// first: the rule means the first member it reached lately is a backup.
    #[tokio::test]
    async fn a_client_that_reached_only_another_backup_is_a_first_contact() {
        use Role::{Backup, Primary};
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        let metrics = Arc::new(Metrics::new());
        let peers_of_bk1 = [("gw1", Primary), ("bk2", Backup)];
        // gw1 is up: its heartbeat is in the shared state, and bk1 has looked.
        let gw1 = TierConfig::for_test("gw1", Primary, &[("bk1", Backup), ("bk2", Backup)]);
        Tier::new(gw1, Some(state.clone()), metrics.clone())
            .round()
            .await;
        let bk1 = Tier::new(
            TierConfig::for_test("bk1", Backup, &peers_of_bk1),
            Some(state.clone()),
            metrics,
        );
        bk1.round().await;
        assert!(bk1.primaries_up());
        let after_bk2 = symbols_at(&bk1, &state, "192.0.2.7", &["bk2"]).await;
        assert!(
            after_bk2.iter().any(|s| s == "MX_BYPASS_FIRST_CONTACT"),
            "{after_bk2:?}"
        );
        let after_gw1 = symbols_at(&bk1, &state, "192.0.2.8", &["gw1"]).await;
        assert!(
            after_gw1.iter().any(|s| s == "MX_BYPASS_BACKUP"),
            "{after_gw1:?}"
        );
        assert!(
            !after_gw1.iter().any(|s| s == "MX_BYPASS_FIRST_CONTACT"),
            "{after_gw1:?}"
        );
    }
}
