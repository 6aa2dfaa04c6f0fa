//! One test suite for every backend: the embedded store always, Redis when a
//! `redis-server` can be started (required under `MXGUARD_INTEROP=1`).

use super::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private `redis-server` on a free loopback port, killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    /// Its `redis://` URL.
    pub url: String,
    /// Its port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Runs `redis-cli` against it (to set up what no gateway would write) and asserts
    /// that it succeeded.
    pub(crate) fn cli(&self, args: &[&str]) {
        let status = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "redis-cli {args:?}");
    }

    /// Starts one, or says why not (SKIP; a failure under `MXGUARD_INTEROP=1`).
    pub(crate) fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        RedisServer::start_on(port)
    }

    /// The same on `port`.
    pub(crate) fn start_on(port: u16) -> Option<RedisServer> {
        RedisServer::start_with(port, &[])
    }

    /// The same with extra `redis-server` arguments.
    fn start_with(port: u16, extra: &[&str]) -> Option<RedisServer> {
        let bin = crate::interop_tests::program("redis-server")?;
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            _dir: dir,
        })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A private three-node Redis Cluster (no replicas), or `None` (SKIP).
fn start_cluster() -> Option<Vec<RedisServer>> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let conf = format!("nodes-{port}.conf");
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            conf.as_str(),
        ];
        nodes.push(RedisServer::start_with(port, &args)?);
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .arg("--cluster-yes")
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli --cluster create");
    assert!(out.status.success(), "{:?}", out);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "CLUSTER", "INFO"])
                .output()
                .expect("redis-cli CLUSTER INFO");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "cluster not ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Some(nodes)
}

fn config(backend: StateBackendConfig) -> StateConfig {
    StateConfig {
        backend,
        timeout: Duration::from_secs(2),
        on_failure: OnFailure::Open,
        key_prefix: "test:".into(),
    }
}

/// `state`'s store under another call bound and failure mode (prefix `t:`).
fn bounded(state: &State, timeout: Duration, on_failure: OnFailure) -> State {
    state.reconfigured(&StateConfig {
        backend: state.backend_config().clone(),
        timeout,
        on_failure,
        key_prefix: "t:".into(),
    })
}

