//! `mxguard audit` end to end: the built binary against a dnsmasq serving test zones on a
//! loopback port, real mxguard gateways and Postfix's `smtp-sink` as MX targets.
//!
//! The gateways listen on 127.0.0.1 with random ports, so every zone resolves its MX hosts
//! to 127.0.0.1 and the audit gets the port with `--port`: one gateway (or sink) per check.
//! Tests that need dnsmasq or smtp-sink print `SKIP` without them and fail under
//! `MXGUARD_INTEROP=1`.

mod common;

use common::*;
use serde_json::Value;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every domain the test zones publish; the gateways relay all of them and know their
/// postmaster, so only the record shapes differ between audits.
const ZONE_DOMAINS: &[&str] = &[
    DOMAIN,
    "single.test",
    "unequal.test",
    "nomx.test",
    "nothing.test",
    "null.test",
    "odd.test",
    "tier.test",
    "apex.test",
];

/// The test zones (dnsmasq options).
fn zone() -> Vec<String> {
    [
        // Two front gateways at one preference.
        "--mx-host=example.test,gw1.example.test,10",
        "--mx-host=example.test,gw2.example.test,10",
        "--host-record=gw1.example.test,127.0.0.1",
        "--host-record=gw2.example.test,127.0.0.1",
        // The apex on a gateway's own address: probed as an MX, not again.
        "--host-record=example.test,127.0.0.1",
        // One MX host.
        "--mx-host=single.test,gw1.example.test,10",
        // A lone primary and a backup.
        "--mx-host=unequal.test,gw1.example.test,10",
        "--mx-host=unequal.test,gw2.example.test,20",
        // No MX: the domain's own address takes the mail.
        "--host-record=nomx.test,127.0.0.1",
        // A null MX (RFC 7505): preference 0, root exchange.
        "--dns-rr=null.test,15,000000",
        // An alias and an IP address as MX targets.
        "--mx-host=odd.test,alias.odd.test,10",
        "--mx-host=odd.test,127.0.0.1,10",
        "--cname=alias.odd.test,gw1.example.test",
        // Two gateways and a backup on another loopback address.
        "--mx-host=tier.test,gw1.tier.test,10",
        "--mx-host=tier.test,gw2.tier.test,10",
        "--mx-host=tier.test,bk1.tier.test,20",
        "--host-record=gw1.tier.test,127.0.0.1",
        "--host-record=gw2.tier.test,127.0.0.1",
        "--host-record=bk1.tier.test,127.0.0.2",
        // The gateways as MX, and the domain's own address on another host.
        "--mx-host=apex.test,gw1.example.test,10",
        "--mx-host=apex.test,gw2.example.test,10",
        "--host-record=apex.test,127.0.0.2",
    ]
    .map(String::from)
    .to_vec()
}

/// A private dnsmasq on a free loopback port, killed on drop.
struct Dnsmasq {
    port: u16,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Serves `records`; `None` (after printing SKIP) when dnsmasq is not installed.
    fn start(records: &[String]) -> Option<Dnsmasq> {
        let program = interop_required("dnsmasq")?;
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(&program)
                .args(["--keep-in-foreground", "--conf-file=/dev/null"])
                .args(["--no-resolv", "--no-hosts", "--bind-interfaces"])
                .arg("--listen-address=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--pid-file={}", dir.path().join("pid").display()))
                // Names under .test that are not in the zone get NXDOMAIN, not REFUSED.
                .arg("--local=/test/")
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dnsmasq");
            let mut child = ChildGuard(child);
            let ready = wait_until(Duration::from_secs(10), || {
                answers_dns(port) || matches!(child.0.try_wait(), Ok(Some(_)))
            });
            // An early exit means another process took the port between pick and bind.
            if ready && matches!(child.0.try_wait(), Ok(None)) {
                return Some(Dnsmasq {
                    port,
                    _child: child,
                    _dir: dir,
                });
            }
        }
        panic!("dnsmasq did not start");
    }

    fn resolver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Whether a DNS server on 127.0.0.1:`port` answers a query for `example.test A`.
fn answers_dns(port: u16) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["example", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut buf = [0u8; 512];
    socket.send_to(&query, ("127.0.0.1", port)).is_ok() && socket.recv(&mut buf).is_ok()
}

/// Postfix's smtp-sink on a free port of 127.0.0.1: accepts every recipient and every
/// message.
fn smtp_sink() -> Option<(ChildGuard, u16)> {
    let port = free_port();
    smtp_sink_on("127.0.0.1", port).map(|sink| (sink, port))
}

