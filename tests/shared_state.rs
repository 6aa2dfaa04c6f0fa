//! The tier's shared memory with real processes: two built gateways sharing one
//! `redis-server` (and a three-node Redis Cluster) for greylisting and rate limits, the
//! same pair on their own embedded stores, a Redis outage under both failure policies,
//! an embedded greylisting pass surviving `kill -9`, and score-aware greylisting.

mod common;

use common::*;
use std::thread;
use std::time::Duration;

/// Greylisting with a delay short enough for a test to wait out, and long enough that a
/// second attempt made at once still falls inside it on a loaded two-core CI machine (with
/// one second, a gateway answering its second session slowly let the retry through).
const GREYLIST: &str = "[greylist]\nenabled = true\ndelay = \"3s\"\nwindow = \"1h\"\n";
/// A state timeout that a loaded CI machine's embedded store or Redis meets: with the
/// default 200 ms, a greylisting call that timed out failed open and a first attempt
/// passed. The outage tests keep the short timeout they are about.
const PATIENT_STATE: &str = "[state]\ntimeout = \"3s\"\n";
/// Three MAIL FROMs per client address and hour, counted tier-wide.
const RATELIMIT: &str = "[[ratelimit]]\nname = \"mail\"\nkey = \"client_ip\"\nlimit = 3\nper = \"1h\"\nstage = \"mail\"\n";
/// Longer than the greylisting delay and the second its whole-second times may lose.
const PAST_DELAY: Duration = Duration::from_millis(4100);

fn redis_state(url: &str, extra: &str) -> String {
    let patient = if extra.contains("timeout") {
        ""
    } else {
        "timeout = \"3s\"\n"
    };
    format!("[state]\nbackend = \"redis\"\nredis = {url:?}\n{patient}{extra}")
}

fn cluster_state(urls: &str) -> String {
    format!("[state]\nbackend = \"redis\"\ncluster = true\nredis = {urls}\ntimeout = \"3s\"\n")
}

/// Two gateways relaying to one internal server, each with `toml` in its configuration.
fn pair(toml: &str) -> (InternalServer, Gateway, Gateway) {
    let internal = InternalServer::start();
    let gw1 = Gateway::start(GatewayConfig::new(&internal).toml(toml));
    let gw2 = Gateway::start(GatewayConfig::new(&internal).toml(toml));
    (internal, gw1, gw2)
}

/// One session up to the RCPT reply for `to`.
fn rcpt(gw: &Gateway, from: &str, to: &str) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd(&format!("MAIL FROM:<{from}>")).expect(250, "2.1.0");
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    c.quit();
    r
}

/// One session that sends a whole message from `from` to `to` with `body`: the reply to
/// RCPT, else the reply at the end of data.
fn deliver(gw: &Gateway, from: &str, to: &str, body: &str) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.try_send_mail(from, &[to], &message("m@t", "greylist", body));
    c.quit();
    r
}

/// One session up to the MAIL reply.
fn mail(gw: &Gateway) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.cmd("MAIL FROM:<s@sender.test>");
    c.quit();
    r
}

fn assert_greylisted(r: &Reply) {
    r.expect(451, "4.7.1");
    assert!(r.text().contains("Greylisted"), "{r}");
}

