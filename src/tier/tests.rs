//! The tier's live view of its peers through a shared state store: heartbeats read back,
//! a draining member withdrawn, and what a peer may put in its heartbeat.

use super::*;

/// A primary's heartbeat as its JSON is stored, written at `at`.
fn primary_heartbeat(fingerprint: &str, at: u64, reached_at: Option<u64>) -> Vec<u8> {
    heartbeat(Role::Primary, fingerprint, at, reached_at)
}

/// A heartbeat announcing `role`, as its JSON is stored.
fn heartbeat(role: Role, fingerprint: &str, at: u64, reached_at: Option<u64>) -> Vec<u8> {
    let beat = Heartbeat {
        role,
        fingerprint: fingerprint.into(),
        version: "1".into(),
        at,
        reached_at,
        full_at: None,
        key: None,
    };
    serde_json::to_vec(&beat).unwrap()
}

/// Regression (review): a primary draining after SIGTERM closes its listener at once but
/// kept its heartbeat until the very end of the drain, so a backup with
/// `bypass_action = "tempfail"` refused every client while no primary took mail.
#[tokio::test]
async fn a_draining_member_is_seen_down_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let metrics = Arc::new(Metrics::new());
    let gw1 = TierConfig::for_test("gw1", Role::Primary, &[("bk1", Role::Backup)]);
    let bk1 = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    let gw1 = Tier::new(gw1, Some(state.clone()), metrics.clone());
    let bk1 = Tier::new(bk1, Some(state.clone()), metrics.clone());
    gw1.set_fingerprint("aa");
    bk1.set_fingerprint("aa");
    gw1.round().await;
    bk1.round().await;
    assert!(
        bk1.primaries_up(),
        "the backup sees the primary's heartbeat"
    );
    gw1.withdraw().await;
    bk1.round().await;
    assert!(!bk1.primaries_up(), "a withdrawn primary is still seen up");
    gw1.round().await;
    bk1.round().await;
    assert!(
        !bk1.primaries_up(),
        "a withdrawn primary announced itself again"
    );
}

/// Regression (review): a heartbeat's fingerprint was taken as written, so a peer (or
/// anything writing to the shared store) could put terminal escapes in our logs and a
/// multi-byte character where the console cuts it, which panicked the console.
#[tokio::test]
async fn a_heartbeat_fingerprint_must_be_short_and_alphanumeric() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let gw1 = TierConfig::for_test("gw1", Role::Primary, &[("gw2", Role::Primary)]);
    let gw1 = Tier::new(gw1, Some(state.clone()), Arc::new(Metrics::new()));
    gw1.set_fingerprint("aa");
    let beat = |fingerprint: &str| primary_heartbeat(fingerprint, unix_now(), None);
    let ttl = Duration::from_secs(60);
    for bad in ["0123456789abcde\u{e9}f", "ab\u{1b}[31mcd", ""] {
        state.set("tier:hb:gw2", &beat(bad), ttl).await.unwrap();
        gw1.round().await;
        let peer = &gw1.peers()[0];
        assert!(peer.up, "a heartbeat says the peer is up");
        assert_eq!(peer.fingerprint, None, "{bad:?} kept as a fingerprint");
    }
    state
        .set("tier:hb:gw2", &beat("ABC123"), ttl)
        .await
        .unwrap();
    gw1.round().await;
    assert_eq!(gw1.peers()[0].fingerprint.as_deref(), Some("abc123"));
}

