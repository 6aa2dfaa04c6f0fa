//! Observability over the wire: real SMTP traffic, then the admin listener scraped over TCP
//! (`/metrics` parsed as Prometheus text, `/healthz`, `/policy`); the deploy/ files checked
//! against a live scrape (every metric name the alerts and the dashboard use exists) and,
//! with `promtool` installed, by Prometheus's own checker.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// HTTP and exposition-format helpers
// ---------------------------------------------------------------------------------------

/// One HTTP response: status code, headers (lower-case names), body.
struct Http {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// `METHOD path` over a fresh connection to the admin port (HTTP/1.1, `Connection: close`).
fn http(port: u16, method: &str, path: &str) -> Http {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to admin port {port}: {e}"));
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read from admin port: {e}"));
    let raw = String::from_utf8(raw).expect("admin response is UTF-8");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Http {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(port: u16, path: &str) -> Http {
    http(port, "GET", path)
}

/// One sample of the text exposition format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    /// Family name → type from `# TYPE`.
    types: BTreeMap<String, String>,
    /// Families with a `# HELP` line.
    helps: BTreeSet<String>,
}

impl Scrape {
    /// Parses the Prometheus text format (0.0.4); panics on a line it cannot read.
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        let mut helps = BTreeSet::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE line has a type");
                types.insert(name.to_string(), ty.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                helps.insert(name.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Scrape {
            samples,
            types,
            helps,
        }
    }

    /// Sum of the samples named `name` whose labels include all of `labels`
    /// (`None` when there is no such sample).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in &self.samples {
            if s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            {
                found = Some(found.unwrap_or(0.0) + s.value);
            }
        }
        found
    }

    /// Like `get` but 0 when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every sample name.
    fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }

    /// Label values of `label` across the samples named `name`.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// `name{a="x",b="y"} value` (labels optional; escaped quotes and backslashes handled).
fn parse_sample(line: &str) -> Sample {
    let bad = || -> ! { panic!("unparsable sample line {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 2);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => bad(),
                            },
                            Some('"') => break,
                            Some(c) => value.push(c),
                            None => bad(),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
        rest = &rest[end.unwrap_or_else(|| bad())..];
    }
    let value_text = rest.split_whitespace().next().unwrap_or_else(|| bad());
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| bad()),
    };
    Sample {
        name,
        labels,
        value,
    }
}

fn scrape(port: u16) -> Scrape {
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.body);
    assert!(
        r.headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "content type: {:?}",
        r.headers.get("content-type")
    );
    Scrape::parse(&r.body)
}

// ---------------------------------------------------------------------------------------
// The gateway under test and its traffic
// ---------------------------------------------------------------------------------------

const RULES: &str = "body METRICS_TOKEN /zz-metrics-token-zz/\nscore METRICS_TOKEN 1.0\n";
const POLICY: &str = "[policy]\nrules_dir = \"rules\"\ngtube = true\n";

fn start() -> (InternalServer, Gateway, u16) {
    let internal = InternalServer::start();
    let cfg = GatewayConfig::new(&internal)
        .toml(POLICY)
        .file("rules/local.cf", RULES);
    let gw = Gateway::start(cfg);
    let admin = admin_port(&gw);
    (internal, gw, admin)
}

/// A clean message (delivered), a relay-denied RCPT, a GTUBE message (rejected) and an
/// over-long command line (a limit hit). Returns after the clean message was delivered.
fn send_traffic(internal: &InternalServer, gw: &Gateway) {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let clean = message(
        "clean@metrics.test",
        "Quarterly report",
        "Hello, the figures are attached.\nzz-metrics-token-zz\n",
    );
    c.send_mail("sender@sender.test", &["user@example.test"], &clean)
        .expect(250, "2.0.0");

    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    let denied = c.cmd("RCPT TO:<victim@elsewhere.test>");
    assert_eq!(denied.code, 550, "relay-denied RCPT: {denied}");
    c.cmd("RSET").expect(250, "");

    let spam = message("gtube@metrics.test", "Test", &format!("{GTUBE}\n"));
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.cmd("DATA").expect(354, "");
    c.send(&dot_stuffed(&spam));
    let r = c.read_reply();
    assert_eq!(r.code, 550, "GTUBE must be rejected: {r}");

    let long = format!("NOOP {}", "x".repeat(700));
    let r = c.cmd(&long);
    assert_eq!(r.code / 100, 5, "over-long command: {r}");
    c.quit();

    internal.expect_message_id("clean@metrics.test");
}

