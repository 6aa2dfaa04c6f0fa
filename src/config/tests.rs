use super::*;
use std::time::Duration;

const MINIMAL: &str = r#"
    [relay]
    domains = ["example.test"]
    internal = ["127.0.0.1:2526"]
    "#;

/// Regression (review): the internal server's `stamp verify` hook loaded the gateway's
/// configuration as the gateway does, so the gateway's TLS key, rules and seed had to
/// be readable there: every message was "could not check". Read away from the gateway,
/// only the tier key is looked for.
#[test]
fn away_from_the_gateway_only_the_tier_key_is_looked_for() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tier.key");
    std::fs::write(&key, "a-tier-key-long-enough").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.path().join("mxguard.toml");
    let text = |key: &Path| {
        format!(
            "{MINIMAL}\n[server.tls]\ncertificate = \"/nonexistent/cert.pem\"\n\
             key = \"/nonexistent/key.pem\"\n[policy]\nrules_dir = \"/nonexistent/rules\"\n\
             [classifier]\nseed = \"/nonexistent/seed.bin\"\n\
             [tier]\nname = \"gw1.example.test\"\nrole = \"primary\"\nsecret_file = {:?}\n\
             [server.limits]\nmessage_size_bytes = 1234567\n",
            key.display().to_string()
        )
    };
    std::fs::write(&path, text(&key)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    for key in ["server.tls.key", "policy.rules_dir", "classifier.seed"] {
        assert!(err.contains(key), "{key}: {err}");
    }
    let elsewhere = Config::load_elsewhere(&path).unwrap();
    assert_eq!(elsewhere.server.limits.message_size_bytes, 1234567);
    assert!(elsewhere.tier.is_some());
    std::fs::write(&path, text(&dir.path().join("missing.key"))).unwrap();
    let err = Config::load_elsewhere(&path).unwrap_err().to_string();
    assert!(err.contains("secret_file"), "{err}");
}

/// Regression (review of the configuration): each of these passed `check` and then
/// lost mail or turned a protection off: a relay domain written with its DNS dot
/// (every recipient refused), an action key no rule could have (never applied), a
/// queue lifetime of 0 (the first 451 bounced), bounces handed to our own listener
/// (every DSN dropped), port 0, thresholds for `.sub.example.test` (used for no one),
/// a fan-out window longer than contacts are kept, and "unlimited" line and archive
/// bounds.
#[test]
fn values_that_lost_mail_or_a_protection_are_refused_by_name() {
    let dotted = Config::from_toml(
        Path::new("t.toml"),
        "[relay]\ndomains = [\"Example.TEST.\", \".sub.example.test.\"]\ninternal = [\"127.0.0.1:2526\"]\n[policy.domains.\"example.test.\"]\ntag = 3.0\n",
    )
    .unwrap();
    assert_eq!(dotted.relay.domains, ["example.test", ".sub.example.test"]);
    assert!(dotted.policy.domain_thresholds.contains_key("example.test"));
    let text = r#"
        [server]
        listen = ["127.0.0.1:2525"]
        [server.limits]
        command_line_bytes = 9223372036854775807
        [relay]
        domains = ["example.test", ".sub.example.test"]
        internal = ["127.0.0.1:0"]
        dsn_via = ["127.0.0.1:2525"]
        max_queue_lifetime = "0s"
        [dns]
        nameservers = ["127.0.0.1:0"]
        [policy.actions]
        "attach blocked ext" = "reject"
        [policy.domains.".sub.example.test"]
        tag = 3.0
        [attachments]
        max_archive_entries = 9223372036854775807
        max_expanded_bytes = 9223372036854775807
        "#;
    let err = Config::from_toml(Path::new("t.toml"), text)
        .unwrap_err()
        .to_string();
    for key in [
        "server.limits.command_line_bytes: must be between 512",
        "relay.internal: 127.0.0.1:0: port 0",
        "relay.dsn_via: 127.0.0.1:2525 is this gateway's own server.listen",
        "relay.max_queue_lifetime: must be greater than 0",
        "relay.max_queue_lifetime: must be at least relay.retry_initial",
        "dns.nameservers: 127.0.0.1:0: port 0",
        "policy.actions.attach blocked ext: is not a rule name",
        "policy.domains..sub.example.test: name each domain",
        "attachments.max_archive_entries: must be between 1 and 1000000",
        "attachments.max_expanded_bytes: must be between 1 and 4294967296",
    ] {
        assert!(err.contains(key), "{key:?} not in:\n{err}");
    }
    // Regression (review): a pass forgotten before the next message greylists every
    // message again, and `check` said nothing. Warned of, not refused: a short
    // `pass_ttl` refreshed by use can be meant.
    let forgetful = format!("{MINIMAL}\n[greylist]\nenabled = true\npass_ttl = \"1s\"\n");
    let config = Config::from_toml(Path::new("t.toml"), &forgetful).unwrap();
    assert!(
        config
            .doubtful_settings()
            .iter()
            .any(|(key, why)| *key == "greylist.pass_ttl" && why.contains("shorter than")),
        "{:?}",
        config.doubtful_settings()
    );
    // Regression (review): the same address written IPv4-mapped looped unnoticed.
    let mapped = "[server]\nlisten = [\"127.0.0.1:2525\"]\n[relay]\ndomains = [\"example.test\"]\n\
                  internal = [\"[::ffff:127.0.0.1]:2525\"]\n";
    let err = Config::from_toml(Path::new("t.toml"), mapped)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("relay.internal: [::ffff:127.0.0.1]:2525 is this gateway's own"),
        "{err}"
    );
}

