//! The files the offline tools (`scan`, `learn`, `rules stats`) are given: directories with
//! symlink loops, special files, files bigger than the gateway takes; exit codes and the
//! error text of a bad configuration.

mod common;

use common::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

const POLICY: &str = "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2\"]\n\n\
[spool]\ndir = \"spool\"\n\n[server.limits]\nmessage_size_bytes = 1048576\n\n\
[policy]\nrules_dir = \"rules\"\n";

const RULES: &str = "body PILLS /cheap pills/i\nscore PILLS 6.0\n";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mxguard-files-")
        .tempdir()
        .unwrap();
    fs::write(dir.path().join("mxguard.toml"), POLICY).unwrap();
    fs::create_dir(dir.path().join("rules")).unwrap();
    fs::write(dir.path().join("rules/a.cf"), RULES).unwrap();
    fs::create_dir(dir.path().join("msgs")).unwrap();
    fs::write(
        dir.path().join("msgs/a.eml"),
        message("a@t", "offer", "cheap pills"),
    )
    .unwrap();
    dir
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    run_with_timeout(
        Command::new(mxguard_bin())
            .args(args)
            .current_dir(dir.path()),
        Duration::from_secs(30),
    )
}

/// A directory that links back to itself (twice) must be walked once, not followed until
/// the kernel's 40-link limit: two such links made 2^40 paths and `scan` never ended.
#[test]
fn scan_walks_a_directory_with_symlink_loops_once() {
    let dir = setup();
    std::os::unix::fs::symlink(".", dir.path().join("msgs/loop1")).unwrap();
    std::os::unix::fs::symlink("../msgs", dir.path().join("msgs/loop2")).unwrap();
    let out = run(&dir, &["scan", "--config", "mxguard.toml", "msgs"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("scanned 1 messages"), "{all}");
}

/// A FIFO in a scanned directory (or named on the command line) is no message file:
/// reading it blocked the scan for ever.
#[test]
fn scan_does_not_hang_on_a_fifo() {
    let dir = setup();
    let fifo = dir.path().join("msgs/pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = run(&dir, &["scan", "--config", "mxguard.toml", "msgs"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("msgs/pipe: not a regular file"), "{all}");
    assert!(all.contains("msgs/a.eml: tag"), "{all}");
    // `learn` reads its files the same way.
    let out = run(
        &dir,
        &["learn", "--config", "mxguard.toml", "--spam", "msgs"],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("msgs/pipe"), "{all}");
}

/// `scan /dev/zero` read until memory ran out (here: a 1 GiB address-space limit).
#[test]
fn scan_refuses_a_character_device() {
    let dir = setup();
    let bin = mxguard_bin();
    let out = run_with_timeout(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 1048576; exec {bin} scan --config mxguard.toml /dev/zero"
            ))
            .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("/dev/zero: not a regular file"), "{all}");
}

/// A file bigger than `server.limits.message_size_bytes` is one the gateway refuses
/// (552) without judging it: `scan` said it would tag it, and `scan`/`learn` read files
/// of any size whole into memory (several at once).
#[test]
fn files_bigger_than_the_message_size_limit_are_not_read_whole() {
    let dir = setup();
    let mut big = message("big@t", "offer", "cheap pills");
    big.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    fs::write(dir.path().join("msgs/big.eml"), &big).unwrap();
    // A sparse 3 GiB file: read whole, it cannot fit under the 1 GiB limit below.
    let huge = fs::File::create(dir.path().join("msgs/huge.eml")).unwrap();
    huge.set_len(3 << 30).unwrap();
    drop(huge);
    let bin = mxguard_bin();
    let out = run_with_timeout(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 1048576; exec {bin} scan --config mxguard.toml --jobs 1 msgs"
            ))
            .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("msgs/a.eml: tag"), "{all}");
    assert!(!all.contains("msgs/big.eml: tag"), "{all}");
    assert!(
        all.contains("msgs/big.eml: larger than server.limits.message_size_bytes"),
        "{all}"
    );
    assert!(
        all.contains("msgs/huge.eml: larger than server.limits.message_size_bytes"),
        "{all}"
    );
    let out = run(
        &dir,
        &[
            "learn",
            "--config",
            "mxguard.toml",
            "--spam",
            "msgs/big.eml",
        ],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("larger than server.limits.message_size_bytes"),
        "{all}"
    );
}

/// The error of a missing configuration (or seed) was printed twice:
/// `mxguard: x.toml: No such file or directory (os error 2): No such file or directory (os error 2)`.
#[test]
fn an_error_is_said_once() {
    let dir = setup();
    for args in [
        &["queue", "list", "--config", "missing.toml"][..],
        &[
            "learn",
            "--config",
            "mxguard.toml",
            "--import",
            "missing.bin",
        ][..],
    ] {
        let out = run(&dir, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_eq!(
            stderr.matches("No such file or directory").count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}
/// README: `scan` exits 2 on a bad configuration (1 is "a file could not be judged").
#[test]
fn scan_exits_2_on_a_bad_configuration() {
    let dir = setup();
    let out = run(&dir, &["scan", "--config", "missing.toml", "msgs"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    fs::write(dir.path().join("broken.toml"), "[relay\n").unwrap();
    let out = run(
        &dir,
        &[
            "scan",
            "--config",
            "mxguard.toml",
            "--compare",
            "broken.toml",
            "msgs",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// `queue list` and `quarantine list` skipped a message file they could not read without
/// a word, yet counted it: `1 message(s)` over an empty table, exit 0.
#[test]
fn list_names_the_messages_it_cannot_read() {
    let dir = setup();
    for (area, verb) in [("queue", "queue"), ("quarantine", "quarantine")] {
        fs::create_dir_all(dir.path().join("spool").join(area)).unwrap();
        fs::write(dir.path().join("spool").join(area).join("ABC123"), "junk\n").unwrap();
        let out = run(&dir, &[verb, "list", "--config", "mxguard.toml"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("ABC123: spool file"), "{all}");
        assert!(all.contains("0 message(s), 1 unreadable"), "{all}");
    }
}
