//! The MX tier: this gateway's name and role, a live view of its peers (heartbeats in the
//! state backend, probes of their admin listener as a fallback), the policy fingerprints
//! compared across the tier, signed verdict stamps, and `mxguard audit`.
//!
//! A backup asks [`Tier::primaries_up`] to decide whether a client talking to it is
//! bypassing the primaries; every member records its contacts in the state backend
//! (tier connection memory) so first contact at a backup and fan-out over several members
//! are visible tier-wide.

pub mod audit;
pub mod http;
pub mod peers;

/// The verdict stamp, kept below the tier in `mail` (the relay signs converted copies).
pub use crate::mail::stamp::{self, Stamp, StampError};
pub use peers::{Observation, PeerStatus};

use crate::config::{Role, TierConfig};
use crate::metrics::Metrics;
use crate::spool::{Capacity, Spool};
use crate::state::State;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How long a probe of a peer's admin listener may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a heartbeat round waits for the spool's capacity probe (see `spool_has_room`).
const HEARTBEAT_CAPACITY_WAIT: Duration = Duration::from_secs(10);

/// How long a heartbeat lives: three rounds, plus what one round may spend beyond its
/// interval (waiting for the spool's capacity probe, writing it, reading the peers' and
/// probing their admin listeners, two requests each) before the next heartbeat is
/// written. With `heartbeat_interval = "1s"` and a dead peer, three seconds alone expired
/// a healthy member's heartbeat every round, and a slow spool file system (the capacity
/// wait) did the same.
fn heartbeat_ttl(config: &TierConfig, state: &State) -> Duration {
    config.heartbeat_interval * 3
        + HEARTBEAT_CAPACITY_WAIT
        + state.timeout() * 2
        + PROBE_TIMEOUT * 2
}

/// How far the clocks of two members may differ for a heartbeat's date to be believed.
/// Members keep NTP time; a minute covers one briefly off, and bounds how long a
/// heartbeat that never expires keeps a dead member up.
const HEARTBEAT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What a member publishes every heartbeat (JSON in the state backend).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Heartbeat {
    /// A role this member does not know makes no heartbeat: anything that can write to the
    /// shared store can write one, and its role was logged as written (line breaks and
    /// all) when it differed from ours (review).
    role: Role,
    fingerprint: String,
    version: String,
    at: u64,
    /// When a client last reached the writer (its start, if none has since): a primary
    /// whose heartbeat is fresh but whom no client reaches (its uplink down, its public
    /// address wrong) takes no mail, and a backup must not turn its senders away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reached_at: Option<u64>,
    /// When the writer last turned a client away for lack of session room
    /// (`max_sessions`): a saturated primary answers `421` to everyone, and the real MTAs
    /// falling back to a backup meanwhile bypass nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    full_at: Option<u64>,
    /// The id of the key the writer signs stamps with ([`crate::mail::stamp::key_id`]): a
    /// member on another key trusts none of the others' stamps, nor they its.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl Heartbeat {
    /// Whether this heartbeat still says its writer is up at `now`: written within
    /// `lifetime` (what the reader's own heartbeat lives) and the clock skew, and not dated
    /// further ahead than the skew. Its expiry is the writer's choice: one written without
    /// a TTL, or by a member with a much longer `heartbeat_interval`, kept a dead primary
    /// up on the backups, which scored (or refused) every client while no primary took
    /// mail.
    fn is_fresh(&self, now: u64, lifetime: Duration) -> bool {
        let skew = HEARTBEAT_CLOCK_SKEW.as_secs();
        let oldest = now.saturating_sub(lifetime.as_secs().saturating_add(skew));
        self.at >= oldest && self.at <= now.saturating_add(skew)
    }

    /// `t`, a time this heartbeat gives on its writer's clock (`reached_at`, `full_at`),
    /// on the reader's clock at `now`: as long before `now` as it was before the
    /// heartbeat's own `at`. Both come from one clock, so their difference holds whatever
    /// the clocks of the tier say; compared with the reader's clock instead, a primary
    /// whose clock ran behind looked unreached for good, and one whose clock ran ahead
    /// looked saturated (`full_at` in the future) for as long as its lead (review). A time
    /// after `at` (no writer says one) reads as `now`.
    fn on_our_clock(&self, t: u64, now: u64) -> u64 {
        now.saturating_sub(self.at.saturating_sub(t))
    }

    /// Whether its key id, when it has one, is what a member writes: a short alphanumeric
    /// string, as it is logged when it differs from ours (review: line breaks and all).
    fn is_well_formed(&self) -> bool {
        self.key
            .as_deref()
            .is_none_or(|k| short_alphanumeric(k, MAX_KEY_ID))
    }
}

