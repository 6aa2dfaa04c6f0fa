//! `mxguard scan`: judge message files offline with the same policy the gateway runs at
//! end of data (no SMTP, no network); `--compare` shows where two policies disagree.

use super::files::{
    caught, collect_files, looks_like_message, placed_messages_of, scan_parallel, threads,
    Collected, FileError,
};
use mxguard::classify::Judged;
use mxguard::policy::offline::{self, Judgement, Offline};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Options of `mxguard scan`.
#[derive(Debug)]
pub struct ScanOptions {
    /// One JSON object per message.
    pub json: bool,
    /// List each hit with score and description.
    pub explain: bool,
    /// A second configuration to compare verdicts with.
    pub compare: Option<PathBuf>,
    /// Worker threads (0 = one per core).
    pub jobs: usize,
    /// Files and directories to scan.
    pub paths: Vec<PathBuf>,
}

/// Runs `scan`.
pub fn run(config_path: &Path, opts: ScanOptions) -> anyhow::Result<ExitCode> {
    // README: exit 2 on a bad configuration, 1 when a file could not be judged.
    let bad_config = |e: offline::OfflineError| {
        super::report(&anyhow::Error::new(e));
        ExitCode::from(2)
    };
    let policy = match offline::load(config_path) {
        Ok(p) => p,
        Err(e) => return Ok(bad_config(e)),
    };
    let other = match &opts.compare {
        Some(p) => match offline::load(p) {
            Ok(o) => Some(o),
            Err(e) => return Ok(bad_config(e)),
        },
        None => None,
    };
    if let offline::ClassifierSource::Seed {
        unanswered: Some(why),
    }
    | offline::ClassifierSource::None {
        unanswered: Some(why),
    } = policy.classifier_source()
    {
        eprintln!("note: the classifier's store did not answer ({why}); judging without it");
    }
    let Collected {
        files,
        unreadable: unreadable_dirs,
        walks,
    } = collect_files(&opts.paths);
    let jobs = threads(opts.jobs).min(files.len()).max(1);
    let start = Instant::now();
    // What the gateway takes: a bigger message is refused (552) before any check.
    let limit = policy.policy().config().server.limits.message_size_bytes;
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    if unreadable_dirs > 0 {
        counts.insert("unreadable", unreadable_dirs);
    }
    let mut differing = 0;
    let mut scanned = 0;
    let mut missed = unreadable_dirs;
    let judge_file = |raw: &[u8]| {
        if !looks_like_message(raw) {
            return Err(FileError::NotAMessage);
        }
        let (messages, not_messages) = placed_messages_of(raw);
        let judged: Vec<_> = messages
            .iter()
            .map(|(place, m)| {
                // One folder message the checks panic on fails alone, as one file does.
                let judge = || (policy.judge(m), other.as_ref().map(|o| o.judge(m)));
                (*place, caught(judge))
            })
            .collect();
        Ok((judged, not_messages))
    };
    // Files are read as `learn` reads them (review: an mbox folder got one verdict for all
    // its messages, and an empty or binary file a verdict of its own).
    scan_parallel(&files, &walks, jobs, limit, judge_file, |file, result| {
        let (judged, not_messages) = match result.and_then(|r| r) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", super::shown(file));
                *counts.entry(e.kind()).or_default() += 1;
                missed += 1;
                return;
            }
        };
        if not_messages > 0 {
            eprintln!(
                "{}: {not_messages} of its mbox messages are not messages (empty, or no header field); left out",
                super::shown(file)
            );
            *counts.entry("unreadable").or_default() += not_messages;
            missed += not_messages;
        }
        for (place, result) in &judged {
            // A folder's messages are named by their place in it.
            // JSON escapes what it must itself: there a UTF-8 name is the name.
            let file_name = if opts.json {
                super::json_name(file)
            } else {
                super::shown(file)
            };
            let name = match place {
                Some(n) => format!("{file_name}#{n}"),
                None => file_name,
            };
            let (j, other_j) = match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    *counts.entry(e.kind()).or_default() += 1;
                    missed += 1;
                    continue;
                }
            };
            scanned += 1;
            report(
                &policy,
                &name,
                j,
                other_j.as_ref(),
                &opts,
                &mut counts,
                &mut differing,
            );
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let summary: Vec<String> = counts.iter().map(|(v, n)| format!("{v}={n}")).collect();
    let rate = if elapsed > 0.0 {
        scanned as f64 / elapsed
    } else {
        0.0
    };
    let mut line = format!(
        "scanned {scanned} messages in {elapsed:.2}s ({rate:.0} msg/s, {jobs} threads): {}",
        summary.join(" ")
    );
    if opts.compare.is_some() {
        line.push_str(&format!("; {differing} verdicts differ"));
    }
    // Keep stdout machine-readable with --json.
    if opts.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    // Like `learn`: a scan that could not judge every file it was given did not do its job,
    // and a script or CI job running it must be able to tell.
    Ok(if missed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints one message's result (or its difference under `--compare`) and counts it.
fn report(
    policy: &Offline,
    name: &str,
    j: &Judgement,
    other_j: Option<&Judgement>,
    opts: &ScanOptions,
    counts: &mut BTreeMap<&'static str, usize>,
    differing: &mut usize,
) {
    *counts.entry(j.verdict.as_str()).or_default() += 1;
    if let Some(o) = other_j {
        if o.verdict != j.verdict {
            *differing += 1;
            print_difference(name, j, o, opts.json);
        }
        return;
    }
    if opts.json {
        let rules: Vec<&str> = j.rule_names().collect();
        let scores: serde_json::Map<String, serde_json::Value> = j
            .hits
            .iter()
            .map(|(n, sc)| (n.clone(), serde_json::json!((sc * 1000.0).round() / 1000.0)))
            .collect();
        let round6 = |p: f64| serde_json::json!((p * 1e6).round() / 1e6);
        let (probability, bayes, lr) = match &j.classification {
            Some(Judged::Verdict(v)) => (
                round6(v.probability),
                round6(v.bayes),
                v.lr.map_or(serde_json::Value::Null, round6),
            ),
            _ => Default::default(),
        };
        let line = serde_json::json!({
            "file": name,
            "verdict": j.verdict.as_str(),
            "score": (j.score * 1000.0).round() / 1000.0,
            "rules": rules,
            "scores": scores,
            "classifier": probability,
            "bayes": bayes,
            "lr": lr,
        });
        println!("{line}");
    } else {
        let score = mxguard::mail::score::hundredths_down(j.score);
        println!("{name}: {} score={score}", j.verdict);
    }
    if opts.explain {
        explain(policy, j);
    }
}

fn print_difference(name: &str, a: &Judgement, b: &Judgement, json: bool) {
    if json {
        // The fields every `--json` line carries, then the other configuration's.
        let line = serde_json::json!({
            "file": name,
            "verdict": a.verdict.as_str(),
            "score": a.score,
            "rules": a.rule_names().collect::<Vec<_>>(),
            "other_verdict": b.verdict.as_str(),
            "other_score": b.score,
            "other_rules": b.rule_names().collect::<Vec<_>>(),
        });
        println!("{line}");
    } else {
        let score = mxguard::mail::score::hundredths_down;
        println!(
            "{}: {} ({}) -> {} ({})",
            name,
            a.verdict,
            score(a.score),
            b.verdict,
            score(b.score)
        );
    }
}

/// Hits in the style of `spamassassin -t`: points, rule name, description; then what the
/// classifier said and the tokens that weighed most.
fn explain(offline: &Offline, j: &Judgement) {
    println!(" pts rule name              description");
    println!("---- ---------------------- --------------------------------------------------");
    for (score, name, description) in offline.policy().explain(&j.hits) {
        println!("{score:>4.1} {name:<22} {description}");
    }
    match &j.classification {
        Some(Judged::Verdict(v)) => {
            let lr =
                v.lr.map_or_else(|| "none".to_string(), |p| format!("{p:.4}"));
            println!(
                "classifier: probability {:.4} ({}): bayes {:.4}, logistic {lr}; learned {} spam, {} ham",
                v.probability, v.band.symbol, v.bayes, v.learned.spam, v.learned.ham
            );
            for t in &v.top {
                println!("  {:+.3} {}", t.weight, t.name);
            }
        }
        Some(Judged::NotReady(c)) => println!(
            "classifier: no vote, learned only {} spam and {} ham",
            c.spam, c.ham
        ),
        None => println!(
            "classifier: not asked ({})",
            match offline.classifier_source() {
                offline::ClassifierSource::Disabled => "disabled",
                offline::ClassifierSource::None { .. } => "nothing learned and no seed",
                offline::ClassifierSource::Store | offline::ClassifierSource::Seed { .. } =>
                    "no vote for this message",
            }
        ),
    }
    println!();
}
