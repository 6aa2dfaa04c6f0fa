//! Inbound SMTP: the accept loop with its connection limits, and one session per client.

pub mod address;
pub mod command;
pub mod conn;
pub mod data;
mod received;
mod session;

pub use address::Address;
pub use received::rfc5322_now;

use crate::metrics::Metrics;
use crate::policy::{Policy, Reply};
use crate::spool::Spool;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every session shares: the current policy snapshot and the gateway's services.
pub struct Shared {
    /// Current policy; a session takes a snapshot when it starts.
    pub policy: ArcSwap<Policy>,
    /// The spool accepted messages go to.
    pub spool: Arc<Spool>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// STARTTLS acceptor, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Cancelled when the gateway stops.
    pub shutdown: CancellationToken,
    /// Sessions per client address.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("spool", &self.spool)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Bundles the services.
    pub fn new(
        policy: Arc<Policy>,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> Shared {
        Shared {
            policy: ArcSwap::new(policy),
            spool,
            metrics,
            tls,
            shutdown,
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    fn per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A poisoned map only means a panic elsewhere; the counts are still usable.
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Releases a session's slot in the limits when the session ends (even by panic).
struct SessionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut map = self.shared.per_ip();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.shared.metrics.sessions_active.dec();
    }
}

/// Accepts clients until shutdown; each session runs in its own task tracked by `tracker`.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.shutdown.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let policy = shared.policy.load();
        let limits = &policy.config().server.limits;
        let active = shared.metrics.sessions_active.get().max(0) as usize;
        let refusal = {
            let mut map = shared.per_ip();
            let count = map.entry(peer.ip()).or_insert(0);
            if active >= limits.max_sessions {
                Some((
                    "over_limit",
                    "max_sessions",
                    Reply::new(421, "4.3.2", "Too many connections, try again later"),
                ))
            } else if *count >= limits.max_sessions_per_ip {
                Some((
                    "over_ip_limit",
                    "max_sessions_per_ip",
                    Reply::new(421, "4.7.0", "Too many connections from your address"),
                ))
            } else {
                *count += 1;
                None
            }
        };
        if let Some((result, limit, reply)) = refusal {
            shared.per_ip().retain(|_, n| *n > 0);
            shared
                .metrics
                .connections_total
                .with_label_values(&[result])
                .inc();
            shared
                .metrics
                .limit_hits_total
                .with_label_values(&[limit])
                .inc();
            tracing::info!(client = %peer, limit, "connection refused");
            tracker.spawn(refuse(tcp, reply));
            continue;
        }
        shared
            .metrics
            .connections_total
            .with_label_values(&["accepted"])
            .inc();
        shared.metrics.sessions_active.inc();
        let slot = SessionSlot {
            shared: shared.clone(),
            ip: peer.ip(),
        };
        let session = session::Session::new(conn::Conn::new(tcp), shared.clone(), peer);
        tracker.spawn(async move {
            let _slot = slot;
            session.run().await;
        });
    }
}

async fn refuse(mut tcp: TcpStream, reply: Reply) {
    let wire = reply.to_wire();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.write_all(wire.as_bytes()),
    )
    .await;
    let _ = tcp.shutdown().await;
}