async fn suite(state: &State) {
    // Counters.
    assert_eq!(state.incr("c", 1, Duration::from_secs(60)).await, Ok(1));
    assert_eq!(state.incr("c", 4, Duration::from_secs(60)).await, Ok(5));
    assert_eq!(
        state.incr("short", 1, Duration::from_millis(300)).await,
        Ok(1)
    );
    // Values.
    assert_eq!(state.get("v").await, Ok(None));
    state
        .set("v", b"one", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(state.get("v").await, Ok(Some(b"one".to_vec())));
    assert_eq!(
        state.set_nx("v", b"two", Duration::from_secs(60)).await,
        Ok(false)
    );
    assert_eq!(
        state.set_nx("w", b"two", Duration::from_secs(60)).await,
        Ok(true)
    );
    assert_eq!(state.get("w").await, Ok(Some(b"two".to_vec())));
    state.delete("v").await.unwrap();
    assert_eq!(state.get("v").await, Ok(None));
    // Compare-and-delete: only the holder's value releases the key.
    let held = Duration::from_secs(60);
    assert_eq!(state.set_nx("lock", b"holder", held).await, Ok(true));
    assert_eq!(state.delete_if("lock", b"other").await, Ok(false));
    assert_eq!(state.get("lock").await, Ok(Some(b"holder".to_vec())));
    assert_eq!(state.delete_if("lock", b"holder").await, Ok(true));
    assert_eq!(state.get("lock").await, Ok(None));
    assert_eq!(state.delete_if("lock", b"holder").await, Ok(false));
    // Rate: a burst of 3, then refused with a wait.
    for _ in 0..3 {
        let a = state
            .rate("r", 3, Duration::from_secs(60), 3)
            .await
            .unwrap();
        assert!(a.allowed);
    }
    let over = state
        .rate("r", 3, Duration::from_secs(60), 3)
        .await
        .unwrap();
    assert!(!over.allowed);
    assert!(over.retry_after > Duration::ZERO && over.retry_after <= Duration::from_secs(20));
    // Greylisting: new, early, then (after the delay) passed, then known. Times are whole
    // seconds: with a delay of 1 s, two calls either side of a second's turn passed
    // (review: a flake on a slow disk); 3 s leaves two seconds of room.
    let (delay, window, pass) = (
        Duration::from_secs(3),
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    assert!(matches!(
        state.greylist("g", delay, window, pass).await,
        Ok(GreylistAnswer::New { .. })
    ));
    assert!(matches!(
        state.greylist("g", delay, window, pass).await,
        Ok(GreylistAnswer::Early { .. })
    ));
    // Expiry is lazy on read: the short counter is gone after its TTL.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(state.get("short").await, Ok(None));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        state.greylist("g", delay, window, pass).await,
        Ok(GreylistAnswer::Passed)
    );
    assert_eq!(
        state.greylist("g", delay, window, pass).await,
        Ok(GreylistAnswer::Known)
    );
    // Tier connection memory.
    let (mem, fan) = (Duration::from_secs(600), Duration::from_secs(30));
    let first = state.contact("cm", "bk1", mem, fan, &[]).await.unwrap();
    assert!(first.first_contact);
    let second = state.contact("cm", "gw1", mem, fan, &[]).await.unwrap();
    assert!(!second.first_contact);
    let third = state.contact("cm", "gw2", mem, fan, &[]).await.unwrap();
    // Only the members named count against a first contact: a client that reached another
    // backup, never a primary, is still a first contact of the primaries' tier.
    let primaries = ["gw1".to_string(), "gw2".to_string()];
    state.contact("cm2", "bk2", mem, fan, &[]).await.unwrap();
    let at_bk1 = state
        .contact("cm2", "bk1", mem, fan, &primaries)
        .await
        .unwrap();
    assert!(at_bk1.first_contact);
    assert_eq!(at_bk1.members_recently, 2);
    state.contact("cm2", "gw1", mem, fan, &[]).await.unwrap();
    let again = state
        .contact("cm2", "bk1", mem, fan, &primaries)
        .await
        .unwrap();
    assert!(!again.first_contact);
    assert_eq!(third.members_recently, 3);
    // Atomic under concurrency: 50 increments from 50 tasks count 50.
    let adds = (0..50).map(|_| state.incr("many", 1, Duration::from_secs(60)));
    let results = futures::future::join_all(adds).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(state.incr("many", 0, Duration::from_secs(60)).await, Ok(50));
    assert!(state.health().is_up());
    batch_suite(state).await;
}

/// The batch operations of the classifier: many counters, maps and compare-and-swap.
async fn batch_suite(state: &State) {
    let keys: Vec<String> = (0..1500).map(|i| format!("t:{i}")).collect();
    assert_eq!(state.get_counters(&keys[..3]).await, Ok(vec![0, 0, 0]));
    let deltas: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), 2)).collect();
    state.add_counters(&deltas).await.unwrap();
    state
        .add_counters(&[("t:1".into(), -1), ("t:2".into(), 1 << 32)])
        .await
        .unwrap();
    let got = state.get_counters(&keys).await.unwrap();
    assert_eq!(got.len(), 1500);
    assert_eq!(&got[..3], &[2, 1, 2 + (1 << 32)]);
    assert!(got[3..].iter().all(|&v| v == 2));
    // Counters read like `incr`'s through `counter`.
    assert_eq!(state.counter("t:1").await, Ok(1));
    // A counter back at 0 is deleted (review: forgotten tokens stayed stored as 0, so the
    // store grew for ever), whether it got there by an add or by a swap's deltas.
    state.add_counters(&[("t:1".into(), -1)]).await.unwrap();
    assert_eq!(state.get("t:1").await, Ok(None));
    assert_eq!(state.get_counters(&["t:1".to_string()]).await, Ok(vec![0]));
    state.map_set("zero", "a", b"1").await.unwrap();
    let back = [("t:3".to_string(), -2i64)];
    assert_eq!(
        state.map_swap("zero", "a", Some(b"1"), None, &back).await,
        Ok(true)
    );
    assert_eq!(state.get("t:3").await, Ok(None));
    // Concurrent adds from many tasks all count.
    let many = [("t:many".to_string(), 1i64)];
    let adds = (0..40).map(|_| state.add_counters(&many));
    assert!(futures::future::join_all(adds)
        .await
        .iter()
        .all(Result::is_ok));
    assert_eq!(
        state.get_counters(&["t:many".to_string()]).await,
        Ok(vec![40])
    );

    // Maps.
    assert_eq!(state.map_get("m", "a").await, Ok(None));
    state.map_set("m", "a", b"\x00one").await.unwrap();
    assert_eq!(state.map_get("m", "a").await, Ok(Some(b"\x00one".to_vec())));
    // A swap from the wrong value does nothing, not even its deltas.
    let bump = [("t:swap".to_string(), 5i64)];
    assert_eq!(
        state.map_swap("m", "a", None, Some(b"two"), &bump).await,
        Ok(false)
    );
    assert_eq!(
        state
            .map_swap("m", "a", Some(b"nope"), Some(b"two"), &bump)
            .await,
        Ok(false)
    );
    assert_eq!(
        state.get_counters(&["t:swap".to_string()]).await,
        Ok(vec![0])
    );
    assert_eq!(
        state
            .map_swap("m", "a", Some(b"\x00one"), Some(b"two"), &bump)
            .await,
        Ok(true)
    );
    assert_eq!(
        state.map_swap("m", "b", None, Some(b"new"), &bump).await,
        Ok(true)
    );
    assert_eq!(
        state.get_counters(&["t:swap".to_string()]).await,
        Ok(vec![10])
    );
    let mut entries = state.map_entries("m").await.unwrap();
    entries.sort();
    assert_eq!(
        entries,
        vec![("a".into(), b"two".to_vec()), ("b".into(), b"new".to_vec())]
    );
    // Removal through a swap; other maps are separate.
    assert_eq!(
        state.map_swap("m", "b", Some(b"new"), None, &[]).await,
        Ok(true)
    );
    state.map_set("m2", "a", b"other").await.unwrap();
    assert_eq!(
        state.map_entries("m").await,
        Ok(vec![("a".into(), b"two".to_vec())])
    );
    assert_eq!(state.map_entries("nothing").await, Ok(Vec::new()));
    // Racing swaps of one field: exactly one wins.
    let values: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let one = [("t:race".to_string(), 1i64)];
    let racers = values
        .iter()
        .map(|v| state.map_swap("race", "f", None, Some(v.as_bytes()), &one));
    let won = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter(|r| *r == Ok(true))
        .count();
    assert_eq!(won, 1);
    assert_eq!(
        state.get_counters(&["t:race".to_string()]).await,
        Ok(vec![1])
    );
}