/// Regression (review of the configuration): these limits took any number, so
/// "unlimited" written as a huge one was taken (a `scan_mime_parts` of a billion lets
/// nested message headers overflow the parser's stack).
#[test]
fn every_limit_has_an_upper_bound() {
    let huge = 9_223_372_036_854_775_807u64;
    let text = format!(
        "[server.limits]\ntext_line_bytes = {huge}\nmessage_size_bytes = {huge}\n\
         message_memory_bytes = {huge}\nmessage_memory_total_bytes = {huge}\n\
         scan_part_bytes = {huge}\nscan_raw_part_bytes = {huge}\nscan_mime_parts = {huge}\n\
         [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
         [relay.recipients]\ncache_size = {huge}\ncallout_concurrency = {huge}\n\
         [metrics]\nmax_connections = {huge}\n[dns]\ncache_size = {huge}\ncache_bytes = {huge}\n\
         [policy]\nuribl_max_domains = {huge}\n"
    );
    let err = Config::from_toml(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    for key in [
        "server.limits.text_line_bytes",
        "server.limits.message_size_bytes",
        "server.limits.message_memory_bytes",
        "server.limits.message_memory_total_bytes",
        "server.limits.scan_part_bytes",
        "server.limits.scan_raw_part_bytes",
        "server.limits.scan_mime_parts",
        "relay.recipients.cache_size",
        "relay.recipients.callout_concurrency",
        "metrics.max_connections",
        "dns.cache_size",
        "dns.cache_bytes",
        "policy.uribl_max_domains",
    ] {
        assert!(
            err.contains(&format!("{key}: must be at most")),
            "{key:?} not in:\n{err}"
        );
    }
}

/// Regression (review against GUIDE): serde stopped at the first unknown key or value
/// of the wrong type, so an edit with three mistakes took three rounds of `check`, and
/// value problems carried no line.
#[test]
fn every_bad_key_is_reported_at_once_with_its_line() {
    let text = "[server]\n\
                hostnme = \"mx.example.test\"\n\
                greet_delay = 5\n\
                [relay]\n\
                domains = [\"example.test\"]\n\
                internal = [\"127.0.0.1:2526\"]\n\
                retry_factor = 0.5\n\
                [no_such_section]\n\
                x = 1\n\
                [[policy.dnsbl]]\n\
                zone = \"zen.example\"\n\
                symbol = \"RCVD_IN_ZEN\"\n\
                wieght = 3\n";
    let err = Config::from_toml(Path::new("t.toml"), text)
        .unwrap_err()
        .to_string();
    // An array-of-tables element refused: the next one is element 0 of what is read.
    let dnsbl = "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
                 [[policy.dnsbl]]\nzone = \"a.example\"\n\
                 [[policy.dnsbl]]\nzone = \"b example\"\nsymbol = \"RCVD_IN_B\"\n";
    let refused = Config::from_toml(Path::new("d.toml"), dnsbl)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("d.toml:4: policy.dnsbl.0: missing field `symbol`"),
        "{refused}"
    );
    assert!(
        refused.contains("d.toml:7: policy.dnsbl[0].zone: "),
        "{refused}"
    );
    for expected in [
        "t.toml:2: server.hostnme: unknown field `hostnme`",
        "t.toml:3: server.greet_delay: ",
        "t.toml:7: relay.retry_factor: ",
        "t.toml:8: no_such_section: unknown field `no_such_section`",
        "t.toml:13: policy.dnsbl.0.wieght: unknown field `wieght`",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from:\n{err}");
    }
    // Text that is not TOML stops at its first error, with its position.
    let err = Config::from_toml(Path::new("t.toml"), "[server\nx = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let c = Config::from_toml(Path::new("t.toml"), MINIMAL).unwrap();
    assert_eq!(c.server.limits.command_line_bytes, 512);
    assert_eq!(c.server.limits.text_line_bytes, 1000);
    assert_eq!(c.server.bare_line_ending, BareLineEnding::Reject);
    assert_eq!(c.relay.max_queue_lifetime, Duration::from_secs(5 * 86400));
    assert_eq!(c.relay.dsn_via, c.relay.internal);
}

/// Regression (review): thresholds for a domain mail never comes for (a typo, a
/// U-label where recipients are matched in A-labels) were taken and silently never
/// applied: that domain's recipients got the defaults.
#[test]
fn thresholds_for_a_domain_not_relayed_are_refused_by_name() {
    let relay = "[relay]\ndomains = [\"example.test\", \".sub.example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n";
    for domain in ["exmaple.test", "bücher.example.test"] {
        let text = format!("{relay}[policy.domains.\"{domain}\"]\ntag = 3.0\n");
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "policy.domains.{domain}: domain is not in relay.domains"
            )),
            "{err}"
        );
    }
    for domain in ["example.test", "a.sub.example.test"] {
        let text = format!("{relay}[policy.domains.\"{domain}\"]\ntag = 3.0\n");
        assert!(
            Config::from_toml(Path::new("t.toml"), &text).is_ok(),
            "{domain}"
        );
    }
}