/// A triplet first seen on gw1 passes on gw2 after the delay; on the pass gw2 adds the
/// GREYLIST symbol and the message goes through.
fn greylisting_is_shared(gw1: &Gateway, gw2: &Gateway, internal: &InternalServer) {
    assert_greylisted(&rcpt(gw1, "alice@sender.test", "bob@example.test"));
    assert_greylisted(&rcpt(gw2, "alice@sender.test", "bob@example.test"));
    thread::sleep(PAST_DELAY);
    let mut c = SmtpClient::connect_ehlo(gw2.port);
    c.send_mail(
        "alice@sender.test",
        &["bob@example.test"],
        &message("greylist-shared@t", "retry", "body"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("greylist-shared@t");
    assert!(
        gw2.wait_log_line(Duration::from_secs(5), "GREYLIST", 0)
            .is_some(),
        "no GREYLIST symbol in gw2's message line"
    );
}

/// Three MAILs across both gateways pass; the fourth, at either, is over the limit.
fn rate_limit_is_shared(gw1: &Gateway, gw2: &Gateway) {
    mail(gw1).expect(250, "2.1.0");
    mail(gw2).expect(250, "2.1.0");
    mail(gw1).expect(250, "2.1.0");
    let over = mail(gw2);
    over.expect(450, "4.7.1");
    assert!(over.text().contains("Rate limit mail exceeded"), "{over}");
}

#[test]
fn greylisting_and_rate_limits_are_shared_through_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (internal, gw1, gw2) = pair(&format!(
        "{}{GREYLIST}{RATELIMIT}",
        redis_state(&redis.url(), "")
    ));
    greylisting_is_shared(&gw1, &gw2, &internal);
    // The greylisting sessions counted their MAILs too: start the limit afresh.
    redis.cli(&["FLUSHALL"]).unwrap();
    rate_limit_is_shared(&gw1, &gw2);
}

#[test]
fn greylisting_and_rate_limits_are_shared_through_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (internal, gw1, gw2) = pair(&format!(
        "{}{GREYLIST}{RATELIMIT}",
        cluster_state(&cluster.toml_urls())
    ));
    greylisting_is_shared(&gw1, &gw2, &internal);
    for node in &cluster.nodes {
        node.cli(&["FLUSHALL"]).unwrap();
    }
    rate_limit_is_shared(&gw1, &gw2);
}

#[test]
fn embedded_state_is_per_gateway() {
    let (_internal, gw1, gw2) = pair(&format!("{PATIENT_STATE}{GREYLIST}{RATELIMIT}"));
    assert_greylisted(&rcpt(&gw1, "alice@sender.test", "bob@example.test"));
    thread::sleep(PAST_DELAY);
    // gw2 never saw the first attempt: greylisted again, while gw1 lets it pass.
    assert_greylisted(&rcpt(&gw2, "alice@sender.test", "bob@example.test"));
    rcpt(&gw1, "alice@sender.test", "bob@example.test").expect(250, "2.1.5");
    // Each gateway counts its own MAILs: gw1 used two, gw2 two, so both have room.
    mail(&gw1).expect(250, "2.1.0");
    mail(&gw2).expect(250, "2.1.0");
    mail(&gw1).expect(450, "4.7.1");
}

#[test]
fn embedded_greylisting_survives_a_restart_and_kill_9() {
    let internal = InternalServer::start();
    let mut gw =
        Gateway::start(GatewayConfig::new(&internal).toml(&format!("{PATIENT_STATE}{GREYLIST}")));
    // A pass, then a first attempt, each followed by kill -9 and a restart.
    assert_greylisted(&rcpt(&gw, "a@sender.test", "passed@example.test"));
    thread::sleep(PAST_DELAY);
    rcpt(&gw, "a@sender.test", "passed@example.test").expect(250, "2.1.5");
    assert_greylisted(&rcpt(&gw, "a@sender.test", "seen@example.test"));
    gw.kill9();
    gw.restart(None);
    rcpt(&gw, "a@sender.test", "passed@example.test").expect(250, "2.1.5");
    thread::sleep(PAST_DELAY);
    // The first attempt was remembered too: this retry passes instead of starting over.
    rcpt(&gw, "a@sender.test", "seen@example.test").expect(250, "2.1.5");
    gw.terminate(Duration::from_secs(10));
    gw.restart(None);
    rcpt(&gw, "a@sender.test", "seen@example.test").expect(250, "2.1.5");
}

/// Regression (review): an auto-allowed network's pass count was refreshed only when one
/// of its triplets passed, which an exempt network's mail no longer does: it fell back
/// into greylisting `pass_ttl` after its last pass, however much it kept sending.
#[test]
fn an_auto_allowed_network_stays_allowed_while_it_sends() {
    let internal = InternalServer::start();
    let toml = format!("{PATIENT_STATE}{GREYLIST}pass_ttl = \"4s\"\nauto_allow_after = 1\n");
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml));
    assert_greylisted(&rcpt(&gw, "a@sender.test", "first@example.test"));
    thread::sleep(PAST_DELAY);
    deliver(&gw, "a@sender.test", "first@example.test", "hello").expect(250, "2.0.0");
    // New triplets every second for twice `pass_ttl`: each is let through by the
    // network's auto-allow, which its use keeps alive.
    for i in 0..8 {
        rcpt(&gw, "a@sender.test", &format!("new{i}@example.test")).expect(250, "2.1.5");
        thread::sleep(Duration::from_secs(1));
    }
}