#[tokio::test]
async fn embedded_backend_passes_the_suite_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let cfg = config(StateBackendConfig::Embedded { path: path.clone() });
    {
        let state = State::open(&cfg, Arc::new(Metrics::new())).await.unwrap();
        suite(&state).await;
    }
    // Give the writer thread of the dropped store a moment to close the file.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = State::open(&cfg, Arc::new(Metrics::new())).await.unwrap();
    assert_eq!(state.get("w").await, Ok(Some(b"two".to_vec())));
    assert_eq!(state.get_counters(&["t:0".to_string()]).await, Ok(vec![2]));
    assert_eq!(state.map_get("m", "a").await, Ok(Some(b"two".to_vec())));
    assert_eq!(
        state
            .greylist(
                "g",
                Duration::from_secs(1),
                Duration::from_secs(30),
                Duration::from_secs(60)
            )
            .await,
        Ok(GreylistAnswer::Known)
    );
}

/// The state on one `redis` server.
async fn open_redis(redis: &RedisServer) -> State {
    let cfg = config(StateBackendConfig::Redis {
        urls: vec![redis.url.clone()],
        cluster: false,
    });
    State::open(&cfg, Arc::new(Metrics::new())).await.unwrap()
}

#[tokio::test]
async fn redis_backend_passes_the_suite() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let state = open_redis(&redis).await;
    suite(&state).await;
}

#[tokio::test]
async fn redis_cluster_passes_the_batch_suite() {
    // MGET across slots, INCRBY per key and the swap-then-count path of a cluster.
    let Some(nodes) = start_cluster() else {
        return;
    };
    let cfg = config(StateBackendConfig::Redis {
        urls: nodes.iter().map(|n| n.url.clone()).collect(),
        cluster: true,
    });
    let state = State::open(&cfg, Arc::new(Metrics::new())).await.unwrap();
    batch_suite(&state).await;
}

