//! The admin listener's other endpoints over TCP: `/policy` and the fingerprint it shares
//! with the metrics (moved by a reload, kept by a broken one), and `/healthz` (ok, 503 with
//! an unwritable spool or while draining), unknown paths, methods and garbage.

mod common;

use common::admin::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
    // A scrape is not one instant: the info gauge and the counter are read one after the
    // other, so a scrape taken during the reload can show the new count with the old
    // fingerprint, or none. Wait for the settled state: the count, and only the new
    // fingerprint exported (an old one left behind never settles).
    let s = scrape_until(admin, "successful reload, only the new fingerprint", |s| {
        let fp = s.label_values("mxguard_policy_info", "fingerprint");
        s.value("mxguard_policy_reloads_total", &[("result", "success")]) >= 1.0
            && fp.len() == 1
            && fp != first
    });
    let now = s.label_values("mxguard_policy_info", "fingerprint");
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
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("ok\n"), "{}", r.body);
    assert!(r.body.contains("state: embedded up"), "{}", r.body);
    assert_eq!(get(admin, "/nothing-here").status, 404);
    assert_eq!(get(admin, "/metrics/extra").status, 404);
    assert_eq!(get(admin, "/message/not-kept").status, 404);
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
    let status = gw.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
}

#[test]
fn admin_listener_refuses_clients_outside_metrics_allow_and_follows_reloads() {
    let internal = InternalServer::start();
    let cfg = GatewayConfig::new(&internal).metrics_key("allow", "[\"192.0.2.0/24\"]");
    let gw = Gateway::start(cfg);
    let admin = admin_port(&gw);
    for path in ["/metrics", "/healthz", "/policy", "/nowhere"] {
        assert!(
            common::admin::refused(admin, path),
            "{path} from 127.0.0.1 outside metrics.allow"
        );
    }

    // Let loopback in: the reloaded configuration decides the next request.
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    write_atomically(
        &path,
        &text.replace("\"192.0.2.0/24\"", "\"192.0.2.0/24\", \"127.0.0.1\""),
    );
    gw.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || !refused(admin, "/healthz")),
        "loopback still refused after the reload"
    );
    assert_eq!(get(admin, "/healthz").status, 200);
    assert_eq!(get(admin, "/metrics").status, 200);
}

/// Regression (review): a page on another site, its name rebound to the gateway by DNS,
/// read the console through an operator's browser: the `Host` was never checked.
#[test]
fn a_request_naming_another_host_is_refused() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let admin = admin_port(&gw);
    let ask = |host: &str| http_naming(admin, "GET", "/", host).status;
    assert_eq!(ask("evil.example:9425"), 403, "a rebound name");
    assert_eq!(ask(&format!("127.0.0.1:{admin}")), 200, "an address");
    assert_eq!(ask("localhost"), 200, "localhost");
}