/// smtp-sink on `ip`:`port`.
fn smtp_sink_on(ip: &str, port: u16) -> Option<ChildGuard> {
    let program = interop_required("smtp-sink")?;
    let child = Command::new(program)
        .args(["-u", "nobody"])
        .arg(format!("{ip}:{port}"))
        .arg("16")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn smtp-sink");
    let guard = ChildGuard(child);
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            ip, port
        ))
        .is_ok()),
        "smtp-sink did not start on {ip}:{port}"
    );
    Some(guard)
}

/// A self-signed certificate for the gateway's hostname (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![HOSTNAME.to_string()]).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

/// A gateway as a careful operator runs it: STARTTLS, recipient lists for every zone
/// domain (so unknown recipients are refused), GTUBE on, `rules` from `rules/local.cf`.
fn careful_gateway(internal: &InternalServer, rules: &str) -> Gateway {
    let mut cfg = GatewayConfig::new(internal)
        .toml("[policy]\nrules_dir = \"rules\"\ngtube = true\n")
        .file("rules/local.cf", rules);
    cfg.domains = ZONE_DOMAINS.iter().map(|d| d.to_string()).collect();
    for domain in ZONE_DOMAINS {
        cfg.recipient_lists
            .insert(domain.to_string(), vec!["postmaster".into(), "user".into()]);
    }
    cfg.tls = Some(certificate());
    Gateway::start(cfg)
}

const RULES: &str = "body AUDIT_TOKEN /zz-audit-token-zz/\nscore AUDIT_TOKEN 1.0\n";

/// Runs `mxguard audit ARGS…`; exit code, stdout, stderr.
fn audit(args: &[&str]) -> (i32, String, String) {
    let out = run_mxguard(Path::new("."), &[&["audit"], args].concat());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `mxguard audit ARGS… --json`; exit code and the document.
fn audit_json(args: &[&str]) -> (i32, Value) {
    let (code, stdout, stderr) = audit(&[args, &["--json"]].concat());
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("audit printed no JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, doc)
}

/// The finding kinds of a report, in order.
fn kinds(doc: &Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings array: {doc:#}"))
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn finding<'a>(doc: &'a Value, kind: &str) -> &'a Value {
    doc["findings"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} finding in {doc:#}"))
}

#[test]
fn clean_tier_with_equal_front_preferences_refusing_gtube_exits_0() {
    let Some(dns) = Dnsmasq::start(&zone()) else {
        return;
    };
    let internal = InternalServer::start();
    let gw1 = careful_gateway(&internal, RULES);
    let gw2 = careful_gateway(&internal, RULES);
    let port = gw1.port.to_string();
    let admin1 = format!("gw1.example.test=127.0.0.1:{}", admin_port(&gw1));
    let admin2 = format!("gw2.example.test=127.0.0.1:{}", admin_port(&gw2));
    let args = [
        DOMAIN,
        "--resolver",
        &dns.resolver(),
        "--port",
        &port,
        "--admin",
        &admin1,
        "--admin",
        &admin2,
    ];
    let (code, doc) = audit_json(&args);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["findings"], Value::Array(vec![]), "{doc:#}");
    assert_eq!(doc["summary"]["serious"], 0);
    assert_eq!(doc["summary"]["exit_code"], 0);
    assert_eq!(doc["mx"]["kind"], "published");
    assert_eq!(doc["front_tier"]["shape"], "equal", "{doc:#}");
    assert_eq!(doc["front_tier"]["preference"], 10);
    assert_eq!(doc["front_tier"]["hosts"], 2);
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "one address per MX target: {doc:#}");
    assert_eq!(doc["apex"], Value::Array(vec![]), "{doc:#}");
    for host in hosts {
        assert_eq!(host["session"]["state"], "open", "{host:#}");
        assert_eq!(host["session"]["tls"], true, "{host:#}");
        assert_eq!(host["unknown_recipient"]["outcome"], "refused", "{host:#}");
        assert_eq!(host["unknown_recipient"]["stage"], "rcpt", "{host:#}");
        assert_eq!(host["relay"]["outcome"], "refused", "{host:#}");
        assert_eq!(host["gtube"]["outcome"], "refused", "{host:#}");
        assert_eq!(host["gtube"]["stage"], "end_of_data", "{host:#}");
    }
    let fingerprints = doc["fingerprints"].as_array().unwrap();
    assert_eq!(fingerprints.len(), 2);
    assert!(fingerprints[0]["fingerprint"].is_string(), "{doc:#}");
    assert_eq!(
        fingerprints[0]["fingerprint"],
        fingerprints[1]["fingerprint"]
    );
    assert!(
        internal.messages().is_empty(),
        "the GTUBE probe must not reach the internal server"
    );

    // The same audit for people: a table with the same conclusions.
    let (code, table, _) = audit(&args);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("front tier: 2 hosts at preference 10 (equal)"),
        "{table}"
    );
    assert!(table.contains("refused 550 at end of data"), "{table}");
    assert!(table.contains("0 serious"), "{table}");
}

