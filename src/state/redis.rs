//! The Redis state backend: one server through the crate's connection manager
//! (multiplexed, reconnecting), or a Redis Cluster through its cluster client. Every
//! multi-step update is one Lua script on one key, so it is atomic on the server and a
//! cluster can shard the keys freely (no script touches two keys, so no hash tags).
//! Times come from the server's clock (`TIME`): gateways with skewed clocks still agree.

use super::{Backend, ContactAnswer, GreylistAnswer, RateAnswer, StateError};
use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// `INCRBY` and refresh the expiry, atomically.
const INCR: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return v
";

/// The scripts that read `TIME` begin by asking for effects replication: before Redis 5
/// a script may not write after a command whose answer varies (review: on Redis 4 every
/// rate limit, greylisting and contact call failed, `mxguard_state_up` still 1). From
/// Redis 5 on it is what Redis does anyway; a Redis without the call skips it.
///
/// GCRA (see `algo::gcra`): ARGV = emission interval µs, tolerance µs. Returns
/// {allowed 0|1, retry_after µs}. The TAT is written with `%.0f`: Lua's own number format
/// keeps 14 digits, and a time in microseconds has 16.
const RATE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now or tat - now > tolerance + interval then tat = now end
local ahead = tat - now
if ahead > tolerance then return {0, ahead - tolerance} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
";

/// Greylisting (see `algo::greylist`): ARGV = delay (`algo::greylist_wait_secs`), window,
/// pass_ttl in seconds. Returns
/// {0 new | 1 early | 2 passed | 3 known, seconds until a retry passes}.
const GREYLIST: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(redis.call('TIME')[1])
local delay = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local pass_ttl = tonumber(ARGV[3])
local v = redis.call('GET', KEYS[1])
local kind, at = nil, nil
if v then
  kind = string.sub(v, 1, 2)
  at = tonumber(string.sub(v, 3))
end
if kind == 'p:' and at then
  redis.call('SET', KEYS[1], 'p:' .. now, 'EX', pass_ttl)
  return {3, 0}
end
if kind ~= 'f:' or not at then
  redis.call('SET', KEYS[1], 'f:' .. now, 'EX', window)
  return {0, delay}
end
local waited = now - at
if waited < 0 then waited = 0 end
if waited < delay then
  local keep = window - waited
  if keep < 1 then keep = 1 end
  redis.call('SET', KEYS[1], v, 'EX', keep)
  return {1, delay - waited}
end
redis.call('SET', KEYS[1], 'p:' .. now, 'EX', pass_ttl)
return {2, 0}
";

/// Tier connection memory (see `algo::contact`): a hash gateway → last contact seconds.
/// ARGV = member, memory s, fanout window s. Returns {first contact 0|1, members recently}.
const CONTACT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(redis.call('TIME')[1])
local memory_start = now - tonumber(ARGV[2])
local fanout_start = now - tonumber(ARGV[3])
local counted = {}
for i = 4, #ARGV do counted[ARGV[i]] = true end
local any = #ARGV < 4
local all = redis.call('HGETALL', KEYS[1])
local others, recent = 0, 0
for i = 1, #all, 2 do
  local name, at = all[i], tonumber(all[i + 1])
  if at == nil or at < memory_start then
    redis.call('HDEL', KEYS[1], name)
  elseif name ~= ARGV[1] then
    if any or counted[name] then others = others + 1 end
    if at >= fanout_start then recent = recent + 1 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], now)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local first = 0
if others == 0 then first = 1 end
return {first, recent + 1}
";

/// Compare-and-swap of a hash field (see `Backend::map_swap`), then `INCRBY` on the other
/// keys. KEYS = hash, counters...; ARGV = field, expected present 0|1, expected, new
/// present 0|1, new, one delta per counter. Returns 1 when swapped.
const MAP_SWAP: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
for i = 2, #KEYS do
  if redis.call('INCRBY', KEYS[i], ARGV[4 + i]) == 0 then
    redis.call('DEL', KEYS[i])
  end
