//! The tier on one machine (built binaries on loopback, one `redis-server`): a backup
//! scores clients that bypass a healthy primary tier and stops when every primary is down,
//! fan-out over three members scores, `bypass_action = "tempfail"`, verdict stamps signed
//! and verified by `mxguard stamp verify`, a peer's valid stamp not judged twice, forged
//! stamps removed, `mxguard check --tier`, and the tier key's file checks. (The whole tier
//! with real MX records and Postfix as the sender: `tier_netns.rs`.)

mod common;

use common::admin::{scrape, scrape_until};
use common::*;
use mxguard::tier::Stamp;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &[u8] = b"a-test-tier-key-of-some-length";

/// The tier key in a file only its owner reads.
fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("tier.key");
    fs::write(&path, KEY).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `[state]` in the shared Redis and `[tier]` for `name` with `role` and `peers` (TOML
/// `[[tier.peers]]` blocks). Peers' SMTP addresses are on 127.0.0.2, where no test
/// client comes from, so test clients are never taken for peers. The state timeout is
/// one a loaded machine meets: a timed-out contact call fails open and scores nothing.
fn tier_toml(redis: &RedisServer, key: &Path, name: &str, role: &str, peers: &str) -> String {
    format!(
        "[state]\nbackend = \"redis\"\nredis = {:?}\ntimeout = \"3s\"\n\n[tier]\nname = {name:?}\nrole = {role:?}\nsecret_file = {:?}\nheartbeat_interval = \"1s\"\n{peers}",
        redis.url(),
        key.display().to_string()
    )
}

fn peer(name: &str, role: &str, smtp_port: u16, admin: Option<u16>) -> String {
    let admin = admin
        .map(|p| format!("admin = \"127.0.0.1:{p}\"\n"))
        .unwrap_or_default();
    format!("[[tier.peers]]\nname = {name:?}\nsmtp = \"127.0.0.2:{smtp_port}\"\nrole = {role:?}\n{admin}")
}

/// Sends one clean message through `gw`; returns the gateway's summary line for it.
fn send(gw: &Gateway, id: &str) -> String {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let reply = c.send_mail(
        "s@sender.test",
        &["u@example.test"],
        &message(id, "tier", "hello"),
    );
    reply.expect(250, "2.0.0");
    c.quit();
    let id = queue_id(&reply).expect("no queue id in the reply");
    gw.wait_log_line(Duration::from_secs(10), &format!("queue_id=\"{id}\""), 0)
        .expect("no message line")
}

/// Forgets the test client's contacts with the tier (the harness's start-up probes
/// connected from the same address).
fn forget_contacts(redis: &RedisServer) {
    redis.cli(&["DEL", "mxguard:tier:cm:127.0.0.1"]).unwrap();
}

/// The primary gw1 (started from `primary`) and the backup bk1 relaying to `internal`,
/// sharing `redis`, once bk1 sees gw1 up.
fn primary_and_backup(
    redis: &RedisServer,
    key: &Path,
    internal: &InternalServer,
    primary: GatewayConfig,
) -> (Gateway, Gateway) {
    let gw1 = Gateway::start(primary.toml(&tier_toml(
        redis,
        key,
        "gw1",
        "primary",
        &peer("bk1", "backup", 2, None),
    )));
    let bk1 = Gateway::start(GatewayConfig::new(internal).toml(&tier_toml(
        redis,
        key,
        "bk1",
        "backup",
        &peer("gw1", "primary", 1, None),
    )));
    scrape_until(admin_port(&bk1), "gw1 seen up by bk1", |s| {
        s.value("mxguard_tier_peer_up", &[("peer", "gw1")]) == 1.0
    });
    (gw1, bk1)
}

fn peer_up(gw: &Gateway, peer: &str) -> f64 {
    scrape(admin_port(gw)).value("mxguard_tier_peer_up", &[("peer", peer)])
}

#[test]
fn backup_scores_bypass_while_a_primary_is_up_and_not_when_every_primary_is_down() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let (mut gw1, bk1) = primary_and_backup(&redis, &key, &internal, GatewayConfig::new(&internal));
    forget_contacts(&redis);
    let line = send(&bk1, "bypass-1@t");
    assert!(line.contains("MX_BYPASS_BACKUP"), "{line}");
    assert!(line.contains("MX_BYPASS_FIRST_CONTACT"), "{line}");

    gw1.terminate(Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(20), || peer_up(&bk1, "gw1") == 0.0),
        "bk1 never noticed that gw1 is down"
    );
    let line = send(&bk1, "bypass-2@t");
    assert!(
        !line.contains("MX_BYPASS"),
        "the backup scored while every primary was down: {line}"
    );
    assert!(
        bk1.log_count("tier peer is down") >= 1,
        "the peer going down was not logged"
    );
}