#[test]
fn smtp_sink_accepting_everything_is_serious() {
    let Some(dns) = Dnsmasq::start(&zone()) else {
        return;
    };
    let Some((_sink, port)) = smtp_sink() else {
        return;
    };
    let port = port.to_string();
    let (code, doc) = audit_json(&[
        "single.test",
        "--resolver",
        &dns.resolver(),
        "--port",
        &port,
    ]);
    assert_eq!(code, 1, "{doc:#}");
    let found = kinds(&doc);
    for kind in [
        "gtube_accepted",
        "unknown_recipient_accepted",
        "relay_accepted",
    ] {
        assert_eq!(finding(&doc, kind)["severity"], "serious", "{kind}");
    }
    assert!(found.contains(&"single_mx".to_owned()), "{found:?}");
    assert!(found.contains(&"no_starttls".to_owned()), "{found:?}");
    assert_eq!(doc["hosts"][0]["gtube"]["outcome"], "accepted");
    assert_eq!(doc["hosts"][0]["gtube"]["stage"], "end_of_data");
    assert!(doc["summary"]["serious"].as_u64() >= Some(3), "{doc:#}");

    let (code, table, _) = audit(&[
        "single.test",
        "--resolver",
        &dns.resolver(),
        "--port",
        &port,
    ]);
    assert_eq!(code, 1, "{table}");
    assert!(table.contains("ACCEPTED 250 at end of data"), "{table}");
}

/// The test zones, a careful gateway on 127.0.0.1 and a plain smtp-sink on the same port
/// of 127.0.0.2 (where `bk1.tier.test` and `apex.test` point); `None` (SKIP) without
/// dnsmasq or smtp-sink.
struct GatewayAndSink {
    dns: Dnsmasq,
    /// The port both listen on, for `--port`.
    port: String,
    _internal: InternalServer,
    _gw: Gateway,
    _sink: ChildGuard,
}

impl GatewayAndSink {
    fn start() -> Option<GatewayAndSink> {
        let dns = Dnsmasq::start(&zone())?;
        let internal = InternalServer::start();
        let gw = careful_gateway(&internal, RULES);
        let sink = smtp_sink_on("127.0.0.2", gw.port)?;
        Some(GatewayAndSink {
            dns,
            port: gw.port.to_string(),
            _internal: internal,
            _gw: gw,
            _sink: sink,
        })
    }
}

#[test]
fn backup_mx_that_does_not_filter_is_named() {
    // Held to the end: dropping it stops the gateway and the sink.
    let Some(setup) = GatewayAndSink::start() else {
        return;
    };
    let (dns, port) = (&setup.dns, &setup.port);
    let (code, doc) = audit_json(&["tier.test", "--resolver", &dns.resolver(), "--port", port]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["front_tier"]["shape"], "equal", "{doc:#}");
    let serious: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "serious")
        .collect();
    let serious_kinds: Vec<&str> = serious.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(
        serious_kinds,
        [
            "unknown_recipient_accepted",
            "relay_accepted",
            "gtube_accepted"
        ],
        "{doc:#}"
    );
    let backup = format!("bk1.tier.test 127.0.0.2:{port}");
    assert!(
        serious.iter().all(|f| f["subject"] == backup.as_str()),
        "{doc:#}"
    );
    for host in doc["hosts"].as_array().unwrap() {
        let expected = if host["target"] == "bk1.tier.test" {
            "accepted"
        } else {
            "refused"
        };
        assert_eq!(host["gtube"]["outcome"], expected, "{host:#}");
    }
}

