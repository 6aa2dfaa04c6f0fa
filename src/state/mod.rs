//! The tier's shared memory: counters, greylisting triplets, rate limits (and later the
//! classifier's token counts) in a state backend, embedded on disk for one gateway or in
//! Redis / Redis Cluster for a tier, so a retry that lands on another gateway finds what
//! the first one learned.
//!
//! Every multi-step update is one atomic operation of the backend (a server-side script
//! in Redis, one transaction in the embedded store): gateways never race with
//! read-modify-write. [`State`] wraps a backend with the key prefix, the `timeout` that
//! bounds every call, health tracking (logged once per change, exported) and metrics.

mod algo;
mod embedded;
mod health;
mod redis;

#[cfg(test)]
pub(crate) mod tests;

pub use embedded::Embedded;
pub use health::Health;
pub use redis::RedisBackend;

use crate::config::{OnFailure, StateBackendConfig, StateConfig};
use crate::metrics::Metrics;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The longest bound a [`State::patient`] call may have.
pub const LONGEST_CALL: Duration = Duration::from_secs(120);

/// Why a state call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The backend did not answer within `state.timeout`.
    #[error("state backend timed out")]
    Timeout,
    /// The backend is unreachable or refused the operation.
    #[error("state backend: {0}")]
    Backend(String),
    /// The backend answered, but refused this call over what its key holds (Redis's
    /// `WRONGTYPE` for a key of another type, a value that is no number, a reply of
    /// another shape). Only this call failed: one stray key must not call the whole
    /// backend down, which flapped `mxguard_state_up` and `/healthz` (503, and every
    /// client refused under `on_failure = "closed"`) each time the key was read.
    #[error("state backend refused the call: {0}")]
    Refused(String),
    /// The embedded store's file could not be opened.
    #[error("state store {path}: {message}")]
    Open {
        /// The database file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// What one greylisting look-up concluded about a triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreylistAnswer {
    /// First attempt: it is recorded; the retry may come after `retry_after`.
    New {
        /// Time until a retry passes.
        retry_after: Duration,
    },
    /// A retry that came too early.
    Early {
        /// Time left until a retry passes.
        retry_after: Duration,
    },
    /// A retry inside the window: the triplet passes from now on.
    Passed,
    /// A triplet that passed before (its pass is refreshed).
    Known,
}

/// What a rate-limit look-up concluded (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateAnswer {
    /// The event is within the limit (and was counted).
    pub allowed: bool,
    /// When refused, how long until one more event would be allowed.
    pub retry_after: Duration,
}

/// What the tier remembered about a client when it connected (tier connection memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactAnswer {
    /// No gateway of the tier (of those asked about) saw the client within the memory
    /// window.
    pub first_contact: bool,
    /// Gateways (this one included) the client reached within the fan-out window.
    pub members_recently: usize,
}