#[tokio::test]
async fn redis_outage_fails_within_the_timeout_and_the_client_reconnects() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let port = redis.port;
    let metrics = Arc::new(Metrics::new());
    let mut cfg = config(StateBackendConfig::Redis {
        urls: vec![redis.url.clone()],
        cluster: false,
    });
    cfg.timeout = Duration::from_millis(200);
    let state = State::open(&cfg, metrics.clone()).await.unwrap();
    state.set("k", b"v", Duration::from_secs(60)).await.unwrap();

    drop(redis);
    let started = std::time::Instant::now();
    assert_eq!(state.get("k").await, Err(Unavailable(OnFailure::Open)));
    // Very generous: what this guards is a call that waits out reconnect back-offs
    // (seconds) instead of failing at the 200 ms timeout.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!state.health().is_up());
    assert_eq!(metrics.state_up.get(), 0);
    assert!(metrics.state_errors_total.with_label_values(&["get"]).get() >= 1);

    // A new server on the same port (empty: --save ""): the same client reaches it.
    let _redis = RedisServer::start_on(port).unwrap();
    let mut back = false;
    for _ in 0..50 {
        if state
            .set("k", b"again", Duration::from_secs(60))
            .await
            .is_ok()
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the client never reconnected");
    assert_eq!(state.get("k").await, Ok(Some(b"again".to_vec())));
    assert!(state.health().is_up());
    assert_eq!(metrics.state_up.get(), 1);
}

/// Regression (review): the Redis client's own response timeout was the short
/// `state.timeout`, so a patient call (retraining, imports, `learn`: up to two minutes)
/// was still cut at 200 ms against a Redis that was busy for a moment.
#[tokio::test]
async fn a_patient_call_outlasts_the_short_timeout_against_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cfg = config(StateBackendConfig::Redis {
        urls: vec![redis.url.clone()],
        cluster: false,
    });
    cfg.timeout = Duration::from_millis(200);
    let state = State::open(&cfg, Arc::new(Metrics::new())).await.unwrap();
    state.set("k", b"v", Duration::from_secs(60)).await.unwrap();
    let patient = state.patient(Duration::from_secs(30));
    redis.cli(&["CLIENT", "PAUSE", "700", "ALL"]);
    assert_eq!(patient.get("k").await, Ok(Some(b"v".to_vec())));
}

/// Regression (review of the write-refusal fix): under Redis's `OOM` a delete, and a rate
/// script for a client already over its limit (it returns before its `SET`), still
/// succeed; counted as writes, they called the backend up after every refused write, and
/// `mxguard_state_up` flapped under exactly the flood that fills Redis. Only a write that
/// surely wrote (the health probe's `SET`) calls it up again.
#[tokio::test]
async fn a_redis_out_of_memory_stays_down_until_a_write_succeeds() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let state = open_redis(&redis).await;
    let per = Duration::from_secs(3600);
    assert!(state.rate("over", 1, per, 1).await.unwrap().allowed);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    assert!(state.set("k", b"v", per).await.is_err(), "OOM not met");
    assert!(!state.health().is_up());
    assert!(state.delete("k").await.is_ok());
    let over = state.rate("over", 1, per, 1).await;
    assert!(over.is_ok_and(|r| !r.allowed));
    assert!(state.get("k").await.is_ok());
    assert!(
        !state.health().is_up(),
        "a call that wrote nothing called it up"
    );
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert!(state.ping().await.is_ok());
    assert!(
        state.health().is_up(),
        "the probe's write did not call it up"
    );
}

/// Regression (review): one key of another type (a hash where the tier reads its
/// heartbeat string, a string where connection memory keeps its hash) made Redis answer
/// `WRONGTYPE`, which was taken for an outage: the backend went down on every such call
/// and up on the next, `mxguard_state_up` flapped and `/healthz` said 503. The call fails;
/// the backend stays up and the other keys work.
#[tokio::test]
async fn a_key_of_another_type_fails_its_call_not_the_backend() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let metrics = Arc::new(Metrics::new());
    let cfg = config(StateBackendConfig::Redis {
        urls: vec![redis.url.clone()],
        cluster: false,
    });
    let state = State::open(&cfg, metrics.clone()).await.unwrap();
    redis.cli(&["HSET", "test:tier:hb:gw2", "role", "primary"]);
    redis.cli(&["SET", "test:tier:cm:192.0.2.1", "text"]);
    let hour = Duration::from_secs(3600);
    for _ in 0..3 {
        assert_eq!(
            state.get("tier:hb:gw2").await,
            Err(Unavailable(OnFailure::Open))
        );
        assert!(state.incr("tier:hb:gw2", 1, hour).await.is_err());
        let contact = state.contact("tier:cm:192.0.2.1", "gw1", hour, hour, &[]);
        assert!(contact.await.is_err());
        assert!(
            state.health().is_up(),
            "a stray key called the backend down"
        );
        assert_eq!(metrics.state_up.get(), 1);
        state.set("k", b"v", hour).await.unwrap();
    }
    assert_eq!(state.get("k").await, Ok(Some(b"v".to_vec())));
    assert_eq!(
        metrics.state_errors_total.with_label_values(&["get"]).get(),
        3
    );
}

