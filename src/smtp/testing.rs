//! A gateway's shared state for unit tests of admission and sessions, with no listener.

use super::{Admission, MemoryBudget, Server};
use crate::config::{Config, Limits};
use crate::metrics::Metrics;
use crate::policy::{Journal, LivePolicy, Policy, Services};
use crate::spool::Spool;
use std::path::Path;
use std::sync::Arc;

/// A server relaying `a.test`, its spool in `dir`, with `limits` (TOML lines of
/// `[server.limits]`) over the defaults.
pub(crate) fn server(dir: &Path, limits: &str) -> (Arc<Server>, Limits) {
    let text = format!(
        "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n\
         [server.limits]\n{limits}\n"
    );
    let config = Arc::new(Config::from_toml(Path::new("t.toml"), &text).unwrap());
    let limits = config.server.limits.clone();
    let policy = Arc::new(Policy::build(config, &Services::default()).unwrap());
    let (spool, _rx) = Spool::open(dir).unwrap();
    let server = Arc::new(Server {
        policy: Arc::new(LivePolicy::new(policy)),
        spool: Arc::new(spool),
        metrics: Arc::new(Metrics::new()),
        tls: Default::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        stop_now: tokio_util::sync::CancellationToken::new(),
        admission: Admission::new(limits.max_sessions),
        budget: MemoryBudget::new(1 << 20),
        journal: Arc::new(Journal::default()),
    });
    (server, limits)
}