/// The operations checks need, each atomic in the backend. Keys arrive prefixed.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Adds `delta` to a counter (created at 0 with `ttl` when absent; its expiry is
    /// refreshed to `ttl` on every update); the new value. Counters are stored as
    /// decimal text, so [`Backend::get`] reads them alike in every backend.
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, StateError>;
    /// The value of `key`, when present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets `key` to `value`, expiring after `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError>;
    /// Sets `key` only when absent; whether it was set.
    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError>;
    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<(), StateError>;
    /// Deletes `key` only while it holds `value` (compare-and-delete, as a lock's holder
    /// releases it); whether it was deleted.
    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StateError>;
    /// Counts one event against a GCRA limit of `limit` per `per` with `burst` at once;
    /// a refused event is not counted.
    async fn rate(
        &self,
        key: &str,
        limit: u64,
        per: Duration,
        burst: u64,
    ) -> Result<RateAnswer, StateError>;
    /// Looks up (and records) one greylisting attempt of a triplet.
    async fn greylist(
        &self,
        key: &str,
        delay: Duration,
        window: Duration,
        pass_ttl: Duration,
    ) -> Result<GreylistAnswer, StateError>;
    /// Records that `member` (a gateway) was contacted by the client of `key` now, and
    /// says what the tier knew before: contacts older than `memory` are forgotten,
    /// those within `fanout_window` are counted. Only a contact with one of `first_by`
    /// (any other member when empty) makes this one no first contact.
    async fn contact(
        &self,
        key: &str,
        member: &str,
        memory: Duration,
        fanout_window: Duration,
        first_by: &[String],
    ) -> Result<ContactAnswer, StateError>;
    /// Reads many counters in one round trip (`MGET`); a missing key reads as 0. The
    /// classifier reads one counter per token of a message.
    async fn get_counters(&self, keys: &[String]) -> Result<Vec<i64>, StateError>;
    /// Adds signed deltas to counters that never expire (a missing one starts at 0, and one
    /// that comes back to 0 is deleted), each key atomically on the server (`INCRBY` in a
    /// script, never read-modify-write over the wire), so gateways learning at once never
    /// lose an update.
    async fn add_counters(&self, deltas: &[(String, i64)]) -> Result<(), StateError>;
    /// One field of the map at `key` (a Redis hash).
    async fn map_get(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets one field of a map (kept until changed).
    async fn map_set(&self, key: &str, field: &str, value: &[u8]) -> Result<(), StateError>;
    /// Compare-and-swap of one map field: only when the field holds `expected` (`None`:
    /// absent) it becomes `new` (`None`: removed), and then `deltas` are added as by
    /// [`Backend::add_counters`]; whether the swap happened. One atomic step in the
    /// embedded store and on one Redis server; on a cluster the swap is atomic and the
    /// deltas follow it.
    async fn map_swap(
        &self,
        key: &str,
        field: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        deltas: &[(String, i64)],
    ) -> Result<bool, StateError>;
    /// Every field of a map with its value.
    async fn map_entries(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, StateError>;
    /// Whether the backend answers at all.
    async fn ping(&self) -> Result<(), StateError>;
}

/// A fixed-length key part for values that may be long or hold any character (addresses,
/// HELO names): the first 128 bits of SHA-256 over the parts, in hex.
pub fn digest(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A state call that could not be made: the check applies `on_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable(pub OnFailure);

/// The state backend as checks use it: prefixed keys, every call bounded by the timeout,
/// failures counted and turned into [`Unavailable`].
#[derive(Debug, Clone)]
pub struct State {
    backend: Arc<dyn Backend>,
    backend_config: StateBackendConfig,
    prefix: String,
    timeout: Duration,
    /// The configured `state.timeout`: a call answered slower than it (a patient one's)
    /// says nothing of the backend's health.
    healthy_within: Duration,
    on_failure: OnFailure,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl State {
    /// Opens the backend of `config`. An unreachable Redis is not an error here: the
    /// client reconnects, and calls fail (and are counted) until it answers.
    pub async fn open(config: &StateConfig, metrics: Arc<Metrics>) -> Result<State, StateError> {
        let backend: Arc<dyn Backend> = match &config.backend {
            StateBackendConfig::Embedded { path } => Arc::new(Embedded::open(path)?),
            StateBackendConfig::Redis { urls, cluster } => {
                // The client's own bound is only a backstop for a connection that went
                // silent: every call is bounded by `call` with its state's timeout, which
                // `patient` raises for maintenance; a client bound of `timeout` would cut
                // those at the short one.
                let backstop = config.timeout.max(LONGEST_CALL);
                Arc::new(RedisBackend::connect(urls, *cluster, config.timeout, backstop).await?)
            }
        };
        Ok(State::with_backend(backend, config, metrics))
    }

    /// Wraps an already opened backend.
    pub fn with_backend(
        backend: Arc<dyn Backend>,
        config: &StateConfig,
        metrics: Arc<Metrics>,
    ) -> State {
        let health = Arc::new(Health::new(metrics.clone()));
        State {
            backend,
            backend_config: config.backend.clone(),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            healthy_within: config.timeout,
            on_failure: config.on_failure,
            health,
            metrics,
        }
    }

    /// The backend this state was opened with.
    pub fn backend_config(&self) -> &StateBackendConfig {
        &self.backend_config
    }

    /// Whether other gateways can share this store (Redis): what one member writes, the
    /// others read.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend_config, StateBackendConfig::Redis { .. })
    }

    /// `embedded` or `redis`, for logs and `/healthz`.
    pub fn kind(&self) -> &'static str {
        match self.backend_config {
            StateBackendConfig::Embedded { .. } => "embedded",
            StateBackendConfig::Redis { .. } => "redis",
        }
    }

    /// What checks do when a call fails.
    pub fn on_failure(&self) -> OnFailure {
        self.on_failure
    }

    /// The health tracker (for `/healthz` and the background probe).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The same backend with the timeout and failure mode of a reloaded configuration.
    /// The key prefix stays: the classifier and the tier hold the state they started
    /// with, and a policy check reading other keys than they do would split the store.
    pub fn reconfigured(&self, config: &StateConfig) -> State {
        State {
            timeout: config.timeout,
            healthy_within: config.timeout,
            on_failure: config.on_failure,
            ..self.clone()
        }
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, key: &str) -> String {
        // Not `format!`: a classified message asks for up to 2,000 keys.
        let mut prefixed = String::with_capacity(self.prefix.len() + key.len());
        prefixed.push_str(&self.prefix);
        prefixed.push_str(key);
        prefixed
    }

    /// Runs one backend call under the timeout, recording duration, errors and health.
    async fn call<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, Unavailable> {
        // Known down: fail now rather than wait out the timeout (pings and health probes
        // always go, so the health watcher finds the backend back).
        if !matches!(op, "ping" | HEALTH_PROBE_OP) && !self.health.worth_trying() {
            return Err(self.failed(op));
        }
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StateError::Timeout),
        };
        self.metrics
            .state_duration_seconds
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        match result {
            // A success past the call's own bound came from a future that never yielded
            // (the timer could not fire) or a worker too busy to poll it: for health it is
            // the timeout it would have been, not a sign of a backend merely slow.
            Ok(v) if started.elapsed() > self.timeout => {
                self.health.failed(&StateError::Timeout, writes(op));
                Ok(v)
            }
            // A success slower than the checks may wait (a patient call's) is no sign of
            // health: counted, a backend answering every call in 300 ms against a 200 ms
            // timeout was never called down, and each check waited out its timeout
            // (review).
            Ok(v) if started.elapsed() > self.healthy_within => Ok(v),
            Ok(v) => {
                self.health.succeeded(proves_writes(op));
                Ok(v)
            }
            Err(StateError::Refused(e)) => {
                tracing::debug!(op, error = %e, "state call refused over its key");
                Err(self.failed(op))
            }
            Err(e) => {
                self.health.failed(&e, writes(op));
                Err(self.failed(op))
            }
        }
    }

    /// A call of `op` that failed (or was not made): counted, and met as `on_failure` says.
    fn failed(&self, op: &'static str) -> Unavailable {
        self.metrics
            .state_errors_total
            .with_label_values(&[op])
            .inc();
        Unavailable(self.on_failure)
    }

    /// The most one call waits for the backend (`state.timeout`, or a patient one's).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// See [`Backend::incr`].
    pub async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, Unavailable> {
        let key = self.key(key);
        self.call("incr", self.backend.incr(&key, delta, ttl)).await
    }

    /// The value of a counter kept by [`State::incr`]; 0 when absent.
    pub async fn counter(&self, key: &str) -> Result<i64, Unavailable> {
        let raw = self.get(key).await?;
        Ok(raw
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
            .unwrap_or(0))
    }

    /// See [`Backend::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let key = self.key(key);
        self.call("get", self.backend.get(&key)).await
    }

    /// See [`Backend::set`].
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Unavailable> {
        let key = self.key(key);
        self.call("set", self.backend.set(&key, value, ttl)).await
    }

    /// See [`Backend::set_nx`].
    pub async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let key = self.key(key);
        self.call("set_nx", self.backend.set_nx(&key, value, ttl))
            .await
    }

    /// See [`Backend::delete`].
    pub async fn delete(&self, key: &str) -> Result<(), Unavailable> {
        let key = self.key(key);
        self.call("delete", self.backend.delete(&key)).await
    }

    /// See [`Backend::delete_if`].
    pub async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, Unavailable> {
        let key = self.key(key);
        self.call("delete_if", self.backend.delete_if(&key, value))
            .await
    }

    /// See [`Backend::rate`].
    pub async fn rate(
        &self,
        key: &str,
        limit: u64,
        per: Duration,
        burst: u64,
    ) -> Result<RateAnswer, Unavailable> {
        let key = self.key(key);
        self.call("rate", self.backend.rate(&key, limit, per, burst))
            .await
    }

    /// See [`Backend::greylist`].
    pub async fn greylist(
        &self,
        key: &str,
        delay: Duration,
        window: Duration,
        pass_ttl: Duration,
    ) -> Result<GreylistAnswer, Unavailable> {
        let key = self.key(key);
        self.call(
            "greylist",
            self.backend.greylist(&key, delay, window, pass_ttl),
        )
        .await
    }

    /// See [`Backend::contact`].
    pub async fn contact(
        &self,
        key: &str,
        member: &str,
        memory: Duration,
        fanout_window: Duration,
        first_by: &[String],
    ) -> Result<ContactAnswer, Unavailable> {
        let key = self.key(key);
        self.call(
            "contact",
            self.backend
                .contact(&key, member, memory, fanout_window, first_by),
        )
        .await
    }

    /// See [`Backend::get_counters`].
    pub async fn get_counters(&self, keys: &[String]) -> Result<Vec<i64>, Unavailable> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.call("get_counters", self.backend.get_counters(&keys))
            .await
    }

    /// See [`Backend::add_counters`].
    pub async fn add_counters(&self, deltas: &[(String, i64)]) -> Result<(), Unavailable> {
        let deltas = self.prefixed(deltas);
        self.call("add_counters", self.backend.add_counters(&deltas))
            .await
    }

    /// See [`Backend::map_get`].
    pub async fn map_get(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let key = self.key(key);
        self.call("map_get", self.backend.map_get(&key, field))
            .await
    }

    /// See [`Backend::map_set`].
    pub async fn map_set(&self, key: &str, field: &str, value: &[u8]) -> Result<(), Unavailable> {
        let key = self.key(key);
        self.call("map_set", self.backend.map_set(&key, field, value))
            .await
    }

    /// See [`Backend::map_swap`].
    pub async fn map_swap(
        &self,
        key: &str,
        field: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        deltas: &[(String, i64)],
    ) -> Result<bool, Unavailable> {
        let key = self.key(key);
        let deltas = self.prefixed(deltas);
        self.call(
            "map_swap",
            self.backend.map_swap(&key, field, expected, new, &deltas),
        )
        .await
    }

    /// See [`Backend::map_entries`].
    pub async fn map_entries(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, Unavailable> {
        let key = self.key(key);
        self.call("map_entries", self.backend.map_entries(&key))
            .await
    }

    /// The same state with a longer bound on every call (at most [`LONGEST_CALL`]), for
    /// maintenance that moves much data at once (retraining from the learn ledger,
    /// imports, the `learn` command).
    pub fn patient(&self, timeout: Duration) -> State {
        State {
            timeout: timeout.min(LONGEST_CALL).max(self.timeout),
            ..self.clone()
        }
    }

    fn prefixed(&self, deltas: &[(String, i64)]) -> Vec<(String, i64)> {
        deltas.iter().map(|(k, d)| (self.key(k), *d)).collect()
    }

    /// Probes the backend (the health watcher calls it; it goes even while the backend is
    /// known down). While the backend is down the
    /// probe writes a key of its own: a Redis that answers reads but refuses writes
    /// (`OOM` under `maxmemory`, `READONLY` as a replica) fails every check's call, and a
    /// read that succeeds must not call it up again.
    pub async fn ping(&self) -> Result<(), Unavailable> {
        if self.health.is_up() {
            return self.call("ping", self.backend.ping()).await;
        }
        // A ping first: on a Redis Cluster it goes to every primary, where the write
        // reaches one (review: a cluster with one primary lost was called up by the write
        // a second after every failed ping).
        let key = self.key(HEALTH_PROBE_KEY);
        let backend = self.backend.clone();
        let probe = async move {
            backend.ping().await?;
            backend.set(&key, b"1", HEALTH_PROBE_TTL).await
        };
        self.call(HEALTH_PROBE_OP, probe).await
    }

    /// Pings the backend every `interval` until `stop`, so an outage and a recovery are
    /// noticed (and logged, and exported) even when no check is asking; every second
    /// while it is down, since calls then fail at once (see [`Health::worth_trying`]) and
    /// mostly these pings find it back.
    pub async fn watch(self, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            let wait = if self.health.is_up() {
                interval
            } else {
                interval.min(Duration::from_secs(1))
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let _ = self.ping().await;
        }
    }
}