/// Longest key id a heartbeat may carry (mxguard's is 16 hex digits).
const MAX_KEY_ID: usize = 64;

/// What a peer's heartbeat may say that differs from this member's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mismatch {
    /// Another role than configured here.
    Role,
    /// A signing key this member holds neither as its key nor as the previous one.
    Key,
    /// A heartbeat dated further ahead than the clock skew allows, or older than a
    /// heartbeat lives.
    Clock,
}

/// This gateway's view of its tier. Shared behind an `Arc`; the heartbeat task keeps it
/// current, a reload may replace the configuration.
#[derive(Debug)]
pub struct Tier {
    config: RwLock<Arc<TierConfig>>,
    state: Option<State>,
    fingerprint: Mutex<String>,
    peers: RwLock<Vec<PeerStatus>>,
    metrics: Arc<Metrics>,
    started: SystemTime,
    /// Set when the gateway starts draining: it no longer says it is up.
    withdrawn: AtomicBool,
    /// The spool whose room decides whether this member says it is up (none in tests and
    /// tools that take no mail).
    spool: OnceLock<Arc<Spool>>,
    /// `spool.min_free_bytes` in force (a reload may change it).
    min_free: AtomicU64,
    /// Set while the heartbeat is held back because the spool has no room.
    spool_short: AtomicBool,
    /// Unix time a client (not a peer, not our own networks) last reached this member.
    client_reached: AtomicU64,
    /// Unix time this member last turned a client away for lack of session room (0: never).
    sessions_full: AtomicU64,
    /// Clients turned away lately, by address, with when (see [`Tier::refused_lately`]).
    turned_away: Mutex<TurnedAway>,
    /// A peer announcing another role than configured here, or signing with a key this
    /// member does not hold, is said once an hour, each peer and each on its own (review:
    /// one limit for all let the first peer of each round hide every other's warning).
    mismatch_logs: Mutex<HashMap<(String, Mismatch), crate::metrics::LogEvery>>,
}

/// How long a primary may go without any client reaching it and still count as taking
/// mail for bypass scoring: any MX on the internet is reached every few minutes (spam
/// alone sees to it), so a primary unreached this long is not reachable from outside.
pub const PRIMARY_UNREACHED_LIMIT: Duration = Duration::from_secs(15 * 60);

/// How long a primary that turned a client away for lack of session room does not count
/// as taking mail for bypass scoring: the MTAs it refused retry at a backup within it.
pub const PRIMARY_FULL_HOLD: Duration = Duration::from_secs(120);
/// How often a wait between heartbeat rounds reads the interval in force again.
const CONFIG_TICK: Duration = Duration::from_secs(1);

/// Clients turned away lately, by address, with when (Unix seconds), and when the list
/// was last pruned of those past [`PRIMARY_FULL_HOLD`].
#[derive(Debug, Default)]
struct TurnedAway {
    clients: HashMap<IpAddr, u64>,
    pruned_at: u64,
}