/// Regression (review): `policy.dnsbl_threshold = nan` was taken, and `total < NaN` is
/// false: every client on any list of positive weight was refused at RCPT.
#[test]
fn a_dnsbl_threshold_that_is_no_number_is_refused() {
    for value in ["nan", "inf", "-inf"] {
        let text = format!("{MINIMAL}[policy]\ndnsbl_threshold = {value}\n");
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("policy.dnsbl_threshold"), "{value}: {err}");
    }
    let text = format!("{MINIMAL}[policy]\ndnsbl_threshold = 3.5\n");
    assert!(Config::from_toml(Path::new("t.toml"), &text).is_ok());
}

/// Regression (review of the relay): `relay.command_timeout` defaulted to 60 s, below RFC 5321 §4.5.3.2.
#[test]
fn relay_reply_deadlines_default_to_rfc_5321s() {
    let config = Config::from_toml(Path::new("t.toml"), MINIMAL).unwrap();
    assert_eq!(config.relay.command_timeout, Duration::from_secs(300));
    assert_eq!(config.relay.data_init_timeout, Duration::from_secs(120));
}

/// Regression (review): relay and callout timeouts of `"0s"` were taken, and every
/// delivery attempt and callout then timed out before it began.
#[test]
fn zero_relay_timeouts_are_refused_by_name() {
    let text = format!(
        "{MINIMAL}connect_timeout = \"0s\"\ncommand_timeout = \"0s\"\ndata_init_timeout = \"0s\"\n\
         data_timeout = \"0s\"\n\
         [relay.recipients]\ncallout = true\ncallout_timeout = \"0s\"\n"
    );
    let err = Config::from_toml(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    for key in [
        "relay.connect_timeout",
        "relay.command_timeout",
        "relay.data_init_timeout",
        "relay.data_timeout",
        "relay.recipients.callout_timeout",
    ] {
        assert!(err.contains(key), "{key} not refused: {err}");
    }
}

/// Regression (review): relay times past a year (`command_timeout = "300000000000y"`,
/// meant as "never") were taken, and each delivery worker panicked adding one to the
/// clock: once every worker was gone nothing was delivered, while SMTP still said 250.
#[test]
fn relay_times_past_a_year_are_refused_by_name() {
    let keys = [
        "connect_timeout",
        "command_timeout",
        "data_init_timeout",
        "data_timeout",
        "idle_timeout",
        "connection_reuse_time",
        "unreachable_hold",
    ];
    let mut text = MINIMAL.to_string();
    for key in keys {
        text.push_str(&format!("{key} = \"300000000000y\"\n"));
    }
    text.push_str("[relay.recipients]\ncallout_timeout = \"300000000000y\"\n");
    let err = Config::from_toml(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    for key in keys {
        let key = format!("relay.{key}: must be at most a year");
        assert!(err.contains(&key), "{key} not refused: {err}");
    }
    assert!(err.contains("relay.recipients.callout_timeout: must be at most a year"));
}

/// Regression (review): `relay.internal` set to the gateway's own listener passed
/// `check`: every message went round 50 times, then the 554 bounced, and the bounce
/// too, so the mail was lost.
#[test]
fn relaying_to_our_own_listener_is_refused() {
    for listen in ["127.0.0.1:2525", "0.0.0.0:2525"] {
        let text = format!(
            "[server]\nlisten = [\"{listen}\"]\n[relay]\ndomains = [\"example.test\"]\n\
             internal = [\"127.0.0.1:2525\"]\n"
        );
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("relay.internal: 127.0.0.1:2525 is this gateway's own"),
            "{err}"
        );
    }
    let text = "[server]\nlisten = [\"0.0.0.0:25\"]\n[relay]\ndomains = [\"example.test\"]\n\
                internal = [\"127.0.0.1:2525\", \"192.0.2.7:25\", \"[::1]:25\"]\n";
    assert!(Config::from_toml(Path::new("t.toml"), text).is_ok());
}

/// Regression (review): `rediss://` passed `check` but `serve` refused to start (the
/// client has no TLS), and a rate limit of more than one event per millisecond of its
/// period was silently enforced as one per millisecond.
#[test]
fn settings_the_gateway_cannot_honour_are_refused_at_load() {
    let text = r#"
        [relay]
        domains = ["example.test"]
        internal = ["127.0.0.1:2526"]
        [state]
        backend = "redis"
        redis = "rediss://127.0.0.1:6380/"
        [[ratelimit]]
        name = "fast"
        key = "client_ip"
        limit = 5000
        per = "1s"
        [[ratelimit]]
        name = "fine"
        key = "client_ip"
        limit = 1000
        per = "1s"
    "#;
    let err = Config::from_toml(Path::new("t.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS to Redis (rediss://) is not built in"),
        "{err}"
    );
    assert!(
        err.contains("ratelimit[0].limit: more than one event per millisecond"),
        "{err}"
    );
    assert!(!err.contains("ratelimit[1]"), "{err}");
}

/// Regression (review): a number meant as "unlimited" or a time meant as "never" was
/// taken in many sections and then panicked: `max_sessions` past tokio's semaphore
/// maximum ended the accept loop on a reload (`/healthz` still said 200), a huge
/// `disk_inspections` panicked every reload from then on, `tier.heartbeat_interval`
/// or `state.timeout` past the clock's end made `serve` exit 101. A greylisting prefix
/// of 0 made every client one network, and a recipient list keyed `.example.test` was
/// in force for no recipient at all.
#[test]
fn unlimited_numbers_and_never_times_are_refused_by_name() {
    let never = "\"300000000000y\"";
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("tier.key");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        r#"
        [server.limits]
        max_sessions = 9223372036854775807
        [relay]
        domains = [".example.test"]
        internal = ["127.0.0.1:2526"]
        workers = 100000
        retry_initial = {never}
        max_queue_lifetime = {never}
        [relay.recipients]
        positive_ttl = {never}
        negative_ttl = {never}
        lists = {{ ".example.test" = "users.txt" }}
        [attachments]
        disk_inspections = 4611686018427387904
        [greylist]
        delay = {never}
        window = {never}
        pass_ttl = {never}
        ipv4_prefix = 0
        ipv6_prefix = 0
        [classifier]
        retrain_interval = {never}
        model_poll = {never}
        [antivirus]
        timeout = {never}
        [state]
        timeout = {never}
        [spool]
        quarantine_lifetime = {never}
        [metrics]
        header_timeout = {never}
        [tier]
        name = "gw1"
        secret_file = "{}"
        heartbeat_interval = {never}
        connection_memory = {never}
        fanout_window = {never}
        stamp_max_age = {never}
        [[ratelimit]]
        name = "per_client"
        key = "client_ip"
        limit = 10
        per = {never}
        "#,
        secret.display()
    );
    let err = Config::from_toml(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    for key in [
        "server.limits.max_sessions: must be at most",
        "relay.workers: must be between 1 and 1024",
        "relay.retry_initial: must be at most a year",
        "relay.max_queue_lifetime: must be at most a year",
        "relay.recipients.positive_ttl: must be at most a year",
        "relay.recipients.negative_ttl: must be at most a year",
        "relay.recipients.lists..example.test: must name one domain",
        "attachments.disk_inspections: must be between 1 and 1024",
        "greylist.delay: must be at most a year",
        "greylist.pass_ttl: must be at most a year",
        "greylist.ipv4_prefix: must be between 1 and 32",
        "greylist.ipv6_prefix: must be between 1 and 128",
        "classifier.retrain_interval: must be at most a year",
        "classifier.model_poll: must be at most a year",
        "antivirus.timeout: must be at most a year",
        "state.timeout: must be at most a year",
        "spool.quarantine_lifetime: must be at most a year",
        "metrics.header_timeout: must be at most a year",
        "tier.heartbeat_interval: must be at most a year",
        "tier.connection_memory: must be at most a year",
        "tier.fanout_window: must be at most a year",
        "tier.stamp_max_age: must be at most a year",
        ".per: must be at most a year",
    ] {
        assert!(err.contains(key), "{key} not refused: {err}");
    }
}

/// Regression (review): `check` accepted `metrics.listen` on an SMTP listener's
/// address, and `serve` then failed to bind it.
#[test]
fn the_admin_listener_may_not_take_an_smtp_address() {
    let with = |admin: &str| {
        format!("[server]\nlisten = [\"0.0.0.0:2525\"]\n[metrics]\nlisten = \"{admin}\"\n{MINIMAL}")
    };
    for taken in ["127.0.0.1:2525", "0.0.0.0:2525"] {
        let err = Config::from_toml(Path::new("t.toml"), &with(taken))
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.listen"), "{taken}: {err}");
    }
    assert!(Config::from_toml(Path::new("t.toml"), &with("127.0.0.1:2599")).is_ok());
    assert!(Config::from_toml(Path::new("t.toml"), &with("[::1]:2525")).is_ok());
    // `[::]` is dual-stack: it takes 127.0.0.1's port too (review).
    let dual = format!(
        "[server]\nlisten = [\"[::]:2525\"]\n[metrics]\nlisten = \"127.0.0.1:2525\"\n{MINIMAL}"
    );
    assert!(Config::from_toml(Path::new("t.toml"), &dual).is_err());
}

/// Regression (review): `server.listen` entries that take each other's port passed
/// `check`, and `serve` could not bind the second.
#[test]
fn listen_entries_may_not_take_each_other_s_port() {
    let with = |listen: &str| format!("[server]\nlisten = [{listen}]\n{MINIMAL}");
    for clash in [
        r#""0.0.0.0:2525", "[::]:2525""#,
        r#""127.0.0.1:2525", "127.0.0.1:2525""#,
        r#""0.0.0.0:2525", "127.0.0.1:2525""#,
    ] {
        let err = Config::from_toml(Path::new("t.toml"), &with(clash))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{clash}: {err}");
    }
    for fine in [
        r#""127.0.0.1:2525", "127.0.0.2:2525""#,
        r#""127.0.0.1:2525", "[::1]:2525""#,
        r#""127.0.0.1:0", "127.0.0.1:0""#,
    ] {
        assert!(
            Config::from_toml(Path::new("t.toml"), &with(fine)).is_ok(),
            "{fine}"
        );
    }
    // Regression (review): a relay target of 0.0.0.0 reaches this host.
    let relay = MINIMAL.replace("127.0.0.1:2526", "0.0.0.0:2526");
    assert_ne!(relay, MINIMAL);
    let err = Config::from_toml(Path::new("t.toml"), &relay)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unspecified"), "{err}");
}

/// Regression (review): `relay.helo_name` and `server.banner` were taken with a CR or
/// LF: the internal server got `EHLO x` and a `RSET` of ours, and clients a greeting
/// of two lines with a bare CR.
#[test]
fn names_written_into_smtp_lines_are_one_clean_line() {
    let relay_helo =
        |value: &str| MINIMAL.replace("[relay]\n", &format!("[relay]\nhelo_name = \"{value}\"\n"));
    let banner = |value: &str| format!("[server]\nbanner = \"{value}\"\n{MINIMAL}");
    for (key, text) in [
        ("relay.helo_name", relay_helo("x y\\r\\nRSET")),
        ("relay.helo_name", relay_helo("two words.example")),
        ("relay.helo_name", relay_helo("tab\\tname")),
        ("server.banner", banner("ESMTP\\r\\n250 injected")),
    ] {
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{text}: {err}");
    }
    // A short name is taken, as before (review: refusing it broke existing configs).
    for value in [
        "relay.example.test",
        "[192.0.2.1]",
        "[IPv6:2001:db8::1]",
        "gw",
    ] {
        assert!(
            Config::from_toml(Path::new("t.toml"), &relay_helo(value)).is_ok(),
            "{value}"
        );
    }
    assert!(Config::from_toml(Path::new("t.toml"), &banner("ESMTP ready")).is_ok());
}

/// Regression (review): `session_duration = "300000000000y" (or another session time
/// limit past the clock's end) was taken, and every session panicked when it added the
/// limit to the clock: clients were dropped without a reply.
#[test]
fn time_limits_past_a_year_are_refused_by_name() {
    let keys = [
        "command_timeout",
        "session_duration",
        "stress_idle_timeout",
        "data_rate_grace",
        "tarpit_delay",
        "refused_quit_wait",
        "shutdown_grace",
    ];
    let mut text = String::from("[server]\ngreet_delay = \"300000000000y\"\n[server.limits]\n");
    for key in keys {
        text.push_str(&format!("{key} = \"300000000000y\"\n"));
    }
    text.push_str(MINIMAL);
    let err = Config::from_toml(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    for key in keys {
        assert!(
            err.contains(&format!("server.limits.{key}")),
            "{key} not refused: {err}"
        );
    }
    assert!(err.contains("server.greet_delay"), "{err}");
}

#[test]
fn every_bad_key_is_reported_by_name() {
    let text = r#"
        [server]
        bare_line_ending = "maybe"
        [server.limits]
        command_line_bytes = 100
        [relay]
        domains = []
        internal = []
        tls = "sometimes"
        "#;
    let err = Config::from_toml(Path::new("t.toml"), text).unwrap_err();
    let msg = err.to_string();
    for key in [
        "server.bare_line_ending",
        "server.limits.command_line_bytes",
        "relay.domains",
        "relay.internal",
        "relay.tls",
    ] {
        assert!(msg.contains(key), "{key} missing from {msg}");
    }
}

#[test]
fn unknown_key_is_a_syntax_error_naming_it() {
    let text = format!("{MINIMAL}\nbogus_key = 1\n");
    let err = Config::from_toml(Path::new("t.toml"), &text).unwrap_err();
    assert!(err.to_string().contains("bogus_key"), "{err}");
}

#[test]
fn shipped_default_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mxguard.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:2525");
    assert_eq!(c.relay.internal[0].to_string(), "127.0.0.1:2526");
    assert_eq!(c.relay.domains, vec!["example.test".to_string()]);
}

/// Regression (review): network lists read from files (`./deny.txt`) are read again on
/// every reload, but were not among the watched inputs, so an edit of one waited for a
/// SIGHUP; and `server.hostname` kept a trailing dot, which no HELO, tier name or
/// heartbeat key matched.
#[test]
fn network_list_files_are_watched_and_the_host_name_loses_its_dot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxguard.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhostname = \"MX.Example.Test.\"\nproxy_protocol_from = [\"./proxies.txt\"]\n\
             {MINIMAL}\n[policy]\ndeny_networks = [\"10.0.0.0/8\", \"./deny.txt\"]\n\
             [greylist]\nexempt = [\"/etc/mxguard/exempt.txt\"]\n\
             [metrics]\nallow = [\"../allow.txt\"]\n"
        ),
    )
    .unwrap();
    let inputs = Config::named_inputs(&path).unwrap();
    for file in [
        "./deny.txt",
        "/etc/mxguard/exempt.txt",
        "../allow.txt",
        "./proxies.txt",
    ] {
        assert!(
            inputs.files.iter().any(|f| f == Path::new(file)),
            "{file} not watched: {:?}",
            inputs.files
        );
    }
    let config = Config::from_toml(
        Path::new("t.toml"),
        &format!("[server]\nhostname = \"MX.Example.Test.\"\n{MINIMAL}"),
    )
    .unwrap();
    assert_eq!(config.server.hostname, "mx.example.test");
}

