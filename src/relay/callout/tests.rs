use super::*;
use crate::relay::testing::{config, dead_addr, FakeServer, Script};

/// A callout with the configuration every question carries.
struct Probe {
    callout: Callout,
    config: Arc<Config>,
}

impl Probe {
    async fn verify(&self, rcpt: &str) -> CalloutAnswer {
        self.callout.verify(rcpt, &self.config).await
    }
}

fn callout(servers: &[SocketAddr], overrides: &[(&str, &str)]) -> (Probe, Arc<Metrics>) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), servers, overrides);
    let metrics = Arc::new(Metrics::new());
    let callout = Callout::new(metrics.clone());
    (Probe { callout, config }, metrics)
}

/// A callout whose `[relay.recipients]` settings `edit` changed.
fn with_recipients(
    servers: &[SocketAddr],
    edit: impl FnOnce(&mut crate::config::RecipientsConfig),
) -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = (*config(dir.path(), servers, &[])).clone();
    edit(&mut cfg.relay.recipients);
    Probe {
        callout: Callout::new(Arc::new(Metrics::new())),
        config: Arc::new(cfg),
    }
}

/// [`directory`] waiting `delay` before each reply.
fn slow_directory(delay: Duration) -> Script {
    Script {
        delay,
        ..directory()
    }
}

fn directory() -> Script {
    Script {
        rcpt: Arc::new(|a: &str| match a.to_lowercase().as_str() {
            "alice@example.test" => "250 2.1.5 Ok".into(),
            "busy@example.test" => "451 4.3.0 try later".into(),
            _ => "550 5.1.1 no such user".into(),
        }),
        ..Script::default()
    }
}

/// Regression (review): when the session running a probe was dropped mid-probe, every
/// session waiting for its answer probed on its own, none of them joinable: as many
/// probes of one address as there were waiters. One of them probes, the others join.
#[tokio::test]
async fn waiters_of_a_dropped_probe_share_the_next_one() {
    let server = FakeServer::start(slow_directory(Duration::from_millis(300))).await;
    let (c, _) = callout(&[server.addr], &[]);
    let c = Arc::new(c);
    let ask = |c: &Arc<Probe>| {
        let c = c.clone();
        tokio::spawn(async move { c.verify("alice@example.test").await })
    };
    let first = ask(&c);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiters = [ask(&c), ask(&c), ask(&c)];
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Dropped before its probe got past the (slow) greeting.
    first.abort();
    for w in waiters {
        assert_eq!(w.await.unwrap(), CalloutAnswer::Exists);
    }
    let probes = server
        .commands()
        .iter()
        .filter(|c| c.starts_with("RCPT"))
        .count();
    assert_eq!(probes, 1, "{:?}", server.commands());
}

/// Regression (review): a `552` at RCPT (a mailbox over quota, which RFC 5321
/// §4.5.3.1.10 says to read as temporary) was "user unknown": the sender got `550 5.1.1`
/// for a real user, cached for `negative_ttl`. It is unavailable for now, never cached.
#[tokio::test]
async fn a_full_mailbox_is_no_unknown_user() {
    let server = FakeServer::start(Script {
        rcpt: Arc::new(|a: &str| match a {
            "full@example.test" => "552 5.2.2 mailbox full".into(),
            _ => "550 5.1.1 no such user".into(),
        }),
        ..Script::default()
    })
    .await;
    let (c, _) = callout(&[server.addr], &[]);
    let full = c.verify("full@example.test").await;
    assert!(
        matches!(full, CalloutAnswer::Unavailable { .. }),
        "{full:?}"
    );
    assert!(matches!(
        c.verify("nobody@example.test").await,
        CalloutAnswer::Unknown { .. }
    ));
}