/// Clients turned away that a member remembers at once (see [`Tier::note_turned_away`]).
const TURNED_AWAY_KEPT: usize = 10_000;

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tier {
    /// The tier of `config`, publishing through `state` (without a state backend only
    /// probes tell peers' health).
    pub fn new(config: TierConfig, state: Option<State>, metrics: Arc<Metrics>) -> Arc<Tier> {
        let peers = config.peers.iter().map(PeerStatus::unknown).collect();
        metrics
            .tier_info
            .with_label_values(&[config.name.as_str(), config.role.as_str()])
            .set(1);
        Arc::new(Tier {
            config: RwLock::new(Arc::new(config)),
            state,
            fingerprint: Mutex::new(String::new()),
            peers: RwLock::new(peers),
            metrics,
            started: SystemTime::now(),
            withdrawn: AtomicBool::new(false),
            spool: OnceLock::new(),
            min_free: AtomicU64::new(0),
            spool_short: AtomicBool::new(false),
            client_reached: AtomicU64::new(0),
            sessions_full: AtomicU64::new(0),
            turned_away: Mutex::new(TurnedAway::default()),
            mismatch_logs: Mutex::new(HashMap::new()),
        })
    }

    /// Records that a client at `ip` reached this member (published in the heartbeat),
    /// when `ip` is on the internet: a balancer's health check, internal monitoring or a
    /// PROXY `LOCAL` session come from private addresses and would keep a primary whose
    /// uplink is down "reached".
    pub fn note_client(&self, ip: IpAddr) {
        if is_on_the_internet(ip.to_canonical()) {
            self.client_reached.store(unix_now(), Ordering::Relaxed);
        }
    }

    /// Records that this member turned a client away for lack of session room
    /// (published in the heartbeat).
    pub fn note_sessions_full(&self) {
        self.sessions_full.store(unix_now(), Ordering::Relaxed);
    }

    /// Records that this member turned the client at `ip` away with a connection limit's
    /// `421`. At most [`TURNED_AWAY_KEPT`] clients are kept, those of the last
    /// [`PRIMARY_FULL_HOLD`]; past that (a flood) newer ones are not.
    pub fn note_turned_away(&self, ip: IpAddr) {
        let now = unix_now();
        let mut turned_away = self.turned_away.lock().unwrap_or_else(|p| p.into_inner());
        let TurnedAway { clients, pruned_at } = &mut *turned_away;
        // Full: pruned once a second at most, not on every refusal of a flood (review: a
        // walk of all 10,000 under the lock for each).
        if clients.len() >= TURNED_AWAY_KEPT && *pruned_at != now {
            clients.retain(|_, at| within_full_hold(*at, now));
            *pruned_at = now;
        }
        if clients.len() < TURNED_AWAY_KEPT {
            clients.insert(ip.to_canonical(), now);
        }
    }

    /// Whether this member refused the client at `ip` lately: turned it away within
    /// [`PRIMARY_FULL_HOLD`], or its spool is short of room now (every sender gets 452). A
    /// real MTA it refused may have gone through the whole MX list meanwhile. Per client:
    /// a flood that fills the sessions must not switch the fan-out score off for all.
    pub fn refused_lately(&self, ip: IpAddr) -> bool {
        if self.spool_short.load(Ordering::SeqCst) {
            return true;
        }
        let turned_away = self.turned_away.lock().unwrap_or_else(|p| p.into_inner());
        turned_away
            .clients
            .get(&ip.to_canonical())
            .is_some_and(|at| within_full_hold(*at, unix_now()))
    }

    /// When a client last reached this member, or when it started if none has since.
    fn reached_at(&self) -> u64 {
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.client_reached.load(Ordering::Relaxed).max(started)
    }

    /// Makes this member's heartbeat depend on `spool` having room (`min_free` bytes, as
    /// `/healthz` asks): a primary whose spool is full answers 452 to every message, and a
    /// backup that still saw it up would score or refuse the senders retrying there.
    pub fn watch_spool(&self, spool: Arc<Spool>, min_free: u64) {
        let _ = self.spool.set(spool);
        self.set_spool_min_free(min_free);
    }

    /// Takes a reloaded `spool.min_free_bytes`.
    pub fn set_spool_min_free(&self, min_free: u64) {
        self.min_free.store(min_free, Ordering::SeqCst);
    }

    /// Whether the watched spool can take mail; logs when that changes.
    async fn spool_has_room(&self) -> bool {
        let Some(spool) = self.spool.get().cloned() else {
            return true;
        };
        let min_free = self.min_free.load(Ordering::SeqCst);
        // Longer than `/healthz`'s wait: a slow but working file system (NFS) must not
        // make the member flap in and out of the tier.
        let capacity = spool
            .capacity_within(min_free, HEARTBEAT_CAPACITY_WAIT)
            .await;
        let short = !matches!(capacity, Capacity::Room { .. });
        if short != self.spool_short.swap(short, Ordering::SeqCst) {
            if short {
                tracing::warn!(
                    ?capacity,
                    min_free,
                    "spool has no room: this member stops announcing itself to the tier"
                );
            } else {
                tracing::info!("spool has room again: this member announces itself to the tier");
            }
        }
        !short
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<TierConfig> {
        read(&self.config).clone()
    }

    /// Takes a reloaded `[tier]` section (peers may have been added or removed).
    pub fn reconfigure(&self, config: TierConfig) {
        let old = self.config();
        if old.name != config.name || old.role != config.role {
            let _ = self
                .metrics
                .tier_info
                .remove_label_values(&[old.name.as_str(), old.role.as_str()]);
            self.metrics
                .tier_info
                .with_label_values(&[config.name.as_str(), config.role.as_str()])
                .set(1);
        }
        {
            let mut peers = write(&self.peers);
            let kept: Vec<PeerStatus> = config
                .peers
                .iter()
                .map(|p| {
                    peers
                        .iter()
                        .find(|s| s.name == p.name)
                        .cloned()
                        .map(|mut s| {
                            s.role = p.role;
                            s
                        })
                        .unwrap_or_else(|| PeerStatus::unknown(p))
                })
                .collect();
            for gone in peers
                .iter()
                .filter(|s| !kept.iter().any(|k| k.name == s.name))
            {
                let _ = self
                    .metrics
                    .tier_peer_up
                    .remove_label_values(&[gone.name.as_str()]);
                let _ = self
                    .metrics
                    .tier_fingerprint_match
                    .remove_label_values(&[gone.name.as_str()]);
            }
            *peers = kept;
        }
        *write(&self.config) = Arc::new(config);
    }

    /// The fingerprint of the policy in force (set at start and on every reload).
    pub fn set_fingerprint(&self, fingerprint: &str) {
        *lock(&self.fingerprint) = fingerprint.to_owned();
    }

    /// Our policy fingerprint as last set.
    pub fn fingerprint(&self) -> String {
        lock(&self.fingerprint).clone()
    }

    /// This gateway's name in the tier.
    pub fn name(&self) -> String {
        self.config().name.clone()
    }

    /// This gateway's role.
    pub fn role(&self) -> Role {
        self.config().role
    }

    /// When this gateway started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The peers as last seen.
    pub fn peers(&self) -> Vec<PeerStatus> {
        read(&self.peers).clone()
    }

    /// Whether at least one primary (other than this gateway) is up: a client talking to
    /// a backup meanwhile is bypassing the front tier. A view older than a heartbeat's
    /// lifetime (the task that refreshes it stopped) says nothing: no primary counts as up
    /// (review: a frozen view kept a backup scoring or refusing for ever).
    pub fn primaries_up(&self) -> bool {
        let now = unix_now();
        let config = self.config();
        // As long as a heartbeat lives: three rounds and what one round may take beyond its
        // interval (a review of the fix: three intervals and 30 s were less than that).
        let view_bound = match &self.state {
            Some(state) => heartbeat_ttl(&config, state),
            None => config.heartbeat_interval * 3 + PROBE_TIMEOUT * 2,
        } + Duration::from_secs(30);
        let seen_lately = |p: &PeerStatus| {
            p.last_seen
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|age| age <= view_bound)
        };
        let reached_lately = |p: &PeerStatus| {
            p.reached_at
                .is_none_or(|at| now.saturating_sub(at) <= PRIMARY_UNREACHED_LIMIT.as_secs())
        };
        let full_lately = |p: &PeerStatus| p.full_at.is_some_and(|at| within_full_hold(at, now));
        read(&self.peers).iter().any(|p| {
            p.role == Role::Primary
                && !p.announced_backup
                && p.up
                && seen_lately(p)
                && reached_lately(p)
                && !full_lately(p)
        })
    }

    /// The name of the peer whose SMTP address is `ip`, when a peer is talking to us.
    pub fn peer_at(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        self.config()
            .peers
            .iter()
            .find(|p| p.smtp.ip().to_canonical() == ip)
            .map(|p| p.name.clone())
    }

    /// Publishes heartbeats and watches the peers every `heartbeat_interval` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            // Rounds start `heartbeat_interval` apart, however long the looks at the peers
            // took (up to a probe timeout each): the heartbeat must outlive the gap.
            let started = tokio::time::Instant::now();
            self.round().await;
            // The interval in force is read again each second: a reload that shortens it
            // takes effect now, not after the old interval (review).
            loop {
                let next = started + self.config().heartbeat_interval;
                let now = tokio::time::Instant::now();
                if now >= next {
                    break;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next.min(now + CONFIG_TICK)) => {}
                }
            }
        }
    }

    /// Stops announcing this gateway and deletes its heartbeat, at the start of a drain: it
    /// takes no more SMTP connections, and a backup that still saw it up would keep
    /// refusing clients (`bypass_action = "tempfail"`) or scoring them while no primary
    /// takes mail. Peers that probe instead see `/healthz` say 503.
    pub async fn withdraw(&self) {
        self.withdrawn.store(true, Ordering::SeqCst);
        if let Some(state) = &self.state {
            let name = self.name();
            if state.delete(&heartbeat_key(&name)).await.is_err() {
                tracing::warn!("cannot withdraw this gateway's tier heartbeat (state backend unavailable); peers see it up until it expires");
            }
        }
    }

    /// One heartbeat (none while withdrawn or short of spool room) and one look at every
    /// peer.
    pub async fn round(&self) {
        let config = self.config();
        let ours = self.fingerprint();
        // The ids of the keys this member holds, the signing one first: once a round.
        let key_ids: Vec<String> = config
            .stamp_keys()
            .into_iter()
            .map(crate::mail::stamp::key_id)
            .collect();
        if let Some(state) = &self.state {
            self.announce(state, &config, &ours, key_ids.first()).await;
        }
        let looks = config
            .peers
            .iter()
            .map(|peer| self.observe(&config, peer, &key_ids));
        let seen = futures::future::join_all(looks).await;
        let now = SystemTime::now();
        let mut peers = write(&self.peers);
        for (peer, observation) in config.peers.iter().zip(seen) {
            if let Some(status) = peers.iter_mut().find(|s| s.name == peer.name) {
                peers::apply(status, observation, &ours, now, &self.metrics);
            }
        }
    }

    /// Publishes this member's heartbeat, unless it is withdrawn (draining: `withdraw`
    /// deleted it) or its spool has no room.
    async fn announce(
        &self,
        state: &State,
        config: &TierConfig,
        fingerprint: &str,
        key_id: Option<&String>,
    ) {
        if self.withdrawn.load(Ordering::SeqCst) {
            return;
        }
        let key = heartbeat_key(&config.name);
        if !self.spool_has_room().await {
            // Deleted every round while short: peers see this member down at once, not
            // when the last heartbeat expires, and a failed delete is tried again.
            let _ = state.delete(&key).await;
            return;
        }
        let beat = Heartbeat {
            role: config.role,
            fingerprint: fingerprint.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            at: unix_now(),
            reached_at: Some(self.reached_at()),
            full_at: Some(self.sessions_full.load(Ordering::Relaxed)).filter(|&at| at > 0),
            key: key_id.cloned(),
        };
        if let Ok(json) = serde_json::to_vec(&beat) {
            let _ = state.set(&key, &json, heartbeat_ttl(config, state)).await;
            // A withdrawal while this write was under way may have deleted the key
            // before the write landed: it must not announce a draining member.
            if self.withdrawn.load(Ordering::SeqCst) {
                let _ = state.delete(&key).await;
            }
        }
    }

    /// Whether the warning that `peer` differs by `what` is due: once an hour each.
    fn mismatch_due(&self, peer: &str, what: Mismatch) -> bool {
        let mut logs = self
            .mismatch_logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        logs.entry((peer.to_owned(), what))
            .or_insert_with(|| crate::metrics::LogEvery::new(Duration::from_secs(3600)))
            .due()
    }

    /// Warns (once an hour) that `peer`'s heartbeat, not fresh, is dated ahead of this
    /// member's clock, or further behind than a heartbeat of `lifetime` can be: its clock
    /// differs from ours (or it heartbeats far less often), and it is probed instead, so
    /// without an admin listener it counts as down. Only a lead was said before (review):
    /// a primary whose clock ran behind looked down to the backups, silently.
    fn warn_of_clock(&self, peer: &str, beat: &Heartbeat, lifetime: Duration) {
        let now = unix_now();
        let skew = HEARTBEAT_CLOCK_SKEW.as_secs();
        let ahead = beat.at.saturating_sub(now);
        let behind = now.saturating_sub(beat.at);
        let too_old = lifetime.as_secs().saturating_add(skew);
        if ahead <= skew && behind <= too_old {
            return;
        }
        if !self.mismatch_due(peer, Mismatch::Clock) {
            return;
        }
        if ahead > skew {
            tracing::warn!(
                peer,
                ahead_secs = ahead,
                "tier peer's heartbeat is dated ahead of this member's clock: the clocks differ (check NTP); the peer is probed instead (logged once an hour)"
            );
        } else {
            tracing::warn!(
                peer,
                behind_secs = behind,
                "tier peer's heartbeat is older than a heartbeat lives here: its clock runs behind this member's (check NTP), or its tier.heartbeat_interval is far longer; the peer is probed instead (logged once an hour)"
            );
        }
    }

    /// A fresh heartbeat says a peer is up (and its fingerprint); without one its admin
    /// listener is asked. What a heartbeat that is not fresh last said of the peer's
    /// reach, load and role still stands beside the probe: without it a primary unreached
    /// for an hour whose clock ran a minute ahead counted as reached, and a backup set to
    /// `tempfail` refused every sender (review).
    /// `key_ids` are those of the keys this member holds, the signing one first.
    async fn observe(
        &self,
        config: &TierConfig,
        peer: &crate::config::PeerConfig,
        key_ids: &[String],
    ) -> Observation {
        let mut last_said: Option<Heartbeat> = None;
        if let Some(state) = &self.state {
            let read = read_heartbeat(state, config, peer).await;
            if let Some(Fresh::No(beat)) = read {
                self.warn_of_clock(&peer.name, &beat, heartbeat_ttl(config, state));
                last_said = Some(beat);
            } else if let Some(Fresh::Yes(beat)) = read {
                if beat.key.as_ref().is_some_and(|id| !key_ids.contains(id))
                    && self.mismatch_due(&peer.name, Mismatch::Key)
                {
                    tracing::warn!(
                        peer = %peer.name,
                        key = beat.key.as_deref().unwrap_or_default(),
                        ours = key_ids.first().map(String::as_str).unwrap_or_default(),
                        "tier peer signs stamps with a key this member does not hold (tier.secret_file differs): its stamps are not trusted here (logged once an hour)"
                    );
                }
                if beat.role != peer.role && self.mismatch_due(&peer.name, Mismatch::Role) {
                    // A primary re-roled to backup on its own host kept the backups scoring
                    // and refusing its senders while the real primaries were down (review):
                    // it counts as a primary only while both configurations say so.
                    tracing::warn!(
                        peer = %peer.name,
                        announced = beat.role.as_str(),
                        configured = peer.role.as_str(),
                        "tier peer announces another role than configured here (a primary only while both say so; logged once an hour)"
                    );
                }
                let now = unix_now();
                return Observation {
                    up: true,
                    fingerprint: valid_fingerprint(&beat.fingerprint),
                    source: "heartbeat",
                    reached_at: beat.reached_at.map(|t| beat.on_our_clock(t, now)),
                    full_at: beat.full_at.map(|t| beat.on_our_clock(t, now)),
                    announced_backup: beat.role == Role::Backup,
                };
            }
        }
        let now = unix_now();
        let reached_at = last_said
            .as_ref()
            .and_then(|b| b.reached_at.map(|t| b.on_our_clock(t, now)));
        let full_at = last_said
            .as_ref()
            .and_then(|b| b.full_at.map(|t| b.on_our_clock(t, now)));
        let announced_backup = last_said.as_ref().is_some_and(|b| b.role == Role::Backup);
        let Some(admin) = peer.admin else {
            return Observation {
                up: false,
                fingerprint: None,
                source: "none",
                reached_at,
                full_at,
                announced_backup,
            };
        };
        match http::get(admin, "/healthz", PROBE_TIMEOUT).await {
            Ok((200, _)) => Observation {
                up: true,
                fingerprint: policy_fingerprint(admin).await,
                source: "probe",
                reached_at,
                full_at,
                announced_backup,
            },
            _ => Observation {
                up: false,
                fingerprint: None,
                source: "probe",
                reached_at,
                full_at,
                announced_backup,
            },
        }
    }
}

