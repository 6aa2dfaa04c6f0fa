//! Configuration text → `Config::from_toml` (parse and validate every section).
//!
//! The configuration is operator input, but it is also re-read on every reload from a file
//! an editor may leave half-written: validation must report, never panic. Properties:
//! never panics; a configuration that validates also builds an offline policy without
//! panicking (when it names no rules directory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::config::Config;
use mxguard::policy::offline;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Network and recipient lists may name files: keep the fuzzer away from device and
    // kernel files, which can be endless or block. Not a parser property.
    if ["dev", "proc", "sys"].iter().any(|d| text.contains(d)) {
        return;
    }
    let Ok(config) = Config::from_toml(Path::new("fuzz.toml"), text) else {
        return;
    };
    if config.policy.rules_dir.is_none() {
        let _ = offline::build(config);
    }
});