/// Regression (review): every recipient's triplet that passed counted towards the
/// network's auto-allow, so one retried message to five recipients exempted a whole /24
/// from greylisting for `pass_ttl`, hosts that never retry included.
#[test]
fn one_message_to_many_recipients_counts_once_towards_auto_allow() {
    let internal = InternalServer::start();
    let toml = format!("{PATIENT_STATE}{GREYLIST}auto_allow_after = 2\n");
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml));
    let two_rcpts = |expect: u16| {
        let mut c = SmtpClient::connect_ehlo(gw.port);
        c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
        for to in ["one@example.test", "two@example.test"] {
            let r = c.cmd(&format!("RCPT TO:<{to}>"));
            assert_eq!(r.code, expect, "{r}");
        }
        if expect == 250 {
            c.cmd("DATA").expect(354, "");
            c.send(b"Subject: two\r\n\r\nhello\r\n.\r\n");
            c.read_reply().expect(250, "2.0.0");
        }
        c.quit();
    };
    two_rcpts(451);
    thread::sleep(PAST_DELAY);
    two_rcpts(250);
    // One pass so far, not two: a new triplet from the network is still greylisted.
    assert_greylisted(&rcpt(&gw, "a@sender.test", "three@example.test"));
}

/// Regression (review): a triplet's pass credited its network at RCPT, before the
/// content was judged, so retried spam refused at end of data still earned its /24 the
/// auto-allow (five rejected messages exempted the network for `pass_ttl`). Only an
/// accepted message credits now.
#[test]
fn refused_spam_earns_its_network_no_auto_allow() {
    let internal = InternalServer::start();
    let toml =
        format!("{PATIENT_STATE}{GREYLIST}auto_allow_after = 1\n[policy]\nrules_dir = \"rules\"\n");
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml).file(
        "rules/local.cf",
        "body SPAMMY /zz-spammy-zz/\nscore SPAMMY 30.0\n",
    ));
    assert_greylisted(&deliver(
        &gw,
        "a@sender.test",
        "one@example.test",
        "zz-spammy-zz",
    ));
    thread::sleep(PAST_DELAY);
    deliver(&gw, "a@sender.test", "one@example.test", "zz-spammy-zz").expect(550, "5.7.1");
    // No credit: a new triplet from the network is greylisted.
    assert_greylisted(&rcpt(&gw, "a@sender.test", "two@example.test"));
    // An accepted retry credits it (auto_allow_after = 1): the next new triplet passes.
    thread::sleep(PAST_DELAY);
    deliver(&gw, "a@sender.test", "two@example.test", "hello").expect(250, "2.0.0");
    let allowed = wait_until(Duration::from_secs(10), || {
        rcpt(&gw, "a@sender.test", "three@example.test").code == 250
    });
    assert!(allowed, "the accepted retry did not earn the auto-allow");
}

#[test]
fn score_aware_greylisting_delays_only_suspicious_mail() {
    let internal = InternalServer::start();
    let toml = format!(
        "{PATIENT_STATE}{GREYLIST}stage = \"data\"\nmin_score = 3.0\n[policy]\nrules_dir = \"rules\"\n"
    );
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml).file(
        "rules/local.cf",
        "body SUSPICIOUS /zz-suspicious-zz/\nscore SUSPICIOUS 4.0\n\
         body SPAM /zz-spam-zz/\nscore SPAM 30.0\n",
    ));
    let send = |id: &str, body: &str| {
        let mut c = SmtpClient::connect_ehlo(gw.port);
        let r = c.send_mail(
            "s@sender.test",
            &["u@example.test"],
            &message(id, "greylist", body),
        );
        c.quit();
        r
    };
    send("clean@t", "an ordinary message").expect(250, "2.0.0");
    internal.expect_message_id("clean@t");
    assert_greylisted(&send("suspicious-1@t", "zz-suspicious-zz"));
    thread::sleep(PAST_DELAY);
    send("suspicious-2@t", "zz-suspicious-zz").expect(250, "2.0.0");
    internal.expect_message_id("suspicious-2@t");
    // Mail the score refuses is refused at once, not greylisted first.
    send("spam@t", "zz-suspicious-zz zz-spam-zz").expect(550, "5.7.1");
}