/// Regression (README promised it): the domain's own address was probed only when no MX
/// was published, so an smtp-sink on the apex host (a forgotten MTA on the web server)
/// went unreported while spammers connecting there skipped the tier.
#[test]
fn an_smtp_server_on_the_domain_own_address_is_named() {
    // Held to the end: dropping it stops the gateway and the sink.
    let Some(setup) = GatewayAndSink::start() else {
        return;
    };
    let (dns, port) = (&setup.dns, &setup.port);
    let (code, doc) = audit_json(&["apex.test", "--resolver", &dns.resolver(), "--port", port]);
    assert_eq!(code, 1, "{doc:#}");
    let apex = format!("apex.test 127.0.0.2:{port}");
    let apex_finding = finding(&doc, "apex_takes_smtp");
    assert_eq!(apex_finding["severity"], "warning");
    assert_eq!(apex_finding["subject"], apex.as_str());
    assert_eq!(finding(&doc, "gtube_accepted")["subject"], apex.as_str());
    assert_eq!(doc["apex"][0]["gtube"]["outcome"], "accepted", "{doc:#}");
    for host in doc["hosts"].as_array().unwrap() {
        assert_eq!(host["gtube"]["outcome"], "refused", "{host:#}");
    }
    let (code, table, _) = audit(&["apex.test", "--resolver", &dns.resolver(), "--port", port]);
    assert_eq!(code, 1, "{table}");
    assert!(table.contains("apex_takes_smtp"), "{table}");
    assert!(table.contains("apex.test (apex)"), "{table}");
}

