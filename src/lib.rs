//! mxguard: an inbound spam-filtering SMTP gateway for equal-preference MX tiers.
//!
//! Data flows one way: listener → session → policy → spool → relay. [`serve`] wires
//! them together on listeners the caller has already bound (so tests can bind port 0).
//!
//! Layers, each importing only from those below it (`../shared/tools/layers.py` checks):
//! `admin`, `smtp` → `policy` → `auth`, `classify`, `dns`, `rules`, `relay`, `tier` → `state`,
//! `spool`, `net` → `mail`, `config`, `metrics`.
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod classify;
pub mod config;
pub mod dns;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod relay;
pub mod rules;
pub mod runtime;
pub mod smtp;
pub mod spool;
pub mod state;
pub mod tier;

#[cfg(test)]
mod interop_tests;
#[cfg(test)]
mod reload_tests;

use async_trait::async_trait;
use config::{Config, DnsConfig};
use metrics::Metrics;
use policy::{LivePolicy, Policy, Services, Verification};
use spool::Spool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the state backend is pinged, so an outage is noticed without traffic.
const STATE_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long sessions get, once the shutdown grace is over, to send their 421 and close.
const STOP_NOW_WAIT: Duration = Duration::from_secs(5);

/// Failures that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// The STARTTLS certificate or key could not be loaded.
    #[error("server.tls: {0}")]
    Tls(#[from] net::tls::TlsSetupError),
    /// The rules could not be compiled.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The admin listener (`[metrics] listen`) could not be bound.
    #[error("metrics.listen: cannot bind {0}: {1}")]
    Admin(std::net::SocketAddr, std::io::Error),
    /// The state store could not be opened.
    #[error("state: {0}")]
    State(#[from] state::StateError),
    /// Delivery stopped while the gateway ran (a panic in its scheduler): the gateway
    /// drained and stopped rather than take mail it would never deliver.
    #[error("delivery stopped unexpectedly; the gateway stopped so that it is restarted")]
    DeliveryStopped,
}

/// Why a reload was refused (the running policy stays active).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The rules files are broken.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The STARTTLS certificate or key cannot be loaded.
    #[error("server.tls: {0}")]
    Tls(#[from] net::tls::TlsSetupError),
    /// Building the new policy panicked (a defect of ours).
    #[error("building the new policy panicked")]
    Panicked,
    /// The new configuration relays to a listener this process has bound: `server.listen`
    /// changes only at a restart, so the file's own check compared with the wrong one.
    #[error("{0}: {1} is a listener of this running gateway: mail would loop")]
    Loops(&'static str, std::net::SocketAddr),
}

/// The relay's callout answers the policy's recipient questions. The policy only knows
/// the trait, so it never depends on the relay; this is where the two meet.
#[async_trait]
impl policy::RecipientProbe for relay::Callout {
    async fn probe(&self, address: &str, config: &Arc<Config>) -> Verification {
        match self.verify(address, config).await {
            relay::CalloutAnswer::Exists => Verification::Known,
            relay::CalloutAnswer::Unknown { reply } => Verification::Unknown(reply),
            relay::CalloutAnswer::Unavailable { reason } => Verification::Unavailable(reason),
        }
    }
}

/// The services the policy fingerprint names as missing: only those the configuration
/// asks a check of, so members of one configuration that both run without one judge
/// alike. Worked out for each configuration, a reload's too (review: a reload that kept
/// the resolver kept the list of the configuration before it).
fn unavailable_for(config: &Config, has_dns: bool, has_auth: bool) -> Vec<&'static str> {
    let mut unavailable = Vec::new();
    if !has_dns && config.policy.asks_for_dns() {
        unavailable.push("dns");
    }
    if !has_auth && config.policy.auth {
        unavailable.push("auth");
    }
    unavailable
}

/// The services a policy is built with, and the `[dns]` section they were built from: a
/// reload that changes `[dns]` gets a new resolver, one that does not keeps the old one
/// (and its cache). The state backend is opened once; a reload keeps its timeout and key
/// prefix (restart-only) and follows its failure mode.
#[derive(Debug, Clone)]
struct ServiceSet {
    dns_config: DnsConfig,
    services: Services,
}

impl ServiceSet {
    fn build(
        config: &Config,
        metrics: &Arc<Metrics>,
        probe: Arc<relay::Callout>,
        shared: Shared,
    ) -> ServiceSet {
        // One resolver for every DNS check; without one (no usable system resolver and no
        // dns.nameservers) the DNS checks are left out, loudly.
        let dns = match dns::Dns::new(&config.dns, metrics.clone()) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(error = %e, "no DNS resolver: DNS checks are disabled");
                None
            }
        };
        let auth = dns
            .as_ref()
            .and_then(|d| match auth::Authenticator::new(d) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::error!(error = %e, "SPF/DKIM/DMARC/ARC are disabled");
                    None
                }
            });
        let unavailable = unavailable_for(config, dns.is_some(), auth.is_some());
        ServiceSet {
            dns_config: config.dns.clone(),
            services: Services {
                unavailable,
                probe: Some(probe),
                dns,
                auth,
                state: shared.state,
                metrics: Some(metrics.clone()),
                classifier: shared.classifier,
                shadow_log: shared.shadow_log,
                tier: shared.tier,
                antivirus: classify::clamd::Clamd::from_config(&config.antivirus),
                disk_inspections: shared.disk_inspections,
            },
        }
    }

    /// The state backend with the settings of a reloaded configuration. The backend and
    /// key prefix it keeps are written back into `config`, so the snapshot (and its
    /// fingerprint, which names the prefix) says what runs, not what waits for a restart.
    fn follow_state(&mut self, config: &mut Config) {
        if let Some(state) = &self.services.state {
            if state.backend_config() != &config.state.backend {
                let key = changed_state_key(state.backend_config(), &config.state.backend);
                tracing::warn!(
                    key,
                    "{key} changed: the new store needs a restart; keeping the running one"
                );
                config.state.backend = state.backend_config().clone();
            }
            // The tier's heartbeats, the classifier's lookups and the health watcher keep
            // the store they started with, and they feed one health tracker with the
            // checks: a timeout for the checks alone called a backend down that answers
            // within the new one, or up while the checks wait out a shorter one (review).
            if state.timeout() != config.state.timeout {
                tracing::warn!("state.timeout changed: the new timeout needs a restart (the tier, the classifier and the health watcher share the running one); keeping the running one");
                config.state.timeout = state.timeout();
            }
            if state.prefix() != config.state.key_prefix {
                tracing::warn!("state.key_prefix changed: the new prefix needs a restart (the classifier and the tier keep theirs); keeping the running one");
                config.state.key_prefix = state.prefix().to_owned();
            }
            self.services.state = Some(state.reconfigured(&config.state));
        }
    }

    /// Makes `mxguard_dns_up` speak for this set's resolver (0 when there is none: the
    /// build logged why), and stops the one of the set it `replaced` from moving it:
    /// sessions that started before may still use that one.
    fn put_dns_in_force(&self, replaced: Option<&ServiceSet>, metrics: &Metrics) {
        if let Some(old) = replaced.and_then(|r| r.services.dns.as_ref()) {
            old.retire();
        }
        match &self.services.dns {
            Some(dns) => dns.publish_health(),
            None => metrics.dns_up.set(0),
        }
    }

    /// Joining or leaving a tier needs a restart (heartbeats, the bypass memory): until
    /// then the running tier's section stays in `config`, so the policy's tier checks,
    /// stamps and fingerprint go on matching the membership that runs.
    fn keep_tier_membership(&self, config: &mut Config) {
        if self.services.tier.is_some() != config.tier.is_some() {
            tracing::warn!(
                "[tier] added or removed: that needs a restart; keeping the running membership"
            );
            config.tier = self.services.tier.as_ref().map(|t| (*t.config()).clone());
        }
    }

    /// Turning the classifier on needs a restart (its model is opened at start): until
    /// then the snapshot says it is off, so the policy fingerprint describes what runs
    /// (review: it said `classifier=on`, the fingerprint of a peer that classifies, and
    /// the tier trusted this member's stamps on mail it never classified).
    fn keep_classifier_running_or_not(&self, config: &mut Config) {
        if self.services.classifier.is_none() && config.classifier.enabled {
            tracing::warn!(
                key = "classifier.enabled",
                "turned on, but taken only at the next restart: until then no BAYES_xx symbol is added"
            );
            config.classifier.enabled = false;
        }
    }

    /// The tier with the peers and settings of a reloaded configuration.
    fn follow_tier(&self, config: &Config) {
        if let (Some(tier), Some(t)) = (&self.services.tier, &config.tier) {
            tier.reconfigure(t.clone());
            tier.set_spool_min_free(config.spool.min_free_bytes);
        }
    }
}

