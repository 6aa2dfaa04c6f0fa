//! SpamAssassin's shipped rules through the whole engine (ignored by default: needs
//! `apt-get install spamassassin`).

use super::*;

/// Parses SpamAssassin's shipped rules (`apt-get install spamassassin`) and prints what is
/// evaluated and skipped. Run with `cargo test --lib rules::tests::spamassassin -- --ignored --nocapture`.
#[test]
#[ignore]
fn spamassassin_stock_rules() {
    let dir = std::env::var("SA_RULES_DIR").unwrap_or_else(|_| "/usr/share/spamassassin".into());
    let set = RuleSet::from_dir(Path::new(&dir)).expect("SpamAssassin rules directory");
    let errors: Vec<&Diagnostic> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let started = std::time::Instant::now();
    let rules = set.compile();
    let compile_time = started.elapsed();
    let report = rules.report();
    println!("rules defined: {}", set.rules.len());
    for kind in RuleKind::ALL {
        println!(
            "  active {kind}: {}",
            report.counts.get(&kind).copied().unwrap_or(0)
        );
    }
    println!("active total: {}", report.active());
    println!("backtracking: {}", report.backtracking.len());
    for (n, why) in &report.backtracking {
        println!("    {n}: {why}");
    }
    println!(
        "disabled (score 0 / unused sub-rules): {}",
        report.disabled.len()
    );
    println!("skipped rules: {}", report.skipped.len());
    println!("external refs: {}", report.external_refs.len());
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for d in rules.diagnostics() {
        let key = if d.message.starts_with("unknown directive") {
            d.message.clone()
        } else if d.message.contains("eval rule") {
            "eval rules".into()
        } else if d.message.contains("block skipped") {
            "skipped if/ifplugin blocks".into()
        } else {
            format!("{}: {}", d.severity, d.message)
        };
        *reasons.entry(key).or_default() += 1;
    }
    for (k, v) in &reasons {
        println!("  {v:5}  {k}");
    }
    println!("errors: {}", errors.len());
    println!("compile time: {compile_time:?}");
    println!("fingerprint: {}", rules.fingerprint());
    let view = MessageView::parse(
        format!("Subject: test\r\nFrom: a@b.test\r\n\r\n{GTUBE}\r\n").as_bytes(),
    );
    let hits = rules.evaluate(&view, &[]);
    println!("GTUBE message hits: {:?}", hits);
    if let Ok(corpus) = std::env::var("SA_CORPUS_DIR") {
        let mut files: Vec<_> = std::fs::read_dir(&corpus)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let started = std::time::Instant::now();
        let (mut n, mut total_hits) = (0usize, 0usize);
        for f in files.iter().take(500) {
            if let Ok(raw) = std::fs::read(f) {
                let view = MessageView::parse(&raw);
                total_hits += rules.evaluate(&view, &[]).len();
                n += 1;
            }
        }
        let el = started.elapsed();
        println!(
            "corpus: {n} messages, {total_hits} hits, {:?} ({:.0} msg/s)",
            el,
            n as f64 / el.as_secs_f64()
        );
    }
}