/// Scrapes until `ok` holds for the scrape (the relay counts after the 250 it got).
fn scrape_until(port: u16, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    let done = wait_until(Duration::from_secs(15), || {
        let s = scrape(port);
        let good = ok(&s);
        last = Some(s);
        good
    });
    let last = last.expect("at least one scrape");
    assert!(done, "{what}: not seen in time; last scrape: {last:#?}");
    last
}

/// Families every gateway exports from the start.
const ALWAYS: &[(&str, &str)] = &[
    ("mxguard_connections_total", "counter"),
    ("mxguard_sessions_active", "gauge"),
    ("mxguard_messages_total", "counter"),
    ("mxguard_message_size_bytes", "histogram"),
    ("mxguard_spool_messages", "gauge"),
    ("mxguard_spool_oldest_seconds", "gauge"),
    ("mxguard_spool_errors_total", "counter"),
    ("mxguard_relay_attempts_total", "counter"),
    ("mxguard_relay_duration_seconds", "histogram"),
    ("mxguard_dsn_sent_total", "counter"),
    ("mxguard_callouts_total", "counter"),
    ("mxguard_policy_info", "gauge"),
    ("mxguard_policy_reloads_total", "counter"),
    ("mxguard_policy_last_reload_timestamp_seconds", "gauge"),
];

/// Families whose series appear with their first event (label values not known before).
const AFTER_TRAFFIC: &[(&str, &str)] = &[
    ("mxguard_smtp_replies_total", "counter"),
    ("mxguard_rule_hits_total", "counter"),
    ("mxguard_limit_hits_total", "counter"),
];

