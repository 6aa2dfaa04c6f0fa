//! The tier console in a real browser: headless Chromium (`--dump-dom`) loads `/` of a
//! tier member's admin listener, finds its peer and the recent messages, follows a
//! message's link and sees the per-rule explanation; a client outside `metrics.allow` is
//! closed without an answer for the console as for every admin path.

mod common;

use common::admin::scrape_until;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The page as Chromium renders it (DOM after parsing), or panics with its output.
fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(url),
        Duration::from_secs(60),
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom {url} failed: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[test]
fn the_console_renders_peers_messages_and_explanations_in_a_browser() {
    let Some(chromium) = interop_required("chromium") else {
        return;
    };
    let internal = InternalServer::start();
    let peer = Gateway::start(GatewayConfig::new(&internal));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("tier.key");
    fs::write(&key, b"console-test-key").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let tier = format!(
        "[tier]\nname = \"gw1\"\nsecret_file = {:?}\nheartbeat_interval = \"1s\"\n\
[[tier.peers]]\nname = \"bk1\"\nsmtp = \"127.0.0.2:25\"\nadmin = \"127.0.0.1:{}\"\nrole = \"backup\"\n",
        key.display().to_string(),
        admin_port(&peer)
    );
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&tier)
            .toml("[policy]\nrules_dir = \"rules\"\n")
            .file(
                "rules/local.cf",
                "body CONSOLE_T /zz-console-zz/\ndescribe CONSOLE_T A rule the console explains\nscore CONSOLE_T 2.5\n",
            ),
    );
    let admin = admin_port(&gw);
    scrape_until(admin, "bk1 seen up", |s| {
        s.value("mxguard_tier_peer_up", &[("peer", "bk1")]) == 1.0
    });
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "s@sender.test",
        &["u@example.test"],
        &message("console@t", "console", "zz-console-zz"),
    )
    .expect(250, "2.0.0");
    c.send_mail(
        "s@sender.test",
        &["u@example.test"],
        &message("console-gtube@t", "console", GTUBE),
    )
    .expect(550, "5.7.1");
    c.quit();

    let dom = dump_dom(&chromium, &format!("http://127.0.0.1:{admin}/"));
    assert!(dom.contains("mxguard gw1"), "{dom}");
    let peers = dom.split("id=\"peers\"").nth(1).expect("no peers table");
    assert!(peers.contains("bk1") && peers.contains(">up<"), "{peers}");
    let messages = dom
        .split("id=\"messages\"")
        .nth(1)
        .expect("no messages table");
    assert!(
        messages.contains("CONSOLE_T") && messages.contains("GTUBE"),
        "{messages}"
    );
    assert!(
        messages.contains("reject") && messages.contains("accept"),
        "{messages}"
    );
    // Follow the link of the message that hit CONSOLE_T.
    let row = messages
        .split("<tr>")
        .find(|r| r.contains("CONSOLE_T"))
        .expect("no row for the clean message");
    let href = row
        .split("href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("no link in the row");
    assert!(href.starts_with("/message/"), "{href}");
    let detail = dump_dom(&chromium, &format!("http://127.0.0.1:{admin}{href}"));
    let explanation = detail
        .split("id=\"explanation\"")
        .nth(1)
        .expect("no explanation table");
    assert!(explanation.contains("CONSOLE_T"), "{explanation}");
    assert!(
        explanation.contains("A rule the console explains"),
        "{explanation}"
    );
    assert!(explanation.contains("2.5"), "{explanation}");
}

#[test]
fn the_console_is_refused_outside_metrics_allow() {
    let internal = InternalServer::start();
    let gw =
        Gateway::start(GatewayConfig::new(&internal).metrics_key("allow", "[\"192.0.2.0/24\"]"));
    let admin = admin_port(&gw);
    assert!(common::admin::refused(admin, "/"));
    assert!(common::admin::refused(admin, "/message/anything"));
}

/// Regression (review): tier peers need `/healthz` and `/policy`, so `metrics.allow` takes
/// the tier's network, and every host on it (the internal server too) read the console's
/// senders, recipients and subjects. `metrics.console_allow` narrows who reads those pages.
#[test]
fn the_console_can_be_narrower_than_the_probes() {
    let internal = InternalServer::start();
    let gw = Gateway::start(
        GatewayConfig::new(&internal).metrics_key("console_allow", "[\"192.0.2.0/24\"]"),
    );
    let admin = admin_port(&gw);
    assert_eq!(common::admin::get(admin, "/").status, 403);
    assert_eq!(common::admin::get(admin, "/message/anything").status, 403);
    assert_eq!(common::admin::get(admin, "/healthz").status, 200);
    assert_eq!(common::admin::get(admin, "/policy").status, 200);
    assert_eq!(common::admin::get(admin, "/metrics").status, 200);
}