/// Regression: a heartbeat's role and key id were logged as written when they differed from
/// this member's (`announced = ...`, `key = ...`), so anything that can write to the shared
/// store could put line breaks and forged log lines in every member's log. A heartbeat with
/// an unknown role or a key id that is not short and alphanumeric is malformed: it says
/// nothing, and the peer is probed (down here, with no admin listener).
#[tokio::test]
async fn a_heartbeat_with_an_unknown_role_or_a_malformed_key_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let gw1 = TierConfig::for_test("gw1", Role::Primary, &[("gw2", Role::Primary)]);
    let gw1 = Tier::new(gw1, Some(state.clone()), Arc::new(Metrics::new()));
    gw1.set_fingerprint("aa");
    let ttl = Duration::from_secs(60);
    let with = |role: &str, key: Option<&str>| {
        let mut beat: serde_json::Value =
            serde_json::from_slice(&primary_heartbeat("aa", unix_now(), None)).unwrap();
        beat["role"] = role.into();
        if let Some(key) = key {
            beat["key"] = key.into();
        }
        serde_json::to_vec(&beat).unwrap()
    };
    let long_key = "a".repeat(MAX_KEY_ID + 1);
    let malformed = [
        with("primary\nERROR forged line", None),
        with("", None),
        with("Primary", None),
        with("primary", Some("ab\ncd")),
        with("primary", Some("")),
        with("primary", Some(&long_key)),
    ];
    for beat in malformed {
        state.set("tier:hb:gw2", &beat, ttl).await.unwrap();
        gw1.round().await;
        assert!(
            !gw1.peers()[0].up,
            "{} read as a heartbeat",
            String::from_utf8_lossy(&beat)
        );
    }
    for beat in [
        with("primary", None),
        with("backup", Some("0123abcd0123abcd")),
    ] {
        state.set("tier:hb:gw2", &beat, ttl).await.unwrap();
        gw1.round().await;
        assert!(
            gw1.peers()[0].up,
            "{} not read as a heartbeat",
            String::from_utf8_lossy(&beat)
        );
    }
}

/// Regression (review): a primary whose spool had no room answered 452 to every message
/// but kept its heartbeat, so a backup took it for up and scored (or, with
/// `bypass_action = "tempfail"`, refused) the senders retrying there. `/healthz` already
/// said 503; the heartbeat now says the same.
#[tokio::test]
async fn a_member_whose_spool_has_no_room_is_seen_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(&dir.path().join("state")).await;
    let (spool, _ready) = Spool::open(&dir.path().join("spool")).unwrap();
    let gw1 = TierConfig::for_test("gw1", Role::Primary, &[("bk1", Role::Backup)]);
    let bk1 = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    let metrics = Arc::new(Metrics::new());
    let gw1 = Tier::new(gw1, Some(state.clone()), metrics.clone());
    let bk1 = Tier::new(bk1, Some(state.clone()), metrics.clone());
    gw1.watch_spool(Arc::new(spool), 0);
    gw1.round().await;
    bk1.round().await;
    assert!(bk1.primaries_up(), "a primary with room is seen up");
    // No file system has this much free: the spool is short of `min_free_bytes`.
    gw1.set_spool_min_free(u64::MAX);
    gw1.round().await;
    bk1.round().await;
    assert!(
        !bk1.primaries_up(),
        "a primary whose spool has no room is still seen up"
    );
    gw1.set_spool_min_free(0);
    gw1.round().await;
    bk1.round().await;
    assert!(bk1.primaries_up(), "a primary with room again is seen up");
}

/// Regression (review): a peer's heartbeat key holding a hash made Redis answer
/// `WRONGTYPE` every round, and the state backend was called down (and up again by the
/// next call): `/healthz` flapped to 503. That heartbeat is read as a malformed one: the
/// peer is probed instead, and the backend stays up.
#[tokio::test]
async fn a_heartbeat_key_of_another_type_is_no_backend_outage() {
    let Some(redis) = crate::state::tests::RedisServer::start() else {
        return;
    };
    let config = crate::config::StateConfig {
        backend: crate::config::StateBackendConfig::Redis {
            urls: vec![redis.url.clone()],
            cluster: false,
        },
        timeout: Duration::from_secs(2),
        on_failure: crate::config::OnFailure::Closed,
        key_prefix: "t:".into(),
    };
    let metrics = Arc::new(Metrics::new());
    let state = State::open(&config, metrics.clone()).await.unwrap();
    redis.cli(&["HSET", "t:tier:hb:gw2", "a", "b"]);
    let gw1 = TierConfig::for_test("gw1", Role::Primary, &[("gw2", Role::Primary)]);
    let gw1 = Tier::new(gw1, Some(state.clone()), metrics.clone());
    for _ in 0..3 {
        gw1.round().await;
        let peer = &gw1.peers()[0];
        assert!(!peer.up, "an unreadable heartbeat says the peer is up");
        assert_eq!(
            peer.source, "none",
            "the peer (no admin listener) was not probed"
        );
        assert!(state.health().is_up(), "the backend was called down");
        assert_eq!(metrics.state_up.get(), 1);
    }
}

