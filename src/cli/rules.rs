//! `mxguard rules stats`: how often each rule hits spam and ham, for the people who tune
//! rules files. Judges every message with the configured policy offline (as `scan` does)
//! and prints per rule the share of spam and of ham it hits, its S/O ratio (the spam
//! share over both shares, as SpamAssassin's hit-frequencies has it) and its score. Files
//! are taken as `learn` takes them.

use super::files::{
    caught, collect_files, looks_like_message, messages_of, scan_parallel, threads, Collected,
    FileError,
};
use mxguard::policy::offline;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `mxguard rules stats`.
#[derive(Debug)]
pub struct StatsOptions {
    /// Directories (or files) of spam.
    pub spam: Vec<PathBuf>,
    /// Directories (or files) of ham.
    pub ham: Vec<PathBuf>,
    /// One JSON object per rule.
    pub json: bool,
    /// Worker threads (0: one per core).
    pub jobs: usize,
}

/// One rule's figures.
struct Row {
    name: String,
    spam: usize,
    ham: usize,
    score: Option<f64>,
}

/// Runs `rules stats`.
pub fn stats(config_path: &Path, opts: StatsOptions) -> anyhow::Result<ExitCode> {
    let offline = offline::load(config_path)?;
    let jobs = threads(opts.jobs);
    let limit = offline.policy().config().server.limits.message_size_bytes;
    let mut counts: [BTreeMap<String, usize>; 2] = Default::default();
    let mut totals = [0usize; 2];
    let mut scores: BTreeMap<String, f64> = BTreeMap::new();
    // Files left out of the shares, by why (`unreadable`, `failed`), for the summary.
    let mut left_out: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, paths) in [&opts.spam, &opts.ham].into_iter().enumerate() {
        let Collected {
            files,
            unreadable: unreadable_dirs,
            walks,
        } = collect_files(paths);
        if unreadable_dirs > 0 {
            *left_out.entry("unreadable").or_default() += unreadable_dirs;
        }
        // Files are read as `learn` reads them: what does not start as a message is left
        // out, and an mbox folder counts message by message.
        let judge = |raw: &[u8]| {
            if !looks_like_message(raw) {
                return Err(FileError::NotAMessage);
            }
            let (messages, not_messages) = messages_of(raw);
            Ok((
                messages
                    .iter()
                    // One folder message the checks panic on fails alone, as in `scan`
                    // (review: the whole folder left the shares).
                    .map(|m| caught(|| offline.judge(m)))
                    .collect::<Vec<_>>(),
                not_messages,
            ))
        };
        scan_parallel(&files, &walks, jobs, limit, judge, |file, result| {
            let judged = match result.and_then(|r| r) {
                Ok((judged, 0)) => judged,
                Ok((judged, not_messages)) => {
                    eprintln!(
                        "{}: {not_messages} of its mbox messages are not messages (empty, or no header field); left out",
                        super::shown(file)
                    );
                    *left_out.entry("unreadable").or_default() += not_messages;
                    judged
                }
                Err(e) => {
                    eprintln!("{}: {e}", super::shown(file));
                    *left_out.entry(e.kind()).or_default() += 1;
                    return;
                }
            };
            for j in judged {
                let j = match j {
                    Ok(j) => j,
                    Err(e) => {
                        eprintln!("{}: a message of it: {e}", super::shown(file));
                        *left_out.entry(e.kind()).or_default() += 1;
                        continue;
                    }
                };
                totals[i] += 1;
                let hit: BTreeSet<&str> = j.rule_names().collect();
                for (name, score) in &j.hits {
                    scores.entry(name.clone()).or_insert(*score);
                }
                for name in hit {
                    *counts[i].entry(name.to_string()).or_default() += 1;
                }
            }
        });
    }
    if totals[0] == 0 || totals[1] == 0 {
        anyhow::bail!("need at least one spam and one ham message");
    }
    let rules = offline.policy().rules();
    let mut names: BTreeSet<String> = rules
        .map(|r| r.rule_names().into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    names.extend(counts[0].keys().cloned());
    names.extend(counts[1].keys().cloned());
    let mut rows: Vec<Row> = names
        .into_iter()
        .map(|name| Row {
            spam: counts[0].get(&name).copied().unwrap_or(0),
            ham: counts[1].get(&name).copied().unwrap_or(0),
            score: rules
                .and_then(|r| r.score(&name))
                .or_else(|| scores.get(&name).copied()),
            name,
        })
        .collect();
    let share = |n: usize, of: usize| n as f64 / of as f64;
    let so = |r: &Row| {
        let (s, h) = (share(r.spam, totals[0]), share(r.ham, totals[1]));
        if s + h == 0.0 {
            0.5
        } else {
            s / (s + h)
        }
    };
    // Most spam-specific first; among equals the more frequent.
    rows.sort_by(|a, b| {
        so(b)
            .total_cmp(&so(a))
            .then((b.spam + b.ham).cmp(&(a.spam + a.ham)))
            .then(a.name.cmp(&b.name))
    });
    let flag = |r: &Row| {
        if r.spam == 0 {
            "no spam"
        } else if share(r.ham, totals[1]) > share(r.spam, totals[0]) {
            "ham > spam"
        } else {
            ""
        }
    };
    if opts.json {
        for r in &rows {
            let line = serde_json::json!({
                "rule": r.name,
                "spam_hits": r.spam,
                "ham_hits": r.ham,
                "spam_share": share(r.spam, totals[0]),
                "ham_share": share(r.ham, totals[1]),
                "s_o": so(r),
                "score": r.score,
                "flag": flag(r),
            });
            println!("{line}");
        }
    } else {
        println!("{} spam, {} ham messages", totals[0], totals[1]);
        println!("  SPAM%   HAM%    S/O   SCORE  RULE");
        for r in &rows {
            let score = r
                .score
                .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
            let mark = match flag(r) {
                "" => String::new(),
                f => format!("  <- {f}"),
            };
            println!(
                "{:>6.2} {:>6.2} {:>6.3} {:>7} {}{mark}",
                share(r.spam, totals[0]) * 100.0,
                share(r.ham, totals[1]) * 100.0,
                so(r),
                score,
                r.name
            );
        }
    }
    if left_out.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Like `scan`: the shares leave these files out, and a script must be able to tell.
    let summary: Vec<String> = left_out.iter().map(|(k, n)| format!("{k}={n}")).collect();
    eprintln!("rules stats: left out of the shares: {}", summary.join(" "));
    Ok(ExitCode::FAILURE)
}
