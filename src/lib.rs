//! mxguard: an inbound spam-filtering SMTP gateway for equal-preference MX tiers.
//!
//! Data flows one way: listener → session → policy → spool → relay. [`serve`] wires
//! them together on listeners the caller has already bound (so tests can bind port 0).
#![deny(missing_docs)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod dns;
pub mod header_fields;
pub mod metrics;
pub mod policy;
pub mod relay;
pub mod rules;
pub mod smtp;
pub mod spool;

use config::Config;
use metrics::Metrics;
use policy::{Policy, RecipientVerifier};
use smtp::Shared;
use spool::Spool;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Failures that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// The STARTTLS certificate or key could not be loaded.
    #[error("server.tls: {0}")]
    Tls(String),
    /// The rules could not be compiled.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The admin listener (`[metrics] listen`) could not be bound.
    #[error("metrics.listen: cannot bind {0}: {1}")]
    Admin(std::net::SocketAddr, std::io::Error),
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
}

/// A running gateway's handle for reloads.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    dns: Option<dns::Dns>,
    auth: Option<auth::Authenticator>,
}

impl Gateway {
    /// Re-reads the configuration and rules and swaps the policy snapshot atomically;
    /// sessions already running keep the one they started with. On any error the running
    /// policy stays active. Returns the new fingerprint.
    pub fn reload(&self, config_path: &std::path::Path) -> Result<String, ReloadError> {
        let metrics = &self.shared.metrics;
        let built = Config::load(config_path)
            .map_err(ReloadError::from)
            .and_then(|config| {
                build_policy(
                    Arc::new(config),
                    metrics,
                    self.dns.clone(),
                    self.auth.clone(),
                )
                .map_err(ReloadError::from)
            });
        match built {
            Ok(policy) => {
                let old = self.shared.policy.swap(policy.clone());
                metrics
                    .policy_info
                    .with_label_values(&[old.fingerprint()])
                    .set(0);
                let _ = metrics
                    .policy_info
                    .remove_label_values(&[old.fingerprint()]);
                record_policy(metrics, &policy);
                metrics
                    .policy_reloads_total
                    .with_label_values(&["success"])
                    .inc();
                Ok(policy.fingerprint().to_owned())
            }
            Err(e) => {
                metrics
                    .policy_reloads_total
                    .with_label_values(&["failure"])
                    .inc();
                Err(e)
            }
        }
    }

    /// The policy snapshot new sessions get.
    pub fn policy(&self) -> Arc<Policy> {
        self.shared.policy.load_full()
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

/// Compiles the policy snapshot of a configuration.
fn build_policy(
    config: Arc<Config>,
    metrics: &Arc<Metrics>,
    dns: Option<dns::Dns>,
    auth: Option<auth::Authenticator>,
) -> Result<Arc<Policy>, policy::PolicyError> {
    let callout = Arc::new(relay::Callout::new(&config.relay, metrics.clone()));
    let verifier = Arc::new(RecipientVerifier::new(
        &config.relay.recipients,
        Some(callout),
    ));
    Ok(Arc::new(
        Policy::build(config, verifier, dns, auth)?.with_metrics(metrics),
    ))
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
    let config = Arc::new(config);
    let (spool, ready) = Spool::open(&config.spool.dir)?;
    let spool = Arc::new(spool);
    let metrics = Arc::new(Metrics::new());
    // One resolver for every DNS check; without one (no usable system resolver and no
    // dns.nameservers) the DNS checks are left out, loudly.
    let dns = match dns::Dns::new(&config.dns, metrics.clone()) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(error = %e, "no DNS resolver: DNS checks are disabled");
            None
        }
    };
    let auth = dns.as_ref().map(auth::Authenticator::new);
    let policy = build_policy(config.clone(), &metrics, dns.clone(), auth.clone())?;
    record_policy(&metrics, &policy);
    tracing::info!(fingerprint = policy.fingerprint(), "policy loaded");
    let tls = match &config.server.tls {
        Some(files) => Some(
            smtp::conn::load_acceptor(&files.certificate, &files.key).map_err(ServeError::Tls)?,
        ),
        None => None,
    };
    let admin_listener = match config.metrics.listen {
        Some(addr) => Some(
            metrics::admin::bind(addr)
                .await
                .map_err(|e| ServeError::Admin(addr, e))?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared::new(
        policy,
        spool.clone(),
        metrics.clone(),
        tls,
        shutdown.clone(),
    ));
    // Stopped last: `/healthz` answers 503 while the sessions drain.
    let admin_stop = CancellationToken::new();
    let admin = admin_listener
        .map(|l| tokio::spawn(metrics::admin::serve(l, shared.clone(), admin_stop.clone())));

    let delivery_stop = CancellationToken::new();
    let delivery = relay::start(config.clone(), spool, ready, metrics, delivery_stop.clone());

    let sessions = TaskTracker::new();
    let acceptors = TaskTracker::new();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, hostname = %config.server.hostname, "listening");
        }
        acceptors.spawn(smtp::accept_loop(
            listener,
            shared.clone(),
            sessions.clone(),
        ));
    }
    acceptors.close();
    on_start(Gateway {
        shared: shared.clone(),
        dns,
        auth,
    });

    shutdown.cancelled().await;
    tracing::info!("shutting down: no new connections");
    acceptors.wait().await;
    sessions.close();
    let grace = config.server.limits.shutdown_grace;
    if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            "sessions still running after the shutdown grace period; closing them"
        );
    }
    delivery_stop.cancel();
    let bound = config.relay.data_timeout.max(Duration::from_secs(1));
    if tokio::time::timeout(bound, delivery).await.is_err() {
        tracing::warn!("delivery workers did not stop in time");
    }
    admin_stop.cancel();
    if let Some(admin) = admin {
        let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    }
    tracing::info!("stopped");
    Ok(())
}