/// Regression (review): a heartbeat's `at` was never compared with the clock, so its
/// freshness was the writer's TTL: one written without a TTL (or by a member with
/// `heartbeat_interval = "10m"`, living half an hour) kept a dead primary up on the
/// backups, which scored `MX_BYPASS_BACKUP` (or refused) every client meanwhile. A
/// heartbeat older than the reader's own heartbeat lifetime and the clock skew, or dated
/// too far ahead, is stale: the peer is probed as when it has none.
#[tokio::test]
async fn a_heartbeat_older_than_the_readers_bound_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let bk1 = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    let lifetime = heartbeat_ttl(&bk1, &state);
    let bk1 = Tier::new(bk1, Some(state.clone()), Arc::new(Metrics::new()));
    let beat = |at: u64| primary_heartbeat("aa", at, None);
    // What never expires in the store: the TTL is the writer's.
    let ever = Duration::from_secs(365 * 86_400);
    let now = unix_now();
    let bound = lifetime + HEARTBEAT_CLOCK_SKEW;
    for (at, fresh) in [
        (now, true),
        (now - bound.as_secs() + 5, true),
        (now + HEARTBEAT_CLOCK_SKEW.as_secs() - 5, true),
        (now - bound.as_secs() - 5, false),
        (now - 1_800, false),
        (now + HEARTBEAT_CLOCK_SKEW.as_secs() + 5, false),
        (1, false),
    ] {
        state.set("tier:hb:gw1", &beat(at), ever).await.unwrap();
        bk1.round().await;
        assert_eq!(
            bk1.primaries_up(),
            fresh,
            "heartbeat at now{:+}",
            at as i64 - now as i64
        );
        let source = bk1.peers()[0].source;
        assert_eq!(source, if fresh { "heartbeat" } else { "none" });
    }
}

/// Regression (review): a backup took a fresh heartbeat for a primary that takes mail. A
/// primary site whose uplink is down (or whose public address is wrong) still heartbeats
/// over the internal network, and with `bypass_action = "tempfail"` the backup refused
/// every sender during exactly the outage it exists for. A primary no client has reached
/// for [`PRIMARY_UNREACHED_LIMIT`] is not counted up for bypass.
#[tokio::test]
async fn a_primary_no_client_reaches_does_not_count_for_bypass() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let bk1 = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    let bk1 = Tier::new(bk1, Some(state.clone()), Arc::new(Metrics::new()));
    let now = unix_now();
    let beat = |reached_at: Option<u64>| primary_heartbeat("aa", unix_now(), reached_at);
    let limit = PRIMARY_UNREACHED_LIMIT.as_secs();
    for (reached_at, counts) in [
        (Some(now), true),
        (Some(now - limit + 30), true),
        (Some(now - limit - 30), false),
        (None, true),
    ] {
        let ttl = Duration::from_secs(60);
        state
            .set("tier:hb:gw1", &beat(reached_at), ttl)
            .await
            .unwrap();
        bk1.round().await;
        assert!(bk1.peers()[0].up, "the heartbeat is fresh");
        assert_eq!(bk1.primaries_up(), counts, "{reached_at:?}");
    }
    // A member publishes when a client last reached it (its start until one does).
    let gw1 = TierConfig::for_test("gw1", Role::Primary, &[("bk1", Role::Backup)]);
    let gw1 = Tier::new(gw1, Some(state.clone()), Arc::new(Metrics::new()));
    gw1.round().await;
    bk1.round().await;
    let published = bk1.peers()[0].reached_at.unwrap();
    assert!(published + 5 >= now, "{published} {now}");
    // A balancer's health check or internal monitoring does not count; a client on the
    // internet does.
    gw1.note_client("10.0.0.5".parse().unwrap());
    gw1.note_client("127.0.0.1".parse().unwrap());
    gw1.note_client("fd00::1".parse().unwrap());
    assert_eq!(gw1.client_reached.load(Ordering::Relaxed), 0);
    gw1.note_client("203.0.113.9".parse().unwrap());
    assert_eq!(
        gw1.client_reached.load(Ordering::Relaxed),
        0,
        "documentation range"
    );
    gw1.note_client("8.8.8.8".parse().unwrap());
    gw1.note_client("2a00:1450::1".parse().unwrap());
    assert!(gw1.client_reached.load(Ordering::Relaxed) > 0);
    gw1.round().await;
    bk1.round().await;
    assert!(bk1.peers()[0].reached_at.unwrap() >= published);
}

