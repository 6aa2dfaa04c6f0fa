//! The accept loop: every client is admitted (see [`super::admission`]), made room for by
//! evicting an idle session, or refused with a 421 naming the limit.

use super::admission::{Refusal, Slot};
use super::conn::Conn;
use super::proxied;
use super::session::Session;
use super::Server;
use crate::mail::Reply;
use crate::metrics::LogEvery;
use crate::net::AcceptErrors;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

/// Accepts clients until shutdown; each session runs in its own task tracked by `tracker`.
pub async fn accept_loop(listener: TcpListener, server: Arc<Server>, tracker: TaskTracker) {
    server.admission.start_reaper(&server);
    // Anyone who can reach the port may connect from outside the balancer list, as
    // often as they like: one line a minute says so, the metric counts them all.
    let outsiders_logged = Arc::new(LogEvery::new(std::time::Duration::from_secs(60)));
    let mut accept_errors = AcceptErrors::new("smtp");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = server.shutdown.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => {
                accept_errors.accepted();
                x
            }
            Err(e) => {
                if let Some(pause) = accept_errors.failed(&e, &server.metrics) {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = server.shutdown.cancelled() => return,
                    }
                }
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
            None => admit(&server, &tracker, tcp, peer),
            // The header is read in a task of its own: a slow balancer must not hold up
            // the accept loop.
            Some((from, limit)) => {
                let server = server.clone();
                let sessions = tracker.clone();
                let outsiders_logged = outsiders_logged.clone();
                tracker.spawn(async move {
                    let mut tcp = tcp;
                    // A drain does not wait out a header still coming (up to
                    // `proxy_protocol_timeout`) for a session that could only answer 421.
                    let read = tokio::select! {
                        read = proxied::real_client(&mut tcp, peer, &from, limit) => read,
                        _ = server.shutdown.cancelled() => {
                            let _ = tcp.shutdown().await;
                            return;
                        }
                    };
                    match read {
                        Ok(real) => admit(&server, &sessions, tcp, real),
                        Err(e) => {
                            let (result, log) = match e {
                                // A balancer's TCP health check (connect, close): counted
                                // apart, so `proxy_refused` stays worth alerting on.
                                proxied::ProxyRefusal::Silent => ("proxy_no_header", false),
                                proxied::ProxyRefusal::NotAllowed => {
                                    ("proxy_refused", outsiders_logged.due())
                                }
                                _ => ("proxy_refused", true),
                            };
                            server
                                .metrics
                                .connections_total
                                .with_label_values(&[result])
                                .inc();
                            if log {
                                tracing::info!(client = %peer, error = %e, "PROXY protocol refused");
                            } else {
                                tracing::debug!(client = %peer, error = %e, "PROXY protocol refused");
                            }
                            let _ = tcp.shutdown().await;
                        }
                    }
                });
            }
        }
    }
}

/// Admits a client at `peer` (the real one, after any PROXY header) and runs its session,
/// makes room by evicting an idle session, or refuses it.
fn admit(server: &Arc<Server>, tracker: &TaskTracker, tcp: TcpStream, peer: SocketAddr) {
    // Its PTR lives under `in-addr.arpa`, its HELO literal and SPF records name the IPv4
    // address, lists and limits key on it.
    let peer = crate::config::canonical(peer);
    let admitted = {
        let policy = server.policy.peek();
        let limits = &policy.config().server.limits;
        server.admission.admit(server, peer.ip(), limits)
    };
    match admitted {
        Ok(slot) => {
            tracker.spawn(run(tcp, peer, server.clone(), slot));
        }
        Err(Refusal::Total) => {
            // Every slot is taken: an idle session may make room, off the accept loop.
            let server = server.clone();
            tracker.spawn(async move {
                let limits = server.policy.peek().config().server.limits.clone();
                // A drain answers at once rather than after the wait for a slot.
                let admitted = tokio::select! {
                    admitted = server.admission.admit_by_eviction(&server, peer.ip(), &limits) => admitted,
                    _ = server.shutdown.cancelled() => Err(Refusal::Total),
                };
                match admitted {
                    Ok(slot) => run(tcp, peer, server, slot).await,
                    Err(refusal) => refuse(&server, tcp, peer, refusal).await,
                }
            });
        }
        Err(refusal) => {
            tracker.spawn(refuse(server, tcp, peer, refusal));
        }
    }
}

async fn run(tcp: TcpStream, peer: SocketAddr, server: Arc<Server>, slot: Slot) {
    server
        .metrics
        .connections_total
        .with_label_values(&["accepted"])
        .inc();
    let session = Session::new(Conn::new(tcp), server, peer, slot.handle());
    let _slot = slot;
    session.run().await;
}

fn refuse(
    server: &Arc<Server>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    refusal: Refusal,
) -> impl std::future::Future<Output = ()> + Send + 'static {
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
        Refusal::PerNetwork => (
            "over_network_limit",
            "max_sessions_per_network",
            Reply::new(421, "4.7.0", "Too many connections from your network"),
        ),
        Refusal::PerSite => (
            "over_site_limit",
            "max_sessions_per_ipv6_site",
            Reply::new(421, "4.7.0", "Too many connections from your network"),
        ),
    };
    let m = &server.metrics;
    m.connections_total.with_label_values(&[result]).inc();
    m.limit_hits_total.with_label_values(&[limit]).inc();
    m.smtp_replies_total
        .with_label_values(&[crate::policy::Stage::Connect.as_str(), "4xx"])
        .inc();
    if server.admission.refusal_log_due() {
        tracing::info!(
            client = %peer,
            limit,
            "connection refused (further refusals are counted in mxguard_connections_total and logged once a minute)"
        );
    } else {
        tracing::debug!(client = %peer, limit, "connection refused");
    }
    let policy = server.policy.peek().clone();
    if matches!(refusal, Refusal::Total) {
        // Saturated: the heartbeat says so, and the backups do not score the senders it
        // turns away as bypassing it.
        policy.note_sessions_full();
    }
    async move {
        let wire = reply.to_wire();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.write_all(wire.as_bytes()),
        )
        .await;
        let _ = tcp.shutdown().await;
        policy.remember_turned_away(peer.ip()).await;
    }
}

#[cfg(test)]
mod tests {
    use crate::config::canonical;

    /// Regression (review): on a dual-stack listener IPv4 clients kept their mapped form,
    /// so FCrDNS asked `ip6.arpa` (`RDNS_NONE` for every one), `HELO [a.b.c.d]` scored
    /// `HELO_IP_MISMATCH` and SPF `a`/`mx` compared AAAA records (`SPF_FAIL`).
    #[test]
    fn ipv4_mapped_clients_are_ipv4_clients() {
        let mapped = "[::ffff:192.0.2.10]:4000".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.10:4000".parse().unwrap());
        let v6 = "[2001:db8::1]:25".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
