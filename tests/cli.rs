//! The command line around the server: `check` validates configs, `queue` inspects and
//! manages the spool of a running gateway.

mod common;

use common::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

fn output_text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_accepts_the_test_config() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let out = gw.cli(&["check"]);
    assert!(out.status.success(), "{}", output_text(&out));
}

/// `mxguard check --config CFG`, run in `dir`.
fn check(dir: &std::path::Path, cfg: &std::path::Path) -> std::process::Output {
    run_with_timeout(
        Command::new(mxguard_bin())
            .args(["check", "--config"])
            .arg(cfg)
            .current_dir(dir),
        Duration::from_secs(30),
    )
}

#[test]
fn check_reports_unknown_keys_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    fs::write(
        &cfg,
        "[server]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.test\"\nno_such_key = 1\n\
         [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n",
    )
    .unwrap();
    let out = check(dir.path(), &cfg);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains("no_such_key"),
        "error does not name the key: {text}"
    );
}

/// Regression (review): with a message size above what one clamd stream takes, a big
/// message was scanned only up to `max_stream_bytes`, an EICAR after that passed with
/// `ANTIVIRUS_TRUNCATED`, and nothing said so before it happened.
#[test]
fn check_warns_when_clamd_cannot_read_the_largest_message_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("av.toml");
    let base = "[server]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.test\"\n\
         [server.limits]\nmessage_size_bytes = 41943040\n\
         [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
         [antivirus]\nclamd = \"tcp://127.0.0.1:3310\"\n";
    fs::write(&cfg, base).unwrap();
    let text = output_text(&check(dir.path(), &cfg));
    assert!(
        text.contains("warning: server.limits.message_size_bytes (41943040) is above"),
        "{text}"
    );
    fs::write(&cfg, format!("{base}max_stream_bytes = 41943040\n")).unwrap();
    let text = output_text(&check(dir.path(), &cfg));
    assert!(!text.contains("max_stream_bytes ("), "{text}");
}

/// Regression (review of the configuration): a policy action keyed by a misspelt symbol
/// was accepted without a word, and the refusal it was meant for never applied.
#[test]
fn check_warns_of_actions_that_name_no_rule_or_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("actions.toml");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.test\"\n\
             [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
             [policy]\nrules_dir = \"{rules}\"\n\
             [policy.actions]\nATTACH_BLOCKED_EXT = \"reject\"\nATTACH_BLOCKED_EXTS = \"reject\"\n\
             attach_blocked_ext = \"reject\"\n\
             SPF_FAIL = \"reject\"\n"
        ),
    )
    .unwrap();
    let out = check(dir.path(), &cfg);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning: policy.actions.ATTACH_BLOCKED_EXTS:"),
        "{text}"
    );
    assert!(
        text.contains("warning: policy.actions.attach_blocked_ext:"),
        "{text}"
    );
    assert_eq!(
        text.matches("warning: policy.actions.").count(),
        2,
        "{text}"
    );
    // Review of the fix: with no rules files, the checks' own symbols were called typos,
    // though their actions apply.
    fs::write(
        &cfg,
        "[server]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.test\"\n\
         [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
         [policy.actions]\nATTACH_BLOCKED_EXT = \"reject\"\nVIRUS_FOUND = \"reject\"\n\
         MX_BYPASS_BACKUP = \"tempfail\"\nSPF_FAIL = \"reject\"\n",
    )
    .unwrap();
    let text = output_text(&check(dir.path(), &cfg));
    assert!(!text.contains("warning: policy.actions."), "{text}");
}

/// Regression (review): a certificate that does not load was named on stderr, and then
/// `check` printed "configuration ok" and `starttls: offered` (exiting 1).
#[test]
fn check_does_not_call_a_config_with_a_broken_certificate_ok() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("cert.pem"), "not a certificate\n").unwrap();
    fs::write(dir.path().join("key.pem"), "not a key\n").unwrap();
    let cfg = dir.path().join("tls.toml");
    fs::write(
        &cfg,
        "[server]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.test\"\n\
         [server.tls]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\n\
         [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n",
    )
    .unwrap();
    let out = check(dir.path(), &cfg);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("server.tls"), "{text}");
    assert!(!text.contains("configuration ok"), "{text}");
}

/// Runs `check` on a minimal config whose rules directory holds `rules` as `local.cf`.
fn check_with_rules(rules: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    fs::create_dir(&rules_dir).unwrap();
    fs::write(rules_dir.join("local.cf"), rules).unwrap();
    let cfg = dir.path().join("mxguard.toml");
    fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"mx.example.test\"\n\
             [relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
             [policy]\nrules_dir = '{}'\n",
            rules_dir.display()
        ),
    )
    .unwrap();
    check(dir.path(), &cfg)
}