/// Regression (review): any 5xx to the probe's RCPT was "user unknown", cached for
/// `negative_ttl`: an internal server refusing null-sender probes by policy
/// (`554 5.7.1`) got real users answered `550 5.1.1`.
#[tokio::test]
async fn a_refusal_for_another_reason_is_no_unknown_user() {
    let server = FakeServer::start(Script {
        rcpt: Arc::new(|a: &str| match a {
            "policy@example.test" => "554 5.7.1 probes not accepted".into(),
            "plain@example.test" => "550 no such user".into(),
            _ => "553 5.1.3 bad address".into(),
        }),
        ..Script::default()
    })
    .await;
    let (c, _) = callout(&[server.addr], &[]);
    let refused = c.verify("policy@example.test").await;
    assert!(
        matches!(refused, CalloutAnswer::Unavailable { .. }),
        "{refused:?}"
    );
    for unknown in ["plain@example.test", "other@example.test"] {
        let answer = c.verify(unknown).await;
        assert!(
            matches!(answer, CalloutAnswer::Unknown { .. }),
            "{answer:?}"
        );
    }
}

/// Regression (review): the cache key was Unicode-lowercased, so a refused
/// `\u{212A}im@example.test` (KELVIN SIGN) was cached as `kim@example.test`, and the
/// real recipient was refused from the cache for `negative_ttl`.
#[tokio::test]
async fn a_unicode_look_alike_is_cached_apart_from_the_real_recipient() {
    let kim_only = Script {
        rcpt: Arc::new(|a: &str| {
            if a.eq_ignore_ascii_case("kim@example.test") {
                "250 2.1.5 Ok".into()
            } else {
                "550 5.1.1 no such user".into()
            }
        }),
        smtputf8: true,
        ..Script::default()
    };
    let server = FakeServer::start(kim_only).await;
    let (c, _) = callout(&[server.addr], &[]);
    let forged = c.verify("\u{212A}im@example.test").await;
    assert!(
        matches!(forged, CalloutAnswer::Unknown { .. }),
        "{forged:?}"
    );
    assert_eq!(c.verify("kim@example.test").await, CalloutAnswer::Exists);
}

/// Regression (review): the probe's `MAIL FROM:<>` never declared SMTPUTF8, so a
/// server that offers it (Postfix) refused a non-ASCII recipient with `553 5.6.7`:
/// a real mailbox got `550 5.1.1 user unknown`, cached for `negative_ttl`.
#[tokio::test]
async fn a_utf8_recipient_is_probed_with_smtputf8() {
    let server = FakeServer::start(Script {
        smtputf8: true,
        rcpt: Arc::new(|a: &str| match a {
            "j\u{f6}rg@example.test" => "250 2.1.5 Ok".into(),
            _ => "550 5.1.1 no such user".into(),
        }),
        ..Script::default()
    })
    .await;
    let (c, _) = callout(&[server.addr], &[]);
    let answer = c.verify("j\u{f6}rg@example.test").await;
    assert_eq!(answer, CalloutAnswer::Exists);
    // An ASCII recipient is probed as before.
    assert!(matches!(
        c.verify("nobody@example.test").await,
        CalloutAnswer::Unknown { .. }
    ));
    assert!(server.commands().iter().any(|l| l == "MAIL FROM:<>"));
}

/// Regression (review): a recipient past ASCII was probed raw at a server without
/// SMTPUTF8 (RFC 6531 §3.2 forbids it; delivery never sends it there): a lenient
/// server's 250 accepted mail that then bounced `5.6.7`, a strict one's `5.1.x` made a
/// real user unknown though the next server would have taken the mail. Such a server
/// is passed over; with none other, the answer is unavailable (a 4xx), never cached.
#[tokio::test]
async fn a_utf8_recipient_is_asked_only_of_a_server_with_smtputf8() {
    let takes_anything = Script {
        smtputf8: false,
        rcpt: Arc::new(|_: &str| "250 2.1.5 Ok".into()),
        ..Script::default()
    };
    let without = FakeServer::start(takes_anything.clone()).await;
    let (c, _) = callout(&[without.addr], &[]);
    let answer = c.verify("j\u{f6}rg@example.test").await;
    assert!(
        matches!(&answer, CalloutAnswer::Unavailable { reason } if reason.contains("SMTPUTF8")),
        "{answer:?}"
    );
    assert!(
        !without.commands().iter().any(|l| l.starts_with("RCPT")),
        "{:?}",
        without.commands()
    );
    let strict = FakeServer::start(Script {
        smtputf8: false,
        rcpt: Arc::new(|_: &str| "501 5.1.3 bad address syntax".into()),
        ..Script::default()
    })
    .await;
    let with = FakeServer::start(Script {
        smtputf8: true,
        ..takes_anything
    })
    .await;
    let (c, _) = callout(&[strict.addr, with.addr], &[]);
    assert_eq!(
        c.verify("j\u{f6}rg@example.test").await,
        CalloutAnswer::Exists
    );
    assert!(!strict.commands().iter().any(|l| l.starts_with("RCPT")));
}