fn assert_families(s: &Scrape, families: &[(&str, &str)]) {
    for (name, ty) in families {
        assert_eq!(
            s.types.get(*name).map(String::as_str),
            Some(*ty),
            "family {name} missing or of the wrong type; types: {:?}",
            s.types
        );
        assert!(s.helps.contains(*name), "family {name} has no HELP");
        let has_sample = s
            .samples
            .iter()
            .any(|x| x.name == *name || x.name.starts_with(&format!("{name}_")));
        assert!(has_sample, "family {name} has no samples");
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn fresh_gateway_exports_every_family_at_zero() {
    let (_internal, gw, admin) = start();
    let s = scrape(admin);
    assert_families(&s, ALWAYS);
    for verdict in [
        "accept",
        "tag",
        "quarantine",
        "reject",
        "tempfail",
        "discard",
    ] {
        assert_eq!(
            s.get("mxguard_messages_total", &[("verdict", verdict)]),
            Some(0.0),
            "{verdict} starts at 0"
        );
    }
    assert_eq!(
        s.get("mxguard_policy_reloads_total", &[("result", "failure")]),
        Some(0.0)
    );
    // The harness's readiness probe is a session too; it ends on its own shortly.
    scrape_until(admin, "no session active", |s| {
        s.value("mxguard_sessions_active", &[]) == 0.0
    });
    drop(gw);
}

#[test]
fn counters_move_with_real_smtp_traffic() {
    let (internal, gw, admin) = start();
    let before = scrape(admin);
    send_traffic(&internal, &gw);
    let s = scrape_until(admin, "relay attempt delivered", |s| {
        s.value("mxguard_relay_attempts_total", &[("result", "delivered")]) >= 1.0
            && s.value("mxguard_spool_messages", &[]) == 0.0
    });
    assert_families(&s, ALWAYS);
    assert_families(&s, AFTER_TRAFFIC);

    // Messages by verdict: one clean accept, one GTUBE reject.
    assert_eq!(
        s.value("mxguard_messages_total", &[("verdict", "accept")]),
        1.0
    );
    assert_eq!(
        s.value("mxguard_messages_total", &[("verdict", "reject")]),
        1.0
    );
    assert_eq!(
        s.value("mxguard_messages_total", &[("verdict", "tag")]),
        0.0
    );
    // Rule hits: the built-in GTUBE check and a rules-file rule.
    assert_eq!(
        s.value("mxguard_rule_hits_total", &[("rule", "GTUBE")]),
        1.0
    );
    assert_eq!(
        s.value("mxguard_rule_hits_total", &[("rule", "METRICS_TOKEN")]),
        1.0
    );
    // Relay: exactly the clean message went to the internal server.
    assert_eq!(
        s.value("mxguard_relay_attempts_total", &[("result", "delivered")]),
        1.0
    );
    assert_eq!(
        s.value("mxguard_relay_attempts_total", &[("result", "failed")]),
        0.0
    );
    assert_eq!(
        s.value(
            "mxguard_relay_duration_seconds_count",
            &[("result", "delivered")]
        ),
        1.0
    );
    // Replies: the relay-denied RCPT and the GTUBE reject are 5xx at their stages.
    assert!(
        s.value(
            "mxguard_smtp_replies_total",
            &[("stage", "rcpt"), ("class", "5xx")]
        ) >= 1.0
    );
    assert!(
        s.value(
            "mxguard_smtp_replies_total",
            &[("stage", "rcpt"), ("class", "2xx")]
        ) >= 2.0
    );
    assert!(
        s.value(
            "mxguard_smtp_replies_total",
            &[("stage", "data"), ("class", "5xx")]
        ) >= 1.0
    );
    assert!(
        s.value(
            "mxguard_smtp_replies_total",
            &[("stage", "data"), ("class", "2xx")]
        ) >= 1.0
    );
    for (stage, class) in s
        .label_values("mxguard_smtp_replies_total", "stage")
        .iter()
        .zip(s.label_values("mxguard_smtp_replies_total", "class"))
    {
        assert!(!stage.is_empty() && ["2xx", "3xx", "4xx", "5xx"].contains(&class.as_str()));
    }
    assert_eq!(
        s.value("mxguard_limit_hits_total", &[("limit", "command_line")]),
        1.0
    );
    // Connections: ours (the harness's start-up probe may count too).
    let accepted = s.value("mxguard_connections_total", &[("result", "accepted")])
        - before.value("mxguard_connections_total", &[("result", "accepted")]);
    assert_eq!(accepted, 1.0, "one SMTP connection since the first scrape");
    assert!(wait_until(Duration::from_secs(5), || scrape(admin)
        .value("mxguard_sessions_active", &[])
        == 0.0));
    // Only the accepted message is measured by size.
    assert_eq!(s.value("mxguard_message_size_bytes_count", &[]), 1.0);
    assert!(s.value("mxguard_message_size_bytes_sum", &[]) > 50.0);
    assert_eq!(s.value("mxguard_spool_errors_total", &[]), 0.0);
    assert_eq!(s.value("mxguard_dsn_sent_total", &[]), 0.0);
    assert!(s.value("mxguard_policy_last_reload_timestamp_seconds", &[]) > 1.6e9);
    #[cfg(target_os = "linux")]
    {
        assert!(s.value("process_resident_memory_bytes", &[]) > 0.0);
        assert!(s.get("process_cpu_seconds_total", &[]).is_some());
        assert!(s.value("process_open_fds", &[]) > 0.0);
        assert!(s.value("process_start_time_seconds", &[]) > 1.6e9);
    }
}

#[test]
fn policy_endpoint_matches_the_fingerprint_metric() {
    let (_internal, gw, admin) = start();
    let r = get(admin, "/policy");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("/policy is JSON");
    let fp = doc["fingerprint"].as_str().expect("fingerprint string");
    assert_eq!(fp.len(), 64, "fingerprint {fp}");
    assert!(fp
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(doc["loaded_at"].as_str().is_some_and(|t| t.contains('T')));
    assert!(doc["loaded_at_unix"].as_f64().is_some_and(|t| t > 1.6e9));
    assert!(doc["version"].is_string());
    assert_eq!(doc["rules"]["by_kind"]["body"], 1, "{}", r.body);
    assert_eq!(doc["rules"]["total"], 1);

    let s = scrape(admin);
    assert_eq!(
        s.label_values("mxguard_policy_info", "fingerprint"),
        vec![fp.to_string()]
    );
    assert_eq!(s.value("mxguard_policy_info", &[("fingerprint", fp)]), 1.0);

    // `mxguard check` prints the same fingerprint.
    let out = gw.cli(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(fp), "check output lacks {fp}:\n{stdout}");
}

#[test]
fn reload_moves_the_fingerprint_and_the_reload_counters() {
    let (_internal, gw, admin) = start();
    let first = scrape(admin).label_values("mxguard_policy_info", "fingerprint");
    assert_eq!(first.len(), 1);

    write_atomically(
        &gw.dir.join("rules/local.cf"),
        &format!("{RULES}body METRICS_OTHER /zz-other-zz/\nscore METRICS_OTHER 2.0\n"),
    );
    gw.signal(libc::SIGHUP);
    let s = scrape_until(admin, "successful reload", |s| {
        s.value("mxguard_policy_reloads_total", &[("result", "success")]) >= 1.0
    });
    let now = s.label_values("mxguard_policy_info", "fingerprint");
    assert_eq!(
        now.len(),
        1,
        "only the active fingerprint is exported: {now:?}"
    );
    assert_ne!(now, first);
    let doc: serde_json::Value = serde_json::from_str(&get(admin, "/policy").body).unwrap();
    assert_eq!(doc["fingerprint"].as_str(), Some(now[0].as_str()));

    let failures = s.value("mxguard_policy_reloads_total", &[("result", "failure")]);
    write_atomically(
        &gw.dir.join("rules/local.cf"),
        "body BROKEN /unterminated\nscore BROKEN 1.0\n",
    );
    gw.signal(libc::SIGHUP);
    let s = scrape_until(admin, "failed reload", |s| {
        s.value("mxguard_policy_reloads_total", &[("result", "failure")]) > failures
    });
    assert_eq!(
        s.label_values("mxguard_policy_info", "fingerprint"),
        now,
        "a broken reload keeps the active fingerprint"
    );
}

#[test]
fn healthz_ok_and_unknown_paths_404() {
    let (_internal, gw, admin) = start();
    let r = get(admin, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(get(admin, "/").status, 404);
    assert_eq!(get(admin, "/metrics/extra").status, 404);
    assert_eq!(get(admin, "/../etc/passwd").status, 404);
    assert_eq!(http(admin, "POST", "/metrics").status, 405);
    let head = http(admin, "HEAD", "/metrics");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // Garbage is answered (400) or dropped without disturbing the gateway.
    let addr = ([127, 0, 0, 1], admin).into();
    let mut s = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT).unwrap();
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    assert_eq!(get(admin, "/healthz").status, 200);
    SmtpClient::connect_ehlo(gw.port).quit();
}

#[test]
fn healthz_503_when_the_spool_is_unwritable() {
    let (_internal, gw, admin) = start();
    assert_eq!(get(admin, "/healthz").status, 200);
    // A file where the spool's tmp/ directory was: no write can succeed, even as root.
    let tmp = gw.spool().join("tmp");
    let aside = gw.spool().join("tmp.aside");
    std::fs::rename(&tmp, &aside).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let r = get(admin, "/healthz");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::rename(&aside, &tmp).unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("spool"), "{}", r.body);
    assert_eq!(get(admin, "/healthz").status, 200, "healthy again");
}

#[test]
fn healthz_503_while_draining_and_metrics_still_served() {
    let (_internal, mut gw, admin) = start();
    // A session in the middle of DATA keeps the gateway draining for shutdown_grace (2 s).
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.cmd("DATA").expect(354, "");
    c.send(b"Subject: slow\r\n\r\nstill typing\r\n");
    gw.signal(libc::SIGTERM);
    let mut draining = None;
    assert!(
        wait_until(Duration::from_secs(2), || {
            let r = get(admin, "/healthz");
            let hit = r.status == 503;
            if hit {
                draining = Some(r.body);
            }
            hit
        }),
        "/healthz never said 503 while draining; log:\n{}",
        gw.logs()
    );
    assert_eq!(draining.as_deref(), Some("draining\n"));
    assert_eq!(
        get(admin, "/metrics").status,
        200,
        "scrapes work while draining"
    );
    drop(c);
    let status = gw.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
}

/// `mxguard_*` and `process_*` names in a deploy/ file (histogram suffixes included).
fn metric_names_in(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = BTreeSet::new();
    for prefix in ["mxguard_", "process_"] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find(prefix) {
            let preceded_by_word = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            // `mxguard_*` in a comment is a pattern, not a name.
            if !preceded_by_word && !tail[..len].ends_with('_') {
                names.insert(tail[..len].to_string());
            }
            rest = &tail[len..];
        }
    }
    names
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

#[test]
fn every_metric_in_alerts_and_dashboard_exists_in_a_live_scrape() {
    let (internal, gw, admin) = start();
    send_traffic(&internal, &gw);
    let s = scrape_until(admin, "delivery", |s| {
        s.value("mxguard_relay_attempts_total", &[("result", "delivered")]) >= 1.0
    });
    let live = s.names();
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let used = metric_names_in(&deploy(file));
        assert!(
            used.len() >= 5,
            "{file} uses only {used:?}: did the name extraction break?"
        );
        let missing: Vec<&String> = used.iter().filter(|n| !live.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics a live scrape does not have: {missing:?}\nlive: {live:?}"
        );
    }
}

#[test]
fn deploy_configs_pass_check_with_one_fingerprint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut fingerprints = BTreeMap::new();
    for name in ["gw1", "gw2", "bk1"] {
        let path = format!("deploy/{name}.toml");
        let out = run_mxguard(root, &["check", "--config", &path]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "mxguard check --config {path} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fp = stdout
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|w| w.len() == 64)
            .unwrap_or_else(|| panic!("no fingerprint in:\n{stdout}"))
            .to_string();
        fingerprints.insert(name, fp);
    }
    let distinct: BTreeSet<&String> = fingerprints.values().collect();
    assert_eq!(
        distinct.len(),
        1,
        "the tier must run one policy: {fingerprints:?}"
    );
}

