//! Verdict stamps: what a tier peer relays, and what `mxguard stamp verify` reads on the
//! internal server, → `mail::stamp` (`Stamp::verify`, `strip`, `resign`).
//!
//! Properties: verifying any bytes never panics, and bytes nobody signed with the key never
//! verify; a stamp made over a message as the gateway stamps it (its old stamps stripped;
//! CRLF line ends only, as SMTP intake leaves them) verifies, and still does once a mail
//! store rewrote CRLF to LF; a copy changed in its body does not verify; `resign` of the
//! stamped message over itself gives a stamp that verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::mail::stamp::{resign, strip, Stamp};
use std::time::Duration;

const KEY: &[u8] = b"fuzz tier key";
const NOW: u64 = 1_000_000;

/// CRLF line ends only: what the DATA and BDAT readers accept.
fn crlf_only(m: &[u8]) -> bool {
    m.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => m.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && m[i - 1] == b'\r',
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    let day = Duration::from_secs(86_400);
    // Anything a peer or a sender may hand over: no panic, and no stamp the key never made.
    assert!(Stamp::verify(&[KEY], data, NOW, day).is_err(), "bytes nobody signed verified");
    if !crlf_only(data) {
        return;
    }
    let message = strip(data).into_owned();
    let stamp = Stamp::new("gw1", NOW, "accept", 1.5, "0123456789abcdef");
    let mut stamped = stamp.header(KEY, &message).into_bytes();
    stamped.extend_from_slice(&message);
    let verified = Stamp::verify(&[KEY], &stamped, NOW, day);
    assert!(verified.is_ok(), "our own stamp: {verified:?}");
    // A mail store's line-ending rewrite keeps it valid.
    let lf: Vec<u8> = stamped.iter().copied().filter(|&b| b != b'\r').collect();
    assert!(Stamp::verify(&[KEY], &lf, NOW, day).is_ok(), "LF copy");
    // A word added to the body breaks it (when there is a body: without the empty line
    // that starts one, an added line is an unsigned header field).
    let has_body = message.starts_with(b"\r\n") || message.windows(4).any(|w| w == b"\r\n\r\n");
    if has_body {
        let mut changed = stamped.clone();
        changed.extend_from_slice(b"\r\nPS wire the money\r\n");
        assert!(Stamp::verify(&[KEY], &changed, NOW, day).is_err(), "changed body verified");
    }
    // Signed again over itself (the relay's converted copy), still valid.
    let again = resign(&[KEY], &stamped, &stamped).expect("a stamp the key made is re-signed");
    assert!(Stamp::verify(&[KEY], &again, NOW, day).is_ok(), "re-signed copy");
});