/// The key the health watcher writes while the backend is down.
const HEALTH_PROBE_KEY: &str = "health:probe";
/// How long that key lives: it only has to be written.
const HEALTH_PROBE_TTL: Duration = Duration::from_secs(60);

/// The health watcher's probe, a call that goes even while the backend is known down.
const HEALTH_PROBE_OP: &str = "health_probe";

/// Whether a call of `op` may write: its failure may be the backend refusing writes.
fn writes(op: &str) -> bool {
    !matches!(
        op,
        "get" | "get_counters" | "map_get" | "map_entries" | "ping"
    )
}

/// Whether a call of `op` that succeeded has written for sure: only that says a backend
/// refusing writes is back. A delete, or a script that returned before writing (a rate
/// limit already over, a known triplet), succeeds under Redis's `OOM` too, and counting
/// them flapped the health under a flood, when most clients are over their limits.
fn proves_writes(op: &str) -> bool {
    matches!(op, "set" | "incr" | "map_set" | HEALTH_PROBE_OP)
}

/// An embedded store in `dir`, for tests of what keeps its state here.
#[cfg(test)]
impl State {
    pub(crate) async fn embedded_for_test(dir: &std::path::Path) -> State {
        let config = StateConfig {
            backend: StateBackendConfig::Embedded {
                path: dir.join("state.redb"),
            },
            timeout: Duration::from_secs(5),
            on_failure: OnFailure::Open,
            key_prefix: "t:".into(),
        };
        let opened = State::open(&config, Arc::new(Metrics::new())).await;
        opened.unwrap_or_else(|e| panic!("embedded test store: {e}"))
    }
}
