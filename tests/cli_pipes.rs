//! Every CLI verb behind a closed pipe (`mxguard check | head -1`): it ends quietly, like
//! any Unix filter (success, or killed by SIGPIPE), never with a panic (exit 101); and
//! `serve` keeps running and relaying when its log reader goes away.

mod common;

use common::*;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a verb may do when its output goes nowhere: succeed, fail (1), refuse its
/// arguments (2, clap's usage error), or die of SIGPIPE; never panic.
fn ended_quietly(status: std::process::ExitStatus, stderr: &str) -> bool {
    let quiet_code = matches!(status.code(), Some(0..=2));
    let sigpipe = status.signal() == Some(libc::SIGPIPE);
    (quiet_code || sigpipe) && !stderr.contains("panicked")
}

/// A pipe whose reading end is already closed: the first write gets EPIPE (or SIGPIPE).
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer
}

/// Runs `mxguard ARGS --config CONFIG` in the gateway's directory with stdout (and, when
/// `close_stderr`, stderr too) going into a closed pipe. Returns (status, stderr).
fn run_closed(
    gw: &Gateway,
    args: &[&str],
    close_stderr: bool,
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(mxguard_bin());
    cmd.args(args)
        .arg("--config")
        .arg(gw.config_path())
        .current_dir(&gw.dir)
        .stdin(Stdio::null())
        .stdout(closed_pipe());
    if close_stderr {
        cmd.stderr(closed_pipe());
    } else {
        cmd.stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn mxguard");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st, stderr);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("mxguard {args:?} hung with a closed stdout");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

const RULES: &str = "body QUARANTINE_ME /zz-quarantine-me-zz/\nscore QUARANTINE_ME 12\n";
const POLICY: &str = "[policy]\nrules_dir = \"rules\"\nquarantine = 10.0\nreject = 15.0\n";

/// Regression: `mxguard check | head -1` panicked on the closed pipe (exit 101).
#[test]
fn every_cli_verb_exits_quietly_into_a_closed_pipe() {
    let internal = InternalServer::down();
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(POLICY)
            .file("rules/local.cf", RULES),
    );
    // One message waiting in the queue (the internal server is down), one in quarantine.
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let queued = c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("pipe-q@test", "queued", "waiting"),
    );
    let queued = queue_id(&queued).expect("queue id");
    let held = c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("pipe-h@test", "held", "zz-quarantine-me-zz"),
    );
    let held = queue_id(&held).expect("queue id");
    c.quit();
    let msg = gw.dir.join("msg.eml");
    std::fs::write(&msg, message("scan@test", "scan me", "zz-quarantine-me-zz")).unwrap();
    let msg = msg.to_str().unwrap();

    let verbs: Vec<Vec<&str>> = vec![
        vec!["check"],
        vec!["scan", msg],
        vec!["scan", "--json", msg],
        vec!["scan", "--explain", msg],
        vec!["queue", "list"],
        vec!["queue", "show", &queued],
        vec!["queue", "show", "NO-SUCH-ID"],
        vec!["quarantine", "list"],
        vec!["quarantine", "show", &held],
        vec!["queue", "flush"],
        vec!["check", "--tier"],
        vec!["stamp", "verify", msg],
        // A resolver port nobody listens on: the audit fails at once and reports it.
        vec![
            "audit",
            "example.test",
            "--resolver",
            "127.0.0.1:9",
            "--timeout",
            "500ms",
        ],
        vec![
            "audit",
            "--json",
            "example.test",
            "--resolver",
            "127.0.0.1:9",
            "--timeout",
            "500ms",
        ],
        vec!["--help"],
        vec!["--version"],
        vec!["help", "scan"],
        vec!["no-such-verb"],
    ];
    let mut failures = Vec::new();
    for close_stderr in [false, true] {
        for args in &verbs {
            let (status, stderr) = run_closed(&gw, args, close_stderr);
            println!("{args:?} (stderr closed: {close_stderr}) -> {status}");
            if !ended_quietly(status, &stderr) {
                failures.push(format!(
                    "{args:?} (stderr closed: {close_stderr}): {status}\n{stderr}"
                ));
            }
        }
    }
    // Regression (review of the CLI): a full disk under stdout (`scan --json > file`)
    // panicked (exit 101, a backtrace, the file silently cut). It ends with one line.
    for args in &verbs {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = Command::new(mxguard_bin())
            .args(args)
            .arg("--config")
            .arg(gw.config_path())
            .current_dir(&gw.dir)
            .stdin(Stdio::null())
            .stdout(full)
            .output()
            .expect("spawn mxguard");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !ended_quietly(out.status, &stderr) {
            failures.push(format!("{args:?} > /dev/full: {}\n{stderr}", out.status));
        }
        // A listing that could not be written did not do its job.
        let lists = args
            .first()
            .is_some_and(|v| ["check", "scan", "queue", "quarantine"].contains(v));
        if lists && out.status.success() {
            failures.push(format!("{args:?} > /dev/full exited 0"));
        }
    }
    // Both stdout and stderr full: the report of the failure fails too, and must not
    // abort the process (SIGABRT) on the way out.
    for args in [vec!["queue", "list"], vec!["check"]] {
        let full = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full")
        };
        let status = Command::new(mxguard_bin())
            .args(&args)
            .arg("--config")
            .arg(gw.config_path())
            .current_dir(&gw.dir)
            .stdin(Stdio::null())
            .stdout(full())
            .stderr(full())
            .status()
            .expect("spawn mxguard");
        if status.code() != Some(1) {
            failures.push(format!("{args:?} >/dev/full 2>/dev/full: {status}"));
        }
    }
    // The verbs that change something, once each.
    for args in [
        vec!["quarantine", "release", held.as_str()],
        vec!["queue", "delete", queued.as_str()],
        vec!["quarantine", "delete", "NO-SUCH-ID"],
    ] {
        let (status, stderr) = run_closed(&gw, &args, false);
        println!("{args:?} -> {status}");
        if !ended_quietly(status, &stderr) {
            failures.push(format!("{args:?}: {status}\n{stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "verbs that did not end quietly:\n{}",
        failures.join("\n")
    );
}

/// Regression: with its stderr a closed pipe, `serve` panicked on its first log line
/// (tracing-subscriber reported the failed write with `eprintln!`). `serve` keeps
/// ignoring SIGPIPE: a log reader that went away never stops the gateway.
#[test]
fn serve_keeps_relaying_when_its_log_reader_is_gone() {
    let internal = InternalServer::start();
    let mut gw = Gateway::start(GatewayConfig::new(&internal));
    let port = gw.port;
    // Same configuration and port, but stdout and stderr into closed pipes.
    gw.kill9();
    let child = Command::new(mxguard_bin())
        .args(["serve", "--config"])
        .arg(gw.config_path())
        .current_dir(&gw.dir)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .spawn()
        .expect("spawn mxguard serve");
    let mut serve = ChildGuard(child);
    let up = wait_until(Duration::from_secs(20), || {
        SmtpClient::try_connect_raw(port)
            .ok()
            .and_then(|mut c| c.try_read_reply().ok())
            .is_some_and(|r| r.code == 220)
    });
    assert!(
        up,
        "serve with closed log pipes never answered on port {port}"
    );
    let mut c = SmtpClient::connect_ehlo(port);
    c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("no-log-reader@test", "n", "b"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("no-log-reader@test");
    assert!(serve.0.try_wait().unwrap().is_none(), "serve died");
    unsafe {
        libc::kill(serve.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut status = None;
    wait_until(Duration::from_secs(20), || {
        status = serve.0.try_wait().unwrap();
        status.is_some()
    });
    let status = status.expect("serve did not exit after SIGTERM");
    assert!(status.success(), "serve exited with {status}");
}
