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