/// Regression (review): each greylisted recipient counted as a client error, so a first
/// message to 20 or more recipients met the tarpit and then `421 Too many errors` before
/// DATA: delivered in rounds of 20, hours late.
#[test]
fn greylisting_many_recipients_is_no_client_error() {
    let internal = InternalServer::start();
    let toml = format!("{PATIENT_STATE}{GREYLIST}");
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&toml)
            .limit("errors_before_tarpit", "50")
            .limit("errors_before_disconnect", "20")
            .limit("recipients_per_message", "40"),
    );
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    for i in 0..30 {
        assert_greylisted(&c.cmd(&format!("RCPT TO:<user{i}@example.test>")));
    }
    c.cmd("NOOP").expect(250, "");
    // Past a message's worth (`recipients_per_message`, here lowered to 40) they count
    // again, RSET or not: a session cannot run the policy without end.
    c.cmd("RSET").expect(250, "");
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "2.1.0");
    let mut closed = false;
    for i in 30..80 {
        let r = c.cmd(&format!("RCPT TO:<user{i}@example.test>"));
        if r.code == 421 {
            closed = true;
            break;
        }
        assert_greylisted(&r);
    }
    assert!(closed, "deferred recipients never counted as errors");
}

/// Regression (review): the DATA a pipelining client sends behind its recipients (RFC 2920
/// §3.1) failed with "No valid recipients" once greylisting deferred them all, and that
/// counted as a client error: a list server sending one-recipient messages over one
/// connection met the tarpit at the sixth and `421 Too many errors` at the twentieth. And
/// behind a deferred MAIL (here a rate limit) each pipelined RCPT and the DATA did the same.
#[test]
fn commands_pipelined_behind_a_deferral_are_no_client_errors() {
    let internal = InternalServer::start();
    let toml = format!("{PATIENT_STATE}{GREYLIST}{RATELIMIT}");
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&toml)
            .limit("errors_before_tarpit", "50")
            .limit("errors_before_disconnect", "5")
            .limit("junk_commands", "10")
            .limit("messages_per_session", "100"),
    );
    let mut c = SmtpClient::connect_ehlo(gw.port);
    // Nor as junk commands (review of the fix: past `junk_commands` they counted as
    // errors again, fifty greylisted messages later): the RSETs and the NOOP below are
    // the only junk of the session.
    for i in 0..3 {
        c.send(
            format!("MAIL FROM:<a@sender.test>\r\nRCPT TO:<user{i}@example.test>\r\nDATA\r\n")
                .as_bytes(),
        );
        let replies = c.read_replies(3);
        replies[0].expect(250, "2.1.0");
        assert_greylisted(&replies[1]);
        replies[2].expect(503, "5.5.1");
        c.cmd("RSET").expect(250, "");
    }
    // The rate limit (three MAILs an hour) defers the fourth MAIL; ten RCPTs and the DATA
    // pipelined behind it fail, uncounted.
    let mut batch = String::from("MAIL FROM:<a@sender.test>\r\n");
    for i in 0..10 {
        batch.push_str(&format!("RCPT TO:<late{i}@example.test>\r\n"));
    }
    batch.push_str("DATA\r\n");
    c.send(batch.as_bytes());
    let replies = c.read_replies(12);
    assert_eq!(replies[0].code / 100, 4, "{:?}", replies[0]);
    for r in &replies[1..] {
        r.expect(503, "5.5.1");
    }
    c.cmd("NOOP").expect(250, "");
    // A sequence error of the client's own still counts: the fifth error's reply is
    // followed by the 421.
    let mut closed = false;
    for _ in 0..6 {
        if c.cmd("DATA").code == 421 {
            closed = true;
            break;
        }
    }
    assert!(closed, "sequence errors no longer counted");
}

