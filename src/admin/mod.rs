//! Admin HTTP listener: `/metrics` for Prometheus, `/healthz` for load balancers and
//! orchestrators, `/policy` for operators and `mxguard audit`-style comparisons, and the
//! tier console (`/`, `/message/ID`) for people.
//!
//! It binds `[metrics] listen` (127.0.0.1:9425 by default: never public unless configured),
//! answers only clients inside `metrics.allow` (others are closed at once, holding no
//! connection slot; a kept-alive client a reload leaves outside gets 403), and keeps
//! answering while the gateway drains after SIGTERM, so that `/healthz` can say 503 and a load balancer
//! stops sending mail before the SMTP listeners are gone. It stops last. Nothing it does
//! can stop the gateway: a failed connection or request is logged and forgotten. Clients
//! that send their request slowly (or never) cannot lock probes out: headers have
//! `metrics.header_timeout`, and past `metrics.max_connections` the oldest connection
//! makes room for the new one.

mod console;

use crate::config::{OnFailure, ADMIN_CONNECTION_LIFETIME};
use crate::metrics::{LogEvery, Metrics};
use crate::net::AcceptErrors;
use crate::policy::{LivePolicy, Policy};
use crate::spool::{Capacity, Spool, CAPACITY_PROBE_LIMIT};
use crate::state::State;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Refusals of clients outside `metrics.allow` are logged at info at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The open admin connections, oldest first. A slow-request flood cannot lock scrapers
/// and health probes out: when `metrics.max_connections` are open, accepting one more
/// closes the oldest connection that is not in the middle of answering a request. Under a
/// flood that is one still dribbling its headers; a real request is complete in its first
/// read, is marked busy from then on, and is answered within milliseconds.
#[derive(Debug, Default)]
struct OpenConnections {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

/// One open connection: what closes it, and whether a request is being answered on it.
#[derive(Debug)]
struct Slot {
    close: CancellationToken,
    busy: Arc<AtomicBool>,
}

impl OpenConnections {
    /// Registers a new connection, first closing the oldest idle ones until fewer than
    /// `max` remain (connections answering a request are never closed: they end soon);
    /// returns its key, the token that closes it and its busy flag. `None` when all `max`
    /// are answering: the new connection is refused, since admitting it anyway made the
    /// limit none (clients pipelining slow `/healthz` requests over many connections went
    /// past it up to the descriptor limit).
    fn admit(
        &mut self,
        max: usize,
        parent: &CancellationToken,
    ) -> Option<(u64, CancellationToken, Arc<AtomicBool>)> {
        while self.open.len() >= max.max(1) {
            let victim = self
                .open
                .iter()
                .find(|(_, slot)| !slot.busy.load(Ordering::Relaxed))
                .map(|(key, _)| *key);
            let slot = victim.and_then(|key| self.open.remove(&key))?;
            slot.close.cancel();
        }
        let key = self.next;
        self.next += 1;
        let close = parent.child_token();
        let busy = Arc::new(AtomicBool::new(false));
        self.open.insert(
            key,
            Slot {
                close: close.clone(),
                busy: busy.clone(),
            },
        );
        Some((key, close, busy))
    }
}

/// Marks a connection busy while one request on it is being answered.
struct Busy(Arc<AtomicBool>);

impl Busy {
    fn new(flag: &Arc<AtomicBool>) -> Busy {
        flag.store(true, Ordering::Relaxed);
        Busy(flag.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Removes a finished connection from [`OpenConnections`] however its task ends.
struct Registration {
    connections: Arc<Mutex<OpenConnections>>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.connections).open.remove(&self.key);
    }
}

/// The table stays usable even if a task panicked while holding the lock.
fn lock(m: &Mutex<OpenConnections>) -> std::sync::MutexGuard<'_, OpenConnections> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The policy in force (its configuration holds `metrics.allow`).
    pub policy: Arc<LivePolicy>,
    /// The registry `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// The spool `/healthz` probes.
    pub spool: Arc<Spool>,
    /// The state backend whose health `/healthz` reports.
    pub state: Option<State>,
    /// This gateway's tier, for the console.
    pub tier: Option<Arc<crate::tier::Tier>>,
    /// The last judged messages, for the console.
    pub journal: Arc<crate::policy::Journal>,
    /// The shadow policy's last disagreements, listed on the console so a new rule set
    /// can be judged on live traffic before it is switched on.
    pub shadow_log: Option<Arc<crate::policy::shadow::ShadowLog>>,
    /// When the gateway started.
    pub started: std::time::SystemTime,
    /// Cancelled when the gateway starts draining: `/healthz` turns 503.
    pub shutdown: CancellationToken,
}

/// Binds the admin listener (called by the gateway before the gateway accepts mail,
/// so a taken port stops the start instead of leaving the gateway unobservable).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the admin endpoints on `listener` until `stop` is cancelled. The gateway's
/// `shutdown` token (in `state`) only turns `/healthz` to 503: scrapes keep working while
/// sessions drain.
pub async fn serve(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    let state = Arc::new(state);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener (/metrics, /healthz, /policy)");
    }
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    let connections = TaskTracker::new();
    let refusal_log = LogEvery::new(REFUSAL_LOG_INTERVAL);
    // A probe refused because every connection was busy must be explainable from the log.
    let full_log = LogEvery::new(REFUSAL_LOG_INTERVAL);
    let mut accept_errors = AcceptErrors::new("admin");
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    accept_errors.accepted();
                    a
                }
                Err(e) => {
                    if let Some(pause) = accept_errors.failed(&e, &state.metrics) {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                    continue;
                }
            },
        };
        // Read per connection, so a reload changes the limits without a restart.
        let (max, header_timeout, allowed) = {
            let policy = state.policy.peek();
            let m = &policy.config().metrics;
            (
                m.max_connections,
                m.header_timeout,
                m.allow.contains(peer.ip()),
            )
        };
        if !allowed {
            // Closed before it takes a slot: a flood from outside cannot push out probes.
            if refusal_log.due() {
                tracing::info!(client = %peer, "admin connection refused: not in metrics.allow (logged once a minute)");
            } else {
                tracing::debug!(client = %peer, "admin connection refused: not in metrics.allow");
            }
            drop(tcp);
            continue;
        }
        let Some((key, evicted, busy)) = lock(&open).admit(max, &stop) else {
            if full_log.due() {
                tracing::warn!(client = %peer, max, "admin connection refused: all metrics.max_connections are answering (logged once a minute)");
            } else {
                tracing::debug!(client = %peer, "admin connection refused: every connection is answering");
            }
            drop(tcp);
            continue;
        };
        let registration = Registration {
            connections: open.clone(),
            key,
        };
        let state = state.clone();
        connections.spawn(async move {
            let _registration = registration;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let busy = Busy::new(&busy);
                async move {
                    let response = respond(&req, peer.ip(), &state).await;
                    drop(busy);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(client = %peer, error = %e, "admin connection ended with an error");
                },
                // Evicted for a newer connection, or the listener stops.
                _ = evicted.cancelled() => {
                    tracing::debug!(client = %peer, "admin connection closed to make room");
                }
                _ = tokio::time::sleep(ADMIN_CONNECTION_LIFETIME) => {}
            }
        });
        // Let the new connection read what it already has before the next accept: a
        // complete request is then marked busy and cannot be evicted by a burst of
        // flood connections queued behind it. On a multi-threaded runtime this is likely,
        // not certain: a probe's request not yet read may still be closed by a flood
        // from inside `metrics.allow`, which it then retries.
        tokio::task::yield_now().await;
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
}