/// Regression (review): a primary's connection limits answer `421` from the listener,
/// before the connect-stage checks, so the contact was never stored: a new sender turned
/// away by a busy primary that fell back to the backup, as RFC 5321 asks, scored
/// `MX_BYPASS_FIRST_CONTACT` on top of `MX_BYPASS_BACKUP`.
#[test]
fn a_client_a_busy_primary_turned_away_is_no_first_contact_at_the_backup() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let busy = GatewayConfig::new(&internal).limit("max_sessions_per_ip", "1");
    let (gw1, bk1) = primary_and_backup(&redis, &key, &internal, busy);
    let (held, banner) = SmtpClient::connect(gw1.port);
    banner.expect(220, "");
    forget_contacts(&redis);
    let (_turned_away, refused) = SmtpClient::connect(gw1.port);
    refused.expect(421, "4.7.0");
    let remembered = wait_until(Duration::from_secs(10), || {
        redis
            .cli(&["EXISTS", "mxguard:tier:cm:127.0.0.1"])
            .as_deref()
            .map(str::trim)
            == Some("1")
    });
    assert!(
        remembered,
        "the turned-away client's contact was not stored"
    );
    let line = send(&bk1, "turned-away@t");
    held.quit();
    assert!(line.contains("MX_BYPASS_BACKUP"), "{line}");
    assert!(!line.contains("MX_BYPASS_FIRST_CONTACT"), "{line}");
}

#[test]
fn a_client_touching_three_members_within_seconds_gets_mx_fanout() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let members = ["gw1", "gw2", "gw3"];
    let gateways: Vec<Gateway> = members
        .iter()
        .map(|name| {
            Gateway::start(
                GatewayConfig::new(&internal).toml(&tier_toml(&redis, &key, name, "primary", "")),
            )
        })
        .collect();
    forget_contacts(&redis);
    assert!(!send(&gateways[0], "fan-1@t").contains("MX_FANOUT"));
    assert!(!send(&gateways[1], "fan-2@t").contains("MX_FANOUT"));
    let third = send(&gateways[2], "fan-3@t");
    assert!(third.contains("MX_FANOUT"), "{third}");
}

#[test]
fn bypass_action_tempfail_refuses_recipients_at_a_backup() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let _gw1 = Gateway::start(
        GatewayConfig::new(&internal).toml(&tier_toml(&redis, &key, "gw1", "primary", "")),
    );
    let bk1 = Gateway::start(GatewayConfig::new(&internal).toml(&format!(
        "{}bypass_action = \"tempfail\"\n{}",
        tier_toml(&redis, &key, "bk1", "backup", ""),
        peer("gw1", "primary", 1, None)
    )));
    scrape_until(admin_port(&bk1), "gw1 seen up", |s| {
        s.value("mxguard_tier_peer_up", &[("peer", "gw1")]) == 1.0
    });
    let mut c = SmtpClient::connect_ehlo(bk1.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<u@example.test>").expect(451, "4.7.1");
    c.quit();
}

