//! `mxguard scan`: judge message files offline with the same policy the gateway runs at
//! end of data (no SMTP, no network); `--compare` shows where two policies disagree.

use anyhow::Context as _;
use mxguard::policy::offline::{self, judge, Judgement};
use mxguard::policy::Policy;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
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

fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                for entry in
                    std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
                {
                    let path = entry?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        files.push(path);
                    }
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `scan`.
pub fn run(config_path: &Path, opts: ScanOptions) -> anyhow::Result<ExitCode> {
    let policy = offline::load(config_path)?;
    let other = match &opts.compare {
        Some(p) => Some(offline::load(p)?),
        None => None,
    };
    let files = collect_files(&opts.paths)?;
    let jobs = match opts.jobs {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let start = Instant::now();
    let results = scan_parallel(&files, jobs, |raw| {
        (judge(&policy, raw), other.as_ref().map(|o| judge(o, raw)))
    });
    let elapsed = start.elapsed().as_secs_f64();

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut differing = 0;
    for (file, result) in files.iter().zip(&results) {
        let (j, other_j) = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                *counts.entry("unreadable").or_default() += 1;
                continue;
            }
        };
        *counts.entry(j.verdict.as_str()).or_default() += 1;
        if let Some(o) = other_j {
            if o.verdict != j.verdict {
                differing += 1;
                print_difference(file, j, o, opts.json);
            }
            continue;
        }
        if opts.json {
            let rules: Vec<&str> = j.hits.iter().map(|(n, _)| n.as_str()).collect();
            let scores: serde_json::Map<String, serde_json::Value> = j
                .hits
                .iter()
                .map(|(n, sc)| (n.clone(), serde_json::json!((sc * 1000.0).round() / 1000.0)))
                .collect();
            let line = serde_json::json!({
                "file": file.display().to_string(),
                "verdict": j.verdict.as_str(),
                "score": (j.score * 1000.0).round() / 1000.0,
                "rules": rules,
                "scores": scores,
            });
            println!("{line}");
        } else {
            println!("{}: {} score={:.2}", file.display(), j.verdict, j.score);
        }
        if opts.explain {
            explain(&policy, j);
        }
    }
    let summary: Vec<String> = counts.iter().map(|(v, n)| format!("{v}={n}")).collect();
    let rate = if elapsed > 0.0 {
        files.len() as f64 / elapsed
    } else {
        0.0
    };
    let mut line = format!(
        "scanned {} messages in {elapsed:.2}s ({rate:.0} msg/s, {jobs} threads): {}",
        files.len(),
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
    Ok(ExitCode::SUCCESS)
}

fn print_difference(file: &Path, a: &Judgement, b: &Judgement, json: bool) {
    if json {
        let line = serde_json::json!({
            "file": file.display().to_string(),
            "verdict": a.verdict.as_str(),
            "score": a.score,
            "other_verdict": b.verdict.as_str(),
            "other_score": b.score,
        });
        println!("{line}");
    } else {
        println!(
            "{}: {} ({:.2}) -> {} ({:.2})",
            file.display(),
            a.verdict,
            a.score,
            b.verdict,
            b.score
        );
    }
}

/// Hits in the style of `spamassassin -t`: points, rule name, description.
fn explain(policy: &Policy, j: &Judgement) {
    println!(" pts rule name              description");
    println!("---- ---------------------- --------------------------------------------------");
    for (score, name, description) in policy.explain(&j.hits) {
        println!("{score:>4.1} {name:<22} {description}");
    }
    println!();
}

fn scan_parallel<T: Send>(
    files: &[PathBuf],
    jobs: usize,
    work: impl Fn(&[u8]) -> T + Sync,
) -> Vec<std::io::Result<T>> {
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<std::io::Result<T>>> = Vec::new();
    slots.resize_with(files.len(), || None);
    let slots = std::sync::Mutex::new(slots);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = files.get(i) else { return };
                let result = std::fs::read(file).map(|raw| work(&raw));
                let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
                slots[i] = Some(result);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("not scanned"))))
        .collect()
}