#[test]
fn single_mx_and_unequal_preferences_are_warnings() {
    let Some(dns) = Dnsmasq::start(&zone()) else {
        return;
    };
    let internal = InternalServer::start();
    let gw = careful_gateway(&internal, RULES);
    let port = gw.port.to_string();
    let resolver = dns.resolver();
    // An admin endpoint nobody listens on: a warning, and nothing left to compare.
    let admin = format!("gw1.example.test=127.0.0.1:{}", admin_port(&gw));
    let gone = format!("gone=127.0.0.1:{}", free_port());

    let (code, doc) = audit_json(&[
        "single.test",
        "--resolver",
        &resolver,
        "--port",
        &port,
        "--admin",
        &admin,
        "--admin",
        &gone,
    ]);
    assert_eq!(code, 0, "warnings alone exit 0: {doc:#}");
    assert_eq!(doc["front_tier"]["shape"], "single", "{doc:#}");
    assert_eq!(finding(&doc, "single_mx")["severity"], "warning");
    assert_eq!(finding(&doc, "admin_unreachable")["severity"], "warning");
    assert!(
        finding(&doc, "admin_unreachable")["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("gone ")),
        "{doc:#}"
    );
    assert_eq!(
        finding(&doc, "fingerprint_not_compared")["severity"],
        "info"
    );
    assert_eq!(doc["hosts"][0]["gtube"]["outcome"], "refused");

    let (code, doc) = audit_json(&["unequal.test", "--resolver", &resolver, "--port", &port]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["front_tier"]["shape"], "unequal", "{doc:#}");
    assert_eq!(
        doc["front_tier"]["preferences"],
        serde_json::json!([10, 20])
    );
    assert_eq!(kinds(&doc), vec!["unequal_front_preferences"], "{doc:#}");
}

#[test]
fn null_mx_and_missing_mx_are_reported() {
    let Some(dns) = Dnsmasq::start(&zone()) else {
        return;
    };
    let internal = InternalServer::start();
    let gw = careful_gateway(&internal, RULES);
    let port = gw.port.to_string();
    let resolver = dns.resolver();

    let (code, doc) = audit_json(&["null.test", "--resolver", &resolver, "--port", &port]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["mx"]["kind"], "null", "{doc:#}");
    assert_eq!(kinds(&doc), vec!["null_mx"]);
    assert_eq!(
        doc["hosts"],
        Value::Array(vec![]),
        "a null MX is not probed"
    );

    // No MX: the domain's own address is the mail host, and it is probed as one.
    let (code, doc) = audit_json(&["nomx.test", "--resolver", &resolver, "--port", &port]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["mx"]["kind"], "implicit", "{doc:#}");
    assert_eq!(finding(&doc, "no_mx")["severity"], "warning");
    assert_eq!(doc["hosts"][0]["target"], "nomx.test");
    assert_eq!(doc["hosts"][0]["gtube"]["outcome"], "refused", "{doc:#}");

    // Neither MX nor address: no mail can arrive, which is serious.
    let (code, doc) = audit_json(&["nothing.test", "--resolver", &resolver, "--port", &port]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(finding(&doc, "no_reachable_mx")["severity"], "serious");
    assert!(kinds(&doc).contains(&"target_without_address".to_owned()));
}

#[test]
fn cname_and_ip_literal_targets_are_reported() {
    let Some(dns) = Dnsmasq::start(&zone()) else {
        return;
    };
    let internal = InternalServer::start();
    let gw = careful_gateway(&internal, RULES);
    let port = gw.port.to_string();
    let (code, doc) = audit_json(&["odd.test", "--resolver", &dns.resolver(), "--port", &port]);
    assert_eq!(code, 0, "{doc:#}");
    let alias = finding(&doc, "cname_target");
    assert_eq!(alias["subject"], "alias.odd.test");
    assert!(
        alias["detail"]
            .as_str()
            .is_some_and(|d| d.contains("gw1.example.test")),
        "{alias:#}"
    );
    assert_eq!(finding(&doc, "ip_literal_target")["subject"], "127.0.0.1");
    // Both are still probed: a sender (or a spammer) can use them.
    assert_eq!(doc["hosts"].as_array().map(Vec::len), Some(2), "{doc:#}");
}

#[test]
fn differing_fingerprints_across_the_tier_exit_1() {
    let Some(dns) = Dnsmasq::start(&zone()) else {
        return;
    };
    let internal = InternalServer::start();
    let gw1 = careful_gateway(&internal, RULES);
    // The same rules with one extra score: a tier member that drifted.
    let drifted = format!("{RULES}body AUDIT_EXTRA /zz-extra-zz/\nscore AUDIT_EXTRA 2.5\n");
    let gw2 = careful_gateway(&internal, &drifted);
    let admin1 = format!("gw1.example.test=127.0.0.1:{}", admin_port(&gw1));
    let admin2 = format!("gw2.example.test=127.0.0.1:{}", admin_port(&gw2));
    let port = gw1.port.to_string();
    let (code, doc) = audit_json(&[
        DOMAIN,
        "--resolver",
        &dns.resolver(),
        "--port",
        &port,
        "--admin",
        &admin1,
        "--admin",
        &admin2,
    ]);
    assert_eq!(code, 1, "{doc:#}");
    let mismatch = finding(&doc, "fingerprint_mismatch");
    assert_eq!(mismatch["severity"], "serious");
    assert!(
        mismatch["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("gw2.example.test ")),
        "the tie goes to the first endpoint named: {mismatch:#}"
    );
    let fingerprints = doc["fingerprints"].as_array().unwrap();
    assert_ne!(
        fingerprints[0]["fingerprint"],
        fingerprints[1]["fingerprint"]
    );
    assert_eq!(
        kinds(&doc),
        vec!["fingerprint_mismatch"],
        "nothing else is wrong: {doc:#}"
    );
}

#[test]
fn dns_server_not_answering_exits_2() {
    // Bound on UDP and TCP but never answering: queries go nowhere, quickly refused by
    // nothing, so the audit must give up at its timeout.
    let (udp, tcp) = loop {
        let port = free_port();
        let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            break (udp, tcp);
        }
    };
    let resolver = udp.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = audit(&[DOMAIN, "--resolver", &resolver, "--timeout", "1s"]);
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.is_empty(),
        "no report without an MX answer: {stdout}"
    );
    assert!(stderr.contains("cannot resolve the MX records"), "{stderr}");
    // Regression (review of the CLI): a `--config` that is missing or broken was skipped
    // (no admin endpoints, no fingerprints compared) and the audit could exit 0. It cannot
    // run as asked: exit 2, before any lookup.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("bad.toml"), "[relay\n").unwrap();
    let bad = broken.path().join("bad.toml");
    let missing = broken.path().join("missing.toml");
    for config in [&bad, &missing] {
        let config = config.to_str().unwrap();
        let (code, _, stderr) = audit(&[DOMAIN, "--config", config, "--resolver", &resolver]);
        assert_eq!(code, 2, "{config}: {stderr}");
        assert!(stderr.contains(config), "{stderr}");
    }
    drop((udp, tcp));
}

#[test]
fn bad_arguments_exit_2() {
    let closed = format!("127.0.0.1:{}", free_port());
    for args in [
        vec![DOMAIN, "--admin", "no-address"],
        vec![DOMAIN, "--admin", "gw1=not-an-address"],
        vec![DOMAIN, "--resolver", "nameserver.example"],
        vec![DOMAIN, "--port", "70000"],
        vec![DOMAIN, "--timeout", "0s"],
        vec!["not a domain", "--resolver", &closed],
        vec![DOMAIN, "--resolver", &closed, "--rcpt", "no-at-sign"],
        vec![DOMAIN, "--resolver", &closed, "--rcpt", "a>b@example.test"],
        vec![],
    ] {
        let (code, stdout, stderr) = audit(&args);
        assert_eq!(code, 2, "{args:?}: stdout {stdout}\nstderr {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}