/// Regression (review): at `stage = "data"` clean mail returned before the network's
/// auto-allow was looked at, so a network sending only clean mail lost its allowance
/// `pass_ttl` after its last suspicious message, though use keeps it ("refreshed by use").
#[test]
fn clean_mail_at_the_data_stage_keeps_its_network_allowed() {
    let internal = InternalServer::start();
    let toml = format!(
        "{PATIENT_STATE}{GREYLIST}stage = \"data\"\nmin_score = 3.0\npass_ttl = \"4s\"\nauto_allow_after = 1\n[policy]\nrules_dir = \"rules\"\n"
    );
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml).file(
        "rules/local.cf",
        "body SUSPICIOUS /zz-suspicious-zz/\nscore SUSPICIOUS 4.0\n",
    ));
    let send = |to: &str, body: &str| {
        let mut c = SmtpClient::connect_ehlo(gw.port);
        let r = c.try_send_mail("s@sender.test", &[to], &message("m@t", "greylist", body));
        c.quit();
        r
    };
    assert_greylisted(&send("one@example.test", "zz-suspicious-zz"));
    thread::sleep(PAST_DELAY);
    send("one@example.test", "zz-suspicious-zz").expect(250, "2.0.0");
    let allowed = wait_until(Duration::from_secs(10), || {
        send("probe@example.test", "zz-suspicious-zz").code == 250
    });
    assert!(allowed, "the accepted retry did not earn the auto-allow");
    // Clean mail only, for twice `pass_ttl`: its use keeps the network allowed.
    for i in 0..8 {
        send(&format!("clean{i}@example.test"), "an ordinary message").expect(250, "2.0.0");
        thread::sleep(Duration::from_secs(1));
    }
    send("new@example.test", "zz-suspicious-zz").expect(250, "2.0.0");
}

/// Regression (review): greylisting that could not ask the state backend was counted
/// nowhere in `mxguard_greylist_total` (the rate limits count `unavailable`), so with a
/// backend refusing only its keys greylisting was off and no greylisting figure said so.
#[test]
fn greylisting_without_its_backend_is_counted_unavailable() {
    if interop_required("redis-server").is_none() {
        return;
    }
    let Some(mut redis) = RedisServer::start() else {
        panic!("redis-server was found");
    };
    let internal = InternalServer::start();
    let toml = format!(
        "{}{GREYLIST}",
        redis_state(&redis.url(), "on_failure = \"open\"\ntimeout = \"200ms\"\n")
    );
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml));
    redis.kill();
    rcpt(&gw, "a@sender.test", "user@example.test").expect(250, "2.1.5");
    let s = common::admin::scrape(admin_port(&gw));
    assert!(s.value("mxguard_greylist_total", &[("result", "unavailable")]) >= 1.0);
    redis.resume();
}

/// What [`through_an_outage`] leaves: the replies before, during and after, the gateway,
/// the internal server and the restarted Redis (kept running while the test looks).
type Outage = (
    Vec<Reply>,
    Vec<Reply>,
    Vec<Reply>,
    Gateway,
    InternalServer,
    RedisServer,
);

