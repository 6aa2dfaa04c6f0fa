//! Rules-file text → the rules parser, compiler, fingerprint and one evaluation.
//!
//! Rules files come from operators and from third-party rule feeds: a bad file must be
//! reported, never crash `check` or a reload. Properties: never panics; compiling the same
//! text twice gives the same fingerprint; the compiled rules evaluate a small message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::rules::{MessageView, RuleSet};
use std::path::Path;
use std::sync::LazyLock;

static MESSAGE: LazyLock<MessageView> = LazyLock::new(|| {
    MessageView::parse(
        b"From: A <a@sender.test>\r\nTo: b@example.test\r\nSubject: =?utf-8?q?hello_w=C3=B6rld?=\r\n\
          Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
          Visit http://www.example.com/x?y=1 now\r\n--b\r\nContent-Type: text/html\r\n\r\n\
          <a href=\"https://shop.example.net/\">buy</a>\r\n--b--\r\n",
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `include` reads files: keep the fuzzer away from device and kernel files, which can
    // be endless (/dev/zero) or block (/dev/stdin). Not a parser property.
    if ["dev", "proc", "sys"].iter().any(|d| text.contains(d)) {
        return;
    }
    let file = Path::new("/nonexistent-mxguard-fuzz/local.cf");
    let set = RuleSet::parse_text(file, text);
    let rules = set.compile();
    let again = RuleSet::parse_text(file, text).compile();
    assert_eq!(
        rules.fingerprint(),
        again.fingerprint(),
        "fingerprint not deterministic"
    );
    let _ = rules.canonical_text();
    for h in rules.evaluate(&MESSAGE, &[("GTUBE", 1000.0)]) {
        assert!(h.score.is_finite(), "{} scored {}", h.name, h.score);
    }
});