/// The STARTTLS acceptor of `config`, its certificate and key read from their files.
fn load_tls(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, net::tls::TlsSetupError> {
    config
        .server
        .tls
        .as_ref()
        .map(|files| net::tls::load_acceptor(&files.certificate, &files.key))
        .transpose()
}

/// The `[state]` key whose change made `new` another store than `running`, for the
/// warning that it waits for a restart (a rotated Redis password is `state.redis`).
fn changed_state_key(
    running: &config::StateBackendConfig,
    new: &config::StateBackendConfig,
) -> &'static str {
    use config::StateBackendConfig::{Embedded, Redis};
    match (running, new) {
        (Embedded { .. }, Embedded { .. }) => "state.path",
        (Redis { cluster: a, .. }, Redis { cluster: b, .. }) if a != b => "state.cluster",
        (Redis { .. }, Redis { .. }) => "state.redis",
        _ => "state.backend",
    }
}

/// Says which settings differ from those the gateway started with and a reload cannot
/// apply (they are read once at start): warned at every reload while they differ.
fn warn_of_restart_only_changes(old: &Config, new: &Config) {
    let changed = [
        ("server.listen", old.server.listen != new.server.listen),
        ("metrics.listen", old.metrics.listen != new.metrics.listen),
        ("spool.dir", old.spool.dir != new.spool.dir),
        (
            "spool.recycle_files",
            old.spool.recycle_files != new.spool.recycle_files,
        ),
        ("relay.workers", old.relay.workers != new.relay.workers),
        (
            "attachments.disk_inspections",
            old.attachments.disk_inspections != new.attachments.disk_inspections,
        ),
        (
            "log",
            old.log.format != new.log.format || old.log.level != new.log.level,
        ),
        (
            "server.limits.shutdown_grace",
            old.server.limits.shutdown_grace != new.server.limits.shutdown_grace,
        ),
    ];
    for (key, _) in changed.iter().filter(|(_, changed)| *changed) {
        tracing::warn!(key, "changed, but taken only at the next restart");
    }
}

