//! The accept loop and admission control: a session holds a permit of the total and a
//! count of its client address for as long as it runs.

use super::conn::Conn;
use super::proxied;
use super::session::Session;
use super::Server;
use crate::mail::Reply;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

/// Session slots: a semaphore for the total, a count per client address.
#[derive(Debug)]
pub struct Admission {
    total: Arc<Semaphore>,
    /// Permits the semaphore was given (it follows `max_sessions` across reloads).
    capacity: Mutex<usize>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerIp,
}

/// A session's slot; dropping it (however the session ends, panics included) frees it.
#[derive(Debug)]
pub struct Slot {
    server: Arc<Server>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.server.admission.per_ip();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.server.metrics.sessions_active.dec();
    }
}

/// A poisoned lock only means a panic elsewhere; the counts are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admission {
    /// Room for `max_sessions` sessions.
    pub fn new(max_sessions: usize) -> Admission {
        Admission {
            total: Arc::new(Semaphore::new(max_sessions)),
            capacity: Mutex::new(max_sessions),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    fn per_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        lock(&self.per_ip)
    }

    /// Follows a reloaded `max_sessions`: grows at once; shrinks as running sessions end
    /// (permits in use cannot be taken back, so the rest is retried on the next accept).
    fn resize(&self, want: usize) {
        let mut capacity = lock(&self.capacity);
        if want > *capacity {
            self.total.add_permits(want - *capacity);
            *capacity = want;
        } else if want < *capacity {
            *capacity -= self.total.forget_permits(*capacity - want);
        }
    }

    /// Takes a slot for a client at `ip`, or says which limit refuses it.
    fn admit(
        &self,
        server: &Arc<Server>,
        ip: IpAddr,
        max_sessions: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Refusal> {
        self.resize(max_sessions);
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        let mut map = self.per_ip();
        let count = map.entry(ip).or_insert(0);
        if *count >= max_per_ip {
            if *count == 0 {
                map.remove(&ip);
            }
            return Err(Refusal::PerIp);
        }
        *count += 1;
        drop(map);
        server.metrics.sessions_active.inc();
        Ok(Slot {
            server: server.clone(),
            ip,
            _permit: permit,
        })
    }
}

/// Accepts clients until shutdown; each session runs in its own task tracked by `tracker`.
pub async fn accept_loop(listener: TcpListener, server: Arc<Server>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = server.shutdown.cancelled() => return,
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
        let proxy = {
            let policy = server.policy.peek();
            let config = &policy.config().server;
            (!config.proxy_protocol_from.is_empty()).then(|| {
                (
                    config.proxy_protocol_from.clone(),
                    config.proxy_protocol_timeout,
                )
            })
        };
        match proxy {
            None => admit_and_run(&server, &tracker, tcp, peer),
            // The header is read in the session's own task: a slow balancer must not
            // hold up the accept loop.
            Some((from, limit)) => {
                let server = server.clone();
                let sessions = tracker.clone();
                tracker.spawn(async move {
                    let mut tcp = tcp;
                    match proxied::real_client(&mut tcp, peer, &from, limit).await {
                        Ok(real) => admit_and_run(&server, &sessions, tcp, real),
                        Err(e) => {
                            server
                                .metrics
                                .connections_total
                                .with_label_values(&["proxy_refused"])
                                .inc();
                            tracing::info!(client = %peer, error = %e, "PROXY protocol refused");
                            let _ = tcp.shutdown().await;
                        }
                    }
                });
            }
        }
    }
}

/// Admission for a client at `peer` (the real one, after any PROXY header), then its
/// session in a task of its own.
fn admit_and_run(server: &Arc<Server>, tracker: &TaskTracker, tcp: TcpStream, peer: SocketAddr) {
    let admitted = {
        let policy = server.policy.peek();
        let limits = &policy.config().server.limits;
        server.admission.admit(
            server,
            peer.ip(),
            limits.max_sessions,
            limits.max_sessions_per_ip,
        )
    };
    let slot = match admitted {
        Ok(slot) => slot,
        Err(refusal) => {
            let (result, limit, reply) = match refusal {
                Refusal::Total => (
                    "over_limit",
                    "max_sessions",
                    Reply::new(421, "4.3.2", "Too many connections, try again later"),
                ),
                Refusal::PerIp => (
                    "over_ip_limit",
                    "max_sessions_per_ip",
                    Reply::new(421, "4.7.0", "Too many connections from your address"),
                ),
            };
            let m = &server.metrics;
            m.connections_total.with_label_values(&[result]).inc();
            m.limit_hits_total.with_label_values(&[limit]).inc();
            tracing::info!(client = %peer, limit, "connection refused");
            tracker.spawn(refuse(tcp, reply));
            return;
        }
    };
    server
        .metrics
        .connections_total
        .with_label_values(&["accepted"])
        .inc();
    let session = Session::new(Conn::new(tcp), server.clone(), peer);
    tracker.spawn(async move {
        let _slot = slot;
        session.run().await;
    });
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