end
return 1
";

/// `INCRBY` on each key, deleting a counter that comes back to 0 (a forgotten token leaves
/// nothing behind). KEYS = counters; ARGV = one delta per counter.
const ADD_COUNTERS: &str = r"
for i = 1, #KEYS do
  if redis.call('INCRBY', KEYS[i], ARGV[i]) == 0 then
    redis.call('DEL', KEYS[i])
  end
end
return 0
";

const DELETE_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Most keys per `MGET` or pipeline: bounds one request's size.
const BATCH: usize = 1000;

/// A connection to one server or to the cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How the backend reaches Redis.
enum Link {
    /// The connection manager connects lazily and reconnects by itself.
    Single(ConnectionManager),
    /// The cluster connection is made on first use (the cluster may be down at start)
    /// and then follows the cluster's topology by itself.
    Cluster(Arc<ClusterLink>),
}

/// The cluster connection, made by a task of its own: meeting the seeds, reading the slot
/// map and connecting to every master can take longer than one call may wait, and a
/// connection made inside a call would be cancelled with it, and begun again by the next.
struct ClusterLink {
    client: ClusterClient,
    conn: std::sync::Mutex<Option<ClusterConnection>>,
    connecting: AtomicBool,
    attempt_over: Notify,
    /// When the last attempt failed: the next waits [`CLUSTER_RETRY`], so a cluster that
    /// refuses is not met again by every call.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Least time between two attempts to meet a Redis Cluster.
const CLUSTER_RETRY: Duration = Duration::from_secs(1);

impl ClusterLink {
    fn current(&self) -> Option<ClusterConnection> {
        self.conn.lock().ok().and_then(|c| c.clone())
    }

    /// The connection, waiting for an attempt under way (or one started now) to end; the
    /// caller's own timeout bounds the wait, not the attempt.
    async fn connection(self: &Arc<Self>) -> Result<ClusterConnection, StateError> {
        let attempt_over = self.attempt_over.notified();
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let failed_lately = self
            .failed_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < CLUSTER_RETRY);
        if failed_lately {
            return Err(StateError::Backend(
                "cannot connect to the Redis Cluster".into(),
            ));
        }
        if !self.connecting.swap(true, Ordering::AcqRel) {
            let link = self.clone();
            tokio::spawn(async move {
                match link.client.get_async_connection().await {
                    Ok(c) => {
                        if let Ok(mut slot) = link.conn.lock() {
                            *slot = Some(c);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "Redis Cluster: connecting failed");
                        if let Ok(mut at) = link.failed_at.lock() {
                            *at = Some(std::time::Instant::now());
                        }
                    }
                }
                link.connecting.store(false, Ordering::Release);
                link.attempt_over.notify_waiters();
            });
        }
        attempt_over.await;
        self.current()
            .ok_or_else(|| StateError::Backend("cannot connect to the Redis Cluster".into()))
    }
}

/// Redis or Redis Cluster.
pub struct RedisBackend {
    link: Link,
    incr: Script,
    rate: Script,
    greylist: Script,
    contact: Script,
    map_swap: Script,
    add_counters: Script,
    delete_if: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.link {
            Link::Single(_) => "single",
            Link::Cluster { .. } => "cluster",
        };
        f.debug_struct("RedisBackend").field("kind", &kind).finish()
    }
}

/// A client error as a state error: what Redis refused over this call's key is this
/// call's failure ([`StateError::Refused`]); no connection, I/O, and a server refusing
/// every call or every write (`OOM`, `READONLY`, `LOADING`, ...) are the backend's, which
/// the health tracker takes down.
fn failed(e: redis::RedisError) -> StateError {
    if refuses_only_this_call(&e) {
        StateError::Refused(e.to_string())
    } else {
        StateError::Backend(e.to_string())
    }
}