/// Regression (review): a primary at `max_sessions` answers `421` to everyone but kept
/// heartbeating, so under a flood the real MTAs it turned away and that fell back to a
/// backup scored `MX_BYPASS_BACKUP` there (and more), or were deferred everywhere with
/// `bypass_action = "tempfail"`. A primary that turned a client away for lack of session
/// room lately does not count as taking mail.
#[tokio::test]
async fn a_saturated_primary_does_not_count_for_bypass() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let metrics = Arc::new(Metrics::new());
    let gw1 = TierConfig::for_test("gw1", Role::Primary, &[("bk1", Role::Backup)]);
    let bk1 = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    let gw1 = Tier::new(gw1, Some(state.clone()), metrics.clone());
    let bk1 = Tier::new(bk1, Some(state.clone()), metrics);
    gw1.round().await;
    bk1.round().await;
    assert!(bk1.primaries_up());
    gw1.note_sessions_full();
    gw1.round().await;
    bk1.round().await;
    assert!(bk1.peers()[0].up, "still up");
    assert!(!bk1.primaries_up(), "but full: no bypass");
    // Long enough ago, it counts again.
    let long_ago = unix_now() - PRIMARY_FULL_HOLD.as_secs() - 30;
    let beat = Heartbeat {
        role: Role::Primary,
        fingerprint: "aa".into(),
        version: "1".into(),
        at: unix_now(),
        reached_at: None,
        full_at: Some(long_ago),
        key: None,
    };
    state
        .set(
            "tier:hb:gw1",
            &serde_json::to_vec(&beat).unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    bk1.round().await;
    assert!(bk1.primaries_up());
}

/// Regression (review): one hourly limit served every peer's role-mismatch warning, so the
/// peer observed first each round hid the others' for good.
#[tokio::test]
async fn each_peer_s_role_mismatch_is_said_on_its_own() {
    let gw1 = TierConfig::for_test(
        "gw1",
        Role::Primary,
        &[("gw2", Role::Primary), ("gw3", Role::Primary)],
    );
    let gw1 = Tier::new(gw1, None, Arc::new(Metrics::new()));
    assert!(gw1.mismatch_due("gw2", Mismatch::Role));
    assert!(
        gw1.mismatch_due("gw3", Mismatch::Role),
        "gw2's warning hid gw3's"
    );
    assert!(
        gw1.mismatch_due("gw2", Mismatch::Key),
        "the role's warning hid the key's"
    );
    assert!(
        !gw1.mismatch_due("gw2", Mismatch::Role),
        "twice within the hour"
    );
}

/// Regression (review): members holding different keys trust none of each other's
/// stamps, and nothing said so (the key is in no fingerprint). A heartbeat names its
/// writer's key by its id; a key this member holds neither as its own nor as the previous
/// one is warned of (the warning then waits its hour, which is what is seen here).
#[tokio::test]
async fn a_peer_signing_with_a_key_this_member_does_not_hold_is_warned_of() {
    use crate::config::TierSecret;
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let metrics = Arc::new(Metrics::new());
    let member = |name: &str, peer: &str, key: &[u8], previous: Option<&[u8]>| {
        let mut config = TierConfig::for_test(name, Role::Primary, &[(peer, Role::Primary)]);
        config.secret = TierSecret::from_bytes(key);
        config.previous_secret = previous.map(TierSecret::from_bytes);
        Tier::new(config, Some(state.clone()), metrics.clone())
    };
    for (gw2_key, gw1_previous, warned) in [
        (&b"old"[..], None, false),
        (&b"new"[..], None, true),
        (&b"new"[..], Some(&b"new"[..]), false),
    ] {
        let gw2 = member("gw2", "gw1", gw2_key, None);
        let gw1 = member("gw1", "gw2", b"old", gw1_previous);
        gw2.round().await;
        gw1.round().await;
        assert_eq!(
            !gw1.mismatch_due("gw2", Mismatch::Key),
            warned,
            "gw2 on {gw2_key:?}, gw1 also holding {gw1_previous:?}"
        );
    }
}

