//! Message bytes from the internet → MIME parsing (`rules::MessageView`) and evaluation of
//! the shipped `rules/`, then the whole end-of-data judgement as `mxguard scan` runs it
//! (`policy::offline::Offline::judge`: GTUBE, header checks, attachments, rules, the
//! classifier voting with the shipped seed, verdict).
//!
//! Properties: never panics, never loops; every score is finite; hits come out sorted by
//! name without duplicates and without `__` sub-rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::config::Config;
use mxguard::policy::offline::{self, Offline};
use mxguard::rules::{CompiledRules, MessageView, RuleSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

static RULES: LazyLock<CompiledRules> = LazyLock::new(|| {
    let set = RuleSet::from_dir(&rules_dir()).expect("shipped rules readable");
    let rules = set.compile();
    assert!(!rules.has_errors(), "shipped rules have errors");
    rules
});

static POLICY: LazyLock<Offline> = LazyLock::new(|| {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // No spool (so no store is opened): the classifier reads the shipped seed.
    let text = format!(
        "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
         [spool]\ndir = \"/nonexistent/mxguard-fuzz-spool\"\n\
         [policy]\nrules_dir = {:?}\n\
         [classifier]\nseed = {:?}\n",
        rules_dir().display().to_string(),
        repo.join("config/classifier-seed.bin")
            .display()
            .to_string()
    );
    let config = Config::from_toml(Path::new("fuzz.toml"), &text).expect("fuzz config valid");
    offline::build(config).expect("offline policy builds")
});

fuzz_target!(|raw: &[u8]| {
    let view = MessageView::parse(raw);
    let hits = RULES.evaluate(&view, &[("GTUBE", 1000.0)]);
    for w in hits.windows(2) {
        assert!(
            w[0].name < w[1].name,
            "hits not sorted/unique: {} {}",
            w[0].name,
            w[1].name
        );
    }
    for h in &hits {
        assert!(h.score.is_finite(), "{} scored {}", h.name, h.score);
        assert!(!h.name.starts_with("__"), "sub-rule {} reported", h.name);
    }
    let judged = POLICY.judge(raw);
    assert!(judged.score.is_finite(), "total score {}", judged.score);
});