/// Error codes of a server that refuses more than one call: out of memory or unable to
/// persist (writes refused), a replica, still loading, busy with a script, a cluster
/// without its node, or a client it does not let in.
const SERVER_WIDE_CODES: [&str; 13] = [
    "OOM",
    "MISCONF",
    "READONLY",
    "NOREPLICAS",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MOVED",
    "ASK",
    "NOAUTH",
    "NOPERM",
];

/// Whether Redis answered and refused only this call: a reply that is an error over its
/// key (`WRONGTYPE`, `ERR value is not an integer`, a script failing on such a key), or
/// one that does not read as the call expects. A server-wide condition may also come
/// wrapped in a script's `ERR` (Redis 6 reports `-OOM` inside `Error running script`), so
/// its code is looked for in the detail too.
fn refuses_only_this_call(e: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    match e.kind() {
        // A reply that does not convert to what the call expects (a value of another
        // form under the key) is the call's; one the protocol cannot read (a stream out
        // of step) is the connection's.
        ErrorKind::UnexpectedReturnType => true,
        ErrorKind::Server(_) | ErrorKind::Extension => {
            !e.code().is_some_and(is_server_wide) && !e.detail().is_some_and(names_server_wide)
        }
        _ => false,
    }
}

fn is_server_wide(code: &str) -> bool {
    SERVER_WIDE_CODES.contains(&code)
}