/// Sends messages from one client while Redis is killed and restarted; returns the
/// replies to the end of data, in order, split at the kill and at the restart.
fn through_an_outage(on_failure: &str) -> Outage {
    let Some(mut redis) = RedisServer::start() else {
        panic!("caller checks for redis-server");
    };
    let internal = InternalServer::start();
    let toml = format!(
        "{}{GREYLIST}exempt = [\"127.0.0.1\"]\n{RATELIMIT_HIGH}",
        redis_state(
            &redis.url(),
            &format!("on_failure = {on_failure:?}\ntimeout = \"200ms\"\n")
        )
    );
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml));
    let send_some = |n: usize, tag: &str| -> Vec<Reply> {
        (0..n)
            .map(|i| {
                let mut c = SmtpClient::connect_ehlo(gw.port);
                let r = c.try_send_mail(
                    "s@sender.test",
                    &["u@example.test"],
                    &message(&format!("{tag}-{i}@t"), "outage", "body"),
                );
                c.quit();
                r
            })
            .collect()
    };
    let before = send_some(3, "before");
    redis.kill();
    let during = send_some(5, "during");
    redis.resume();
    // The client reconnects by itself; give it a few tries.
    let mut after = Vec::new();
    for i in 0..50 {
        let r = send_some(1, &format!("after{i}")).remove(0);
        let ok = r.code == 250;
        after.push(r);
        if ok {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    (before, during, after, gw, internal, redis)
}

/// A rate limit every message passes: it makes every message need the state backend.
const RATELIMIT_HIGH: &str = "[[ratelimit]]\nname = \"all\"\nkey = \"client_ip\"\nlimit = 100000\nper = \"1h\"\nstage = \"rcpt\"\n";

#[test]
fn redis_outage_fails_open_and_recovers_without_restart() {
    if interop_required("redis-server").is_none() {
        return;
    }
    let (before, during, after, gw, internal, _redis) = through_an_outage("open");
    for r in before.iter().chain(&during) {
        r.expect(250, "2.0.0");
    }
    assert_eq!(after.last().map(|r| r.code), Some(250));
    internal.expect_messages(before.len() + during.len() + 1);
    assert!(
        gw.log_count("STATE_UNAVAILABLE") >= 1,
        "no message was marked STATE_UNAVAILABLE"
    );
    assert!(
        gw.log_count("state backend is down") == 1,
        "outage not logged once"
    );
    assert!(
        gw.wait_log_line(Duration::from_secs(10), "state backend is up again", 0)
            .is_some(),
        "recovery not logged"
    );
    state_calls_stayed_under_the_timeout(&gw);
}

#[test]
fn redis_outage_fails_closed_with_451_and_recovers_without_restart() {
    if interop_required("redis-server").is_none() {
        return;
    }
    let (before, during, after, gw, _internal, _redis) = through_an_outage("closed");
    // Before the outage mail flows; one call slower than the 200 ms timeout on a loaded
    // machine is a 451 there, as it should be (review: the test read it as a failure).
    for r in &before {
        assert!(
            r.code == 250 || (r.code == 451 && r.enhanced() == Some("4.3.0")),
            "{r}"
        );
    }
    assert!(before.iter().any(|r| r.code == 250), "{before:?}");
    for r in &during {
        assert_eq!(r.code, 451, "{r}");
        assert_eq!(r.enhanced(), Some("4.3.0"), "{r}");
    }
    assert_eq!(after.last().map(|r| r.code), Some(250), "{after:?}");
    state_calls_stayed_under_the_timeout(&gw);
}

/// Every state call, the failed ones included, fell in a histogram bucket at or below
/// 1.6384 s: the 200 ms timeout held, give or take a loaded machine's scheduling (review:
/// 0.4096 s was a race with 16 sessions on two cores), and no call waited out the
/// client's reconnection back-offs (no wall clock read by the test).
fn state_calls_stayed_under_the_timeout(gw: &Gateway) {
    let s = common::admin::scrape(admin_port(gw));
    for op in ["rate", "greylist"] {
        let all = s.value("mxguard_state_duration_seconds_count", &[("op", op)]);
        let bounded = s.value(
            "mxguard_state_duration_seconds_bucket",
            &[("op", op), ("le", "1.6384")],
        );
        assert_eq!(all, bounded, "{op}: a state call took longer than 1.64 s");
    }
    assert!(s.value("mxguard_state_errors_total", &[("op", "rate")]) >= 1.0);
}

/// Regression (review): rate limits ran before relay control and recipient verification,
/// so recipients refused anyway (not ours to relay) filled a sender's bucket and its real
/// mail was then refused as over the limit. (Limits on the client still count them.)
#[test]
fn recipients_refused_anyway_do_not_count_towards_a_rate_limit() {
    let internal = InternalServer::start();
    let limit = "[[ratelimit]]\nname = \"rcpts\"\nkey = \"sender\"\nlimit = 2\nper = \"1h\"\nstage = \"rcpt\"\n";
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&format!("{PATIENT_STATE}{limit}")));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "2.1.0");
    for i in 0..4 {
        let refused = c.cmd(&format!("RCPT TO:<u{i}@not-ours.test>"));
        assert_eq!(refused.code / 100, 5, "not ours to relay: {refused}");
        assert!(!refused.text().contains("Rate limit"), "{refused}");
    }
    c.cmd("RCPT TO:<a@example.test>").expect(250, "2.1.5");
    c.cmd("RCPT TO:<b@example.test>").expect(250, "2.1.5");
    let over = c.cmd("RCPT TO:<c@example.test>");
    over.expect(450, "4.7.1");
    assert!(over.text().contains("Rate limit rcpts exceeded"), "{over}");
    c.quit();
}