/// Regression (review): the configured role won over the one a peer announces, so a
/// primary re-roled to backup on its own host (its MX record changed) still counted as a
/// primary here, and backups scored or refused every sender while the real primaries were
/// down. A peer counts as a primary only while both say so.
#[tokio::test]
async fn a_primary_announcing_the_backup_role_does_not_count_for_bypass() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let bk1 = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    let bk1 = Tier::new(bk1, Some(state.clone()), Arc::new(Metrics::new()));
    let beat = |role: Role| heartbeat(role, "aa", unix_now(), None);
    let ttl = Duration::from_secs(60);
    state
        .set("tier:hb:gw1", &beat(Role::Primary), ttl)
        .await
        .unwrap();
    bk1.round().await;
    assert!(bk1.primaries_up());
    state
        .set("tier:hb:gw1", &beat(Role::Backup), ttl)
        .await
        .unwrap();
    bk1.round().await;
    assert!(bk1.peers()[0].up, "it is up all the same");
    assert!(
        !bk1.primaries_up(),
        "a self-declared backup counted as a primary"
    );
}

/// Regression (review): the view of the peers was trusted however old: had the task that
/// refreshes it stopped, a backup went on scoring or refusing senders for ever.
#[tokio::test]
async fn a_view_of_the_peers_no_round_refreshed_says_no_primary_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let bk1 = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    let bk1 = Tier::new(bk1, Some(state.clone()), Arc::new(Metrics::new()));
    let ttl = Duration::from_secs(60);
    state
        .set(
            "tier:hb:gw1",
            &primary_heartbeat("aa", unix_now(), None),
            ttl,
        )
        .await
        .unwrap();
    bk1.round().await;
    assert!(bk1.primaries_up());
    for p in write(&bk1.peers).iter_mut() {
        p.last_seen = Some(SystemTime::now() - Duration::from_secs(3600));
    }
    assert!(!bk1.primaries_up());
}

/// A backup `bk1` watching the primary `gw1` (whose admin listener is `admin`) through an
/// embedded store: the member, the store, and the directory that holds it.
async fn backup_watching_gw1(
    admin: Option<std::net::SocketAddr>,
) -> (Arc<Tier>, State, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let state = State::embedded_for_test(dir.path()).await;
    let mut cfg = TierConfig::for_test("bk1", Role::Backup, &[("gw1", Role::Primary)]);
    cfg.peers[0].admin = admin;
    let bk1 = Tier::new(cfg, Some(state.clone()), Arc::new(Metrics::new()));
    (bk1, state, dir)
}

/// An admin listener that answers `/healthz` and `/policy` (fingerprint `aa`) with 200.
async fn healthy_admin() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = c.read(&mut buf).await.unwrap_or(0);
                let body = if buf[..n].starts_with(b"GET /policy") {
                    "{\"fingerprint\":\"aa\"}"
                } else {
                    "ok"
                };
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(reply.as_bytes()).await;
            });
        }
    });
    admin
}

/// Regression (review): a heartbeat dated more than a minute ahead (the primary's clock
/// runs ahead) was dropped, and the probe that replaced it carried none of what it said:
/// a primary unreached for an hour counted as reached again, and a `tempfail` backup
/// refused every sender.
#[tokio::test]
async fn what_a_heartbeat_dated_ahead_says_still_counts_beside_the_probe() {
    let (bk1, state, _dir) = backup_watching_gw1(Some(healthy_admin().await)).await;
    bk1.set_fingerprint("aa");
    let now = unix_now();
    let ttl = Duration::from_secs(600);
    let beat = |at: u64, reached: u64| primary_heartbeat("aa", at, Some(reached));
    state
        .set("tier:hb:gw1", &beat(now, now - 3600), ttl)
        .await
        .unwrap();
    bk1.round().await;
    assert!(!bk1.primaries_up(), "in step: an unreached primary");
    state
        .set("tier:hb:gw1", &beat(now + 90, now + 90 - 3600), ttl)
        .await
        .unwrap();
    bk1.round().await;
    assert_eq!(bk1.peers()[0].source, "probe");
    assert!(bk1.peers()[0].up, "the probe found it up");
    assert!(!bk1.primaries_up(), "90 s ahead: still unreached");
    // Reached lately, it counts, through the probe too.
    state
        .set("tier:hb:gw1", &beat(now + 90, now + 90), ttl)
        .await
        .unwrap();
    bk1.round().await;
    assert!(bk1.primaries_up());
}