/// Whether `client` may read the console's pages of recent mail: `metrics.console_allow`
/// when set, else everyone `metrics.allow` lets in.
fn console_allowed(config: &crate::config::Config, client: std::net::IpAddr) -> bool {
    config
        .metrics
        .console_allow
        .as_ref()
        .is_none_or(|list| list.contains(client))
}

/// Answers one request from `client`.
async fn respond(
    req: &Request<Incoming>,
    client: std::net::IpAddr,
    state: &AdminState,
) -> Response<Full<Bytes>> {
    // A kept-alive client that a reload left outside `metrics.allow`.
    if !state.policy.peek().config().metrics.allow.contains(client) {
        // At debug: a pipelining client would make one line per request.
        tracing::debug!(%client, path = req.uri().path(), "admin request refused: not in metrics.allow");
        return text(StatusCode::FORBIDDEN, "forbidden\n");
    }
    if let Some(host) = req.headers().get(HOST) {
        if !host_allowed(host.as_bytes(), state.policy.peek().config()) {
            tracing::debug!(%client, ?host, "admin request refused: unknown Host");
            return text(
                StatusCode::FORBIDDEN,
                "forbidden: unknown Host (see metrics.hostnames)\n",
            );
        }
    }
    let path = req.uri().path();
    let known =
        matches!(path, "/" | "/metrics" | "/healthz" | "/policy") || path.starts_with("/message/");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let console = path == "/" || path.starts_with("/message/");
    if console && !console_allowed(state.policy.peek().config(), client) {
        tracing::debug!(%client, path, "console request refused: not in metrics.console_allow");
        return text(StatusCode::FORBIDDEN, "forbidden\n");
    }
    match path {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => {
            let (status, body) = health(state).await;
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        "/policy" => {
            let body = policy_json(&state.policy.get());
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        "/" => html(console::overview(state)),
        _ => {
            let id = path.trim_start_matches("/message/");
            match console::message(state, id) {
                Some(body) => html(body),
                None => text(
                    StatusCode::NOT_FOUND,
                    "no such message (the console keeps the last 100)\n",
                ),
            }
        }
    }
}

/// Whether a request's `Host` names this gateway: an IP address (what Prometheus, load
/// balancers and tier peers use), `localhost`, `server.hostname` or one of
/// `metrics.hostnames`, with or without a port. A browser that a page led here by DNS
/// rebinding names the page's host instead; answering it would let that page read the
/// console (addresses, subjects) from inside `metrics.allow`.
fn host_allowed(host: &[u8], config: &crate::config::Config) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let host = host.trim();
    // `[v6]:port`, `[v6]`, `name:port`, `v4:port`, `name`.
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            // A link-local address may carry its zone (`fe80::1%eth0`, `%25` as RFC 6874
            // writes it in a URI); the address is what names us.
            Some((inside, _)) => {
                let address = inside.split('%').next().unwrap_or(inside);
                return address.parse::<std::net::Ipv6Addr>().is_ok();
            }
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name
            == config
                .server
                .hostname
                .trim_end_matches('.')
                .to_ascii_lowercase()
        || config.metrics.hostnames.contains(&name)
}

fn html(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 200 while the gateway accepts mail; 503 while it drains, when the spool cannot take a
/// write, or when its free space is under `spool.min_free_bytes` (soon every message
/// would get 452: a load balancer should move away before that, not after).
/// A state backend that is down turns it to 503 only with `on_failure = "closed"` (then
/// mail needing state is tempfailed); with `"open"` the gateway still accepts mail, so it
/// stays 200 and the detail line says so.
async fn health(state: &AdminState) -> (StatusCode, String) {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    let min_free = state.policy.peek().config().spool.min_free_bytes;
    let capacity = state
        .spool
        .capacity_within(min_free, CAPACITY_PROBE_LIMIT)
        .await;
    let spool_line = match capacity {
        Capacity::NotWritable => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "spool not writable\n".into(),
            );
        }
        Capacity::Low { free } => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "spool low on space\nspool: {free} bytes free, below spool.min_free_bytes = {min_free}\n"
                ),
            );
        }
        Capacity::Room { free: Some(free) } => format!("spool: {free} bytes free\n"),
        Capacity::Room { free: None } => String::new(),
    };
    let Some(backend) = &state.state else {
        return (StatusCode::OK, format!("ok\n{spool_line}"));
    };
    let kind = backend.kind();
    if backend.health().is_up() {
        return (
            StatusCode::OK,
            format!("ok\nstate: {kind} up\n{spool_line}"),
        );
    }
    // The failure mode in force is the snapshot's: a reload may have changed it.
    match state.policy.peek().config().state.on_failure {
        OnFailure::Open => (
            StatusCode::OK,
            format!("ok\nstate: {kind} down (failing open)\n{spool_line}"),
        ),
        OnFailure::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state backend down\nstate: {kind} down (failing closed)\n{spool_line}"),
        ),
    }
}