/// Regression (review): the probe did not look for replies out of step, as delivery
/// does: behind a server's second greeting line every reply was read one step late,
/// the 250 to MAIL answered RCPT, and an unknown user "existed" (cached an hour:
/// recipient verification off). Out of step, the server gives no answer.
#[tokio::test]
async fn a_probe_whose_replies_run_out_of_step_gets_no_answer() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                let _ = w.write_all(b"220 one\r\n250 unsolicited\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250-fake\r\n250 PIPELINING\r\n"
                    } else if line.starts_with("MAIL") {
                        b"250 2.1.0 Ok\r\n"
                    } else if line.starts_with("RCPT") {
                        b"550 5.1.1 no such user\r\n"
                    } else {
                        b"221 bye\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (c, _) = callout(&[addr], &[]);
    let answer = c.verify("nobody@example.test").await;
    assert!(
        matches!(answer, CalloutAnswer::Unavailable { .. }),
        "{answer:?}"
    );
}

#[tokio::test]
async fn answers_are_probed_once_then_cached_case_insensitively() {
    let server = FakeServer::start(directory()).await;
    let (c, metrics) = callout(&[server.addr], &[]);
    assert_eq!(c.verify("Alice@Example.TEST").await, CalloutAnswer::Exists);
    assert_eq!(c.verify("alice@example.test").await, CalloutAnswer::Exists);
    assert_eq!(server.connections(), 1);
    let unknown = c.verify("nobody@example.test").await;
    assert!(
        matches!(&unknown, CalloutAnswer::Unknown { reply } if reply.contains("5.1.1")),
        "{unknown:?}"
    );
    assert_eq!(c.verify("NOBODY@example.test").await, unknown);
    assert_eq!(server.connections(), 2);
    assert!(server.commands().iter().any(|l| l == "MAIL FROM:<>"));
    let cached = metrics.callouts_total.with_label_values(&["cached"]).get();
    assert_eq!(cached, 2);
}

/// Regression (carried review finding): every RCPT of every session could open its
/// own probe connection, so a dictionary attack over many sessions opened as many
/// connections to the internal server at once.
#[tokio::test]
async fn probes_beyond_the_concurrency_limit_wait_for_a_slot() {
    let server = FakeServer::start(slow_directory(Duration::from_millis(50))).await;
    let c = with_recipients(&[server.addr], |rc| rc.callout_concurrency = 2);
    let rcpts: Vec<String> = (0..6).map(|i| format!("user{i}@example.test")).collect();
    let answers = futures::future::join_all(rcpts.iter().map(|r| c.verify(r))).await;
    for answer in &answers {
        assert!(
            matches!(answer, CalloutAnswer::Unknown { .. }),
            "{answer:?}"
        );
    }
    assert_eq!(server.connections(), 6);
    assert_eq!(server.record.lock().unwrap().most_rcpts_pending, 2);
}