/// The services opened once per process that every rebuilt service set keeps.
#[derive(Debug, Clone, Default)]
struct Shared {
    state: Option<state::State>,
    classifier: Option<Arc<classify::Classifier>>,
    shadow_log: Option<Arc<policy::shadow::ShadowLog>>,
    tier: Option<Arc<tier::Tier>>,
    disk_inspections: Option<Arc<tokio::sync::Semaphore>>,
}

impl ServiceSet {
    fn shared(&self) -> Shared {
        Shared {
            state: self.services.state.clone(),
            classifier: self.services.classifier.clone(),
            shadow_log: self.services.shadow_log.clone(),
            tier: self.services.tier.clone(),
            disk_inspections: self.services.disk_inspections.clone(),
        }
    }
}

/// A running gateway's handle for reloads.
#[derive(Debug, Clone)]
pub struct Gateway {
    live: Arc<LivePolicy>,
    metrics: Arc<Metrics>,
    callout: Arc<relay::Callout>,
    services: Arc<Mutex<ServiceSet>>,
    /// The sessions' STARTTLS acceptor, swapped on reload.
    tls: Arc<net::tls::LiveTls>,
    /// The configuration the gateway started with: what the settings a reload cannot
    /// apply are still running on.
    started_with: Arc<Config>,
    /// The SMTP addresses this process listens on (`server.listen` as bound: it changes
    /// only at a restart).
    bound: Arc<Vec<std::net::SocketAddr>>,
}