/// Regression (review): a message deferred at the end of data (greylisted there, over a
/// rate limit, no inspection turn in time) counted as a client error, so a list server
/// sending several messages over one connection met the tarpit and the `421`.
#[test]
fn messages_deferred_at_the_end_of_data_are_no_client_errors() {
    let internal = InternalServer::start();
    let toml = format!(
        "{PATIENT_STATE}{GREYLIST}stage = \"data\"\nmin_score = 3.0\n[policy]\nrules_dir = \"rules\"\n"
    );
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&toml)
            .limit("errors_before_disconnect", "2")
            .file(
                "rules/local.cf",
                "body SUSPICIOUS /zz-suspicious-zz/\nscore SUSPICIOUS 4.0\n",
            ),
    );
    let mut c = SmtpClient::connect_ehlo(gw.port);
    for i in 0..4 {
        let r = c.try_send_mail(
            &format!("s{i}@sender.test"),
            &["u@example.test"],
            &message(&format!("grey-{i}@t"), "greylist", "zz-suspicious-zz"),
        );
        assert_greylisted(&r);
    }
    c.cmd("NOOP").expect(250, "2.0.0");
}

/// Regression (review): envelope rate limits ran before greylisting at RCPT, so every
/// greylisted recipient took a token: one-shot spam to one address, greylisted and never
/// retried, emptied that recipient's bucket and its real mail met the limit.
#[test]
fn greylisted_recipients_fill_no_rate_limit_bucket() {
    let internal = InternalServer::start();
    let limit = "[[ratelimit]]\nname = \"per_rcpt\"\nkey = \"recipient\"\nlimit = 1\nper = \"1h\"\nstage = \"rcpt\"\n";
    let gw = Gateway::start(
        GatewayConfig::new(&internal).toml(&format!("{PATIENT_STATE}{GREYLIST}{limit}")),
    );
    for sender in ["one@spam.test", "two@spam.test", "three@spam.test"] {
        assert_greylisted(&rcpt(&gw, sender, "ceo@example.test"));
    }
}

/// Regression (review): the null sender's recipients were counted at RCPT though the
/// null sender is greylisted at the end of data: a one-shot bounce greylisted there, and
/// other servers' sender-verification callouts (which never send data), emptied the
/// recipient's bucket, and its real mail met the limit. They count once the message is
/// past greylisting, and count then.
#[test]
fn bounces_and_callouts_fill_no_recipient_bucket_before_greylisting() {
    let internal = InternalServer::start();
    let limit = "[[ratelimit]]\nname = \"per_rcpt\"\nkey = \"recipient\"\nlimit = 2\nper = \"1h\"\nstage = \"rcpt\"\n";
    let gw = Gateway::start(
        GatewayConfig::new(&internal).toml(&format!("{PATIENT_STATE}{GREYLIST}{limit}")),
    );
    for _ in 0..3 {
        rcpt(&gw, "", "ceo@example.test").expect(250, "2.1.5");
    }
    assert_greylisted(&deliver(&gw, "", "ceo@example.test", "one-shot bounce"));
    assert_greylisted(&rcpt(&gw, "partner@sender.test", "ceo@example.test"));
    thread::sleep(PAST_DELAY);
    rcpt(&gw, "partner@sender.test", "ceo@example.test").expect(250, "2.1.5");
    // A bounce past greylisting counts: the second one is over the limit at its end of
    // data.
    deliver(&gw, "", "ceo@example.test", "one-shot bounce").expect(250, "2.0.0");
    let r = deliver(&gw, "", "ceo@example.test", "one-shot bounce");
    r.expect(450, "4.7.1");
    assert!(r.text().contains("per_rcpt"), "{r}");
}