/// Regression (review): sessions opened before a reload that changed the limit each
/// made a fresh set of slots at every switch, so the limit stopped limiting.
#[tokio::test]
async fn sessions_of_two_configurations_share_one_set_of_slots() {
    let server = FakeServer::start(slow_directory(Duration::from_millis(100))).await;
    let old = with_recipients(&[server.addr], |rc| rc.callout_concurrency = 1);
    let mut new = (*old.config).clone();
    new.relay.recipients.callout_concurrency = 2;
    let new = Arc::new(new);
    let rcpts: Vec<String> = (0..8).map(|i| format!("user{i}@example.test")).collect();
    let answers = futures::future::join_all(rcpts.iter().enumerate().map(|(i, r)| {
        let config = if i % 2 == 0 { &old.config } else { &new };
        old.callout.verify(r, config)
    }))
    .await;
    assert!(answers
        .iter()
        .all(|a| matches!(a, CalloutAnswer::Unknown { .. })));
    let most = server.record.lock().unwrap().most_rcpts_pending;
    assert!(most <= 2, "{most} probes at once under limits of 1 and 2");
}

/// A probe that gets no slot before its deadline is unavailable (a 4xx), not unknown.
#[tokio::test]
async fn a_probe_with_no_slot_in_time_is_unavailable() {
    let server = FakeServer::start(slow_directory(Duration::from_millis(300))).await;
    // One slot; the first probe may take 5 s (it takes about 1 s), the second 200 ms.
    let patient = with_recipients(&[server.addr], |rc| {
        rc.callout_concurrency = 1;
        rc.callout_timeout = Duration::from_secs(5);
    });
    let mut hasty = (*patient.config).clone();
    hasty.relay.recipients.callout_timeout = Duration::from_millis(200);
    let hasty = Arc::new(hasty);
    let (first, second) = tokio::join!(patient.verify("first@example.test"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        patient.callout.verify("second@example.test", &hasty).await
    });
    assert!(matches!(&first, CalloutAnswer::Unknown { .. }), "{first:?}");
    assert!(
        matches!(&second, CalloutAnswer::Unavailable { reason } if reason.contains("callout_concurrency")),
        "{second:?}"
    );
}

#[tokio::test]
async fn temporary_answers_are_unavailable_and_never_cached() {
    let server = FakeServer::start(directory()).await;
    let (c, _) = callout(&[server.addr], &[]);
    for _ in 0..2 {
        let a = c.verify("busy@example.test").await;
        assert!(matches!(a, CalloutAnswer::Unavailable { .. }), "{a:?}");
    }
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn unreachable_or_slow_servers_are_unavailable() {
    let dead = dead_addr().await;
    let (c, _) = callout(&[dead], &[]);
    let a = c.verify("alice@example.test").await;
    assert!(matches!(a, CalloutAnswer::Unavailable { .. }), "{a:?}");

    let slow = FakeServer::start(slow_directory(Duration::from_secs(2))).await;
    let c = with_recipients(&[slow.addr], |rc| {
        rc.callout_timeout = Duration::from_millis(100);
    });
    let a = c.verify("alice@example.test").await;
    assert_eq!(
        a,
        CalloutAnswer::Unavailable {
            reason: "callout timed out".into()
        }
    );
}

#[tokio::test]
async fn the_second_server_answers_when_the_first_is_down() {
    let dead = dead_addr().await;
    let server = FakeServer::start(directory()).await;
    let (c, _) = callout(&[dead, server.addr], &[]);
    assert_eq!(c.verify("alice@example.test").await, CalloutAnswer::Exists);
}

/// Regression (review): `callout_timeout` bounded the probe of every server together,
/// so a first internal server that took the connection and never answered (hung, or
/// dropping packets, `connect_timeout` being longer) used it all: the next server was
/// never asked and every recipient got `450 4.4.3` while it was up.
#[tokio::test]
async fn a_hung_first_server_leaves_time_for_the_next() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hung.accept().await {
            held.push(stream);
        }
    });
    let server = FakeServer::start(directory()).await;
    let c = with_recipients(&[hung_addr, server.addr], |rc| {
        rc.callout_timeout = Duration::from_secs(1);
    });
    assert_eq!(c.verify("alice@example.test").await, CalloutAnswer::Exists);
    holder.abort();
}