#[test]
fn relayed_mail_carries_a_stamp_that_stamp_verify_accepts_and_forged_ones_are_removed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let gw = Gateway::start(
        GatewayConfig::new(&internal).toml(&tier_toml(&redis, &key, "gw1", "primary", "")),
    );
    let forged = b"X-Mxguard-Stamp: v=4; g=gw1; t=1; r=accept; s=-50.00; f=0; b=AAAA\r\nX-Spam-Status: No\r\n";
    let mut msg = forged.to_vec();
    msg.extend_from_slice(&message("stamped@t", "stamp", "a body to sign"));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("s@sender.test", &["u@example.test"], &msg)
        .expect(250, "2.0.0");
    c.quit();
    let got = internal.expect_message_id("stamped@t");
    let text = got.text();
    assert_eq!(text.matches("X-Mxguard-Stamp:").count(), 1, "{text}");
    assert!(
        !text.contains("s=-50.00"),
        "the forged stamp reached the internal server"
    );
    assert_eq!(text.matches("X-Spam-Status:").count(), 1, "{text}");

    let file = keys.path().join("received.eml");
    fs::write(&file, &got.data).unwrap();
    let out = gw.cli(&["stamp", "verify", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid: gateway gw1"), "{stdout}");

    let tampered = text.replace("a body to sign", "a body changed");
    fs::write(&file, tampered).unwrap();
    let out = gw.cli(&["stamp", "verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad signature"));
    // Regression (review of the CLI): `/dev/zero` was read without end, and a file that
    // could not be read exited 1 like a forged stamp. Exit 2: could not check.
    for unreadable in ["/dev/zero", "/nonexistent/message.eml"] {
        let out = gw.cli(&["stamp", "verify", unreadable]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{unreadable}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Regression (review): a message keeps the stamp of its acceptance while it waits in
    // the queue or in quarantine, and `stamp verify` refused every stamp older than
    // `tier.stamp_max_age` (an hour): after an internal server's outage, all the mail
    // that waited looked forged. By default a stamp may be as old as mail the tier still
    // delivers; `--max-age` sets another bound.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = message("waited@t", "waited", "a body that waited in the queue");
    let mut waited = Stamp::new("gw1", now - 7200, "accept", 0.0, "0123456789abcdef")
        .header(KEY, &body)
        .into_bytes();
    waited.extend_from_slice(&body);
    fs::write(&file, &waited).unwrap();
    let out = gw.cli(&["stamp", "verify", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Written by a delivery agent as an mbox file (a `From ` line first, a blank line
    // last), it is the same message: the stamp's version 6 signs a line that is no field,
    // so the separator is taken off by the reader, not by the signed form.
    let mut mbox = b"From sender@load.example Mon Dec  2 12:00:00 2002\r\n".to_vec();
    mbox.extend_from_slice(&waited);
    mbox.extend_from_slice(b"\r\n");
    fs::write(&file, &mbox).unwrap();
    let out = gw.cli(&["stamp", "verify", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "mbox copy: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    fs::write(&file, &waited).unwrap();
    let out = gw.cli(&["stamp", "verify", "--max-age", "7d", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.cli(&["stamp", "verify", "--max-age", "1h", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(at most 3600s accepted)"), "{stdout}");
}

/// gw1, a primary whose peer bk1 has the SMTP address 127.0.0.1: the test's client speaks
/// as the peer bk1. `extra` is added to its configuration.
fn primary_with_bk1_at_loopback(
    redis: &RedisServer,
    key: &Path,
    internal: &InternalServer,
    extra: &str,
) -> Gateway {
    let peers = "[[tier.peers]]\nname = \"bk1\"\nsmtp = \"127.0.0.1:25\"\nrole = \"backup\"\n";
    let toml = format!("{}{extra}", tier_toml(redis, key, "gw1", "primary", peers));
    Gateway::start(GatewayConfig::new(internal).toml(&toml))
}

#[test]
fn a_peers_valid_stamp_is_not_judged_again_but_an_invalid_one_is() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let gw = primary_with_bk1_at_loopback(&redis, &key, &internal, "");
    let gtube = message("peer-stamped@t", "from a peer", GTUBE);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let policy = common::admin::get(admin_port(&gw), "/policy").body;
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    let ours = policy["fingerprint"].as_str().unwrap().to_owned();
    let stamp = Stamp::new("bk1", now, "accept", 0.0, &ours);
    let mut stamped = stamp.header(KEY, &gtube).into_bytes();
    stamped.extend_from_slice(&gtube);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("s@sender.test", &["u@example.test"], &stamped)
        .expect(250, "2.0.0");
    c.quit();
    let got = internal.expect_message_id("peer-stamped@t");
    assert!(
        got.text().contains("g=bk1"),
        "the peer's stamp was not kept"
    );
    assert!(gw
        .wait_log_line(Duration::from_secs(5), "TIER_STAMP_VERIFIED", 0)
        .is_some());

    // Regression (carried from review): a stamp made under another policy (a peer not
    // reloaded, or one with its rules switched off) was trusted; its `f=` was never read.
    let other_policy = Stamp::new("bk1", now, "accept", 0.0, "ffffffffffffffff")
        .header(KEY, &message("peer-other-policy@t", "from a peer", GTUBE));
    let mut stale = other_policy.into_bytes();
    stale.extend_from_slice(&message("peer-other-policy@t", "from a peer", GTUBE));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("s@sender.test", &["u@example.test"], &stale)
        .expect(550, "5.7.1");
    c.quit();
    assert!(
        gw.logs().contains("made under another policy"),
        "{}",
        gw.logs()
    );

    let other_key =
        Stamp::new("bk1", now, "accept", 0.0, &ours).header(b"not the tier key", &gtube);
    let mut forged = other_key.into_bytes();
    forged.extend_from_slice(&message("peer-forged@t", "from a peer", GTUBE));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("s@sender.test", &["u@example.test"], &forged)
        .expect(550, "5.7.1");
    c.quit();
}

/// Regression (review): a peer relaying what it held (a backup after a primary's outage)
/// went through every client check: greylisted, rate-limited, looked up in DNS lists. It
/// drained its backlog in 4xx replies and counted each message twice in tier-wide limits.
#[test]
fn a_peer_relaying_its_backlog_is_not_greylisted() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let greylist = "[greylist]\nenabled = true\ndelay = \"1h\"\n";
    let gw = primary_with_bk1_at_loopback(&redis, &key, &internal, greylist);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "2.1.0");
    c.cmd("RCPT TO:<u@example.test>").expect(250, "2.1.5");
    c.quit();
}

#[test]
fn check_tier_prints_every_peers_fingerprint_and_fails_on_a_difference() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let internal = InternalServer::start();
    let rules = "body TIER_T /zz-tier-zz/\nscore TIER_T 1.0\n";
    let policy = "\n[policy]\nrules_dir = \"rules\"\n";
    let gw2 = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&format!(
                "{}{policy}",
                // Each member lists the other: the number of primaries is part of the
                // fingerprint.
                tier_toml(
                    &redis,
                    &key,
                    "gw2",
                    "primary",
                    &peer("gw1", "primary", 2, None)
                )
            ))
            .file("rules/local.cf", rules),
    );
    let gw1 = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&format!(
                "{}{policy}",
                tier_toml(
                    &redis,
                    &key,
                    "gw1",
                    "primary",
                    &peer("gw2", "primary", 1, Some(admin_port(&gw2)))
                )
            ))
            .file("rules/local.cf", rules),
    );
    let out = gw1.cli(&["check", "--tier"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("gw2") && stdout.contains("same"),
        "{stdout}"
    );

    write_atomically(
        &gw2.dir.join("rules/local.cf"),
        "body TIER_T /zz-tier-zz/\nscore TIER_T 2.0\n",
    );
    gw2.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = gw1.cli(&["check", "--tier"]);
            !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("DIFFERENT")
        }),
        "check --tier never reported gw2's changed fingerprint"
    );
}

#[test]
fn the_tier_key_must_exist_be_long_enough_and_not_be_world_readable() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n[tier]\nname = \"gw1\"\n";
    let cases = [
        ("missing", None),
        ("empty", Some((b"".as_slice(), 0o600))),
        ("short", Some((b"secret\n".as_slice(), 0o600))),
        ("world-readable", Some((KEY, 0o644))),
    ];
    for (what, file) in cases {
        let key = dir.path().join(format!("{what}.key"));
        if let Some((bytes, mode)) = file {
            fs::write(&key, bytes).unwrap();
            fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
        }
        let config = dir.path().join(format!("{what}.toml"));
        fs::write(
            &config,
            format!("{base}secret_file = {:?}\n", key.display().to_string()),
        )
        .unwrap();
        let out = run_mxguard(dir.path(), &["check", "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains("tier.secret_file"), "{what}: {stderr}");
    }
}

/// Regression (review): a start that failed after the tier's first round (its admin
/// listener's port taken) had announced this member already: its heartbeat stood for half
/// a minute, and systemd's restart every 2 s renewed it, so backups took a primary that
/// never listened for up. Nothing is announced until every step that can fail is done.
#[test]
fn a_start_that_fails_announces_no_heartbeat() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{}\"]\nhostname = \"gw1.example.test\"\n\
         [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2\"]\n\
         [spool]\ndir = \"spool\"\n[metrics]\nlisten = \"{}\"\n{}",
        free_port(),
        taken.local_addr().unwrap(),
        tier_toml(
            &redis,
            &key,
            "gw1",
            "primary",
            &peer("bk1", "backup", 2, None)
        )
    );
    fs::write(dir.path().join("mxguard.toml"), config).unwrap();
    let out = run_mxguard(dir.path(), &["serve", "--config", "mxguard.toml"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&taken.local_addr().unwrap().to_string()),
        "{stderr}"
    );
    let keys = redis.cli(&["KEYS", "*tier:hb:*"]).unwrap_or_default();
    assert!(keys.trim().is_empty(), "heartbeat left standing: {keys}");
}