/// Regression (review): a patient call (autolearn, the model poll, a retraining) shares
/// the checks' health tracker, and its success, however slow, called the backend up: a
/// Redis answering every call in 300 ms against a 200 ms timeout was never called down,
/// each check waited out its timeout, and `mxguard_state_up` read 1.
#[tokio::test]
async fn a_slow_patient_success_does_not_call_a_slow_backend_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = bounded(
        &State::embedded_for_test(dir.path()).await,
        Duration::from_millis(200),
        OnFailure::Open,
    );
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<(), StateError>(())
    };
    for _ in 0..10 {
        if !state.health().is_up() {
            break;
        }
        assert!(state.call("get", slow()).await.is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!state.health().is_up(), "timeouts in a row over a second");
    // Past the second after which one call is let through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let patient = state.patient(Duration::from_secs(5));
    assert!(patient.call("get", slow()).await.is_ok());
    assert!(!state.health().is_up(), "a slow success called it up");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(state.call("get", async { Ok(()) }).await.is_ok());
    assert!(
        state.health().is_up(),
        "a success within the timeout calls it up"
    );
}

/// Regression (review of the state backend): the embedded store's bounded reads
/// (`get_counters`, `map_get`) ran redb on the calling async worker, which never yielded,
/// so `state.timeout` could not cut them: a slow read came back `Ok` long after the
/// bound, holding the session and starving every task of that worker. Now the read runs on
/// the blocking pool: the caller gets its timeout while the read goes on, and a task of
/// the same (single) runtime thread runs meanwhile. 300,000 look-ups take far longer than
/// the 1 ms bound on any machine; no wall-clock time is asserted.
#[tokio::test(flavor = "current_thread")]
async fn an_embedded_read_outliving_the_timeout_releases_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let base = State::embedded_for_test(dir.path()).await;
    // One key makes the table; the others are absent and each still costs a look-up.
    base.add_counters(&[("bayes:t:present".into(), 1)])
        .await
        .unwrap();
    let keys: Vec<String> = (0..300_000).map(|i| format!("bayes:t:{i:08}")).collect();
    let state = bounded(&base, Duration::from_millis(1), OnFailure::Closed);
    let other_task_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ran = other_task_ran.clone();
    let other = tokio::spawn(async move {
        ran.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let got = state.get_counters(&keys).await;
    let ran = other_task_ran.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        got.map(|v| v.len()),
        Err(Unavailable(OnFailure::Closed)),
        "a read outliving state.timeout must fail as a timeout"
    );
    assert!(ran, "the read held the runtime thread until it ended");
    other.await.unwrap();
    // The same read with room to finish still answers.
    let patient = state.patient(Duration::from_secs(60));
    let counts = patient.get_counters(&["bayes:t:present".into()]).await;
    assert_eq!(counts, Ok(vec![1]));
}

/// Regression (review of the state backend): a call that answers only after its own
/// bound (a future that never yields, so the timer cannot fire) was neither a success
/// nor a failure for health, so a backend answering that way was never called down. It
/// counts as the timeout it was.
#[tokio::test]
async fn a_success_past_the_call_timeout_counts_as_a_timeout_for_health() {
    let dir = tempfile::tempdir().unwrap();
    let state = bounded(
        &State::embedded_for_test(dir.path()).await,
        Duration::from_millis(20),
        OnFailure::Open,
    );
    let blocking = || async {
        std::thread::sleep(Duration::from_millis(40));
        Ok::<(), StateError>(())
    };
    // Down takes three timeouts over a second: up to 3 s of them here.
    for _ in 0..75 {
        if !state.health().is_up() {
            break;
        }
        let _ = state.call("get", blocking()).await;
    }
    assert!(
        !state.health().is_up(),
        "answers past the timeout, a second long, left the backend up"
    );
}

/// Regression (review of README's operator path): a new embedded store was made with the
/// umask's mode (0644), readable by every local user wherever `state.path` put it; the
/// spool's files are owner-only.
#[tokio::test]
async fn a_new_embedded_store_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let cfg = config(StateBackendConfig::Embedded { path: path.clone() });
    let state = State::open(&cfg, Arc::new(Metrics::new())).await.unwrap();
    state.set("k", b"v", Duration::from_secs(60)).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