#[tokio::test]
async fn concurrent_lookups_share_one_probe() {
    let server = FakeServer::start(slow_directory(Duration::from_millis(50))).await;
    let (c, _) = callout(&[server.addr], &[]);
    let (a, b, d) = tokio::join!(
        c.verify("alice@example.test"),
        c.verify("ALICE@example.test"),
        c.verify("alice@example.test")
    );
    assert_eq!(
        [a, b, d],
        [
            CalloutAnswer::Exists,
            CalloutAnswer::Exists,
            CalloutAnswer::Exists
        ]
    );
    assert_eq!(server.connections(), 1);
}

/// Recipient settings with these TTLs and room for two answers.
fn ttls(positive: Duration, negative: Duration) -> crate::config::RecipientsConfig {
    crate::config::RecipientsConfig {
        lists: Default::default(),
        list_files: Vec::new(),
        callout: true,
        callout_timeout: Duration::from_secs(5),
        positive_ttl: positive,
        negative_ttl: negative,
        cache_size: 2,
        callout_concurrency: 1,
    }
}

/// Regression (review): a TTL longer than the clock can count to (the configuration
/// took `positive_ttl = "300000000000y"`; it now refuses more than a year) overflowed
/// `Instant` in the cache and panicked: every session whose recipient existed died
/// at RCPT.
#[test]
fn a_ttl_too_long_for_the_clock_keeps_the_answer() {
    let ttl = Duration::from_secs(300_000_000_000 * 365 * 86_400);
    let rc = ttls(ttl, ttl);
    let mut c = Cache::default();
    let now = Instant::now();
    c.put("a".into(), CalloutAnswer::Exists, now, &rc);
    let later = now + Duration::from_secs(3600);
    assert_eq!(c.get("a", later, &rc), Some(CalloutAnswer::Exists));
}

#[test]
fn cache_evicts_oldest_and_expires() {
    let mut c = Cache::default();
    let now = Instant::now();
    let ttl = Duration::from_secs(10);
    let rc = ttls(ttl, ttl);
    c.put("a".into(), CalloutAnswer::Exists, now, &rc);
    c.put("b".into(), CalloutAnswer::Exists, now, &rc);
    c.put("a".into(), CalloutAnswer::Exists, now, &rc);
    c.put("c".into(), CalloutAnswer::Exists, now, &rc);
    assert!(c.get("b", now, &rc).is_none());
    assert!(c.get("a", now, &rc).is_some());
    assert!(c.get("c", now, &rc).is_some());
    assert!(c.get("c", now + ttl, &rc).is_none());
    assert_eq!(c.entries.len(), 1);
    assert_eq!(c.order.len(), 1);
}

/// Regression (review): answers cached before a reload kept the TTL of the old
/// configuration, and were keyed by the address alone: after `relay.internal` moved,
/// the old server's answers decided RCPT for up to `positive_ttl`, and a shortened
/// `negative_ttl` left refusals cached as long as before.
#[test]
fn a_reload_that_moves_the_servers_or_shortens_a_ttl_holds_for_cached_answers() {
    let old_server: std::net::SocketAddr = "192.0.2.1:25".parse().unwrap();
    let new_server: std::net::SocketAddr = "192.0.2.2:25".parse().unwrap();
    assert_ne!(
        cache_key("Kim@Example.test", &[old_server]),
        cache_key("kim@example.test", &[new_server])
    );
    assert_eq!(
        cache_key("Kim@Example.test", &[old_server]),
        cache_key("kim@example.test", &[old_server])
    );
    let hour = Duration::from_secs(3600);
    let before = ttls(hour, Duration::from_secs(600));
    let after = ttls(hour, Duration::from_secs(60));
    let mut c = Cache::default();
    let now = Instant::now();
    let refused = CalloutAnswer::Unknown {
        reply: "550 5.1.1 no such user".into(),
    };
    c.put("x".into(), refused.clone(), now, &before);
    let later = now + Duration::from_secs(120);
    assert_eq!(c.get("x", later, &before), Some(refused));
    assert_eq!(c.get("x", later, &after), None);
}