/// Whether `ip` is a public address: in no special-purpose block and no documentation
/// block, none of which a client on the internet connects from.
fn is_on_the_internet(ip: IpAddr) -> bool {
    !(crate::net::scope::is_special_purpose(ip) || crate::net::scope::is_documentation(ip))
}

/// Whether `at` (Unix seconds) lies within [`PRIMARY_FULL_HOLD`] before `now`.
fn within_full_hold(at: u64, now: u64) -> bool {
    now.saturating_sub(at) <= PRIMARY_FULL_HOLD.as_secs()
}

fn heartbeat_key(name: &str) -> String {
    format!("tier:hb:{name}")
}

/// A heartbeat read, fresh by this member's own bound (see [`Heartbeat::is_fresh`]) or not.
enum Fresh {
    Yes(Heartbeat),
    No(Heartbeat),
}

/// The heartbeat of `peer`, when one can be read. One that cannot be read (the state call
/// failed, a key of another type) or is not a well-formed heartbeat says nothing; one that
/// is stale or dated ahead does not say the peer is up: it is probed.
async fn read_heartbeat(
    state: &State,
    config: &TierConfig,
    peer: &crate::config::PeerConfig,
) -> Option<Fresh> {
    let name = peer.name.as_str();
    let raw = state.get(&heartbeat_key(name)).await.ok()??;
    let Some(beat) = serde_json::from_slice::<Heartbeat>(&raw)
        .ok()
        .filter(Heartbeat::is_well_formed)
    else {
        tracing::debug!(
            peer = name,
            "tier peer's heartbeat is malformed: probing it"
        );
        return None;
    };
    if !beat.is_fresh(unix_now(), heartbeat_ttl(config, state)) {
        tracing::debug!(
            peer = name,
            at = beat.at,
            "tier peer's heartbeat is stale or dated ahead: probing it"
        );
        return Some(Fresh::No(beat));
    }
    Some(Fresh::Yes(beat))
}