impl Gateway {
    fn services(&self) -> MutexGuard<'_, ServiceSet> {
        // A poisoned lock only means a reload panicked; the set itself is consistent.
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the configuration and rules and swaps the policy snapshot atomically;
    /// sessions already running keep the one they started with, while delivery and
    /// callouts follow the new configuration from their next message. On any error the
    /// running policy stays active. Returns the new fingerprint.
    pub fn reload(&self, config_path: &std::path::Path) -> Result<String, ReloadError> {
        // A panic (a defect of ours, say a value the validation let through) is a failed
        // reload: it must not end the task that takes SIGHUP and file changes.
        let reloaded = runtime::off_the_async_threads(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.try_reload(config_path)
            }))
        })
        .unwrap_or(Err(ReloadError::Panicked));
        let result = if reloaded.is_ok() {
            "success"
        } else {
            "failure"
        };
        self.metrics
            .policy_reloads_total
            .with_label_values(&[result])
            .inc();
        reloaded
    }

    fn try_reload(&self, config_path: &std::path::Path) -> Result<String, ReloadError> {
        let metrics = &self.metrics;
        Config::load(config_path)
            .map_err(ReloadError::from)
            .and_then(|config| {
                if let Some(&(key, own)) = config::relay_loops(&self.bound, &config.relay).first() {
                    return Err(ReloadError::Loops(key, own));
                }
                // Held from the build to the swap: a refresh cannot interleave and put an
                // older snapshot in force after this one.
                let mut set = self.services();
                // The new services are a candidate until the policy builds: a refused
                // reload changes nothing, the tier and the resolver included.
                let mut next = if set.dns_config != config.dns {
                    ServiceSet::build(&config, metrics, self.callout.clone(), set.shared())
                } else {
                    set.clone()
                };
                let mut config = config;
                next.follow_state(&mut config);
                next.keep_tier_membership(&mut config);
                next.keep_classifier_running_or_not(&mut config);
                next.services.antivirus = classify::clamd::Clamd::from_config(&config.antivirus);
                next.services.unavailable = unavailable_for(
                    &config,
                    next.services.dns.is_some(),
                    next.services.auth.is_some(),
                );
                let config = Arc::new(config);
                let policy = build_policy(config.clone(), metrics, &next.services)?;
                // Read again on every reload: a renewed certificate is taken at once.
                let tls = load_tls(&config)?;
                if next.dns_config != set.dns_config {
                    tracing::info!("[dns] changed: new resolver");
                    next.put_dns_in_force(Some(&set), metrics);
                }
                next.follow_tier(&config);
                warn_of_restart_only_changes(&self.started_with, &config);
                warn_of_doubtful_settings(&config);
                *set = next;
                self.put_in_force(&set, &policy);
                self.tls.set(tls);
                warn_of_actions_naming_nothing(&policy);
                Ok(policy.fingerprint().to_owned())
            })
    }

    /// Rebuilds the snapshot in force on the current services, so a newly published
    /// classifier model joins it and the fingerprint: the same configuration, compiled
    /// rules and shadow, nothing read from disk again. Not a reload (not counted as one).
    /// On error the running policy stays active. Returns the new fingerprint.
    pub fn refresh(&self) -> Result<String, ReloadError> {
        // The lock may be held by a reload that reads and compiles for a while.
        runtime::off_the_async_threads(|| self.refresh_now())
    }

    fn refresh_now(&self) -> Result<String, ReloadError> {
        let set = self.services();
        let policy = Arc::new(
            self.live
                .get()
                .rebuilt(&set.services)?
                .with_metrics(&self.metrics),
        );
        self.put_in_force(&set, &policy);
        Ok(policy.fingerprint().to_owned())
    }

    /// Swaps `policy` in; `set` is the locked service set it was built on.
    fn put_in_force(&self, set: &ServiceSet, policy: &Arc<Policy>) {
        let old = self.live.swap(policy.clone());
        let _ = self
            .metrics
            .policy_info
            .remove_label_values(&[old.fingerprint()]);
        forget_unprobed_lists(&self.metrics, &old, policy);
        record_policy(&self.metrics, policy);
        if let Some(tier) = &set.services.tier {
            tier.set_fingerprint(policy.fingerprint());
        }
    }

    /// The policy snapshot new sessions get.
    pub fn policy(&self) -> Arc<Policy> {
        self.live.get()
    }

    /// The shadow policy's recent disagreements (for the tier console).
    pub fn shadow_log(&self) -> Option<Arc<policy::shadow::ShadowLog>> {
        self.services().services.shadow_log.clone()
    }
}