// ---------------------------------------------------------------------------------------
// promtool (interop; MXGUARD_INTEROP=1 makes a missing promtool a failure)
// ---------------------------------------------------------------------------------------

/// Runs `promtool ARGS...` in the repository root, with `stdin` from a file when given;
/// returns success and the combined output.
fn promtool(promtool: &Path, args: &[&str], stdin: Option<&Path>) -> (bool, String) {
    let mut cmd = match stdin {
        // run_with_timeout closes stdin; a shell redirect feeds the file instead.
        Some(file) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("f=$1; shift; exec \"$@\" < \"$f\"")
                .arg("sh")
                .arg(file)
                .arg(promtool)
                .args(args);
            c
        }
        None => {
            let mut c = Command::new(promtool);
            c.args(args);
            c
        }
    };
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn promtool_finds_no_problem_in_a_live_scrape() {
    let Some(tool) = interop_required("promtool") else {
        return;
    };
    let (internal, gw, admin) = start();
    send_traffic(&internal, &gw);
    scrape_until(admin, "delivery", |s| {
        s.value("mxguard_relay_attempts_total", &[("result", "delivered")]) >= 1.0
    });
    let file = gw.dir.join("scrape.prom");
    std::fs::write(&file, get(admin, "/metrics").body).unwrap();
    let (ok, output) = promtool(&tool, &["check", "metrics"], Some(&file));
    assert!(
        ok && output.trim().is_empty(),
        "promtool check metrics:\n{output}"
    );
}