/// Regression (review): settings that load but defeat their purpose went unremarked:
/// autolearning as ham at a score that tags, data-stage greylisting from a score that
/// refuses, a banner delay no client waits out.
#[test]
fn settings_that_defeat_their_purpose_are_named() {
    let load = |extra: &str| {
        Config::from_toml(Path::new("t.toml"), &format!("{MINIMAL}\n{extra}"))
            .unwrap()
            .doubtful_settings()
            .into_iter()
            .map(|(key, _)| key)
            .collect::<Vec<_>>()
    };
    assert!(load("").is_empty(), "{:?}", load(""));
    assert_eq!(
        load("[classifier]\nautolearn = true\nautolearn_ham = 6.0\nautolearn_spam = 12.0\n"),
        ["classifier.autolearn_ham"]
    );
    assert_eq!(
        load("[classifier]\nautolearn = true\nautolearn_ham = -2.0\nautolearn_spam = 4.0\n"),
        ["classifier.autolearn_spam"]
    );
    assert_eq!(
        load("[greylist]\nenabled = true\nstage = \"data\"\nmin_score = 15.0\n"),
        ["greylist.min_score"]
    );
    assert_eq!(
        load("[server]\ngreet_delay = \"6m\"\n"),
        ["server.greet_delay"]
    );
}