/// Removes the `mxguard_dns_list_lists_everyone` series of the lists `old` probed and
/// `new` does not: only a probe of the list writes its series, so one flagged, then
/// removed from the configuration (as the alert asks), read 1 until a restart (review).
fn forget_unprobed_lists(metrics: &Metrics, old: &Policy, new: &Policy) {
    let kept = new.probed_dns_lists();
    for (check, list) in old.probed_dns_lists() {
        if !kept.contains(&(check, list.clone())) {
            let _ = metrics
                .dns_list_lists_everyone
                .remove_label_values(&[check, &list]);
        }
    }
}

fn record_policy(metrics: &Metrics, policy: &Policy) {
    metrics
        .policy_info
        .with_label_values(&[policy.fingerprint()])
        .set(1);
    let loaded = policy
        .loaded_at()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics.policy_last_reload_timestamp_seconds.set(loaded);
}

fn build_policy(
    config: Arc<Config>,
    metrics: &Metrics,
    services: &Services,
) -> Result<Arc<Policy>, policy::PolicyError> {
    Ok(Arc::new(
        Policy::build(config, services)?.with_metrics(metrics),
    ))
}

/// Logs the settings that load but defeat their purpose (see
/// [`Config::doubtful_settings`]), at start and at each reload that takes them.
fn warn_of_doubtful_settings(config: &Config) {
    for (key, why) in config.doubtful_settings() {
        tracing::warn!(key, "{why}");
    }
}

/// Warns of `policy.actions` keys that name nothing, once a policy is in force (a reload
/// refused later, by its certificate, warned of a configuration that never ran).
fn warn_of_actions_naming_nothing(policy: &Policy) {
    for action in policy.actions_naming_nothing() {
        tracing::warn!(
            key = %format!("policy.actions.{action}"),
            "no rule or check symbol has this name: the action never applies (a typo?)"
        );
    }
}