#[test]
fn check_fails_on_a_regex_no_engine_compiles_naming_file_and_line() {
    let out =
        check_with_rules("body GOOD /fine/\nscore GOOD 1\nbody BAD /unclosed(/\nscore BAD 1\n");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("local.cf:3: error: body BAD: invalid regex"),
        "stderr does not name local.cf:3: {}",
        output_text(&out)
    );
}

#[test]
fn check_passes_valid_perl_regex_the_engines_lack_with_a_note() {
    // Branch reset is valid Perl (SpamAssassin accepts it); the rule is skipped, not an error.
    let out = check_with_rules("body BRANCH_RESET /(?|foo|bar)/\nbody GOOD /fine/\n");
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("local.cf:1: skipped: body BRANCH_RESET: regex not supported"),
        "no note for local.cf:1: {}",
        output_text(&out)
    );
}

#[test]
fn queue_list_show_delete() {
    let internal = InternalServer::down();
    // Retried in ten minutes: a deleted message must not be counted until then.
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .relay_key("retry_initial", "\"10m\"")
            .relay_key("retry_max", "\"1h\""),
    );
    let mut ids = Vec::new();
    for i in 0..2 {
        let mut c = SmtpClient::connect_ehlo(gw.port);
        let r = c.send_mail(
            "s@sender.test",
            &["queued@example.test"],
            &message(&format!("q{i}@test"), "q", "b"),
        );
        r.expect(250, "2.0.0");
        ids.push(queue_id(&r).expect("queue id in the 250 reply"));
        c.quit();
    }
    let list = gw.cli(&["queue", "list"]);
    assert!(list.status.success(), "{}", output_text(&list));
    let text = String::from_utf8_lossy(&list.stdout).to_string();
    for id in &ids {
        assert!(text.contains(id.as_str()), "queue list lacks {id}:\n{text}");
    }
    let show = gw.cli(&["queue", "show", &ids[0]]);
    assert!(show.status.success(), "{}", output_text(&show));
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("queued@example.test"),
        "{}",
        output_text(&show)
    );
    // Both deferred (the internal server is down) before one is deleted: each by an
    // attempt, or the later one without (every server held back after the first refusal:
    // a suspension, which is no attempt).
    let admin = admin_port(&gw);
    let metric =
        |name: &str, labels: &[(&str, &str)]| common::admin::scrape(admin).value(name, labels);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let attempts = metric("mxguard_relay_attempts_total", &[("result", "deferred")]);
            let suspended = gw
                .logs()
                .matches("delivery suspended: every internal")
                .count();
            attempts + suspended as f64 >= 2.0
        }),
        "never deferred:\n{}",
        gw.logs()
    );
    let del = gw.cli(&["queue", "delete", &ids[0]]);
    assert!(del.status.success(), "{}", output_text(&del));
    // Regression (review): the gateway counted a deleted deferred message until its next
    // retry (up to an hour), so `MxguardSpoolOldMessages` kept firing after the fix.
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            "mxguard_spool_messages",
            &[]
        ) == 1.0),
        "the deleted message is still counted: {}",
        metric("mxguard_spool_messages", &[])
    );
    let list = gw.cli(&["queue", "list"]);
    let text = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        !text.contains(ids[0].as_str()),
        "deleted message still listed:\n{text}"
    );
    assert!(
        text.contains(ids[1].as_str()),
        "other message gone:\n{text}"
    );
    let flush = gw.cli(&["queue", "flush"]);
    assert!(flush.status.success(), "{}", output_text(&flush));
}

/// Regression (operator walkthrough): a second `serve` on a running gateway's configuration
/// failed at its port, before the spool's lock, and said only "Address already in use".
#[test]
fn a_second_serve_on_the_same_configuration_names_the_running_gateway() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let out = gw.cli(&["serve"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("cannot bind") && text.contains("is in use by another running gateway"),
        "{text}"
    );
}

#[test]
fn serve_with_json_logs_writes_json_lines() {
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal);
    cfg.serve_args = vec!["--log-format".into(), "json".into()];
    let gw = Gateway::start(cfg);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("json-log@test", "j", "b"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("json-log@test");
    let log = fs::read_to_string(gw.log_path()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log output at all");
    for l in &lines {
        assert!(
            l.starts_with('{') && l.ends_with('}'),
            "not a JSON log line: {l}"
        );
    }
}