/// `tier.previous_secret_file` (the key a rotation replaced) is read as the key is, and
/// refused by name when it is not fit to be one.
#[test]
fn the_previous_tier_key_is_read_like_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write_key = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        path
    };
    let (key, old, short) = (
        write_key("new.key", &[7u8; 32]),
        write_key("old.key", &[b'A'; 32]),
        write_key("short.key", b"abc"),
    );
    let tier = |previous: &std::path::Path| {
        format!(
            "{MINIMAL}\n[tier]\nname = \"gw1\"\nsecret_file = \"{}\"\nprevious_secret_file = \"{}\"\n",
            key.display(),
            previous.display()
        )
    };
    let config = Config::from_toml(Path::new("t.toml"), &tier(&old)).unwrap();
    let t = config.tier.as_ref().unwrap();
    assert_eq!(t.stamp_keys(), vec![&[7u8; 32][..], &[b'A'; 32][..]]);
    let err = Config::from_toml(Path::new("t.toml"), &tier(&short))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tier.previous_secret_file"), "{err}");
}

/// Regression (review): tier names kept their case while `server.hostname` (the
/// default tier name) lost it: heartbeat keys are the names, so a peer written
/// `GW2.Example.Test` never found gw2's heartbeat, and `GW1.example.test` was not
/// known as this gateway's own name.
#[test]
fn tier_names_are_read_in_lower_case() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("tier.key");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let tier = |name: &str, peer: &str| {
        format!(
            "[server]\nhostname = \"gw1.example.test\"\n{MINIMAL}\n[tier]\n{name}secret_file = \"{}\"\n\
             [[tier.peers]]\nname = \"{peer}\"\nsmtp = \"192.0.2.12:25\"\nrole = \"primary\"\n",
            secret.display()
        )
    };
    let config = Config::from_toml(
        Path::new("t.toml"),
        &tier("name = \"GW1.Example.Test.\"\n", "GW2.Example.Test."),
    )
    .unwrap();
    let t = config.tier.as_ref().unwrap();
    assert_eq!(t.name, "gw1.example.test");
    assert_eq!(t.peers[0].name, "gw2.example.test");
    let err = Config::from_toml(Path::new("t.toml"), &tier("", "GW1.example.test"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is this gateway's own tier.name"), "{err}");
    // Regression (review): a peer's name was never checked, and a ',' in any member's
    // name broke the embedded store's contact lists.
    for bad in ["gw 2", "gw2,bk1", "gw2=x", ""] {
        let err = Config::from_toml(Path::new("t.toml"), &tier("", bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tier.peers[0].name"), "{bad:?}: {err}");
    }
    let err = Config::from_toml(Path::new("t.toml"), &tier("name = \"gw1,x\"\n", "gw2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tier.name"), "{err}");
    // Nor two peers at one address, which mail from it cannot tell apart, on any port.
    let two = format!(
        "{}[[tier.peers]]\nname = \"gw3\"\nsmtp = \"[::ffff:192.0.2.12]:2525\"\nrole = \"backup\"\n",
        tier("", "gw2")
    );
    let err = Config::from_toml(Path::new("t.toml"), &two)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tier.peers[1].smtp"), "{err}");
}

/// Regression (review): a recipient list keyed as `relay.domains` may be written (with
/// its DNS dot) was refused as "not in relay.domains".
#[test]
fn a_recipient_list_key_is_read_as_a_relay_domain() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "alice\n").unwrap();
    let text = format!(
        "{MINIMAL}\n[relay.recipients]\nlists = {{ \"Example.Test.\" = {:?} }}\n",
        users.display().to_string()
    );
    let config = Config::from_toml(Path::new("t.toml"), &text).unwrap();
    assert!(config.relay.recipients.lists.contains_key("example.test"));
    // Regression (review): two keys naming one domain; the second list, or the second
    // thresholds, silently replaced the first.
    let text = format!(
        "{MINIMAL}\n[relay.recipients]\nlists = {{ \"example.test\" = {users:?}, \"Example.Test\" = {users:?} }}\n\
         [policy.domains.\"example.test\"]\ntag = 3.0\n[policy.domains.\"EXAMPLE.test.\"]\ntag = 4.0\n",
        users = users.display().to_string()
    );
    let err = Config::from_toml(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("relay.recipients.lists.example.test: named twice"),
        "{err}"
    );
    assert!(
        err.contains("policy.domains.example.test: named twice"),
        "{err}"
    );
}

/// Regression (review): a FIFO named as a tier key or a list file blocked `check`, or
/// the reload task for good.
#[test]
fn a_file_the_configuration_names_must_be_a_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tier.key");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let err = read_plain_file(&fifo).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    let plain = dir.path().join("users.txt");
    std::fs::write(&plain, "alice\n").unwrap();
    assert_eq!(read_plain_file(&plain).unwrap(), b"alice\n");
    // Review: the configuration itself, its shadow policy (read by the file watch
    // before any check), rules files and their `include`s were read without it.
    let err = read_plain_file(Path::new("/dev/zero")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(matches!(Config::load(&fifo), Err(ConfigError::Read { .. })));
    let main = dir.path().join("mxguard.toml");
    let text = format!(
        "{MINIMAL}\n[policy]\nshadow = {:?}\n",
        fifo.display().to_string()
    );
    std::fs::write(&main, text).unwrap();
    let inputs = Config::named_inputs(&main).unwrap();
    assert!(inputs.shadow_rules_dir.is_none());
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let piped = rules.join("30.cf");
    let c_path = std::ffi::CString::new(piped.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    assert!(crate::rules::RuleSet::from_dir(&rules).is_err());
    std::fs::remove_file(&piped).unwrap();
    std::fs::write(rules.join("10.cf"), "include /dev/zero\nbody A /a/\n").unwrap();
    let set = crate::rules::RuleSet::from_dir(&rules).unwrap();
    assert!(set.rule("A").is_some());
}