#[test]
fn promtool_accepts_the_alert_rules_and_the_scrape_config() {
    let Some(tool) = interop_required("promtool") else {
        return;
    };
    let (ok, output) = promtool(&tool, &["check", "rules", "deploy/alerts.yml"], None);
    assert!(ok, "promtool check rules deploy/alerts.yml:\n{output}");
    let (ok, output) = promtool(&tool, &["check", "config", "deploy/prometheus.yml"], None);
    assert!(ok, "promtool check config deploy/prometheus.yml:\n{output}");
    let (ok, output) = promtool(&tool, &["test", "rules", "deploy/alerts.test.yml"], None);
    assert!(ok, "promtool test rules deploy/alerts.test.yml:\n{output}");
}

/// Every `expr` in a dashboard JSON value (panels, nested panels, annotations).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| dashboard_exprs(i, out)),
        _ => {}
    }
}

#[test]
fn promtool_parses_every_dashboard_query() {
    let Some(tool) = interop_required("promtool") else {
        return;
    };
    let text = std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "only {} queries found", exprs.len());
    // Grafana's variables replaced by what they expand to, each query a recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__range", "6h")
            .replace("$gateway", ".*");
        assert!(!e.contains('$'), "unexpanded variable in {e}");
        let quoted = serde_json::to_string(&e).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    let (ok, output) = promtool(&tool, &["check", "rules", file.to_str().unwrap()], None);
    assert!(ok, "a dashboard query does not parse:\n{output}");
}
