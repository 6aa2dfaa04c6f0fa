//! End-to-end tests of the rules engine: parse → compile → evaluate on real message bytes.

use super::*;
use std::path::Path;

mod matching;
mod parse;
mod regex;
mod scoring;
mod spamassassin;

fn compile(text: &str) -> CompiledRules {
    RuleSet::parse_text(Path::new("test.cf"), text).compile()
}

fn hits(rules: &CompiledRules, raw: &[u8]) -> Vec<(String, f64, u32)> {
    rules
        .evaluate(&MessageView::parse(raw), &[])
        .into_iter()
        .map(|h| (h.name, h.score, h.count))
        .collect()
}

fn names(rules: &CompiledRules, raw: &[u8]) -> Vec<String> {
    hits(rules, raw).into_iter().map(|h| h.0).collect()
}

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

const PLAIN: &[u8] = b"From: \"Alice Example\" <alice@example.com>\r\n\
To: bob@example.test\r\n\
Cc: carol@other.test\r\n\
Subject: Cheap meds\r\n\
Message-ID: <abc@example.com>\r\n\
\r\n\
Hello Bob,\r\n\
buy now buy now buy now buy now buy now\r\n";
