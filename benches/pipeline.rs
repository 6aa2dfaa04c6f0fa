//! The CPU of a message's judgement, piece by piece: the parse the rules read, the shipped
//! rules, and the classifier's tokenizer, on the relay benchmark's message (what
//! `relay_load.py` sends: headers and 4 KiB of `NXXX…` lines) and on a real spam of the
//! training corpus (an HTML part in base64). `relay_load.py` measures them together with
//! the sockets, the spool and DNS; this tells which piece moved.
//!
//! `cargo bench --bench pipeline` (a criterion report per piece in `target/criterion`).

use criterion::{criterion_group, criterion_main, Criterion};
use mxguard::classify::tokenize::Tokenizer;
use mxguard::rules::message::MessageView;
use std::hint::black_box;
use std::path::Path;

/// What `smtp-source -l 4096` sends (its header lines, then numbered lines of `X`).
fn relay_benchmark_message() -> Vec<u8> {
    let mut raw = String::from(
        "From: <sender@load.example>\r\nTo: <user@example.test>\r\n\
         Date: Sun,  6 Dec 2026 13:37:21 +0000 (UTC)\r\nMessage-Id: <5284.0003.0000@vm>\r\n\r\n",
    );
    let mut line = 1;
    while raw.len() < 4096 {
        raw.push_str(&format!("{line}{}\r\n", "X".repeat(78)));
        line += 1;
    }
    raw.into_bytes()
}

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let corpus_spam =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lenient-base64/spam-2-01175.eml");
    let spam = std::fs::read(&corpus_spam).unwrap_or_else(|e| {
        panic!("{}: {e}", corpus_spam.display());
    });
    vec![
        ("relay_message", relay_benchmark_message()),
        ("corpus_spam", spam),
    ]
}

fn pipeline(c: &mut Criterion) {
    let rules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = mxguard::rules::load_dir(&rules_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", rules_dir.display()));
    for (name, raw) in messages() {
        let view = MessageView::parse(&raw);
        let mut group = c.benchmark_group(name);
        group.bench_function("parse", |b| b.iter(|| MessageView::parse(black_box(&raw))));
        group.bench_function("rules", |b| {
            b.iter(|| rules.evaluate(black_box(&view), &[]))
        });
        group.bench_function("tokenize", |b| {
            b.iter(|| Tokenizer.features(black_box(&raw)))
        });
        group.finish();
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