/// The `/policy` document: what a tier comparison needs to tell two gateways apart.
pub fn policy_json(policy: &Policy) -> String {
    let loaded = policy.loaded_at();
    let unix = loaded
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let rfc3339 = time::OffsetDateTime::from(loaded)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut counts = serde_json::Map::new();
    let mut total = 0;
    if let Some(rules) = policy.rules() {
        for (kind, n) in &rules.report().counts {
            counts.insert(kind.as_str().to_owned(), (*n).into());
            total += n;
        }
    }
    let doc = serde_json::json!({
        "fingerprint": policy.fingerprint(),
        "version": env!("CARGO_PKG_VERSION"),
        "loaded_at": rfc3339,
        "loaded_at_unix": unix,
        "rules": {
            "total": total,
            "by_kind": counts,
        },
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): with every admin connection answering, one more was admitted
    /// anyway, so `metrics.max_connections` bounded nothing. It is refused now; an idle
    /// connection is still closed to make room.
    #[test]
    fn max_connections_is_a_hard_limit() {
        let stop = CancellationToken::new();
        let mut open = OpenConnections::default();
        let (_, first_closed, first_busy) = open.admit(2, &stop).unwrap();
        let (_, _, second_busy) = open.admit(2, &stop).unwrap();
        first_busy.store(true, Ordering::Relaxed);
        second_busy.store(true, Ordering::Relaxed);
        assert!(open.admit(2, &stop).is_none(), "admitted past the limit");
        assert_eq!(open.open.len(), 2);
        first_busy.store(false, Ordering::Relaxed);
        assert!(open.admit(2, &stop).is_some());
        assert!(first_closed.is_cancelled(), "the idle one made room");
        assert_eq!(open.open.len(), 2);
    }
    use std::path::Path;

    /// Regression (review): the `Host` of a request was never read, so a page on
    /// `evil.example` whose name a DNS rebinding then pointed at a gateway read its console
    /// (addresses, subjects, client addresses) through an operator's browser inside
    /// `metrics.allow`.
    #[test]
    fn only_hosts_that_name_this_gateway_are_answered() {
        let text = "[server]\nhostname = \"mx1.example.test\"\n\
                    [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
                    [metrics]\nhostnames = [\"Admin.Example.Test\"]\n";
        let config = crate::config::Config::from_toml(Path::new("t.toml"), text).unwrap();
        for host in [
            "127.0.0.1:9425",
            "10.0.0.11",
            "[::1]:9425",
            "[2001:db8::1]",
            "localhost:9425",
            "mx1.example.test:9425",
            "MX1.example.test.",
            "admin.example.test",
            // A link-local address with its zone, as a client may still send it.
            "[fe80::1%2]:9425",
            "[fe80::1%25eth0]",
        ] {
            assert!(host_allowed(host.as_bytes(), &config), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9425",
            "[evil]",
            "[evil%2]",
            "[::1",
            "",
            "\u{ff}",
        ] {
            assert!(!host_allowed(host.as_bytes(), &config), "{host}");
        }
    }
}