/// Regression (review of the fix above): a `recipient` limit that scores was also left to
/// the end of data for the null sender, after the rules that score its symbol: over the
/// limit, a bounce was scored nothing. It counts at RCPT, as it always did.
#[test]
fn a_scoring_recipient_limit_still_scores_the_null_sender() {
    let internal = InternalServer::start();
    let limit = "[[ratelimit]]\nname = \"per_rcpt\"\nkey = \"recipient\"\nlimit = 1\nper = \"1h\"\nstage = \"rcpt\"\naction = \"score\"\n";
    let toml = format!("{PATIENT_STATE}{GREYLIST}{limit}[policy]\nrules_dir = \"rules\"\n");
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&toml)
            .file("rules/local.cf", "score RATELIMIT_PER_RCPT 30.0\n"),
    );
    assert_greylisted(&deliver(&gw, "", "ceo@example.test", "a bounce"));
    thread::sleep(PAST_DELAY);
    let r = deliver(&gw, "", "ceo@example.test", "a bounce");
    r.expect(550, "5.7.1");
}

/// Regression (review): an envelope limit refusing at the end of data counted before the
/// greylisting there, so each message greylisted at the end of data took a token, and its
/// retry another: a sender met the limit at half its rate, and the second greylisted
/// message was refused by the limit instead.
#[test]
fn messages_greylisted_at_the_end_of_data_fill_no_rate_limit_bucket() {
    let internal = InternalServer::start();
    let limit = "[[ratelimit]]\nname = \"per_domain\"\nkey = \"sender_domain\"\nlimit = 1\nper = \"1h\"\nstage = \"data\"\n";
    let toml = format!(
        "{PATIENT_STATE}{GREYLIST}stage = \"data\"\nmin_score = 3.0\n{limit}[policy]\nrules_dir = \"rules\"\n"
    );
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&toml).file(
        "rules/local.cf",
        "body SUSPICIOUS /zz-suspicious-zz/\nscore SUSPICIOUS 4.0\n",
    ));
    let send = |id: &str| {
        let mut c = SmtpClient::connect_ehlo(gw.port);
        let r = c.send_mail(
            "s@sender.test",
            &["u@example.test"],
            &message(id, "greylist", "zz-suspicious-zz"),
        );
        c.quit();
        r
    };
    for id in ["one@t", "two@t", "three@t"] {
        assert_greylisted(&send(id));
    }
    thread::sleep(PAST_DELAY);
    send("retry@t").expect(250, "2.0.0");
    internal.expect_message_id("retry@t");
}

/// Regression (review): the null sender was exempt from greylisting at RCPT (where other
/// servers' sender-verification callouts must be answered) and greylisted nowhere else:
/// ratware sending from `<>` passed to any number of recipients. It is greylisted at the
/// end of data, and its retry passes.
#[test]
fn the_null_sender_is_greylisted_at_the_end_of_data() {
    let internal = InternalServer::start();
    let gw =
        Gateway::start(GatewayConfig::new(&internal).toml(&format!("{PATIENT_STATE}{GREYLIST}")));
    // A callout is answered: RCPT takes the null sender.
    rcpt(&gw, "", "bob@example.test").expect(250, "2.1.5");
    let r = deliver(&gw, "", "bob@example.test", "a bounce");
    assert_greylisted(&r);
    thread::sleep(PAST_DELAY);
    deliver(&gw, "", "bob@example.test", "a bounce").expect(250, "2.0.0");
    internal.expect_messages(1);
}

/// Regression (review): autolearn ran before the greylisting at the end of data, so a
/// message greylisted there (here the null sender's) was learned though it was turned
/// away, and, never retried, could not be forgotten: spam from `<>` that no rule hits was
/// learned as ham.
#[test]
fn a_message_greylisted_at_the_end_of_data_is_not_autolearned() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&format!(
        "{PATIENT_STATE}{GREYLIST}[classifier]\nautolearn = true\n"
    )));
    let learned = || {
        common::admin::scrape(admin_port(&gw))
            .value("mxguard_classifier_autolearn_total", &[("class", "ham")])
    };
    assert_greylisted(&deliver(
        &gw,
        "",
        "bob@example.test",
        "first words of a bounce",
    ));
    thread::sleep(PAST_DELAY);
    deliver(&gw, "", "bob@example.test", "other words of a bounce").expect(250, "2.0.0");
    assert!(
        wait_until(Duration::from_secs(10), || learned() >= 1.0),
        "the accepted message was not autolearned"
    );
    thread::sleep(Duration::from_millis(500));
    assert_eq!(learned(), 1.0, "the greylisted message was learned too");
}
