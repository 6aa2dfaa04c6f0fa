//! Shared harness for the integration tests: runs the real `mxguard` binary against a
//! scriptable internal SMTP server and talks to it over raw TCP. This file owns the shared
//! constants and small helpers; each concept lives in its own module, re-exported here so a
//! test file only needs `use common::*;`.
//!
//! Everything here is bounded in time: every read has a timeout, every wait has a deadline,
//! and every child process is killed when its handle is dropped.
#![allow(dead_code)]

/// Kept out of the re-exports: its generic names (`get`, `start`, `RULES`) are local items
/// of other test files too. The tests that use it say `use common::admin::*;`.
pub mod admin;
mod clamd;
mod client;
mod dns_stub;
mod gateway;
mod gateway_config;
mod internal_server;
mod message;
mod netns;
mod process;
mod redis;
mod sink_dump;
mod tls;

// Each test binary uses a subset: an unused re-export is not a mistake.
#[allow(unused_imports)]
pub use clamd::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use dns_stub::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use gateway_config::*;
#[allow(unused_imports)]
pub use internal_server::*;
#[allow(unused_imports)]
pub use message::*;
#[allow(unused_imports)]
pub use netns::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use redis::*;
#[allow(unused_imports)]
pub use sink_dump::*;
#[allow(unused_imports)]
pub use tls::*;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Hostname every test gateway announces.
pub const HOSTNAME: &str = "mx.example.test";
/// The relayed domain of every test gateway.
pub const DOMAIN: &str = "example.test";
/// How long a client waits for any one reply before failing the test.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a test waits for relayed mail to arrive at the internal server.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The GTUBE test string.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns the last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `contents` to `path` the way editors save: a temporary file in the same
/// directory (not matching `*.cf`), then a rename over the target.
pub fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("swp-tmp");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}