/// Regression (review): the times a heartbeat says a client last reached its writer and
/// the writer last turned one away were read against this member's clock, though they are
/// on the writer's. A primary whose clock ran 20 minutes behind, reached a second before
/// it wrote, counted as unreached for good; one whose clock ran an hour ahead, full ten
/// minutes before it wrote, counted as saturated for the hour: either way the backup
/// scored no bypass while the primary took mail. Read against the heartbeat's own date
/// (one clock), they say the same whatever the clocks.
#[tokio::test]
async fn a_peer_s_reach_and_load_are_read_on_its_own_clock() {
    let (bk1, state, _dir) = backup_watching_gw1(Some(healthy_admin().await)).await;
    bk1.set_fingerprint("aa");
    let now = unix_now();
    let beat = |at: u64, reached_at: u64, full_at: Option<u64>| {
        let beat = Heartbeat {
            role: Role::Primary,
            fingerprint: "aa".into(),
            version: "1".into(),
            at,
            reached_at: Some(reached_at),
            full_at,
            key: None,
        };
        serde_json::to_vec(&beat).unwrap()
    };
    let hold = PRIMARY_FULL_HOLD.as_secs();
    let unreached = PRIMARY_UNREACHED_LIMIT.as_secs();
    let behind = now - 1200;
    let ahead = now + 3600;
    for (at, reached_at, full_at, counts, case) in [
        (
            behind,
            behind - 1,
            None,
            true,
            "20 min behind, reached lately",
        ),
        (
            behind,
            behind - unreached - 60,
            None,
            false,
            "behind, unreached",
        ),
        (
            ahead,
            ahead,
            Some(ahead - 600),
            true,
            "an hour ahead, full long ago",
        ),
        (ahead, ahead, Some(ahead - 10), false, "ahead, full lately"),
        (
            now,
            now,
            Some(now - hold - 30),
            true,
            "in step, full long ago",
        ),
    ] {
        state
            .set(
                "tier:hb:gw1",
                &beat(at, reached_at, full_at),
                Duration::from_secs(600),
            )
            .await
            .unwrap();
        bk1.round().await;
        assert!(bk1.peers()[0].up, "{case}: the peer is up");
        assert_eq!(bk1.primaries_up(), counts, "{case}");
    }
}

/// Regression (review): a heartbeat dated ahead of this member's clock was warned of, one
/// dated behind only logged at debug level, though either makes the peer's heartbeat stale
/// and a primary without an admin listener then counts as down: backups silently stopped
/// scoring bypass. Both are warned of (once an hour, which is what is seen here).
#[tokio::test]
async fn a_heartbeat_dated_behind_is_warned_of_like_one_dated_ahead() {
    let (bk1, state, _dir) = backup_watching_gw1(None).await;
    let at = unix_now() - 1200;
    state
        .set(
            "tier:hb:gw1",
            &primary_heartbeat("aa", at, Some(at)),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    bk1.round().await;
    assert!(!bk1.peers()[0].up, "no admin listener to probe");
    assert!(
        !bk1.mismatch_due("gw1", Mismatch::Clock),
        "a heartbeat 20 minutes behind was not warned of"
    );
}

#[test]
fn only_clients_from_public_addresses_count_as_reaching_a_member() {
    let public = ["8.8.8.8", "198.20.0.1", "198.51.99.1", "2a00:1450::1"];
    // Earlier missed: "this network", benchmarking, reserved, multicast, IETF assignments.
    let special = [
        "0.1.2.3",
        "198.18.0.1",
        "198.19.255.254",
        "240.0.0.1",
        "255.255.255.255",
        "224.0.0.5",
        "192.0.0.9",
        "10.1.1.1",
        "100.64.0.1",
        "169.254.1.1",
        "127.0.0.1",
        "192.0.2.1",
        "ff02::1",
        "fd00::1",
        "fe80::1",
        "2001:db8::1",
        "::1",
    ];
    for ip in special {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(!is_on_the_internet(ip), "{ip}");
    }
    for ip in public {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(is_on_the_internet(ip), "{ip}");
    }
}