/// Runs the gateway on `listeners` until `shutdown` is cancelled, then drains: no new
/// clients, running sessions get `shutdown_grace` to finish, delivery stops last.
/// `on_start` receives the reload handle once everything runs.
pub async fn serve(
    config: Config,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
    on_start: impl FnOnce(Gateway),
) -> Result<(), ServeError> {
    let started = std::time::SystemTime::now();
    let config = Arc::new(config);
    let journal = Arc::new(policy::Journal::default());
    let (spool, ready) = Spool::open_recycling(&config.spool.dir, config.spool.recycle_files)?;
    let spool = Arc::new(spool);
    let metrics = Arc::new(Metrics::new());
    let callout = Arc::new(relay::Callout::new(metrics.clone()));
    let state = state::State::open(&config.state, metrics.clone()).await?;
    let state_watch = CancellationToken::new();
    tokio::spawn(
        state
            .clone()
            .watch(STATE_PROBE_INTERVAL, state_watch.clone()),
    );
    if !state.is_shared() && config.tier.as_ref().is_some_and(|t| !t.peers.is_empty()) {
        tracing::warn!("[tier] with the embedded state store: the members share no greylisting, client contacts or heartbeats (peers are only probed; MX_BYPASS_FIRST_CONTACT and MX_FANOUT are off); set state.backend = \"redis\"");
    }
    for (key, name) in config.tier.iter().flat_map(|t| t.names_not_host_names()) {
        tracing::warn!(key, name, "{}", config::NOT_A_HOST_NAME);
    }
    let tier = config
        .tier
        .clone()
        .map(|t| tier::Tier::new(t, Some(state.clone()), metrics.clone()));
    let classifier = config.classifier.enabled.then(|| {
        Arc::new(classify::Classifier::new(
            classify::Source::State(state.clone()),
            classify::Settings {
                node: format!("{}:{}", config.server.hostname, std::process::id()),
            },
        ))
    });
    if let Some(c) = &classifier {
        // The first snapshot already scores with the published model.
        if let Err(e) = c.refresh().await {
            tracing::warn!(error = %e, "classifier: no published model read at start");
        }
    }
    let shared = Shared {
        state: Some(state.clone()),
        classifier: classifier.clone(),
        shadow_log: Some(Arc::new(policy::shadow::ShadowLog::default())),
        tier: tier.clone(),
        disk_inspections: Some(Arc::new(tokio::sync::Semaphore::new(
            config.attachments.disk_inspections,
        ))),
    };
    let set = ServiceSet::build(&config, &metrics, callout.clone(), shared);
    set.put_dns_in_force(None, &metrics);
    let policy = build_policy(config.clone(), &metrics, &set.services)?;
    warn_of_actions_naming_nothing(&policy);
    warn_of_doubtful_settings(&config);
    let live = Arc::new(LivePolicy::new(policy.clone()));
    // What can still fail comes before the tier's first round: a start that fails after
    // announcing this member left its heartbeat standing, and backups took a primary that
    // never listened (restarted by systemd every 2 s) for up.
    let tls = Arc::new(net::tls::LiveTls::new(load_tls(&config)?));
    let admin_listener = match config.metrics.listen {
        Some(addr) => Some(
            admin::bind(addr)
                .await
                .map_err(|e| ServeError::Admin(addr, e))?,
        ),
        None => None,
    };
    if let Some(tier) = &tier {
        tier.set_fingerprint(policy.fingerprint());
        tier.watch_spool(spool.clone(), config.spool.min_free_bytes);
        // The first round runs before the listeners open, so a backup knows at once
        // whether its primaries are up.
        tier.round().await;
        tokio::spawn(tier.clone().run(state_watch.clone()));
    }
    record_policy(&metrics, &policy);
    tracing::info!(fingerprint = policy.fingerprint(), "policy loaded");
    let stop_now = CancellationToken::new();
    let server = Arc::new(smtp::Server {
        policy: live.clone(),
        spool: spool.clone(),
        metrics: metrics.clone(),
        tls: tls.clone(),
        shutdown: shutdown.clone(),
        stop_now: stop_now.clone(),
        admission: smtp::Admission::new(config.server.limits.max_sessions),
        budget: smtp::MemoryBudget::new(config.server.limits.message_memory_total_bytes)
            .with_gauge(metrics.message_memory_bytes.clone()),
        journal: journal.clone(),
    });
    // Stopped last: `/healthz` answers 503 while the sessions drain.
    let admin_stop = CancellationToken::new();
    let admin = admin_listener.map(|l| {
        let admin_state = admin::AdminState {
            policy: live.clone(),
            metrics: metrics.clone(),
            spool: spool.clone(),
            state: Some(state.clone()),
            tier: tier.clone(),
            journal: journal.clone(),
            shadow_log: set.services.shadow_log.clone(),
            started,
            shutdown: shutdown.clone(),
        };
        tokio::spawn(admin::serve(l, admin_state, admin_stop.clone()))
    });

    let delivery_stop = CancellationToken::new();
    let mut delivery = relay::start(
        live.clone(),
        spool,
        ready,
        metrics.clone(),
        delivery_stop.clone(),
    );

    let sessions = TaskTracker::new();
    let acceptors = TaskTracker::new();
    let bound: Vec<std::net::SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, hostname = %config.server.hostname, "listening");
        }
        acceptors.spawn(smtp::accept_loop(
            listener,
            server.clone(),
            sessions.clone(),
        ));
    }
    acceptors.close();
    let gateway = Gateway {
        live: live.clone(),
        metrics,
        callout,
        services: Arc::new(Mutex::new(set)),
        tls,
        started_with: config.clone(),
        bound: Arc::new(bound),
    };
    let classifier_stop = CancellationToken::new();
    if let Some(c) = classifier {
        let g = gateway.clone();
        // The model is part of the fingerprint: the one logged at start (before a seed's
        // model is installed) would match neither `check` nor `/policy` (review).
        let changed = move || match g.refresh() {
            Ok(fingerprint) => {
                tracing::info!(%fingerprint, "policy rebuilt with the new classifier model");
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy not rebuilt with the new classifier model");
            }
        };
        tokio::spawn(classify::maintain::run(
            c,
            live.clone(),
            changed,
            classifier_stop.clone(),
        ));
    }
    on_start(gateway);

    // Delivery ends only when told to: should it end before (a panic), the gateway would
    // go on answering 250 to mail that nothing delivers. It drains and stops instead, and
    // its supervisor starts it again.
    let delivery_died = tokio::select! {
        _ = shutdown.cancelled() => false,
        ended = &mut delivery => {
            tracing::error!(error = ?ended.err(), "delivery stopped unexpectedly; stopping the gateway so that it is restarted");
            shutdown.cancel();
            true
        }
    };
    tracing::info!("shutting down: no new connections");
    if let Some(tier) = &tier {
        tier.withdraw().await;
    }
    acceptors.wait().await;
    sessions.close();
    let grace = config.server.limits.shutdown_grace;
    if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            "sessions still running after the shutdown grace period; closing them with 421"
        );
        // Transfers still running get 421 before their connection closes.
        stop_now.cancel();
        let _ = tokio::time::timeout(STOP_NOW_WAIT, sessions.wait()).await;
    }
    delivery_stop.cancel();
    // A delivery may be waiting for the answer to its DATA under the timeout it started
    // with or a reloaded one: cut short, it would be delivered again after the restart.
    // None begins to write its end of data after this point (`ClientError::Stopping`):
    // what is still to come answers an end of data written already, within this bound,
    // unless its write itself was still held up by a server not reading (rare; cut
    // short then, as before).
    let bound = config
        .relay
        .data_timeout
        .max(live.get().config().relay.data_timeout)
        .max(Duration::from_secs(1));
    if !delivery_died && tokio::time::timeout(bound, delivery).await.is_err() {
        tracing::warn!("delivery workers did not stop in time");
    }
    state_watch.cancel();
    classifier_stop.cancel();
    admin_stop.cancel();
    if let Some(admin) = admin {
        let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    }
    tracing::info!("stopped");
    if delivery_died {
        return Err(ServeError::DeliveryStopped);
    }
    Ok(())
}