/// Whether an error's text names a server-wide code (as a word of its own) or the server's
/// connection limit.
fn names_server_wide(detail: &str) -> bool {
    // A server without scripting (or with the command renamed away) refuses every call
    // that needs it.
    detail.contains("max number of clients")
        || detail.contains("unknown command")
        || detail
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(is_server_wide)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisBackend {
    /// Prepares clients for `urls` (one server, or the seeds of a cluster). Nothing is
    /// connected yet: an unreachable Redis shows up as failing calls, not a failed start.
    /// `timeout` bounds connecting; `backstop` bounds waiting for one response (each
    /// call is bounded, usually much sooner, by the caller).
    pub async fn connect(
        urls: &[String],
        cluster: bool,
        timeout: Duration,
        backstop: Duration,
    ) -> Result<RedisBackend, StateError> {
        let link = if cluster {
            // Met by a task of its own (`ClusterLink`), not inside a call: each node may
            // take up to the longer bound.
            let client = ClusterClient::builder(urls.iter().map(String::as_str))
                .tcp_settings(tcp_settings())
                .connection_timeout(timeout.max(backstop))
                .response_timeout(backstop)
                .retries(1)
                .build()
                .map_err(failed)?;
            Link::Cluster(Arc::new(ClusterLink {
                client,
                conn: std::sync::Mutex::new(None),
                connecting: AtomicBool::new(false),
                attempt_over: Notify::new(),
                failed_at: std::sync::Mutex::new(None),
            }))
        } else {
            let url = urls
                .first()
                .ok_or_else(|| StateError::Backend("no Redis URL".into()))?;
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map_err(failed)?
                .set_tcp_settings(tcp_settings());
            let client = redis::Client::open(info).map_err(failed)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(backstop))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            Link::Single(ConnectionManager::new_lazy_with_config(client, config).map_err(failed)?)
        };
        Ok(RedisBackend {
            link,
            incr: Script::new(INCR),
            rate: Script::new(RATE),
            greylist: Script::new(GREYLIST),
            contact: Script::new(CONTACT),
            map_swap: Script::new(MAP_SWAP),
            add_counters: Script::new(ADD_COUNTERS),
            delete_if: Script::new(DELETE_IF),
        })
    }

    async fn conn(&self) -> Result<Conn, StateError> {
        match &self.link {
            Link::Single(manager) => Ok(Conn::Single(manager.clone())),
            Link::Cluster(link) => link.connection().await.map(Conn::Cluster),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, StateError> {
        let mut conn = self.conn().await?;
        self.incr
            .key(key)
            .arg(delta)
            .arg(ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(failed)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut conn = self.conn().await?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(failed)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut conn)
            .await
            .map_err(failed)
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok(set.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(failed)
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
        let mut conn = self.conn().await?;
        let deleted: i64 = self
            .delete_if
            .key(key)
            .arg(value)
            .invoke_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok(deleted == 1)
    }

    async fn rate(
        &self,
        key: &str,
        limit: u64,
        per: Duration,
        burst: u64,
    ) -> Result<RateAnswer, StateError> {
        let (interval, tolerance) = super::algo::gcra_interval(limit, per, burst);
        let mut conn = self.conn().await?;
        let (allowed, retry_us): (i64, i64) = self
            .rate
            .key(key)
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok(RateAnswer {
            allowed: allowed == 1,
            retry_after: Duration::from_micros(u64::try_from(retry_us).unwrap_or(0)),
        })
    }

    async fn greylist(
        &self,
        key: &str,
        delay: Duration,
        window: Duration,
        pass_ttl: Duration,
    ) -> Result<GreylistAnswer, StateError> {
        let secs = |d: Duration| d.as_secs().max(1);
        let mut conn = self.conn().await?;
        let (state, left): (i64, i64) = self
            .greylist
            .key(key)
            .arg(super::algo::greylist_wait_secs(delay))
            .arg(secs(window))
            .arg(secs(pass_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(failed)?;
        let retry_after = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        Ok(match state {
            0 => GreylistAnswer::New { retry_after },
            1 => GreylistAnswer::Early { retry_after },
            2 => GreylistAnswer::Passed,
            _ => GreylistAnswer::Known,
        })
    }

    async fn contact(
        &self,
        key: &str,
        member: &str,
        memory: Duration,
        fanout_window: Duration,
        first_by: &[String],
    ) -> Result<ContactAnswer, StateError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.contact.key(key);
        invocation
            .arg(member)
            .arg(memory.as_secs().max(1))
            .arg(fanout_window.as_secs().max(1));
        for name in first_by {
            invocation.arg(name);
        }
        let (first, recent): (i64, i64) =
            invocation.invoke_async(&mut conn).await.map_err(failed)?;
        Ok(ContactAnswer {
            first_contact: first == 1,
            members_recently: usize::try_from(recent).unwrap_or(1),
        })
    }

    async fn get_counters(&self, keys: &[String]) -> Result<Vec<i64>, StateError> {
        let mut conn = self.conn().await?;
        let mut out = Vec::with_capacity(keys.len());
        // A cluster client splits a multi-slot MGET by slot and merges the answers.
        for chunk in keys.chunks(BATCH) {
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            out.extend(
                values
                    .into_iter()
                    .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0)),
            );
        }
        Ok(out)
    }

    async fn add_counters(&self, deltas: &[(String, i64)]) -> Result<(), StateError> {
        let mut conn = self.conn().await?;
        match conn {
            Conn::Single(_) => {
                for chunk in deltas.chunks(BATCH) {
                    let mut invocation = self.add_counters.prepare_invoke();
                    for (key, delta) in chunk {
                        invocation.key(key).arg(*delta);
                    }
                    let _: i64 = invocation.invoke_async(&mut conn).await.map_err(failed)?;
                }
            }
            Conn::Cluster(_) => {
                // A script runs on one node; the keys live on many. Each counter's script
                // is routed by its key, all in flight at once over the multiplexed
                // connections.
                for chunk in deltas.chunks(BATCH) {
                    let calls = chunk.iter().map(|(key, delta)| {
                        let mut conn = conn.clone();
                        let mut invocation = self.add_counters.key(key);
                        invocation.arg(*delta);
                        async move { invocation.invoke_async::<i64>(&mut conn).await }
                    });
                    for result in futures::future::join_all(calls).await {
                        result.map_err(failed)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn map_get(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut conn = self.conn().await?;
        redis::cmd("HGET")
            .arg(key)
            .arg(field)
            .query_async(&mut conn)
            .await
            .map_err(failed)
    }

    async fn map_set(&self, key: &str, field: &str, value: &[u8]) -> Result<(), StateError> {
        let mut conn = self.conn().await?;
        let _: i64 = redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn map_swap(
        &self,
        key: &str,
        field: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        deltas: &[(String, i64)],
    ) -> Result<bool, StateError> {
        let mut conn = self.conn().await?;
        let flag = |v: Option<&[u8]>| if v.is_some() { "1" } else { "0" };
        let mut invocation = self.map_swap.key(key);
        invocation
            .arg(field)
            .arg(flag(expected))
            .arg(expected.unwrap_or_default())
            .arg(flag(new))
            .arg(new.unwrap_or_default());
        // One server runs the whole update as one script; a cluster cannot (the counters
        // live in other slots), so there the swap comes first and the counters follow.
        let single = matches!(conn, Conn::Single(_));
        if single {
            for (counter, delta) in deltas {
                invocation.key(counter).arg(*delta);
            }
        }
        let swapped: i64 = invocation.invoke_async(&mut conn).await.map_err(failed)?;
        if swapped == 1 && !single && !deltas.is_empty() {
            self.add_counters(deltas).await?;
        }
        Ok(swapped == 1)
    }

    async fn map_entries(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let mut conn = self.conn().await?;
        redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(failed)
    }

    async fn ping(&self) -> Result<(), StateError> {
        let mut conn = self.conn().await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok(())
    }
}

/// TCP settings of every connection to Redis. Calls are cut at `state.timeout` by the
/// caller, which the client never sees as an error, so a Redis host gone without a reset
/// (powered off, a failover to a new address) left the connection up for the kernel's
/// retransmission limit (about 15 minutes), every call failing meanwhile. With unanswered
/// data bounded to 10 s (`TCP_USER_TIMEOUT`) and keepalive probes on idle connections,
/// the kernel ends such a connection and the client connects again. `TCP_NODELAY`: the
/// calls are small request/response exchanges.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{make_extension_error, ErrorKind, RedisError, ServerErrorKind};

    fn server_error(code: &str, detail: &str) -> RedisError {
        make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    /// Regression (review): a `WRONGTYPE` reply on one key (a hash at `tier:hb:<peer>`)
    /// was a backend outage: the health tracker went down on every read of it and up on
    /// the next call. Errors over a key are the call's; a server refusing every call (or
    /// write) and a lost connection stay the backend's.
    #[test]
    fn errors_over_a_key_fail_the_call_not_the_backend() {
        let refused = |e: RedisError| matches!(failed(e), StateError::Refused(_));
        let wrongtype = "Operation against a key holding the wrong kind of value";
        assert!(refused(server_error("WRONGTYPE", wrongtype)));
        assert!(refused(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "value is not an integer or out of range".to_owned(),
        ))));
        let script = "Error running script (call to f_1): @user_script:2: WRONGTYPE x";
        assert!(refused(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            script.to_owned(),
        ))));
        assert!(refused(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "reply of another shape"
        ))));
        let backend = |e: RedisError| matches!(failed(e), StateError::Backend(_));
        assert!(backend(server_error("OOM", "command not allowed")));
        assert!(backend(RedisError::from((
            ErrorKind::Parse,
            "invalid response"
        ))));
        assert!(backend(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "unknown command 'EVALSHA', with args beginning with:".to_owned(),
        ))));
        assert!(backend(server_error("MISCONF", "cannot persist")));
        assert!(backend(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "read only",
        ))));
        assert!(backend(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "Error running script: @user_script:2: -OOM command not allowed".to_owned(),
        ))));
        assert!(backend(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "max number of clients reached".to_owned(),
        ))));
        assert!(backend(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
    }
}