/// The `fingerprint` of a gateway's `/policy` document.
pub async fn policy_fingerprint(admin: std::net::SocketAddr) -> Option<String> {
    match http::get(admin, "/policy", PROBE_TIMEOUT).await {
        Ok((200, body)) => fingerprint_in_policy(&body),
        _ => None,
    }
}

/// Longest fingerprint accepted (mxguard's is 64 hex digits).
const MAX_FINGERPRINT: usize = 128;

/// The `fingerprint` field of a `/policy` JSON document, lower-cased; `None` when absent or
/// not a short alphanumeric string (the far end may not be mxguard: its text ends up in
/// logs and terminals).
pub fn fingerprint_in_policy(body: &[u8]) -> Option<String> {
    let document: serde_json::Value = serde_json::from_slice(body).ok()?;
    valid_fingerprint(document.get("fingerprint")?.as_str()?)
}

/// `f` lower-cased when it is a short alphanumeric string, as every fingerprint a peer
/// tells us (by probe or heartbeat) must be: its text ends up in logs and on the console.
fn valid_fingerprint(f: &str) -> Option<String> {
    short_alphanumeric(f, MAX_FINGERPRINT).then(|| f.to_ascii_lowercase())
}

/// Whether `s` is 1 to `max` ASCII letters and digits: what a peer may tell us that ends up
/// in logs and on the console.
fn short_alphanumeric(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests;
