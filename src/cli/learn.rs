//! `mxguard learn`: teach the classifier spam or ham from message files (or forget them),
//! import or export a seed. Works on the configured state store, also while the gateway
//! runs; after learning, the logistic model is retrained and published to the tier.

use super::files::{
    collect_files, looks_like_message, messages_of, read_message, Collected, FileError,
};
use anyhow::Context as _;
use mxguard::classify::ledger::body_digest;
use mxguard::classify::maintain;
use mxguard::classify::{seed::Seed, Class, Classifier, Outcome, Settings, Source};
use mxguard::config::{Config, FixedConfig, StateBackendConfig};
use mxguard::metrics::Metrics;
use mxguard::state::State;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `learn` does.
#[derive(Debug)]
pub enum LearnAction {
    /// Learn the files as this class.
    Learn(Class, Vec<PathBuf>),
    /// Forget the files.
    Forget(Vec<PathBuf>),
    /// Import a seed file.
    Import(PathBuf),
    /// Write the store's ledger and model to a seed file.
    Export(PathBuf),
}

/// Messages learned at once (each is one ledger swap; the store batches them).
const IN_FLIGHT: usize = 16;
/// Bytes of files read at once, at least one file: sixteen files of the biggest message
/// the gateway takes were all in memory together (review: 409 MB for sixteen of 24 MB).
const BYTES_IN_FLIGHT: u64 = 64 * 1024 * 1024;
/// Bound on one state call here: bulk work on a shared store may wait behind the gateway.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `learn`.
pub fn run(config_path: &Path, action: LearnAction) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(config, action))
}

async fn run_async(config: Config, action: LearnAction) -> anyhow::Result<ExitCode> {
    let created = match &config.state.backend {
        StateBackendConfig::Embedded { path } => new_store_at(path)?,
        StateBackendConfig::Redis { .. } => None,
    };
    let state = State::open(&config.state, Arc::new(Metrics::new()))
        .await
        .context("opening the state store")?
        .patient(PATIENCE);
    // Made by root (`sudo mxguard learn` before the first start), the store kept the
    // gateway's user out of it.
    if let Some(path) = created {
        mxguard::spool::give_to_owner_of(store_dir(&path), &path)
            .with_context(|| format!("the new state store {}", path.display()))?;
    }
    let classifier = Classifier::new(
        Source::State(state),
        Settings {
            node: format!("learn:{}", std::process::id()),
        },
    );
    if !config.classifier.enabled {
        eprintln!("note: [classifier] enabled = false: the gateway does not use what is learned");
    }
    // What the gateway takes (a bigger message is refused before any check): the most a
    // file learned is read into memory.
    let limit = config.server.limits.message_size_bytes;
    let keep = config.classifier.autolearn_max;
    match action {
        LearnAction::Learn(class, paths) => {
            // The gateway seeds only a store that was never used: learned into first, the
            // store would have kept these messages and never the seed.
            let current = FixedConfig(Arc::new(config.clone()));
            if maintain::seed_if_empty(&classifier, &current).await? {
                if let Some(seed) = &config.classifier.seed {
                    eprintln!(
                        "the store was empty: seeded it from {} first",
                        seed.display()
                    );
                }
            }
            learn_files(&classifier, Some(class), &paths, limit, keep).await
        }
        LearnAction::Forget(paths) => learn_files(&classifier, None, &paths, limit, keep).await,
        LearnAction::Import(path) => {
            let seed = Seed::read(&path)?;
            let started = Instant::now();
            let outcomes = classifier.import(&seed).await?;
            let t = classifier.totals().await?;
            println!(
                "imported {} messages from {} in {:.1}s ({}); store: {} spam, {} ham; model {}",
                seed.entries.len(),
                path.display(),
                started.elapsed().as_secs_f64(),
                summary(&outcomes),
                t.spam,
                t.ham,
                model_text(&classifier)
            );
            Ok(ExitCode::SUCCESS)
        }
        LearnAction::Export(path) => {
            let seed = classifier.export().await?;
            seed.write(&path)?;
            let spam = seed
                .entries
                .iter()
                .filter(|(_, e)| e.class.is_spam())
                .count();
            println!(
                "exported {} messages ({spam} spam, {} ham) and model {} to {}",
                seed.entries.len(),
                seed.entries.len() - spam,
                seed.model.as_ref().map_or("none", |m| m.version()),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The embedded store's path when it does not exist yet (this run makes it); an error
/// when its directory does not exist either, rather than a spool made in the wrong place.
fn new_store_at(path: &Path) -> anyhow::Result<Option<PathBuf>> {
    if path
        .try_exists()
        .with_context(|| format!("looking for the state store {}", path.display()))?
    {
        return Ok(None);
    }
    let dir = store_dir(path);
    if !dir.is_dir() {
        anyhow::bail!(
            "no directory {} for the state store: the gateway makes it at its first start; \
             check --config and state.path",
            dir.display()
        );
    }
    Ok(Some(path.to_owned()))
}

/// The directory the embedded store lives in (`.` for a bare file name).
fn store_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// [`summary`] with the files that could not be learned, when there are any.
fn summary_with_errors(outcomes: &BTreeMap<Outcome, usize>, errors: usize) -> String {
    match (outcomes.values().any(|&n| n > 0), errors) {
        (_, 0) => summary(outcomes),
        (false, _) => format!("{errors} errors"),
        (true, _) => format!("{}, {errors} errors", summary(outcomes)),
    }
}

fn summary(outcomes: &BTreeMap<Outcome, usize>) -> String {
    let parts: Vec<String> = outcomes
        .iter()
        .map(|(o, n)| format!("{n} {}", o.as_str()))
        .collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

fn model_text(classifier: &Classifier) -> String {
    match classifier.model() {
        Some(m) => format!(
            "{} ({} weights, {} examples)",
            m.version(),
            m.len(),
            m.examples()
        ),
        None => "none (both classes are needed)".into(),
    }
}

/// Splits files read together into waves run one after another, so that no two copies of
/// one body (one ledger digest) are in flight at once: the ledger keeps the first copy it
/// records, and which of two concurrent copies that is would depend on timing, so the same
/// files would not always give the same ledger, model and classifications. A wave keeps the
/// files' order; the n-th copy of a body goes in the n-th wave.
fn copies_in_turn<T, B: AsRef<[u8]>>(files: Vec<(T, B)>) -> Vec<Vec<(T, B)>> {
    let mut copies: HashMap<[u8; 32], usize> = HashMap::new();
    let mut waves: Vec<Vec<(T, B)>> = Vec::new();
    for (file, raw) in files {
        let seen = copies.entry(body_digest(raw.as_ref())).or_default();
        if waves.len() <= *seen {
            waves.push(Vec::new());
        }
        waves[*seen].push((file, raw));
        *seen += 1;
    }
    waves
}

/// `files` in runs read at once: at most [`IN_FLIGHT`] files and [`BYTES_IN_FLIGHT`]
/// bytes (by their size now; one file alone may be bigger).
fn in_flight(files: &[PathBuf]) -> Vec<&[PathBuf]> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, file) in files.iter().enumerate() {
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        if i > start && (i - start == IN_FLIGHT || bytes.saturating_add(size) > BYTES_IN_FLIGHT) {
            runs.push(&files[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(size);
    }
    if start < files.len() {
        runs.push(&files[start..]);
    }
    runs
}

/// Learns (`class` given) or forgets every file, a few at once, with progress on stderr.
async fn learn_files(
    classifier: &Classifier,
    class: Option<Class>,
    paths: &[PathBuf],
    limit: usize,
    keep_autolearned: usize,
) -> anyhow::Result<ExitCode> {
    let Collected {
        files,
        unreadable: unreadable_dirs,
        walks,
    } = collect_files(paths);
    let started = Instant::now();
    let verb = if class.is_some() { "learn" } else { "forget" };
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    let mut errors = unreadable_dirs;
    // What the walk could not take (a directory it could not read, a link out of it) is
    // an error of the run like a file that cannot be read, and counted among its messages
    // too (review: `learn: 3 messages …: 1 learned, 3 errors` for four entries).
    let mut done = unreadable_dirs;
    let mut last_progress = Instant::now();
    for chunk in in_flight(&files) {
        let read = futures::future::join_all(chunk.iter().map(|file| {
            let file = file.clone();
            let within = walks.root_of(&file).map(Path::to_path_buf);
            async move {
                let read = move || {
                    let raw = read_message(&file, limit, within.as_deref())?;
                    if looks_like_message(&raw) {
                        Ok(raw)
                    } else {
                        Err(FileError::NotAMessage)
                    }
                };
                tokio::task::spawn_blocking(read)
                    .await
                    .unwrap_or(Err(FileError::Panicked))
            }
        }))
        .await;
        let mut readable = Vec::with_capacity(chunk.len());
        for (file, result) in chunk.iter().zip(read) {
            match result {
                Ok(raw) => readable.push((file, raw)),
                Err(e) => {
                    done += 1;
                    errors += 1;
                    eprintln!("{}: {e}", super::shown(file));
                }
            }
        }
        // An mbox folder is learned message by message, a few at a time like files: a
        // folder of a hundred thousand messages is never all in flight.
        let mut messages: Vec<(&PathBuf, Cow<'_, [u8]>)> = Vec::new();
        for (file, raw) in &readable {
            let (taken, not_messages) = messages_of(raw);
            messages.extend(taken.into_iter().map(|m| (*file, m)));
            if not_messages > 0 {
                done += not_messages;
                errors += not_messages;
                eprintln!(
                    "{}: {not_messages} of its mbox messages are not messages (empty, or no header field); not learned",
                    super::shown(file)
                );
            }
        }
        for batch in messages.chunks(IN_FLIGHT) {
            for wave in copies_in_turn(batch.iter().map(|(f, m)| (*f, &**m)).collect()) {
                // A message the tokenizer panics on (a defect) is one error, as in `scan`:
                // unwinding out of the run ended it part-way, with no retraining and no
                // summary.
                let work = wave.iter().map(|(_, raw)| {
                    let one = async move {
                        match class {
                            Some(c) => classifier.learn(raw, c).await,
                            None => classifier.forget(raw).await,
                        }
                    };
                    futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(one))
                });
                for ((file, _), result) in wave.iter().zip(futures::future::join_all(work).await) {
                    done += 1;
                    match result {
                        Ok(Ok(o)) => *outcomes.entry(o).or_default() += 1,
                        Ok(Err(e)) => {
                            errors += 1;
                            eprintln!("{}: {e}", super::shown(file));
                        }
                        Err(_) => {
                            errors += 1;
                            eprintln!("{}: {}", super::shown(file), FileError::Panicked);
                        }
                    }
                }
            }
            if last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                eprintln!(
                    "{verb}: {done} messages ({:.0}/s)",
                    done as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
            }
        }
    }
    let learned = started.elapsed();
    // The logistic model follows the ledger: rebuilt and published for the whole tier.
    let changed = outcomes.iter().any(|(o, n)| {
        *n > 0 && matches!(o, Outcome::Learned | Outcome::Moved | Outcome::Forgotten)
    });
    // The learns are committed: a retraining or a read that fails now (a store blip) is
    // reported after the summary of what was learned, never instead of it (review).
    let mut after = Ok(());
    if changed {
        match classifier.retrain(keep_autolearned).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                eprintln!(
                    "{verb}: model not retrained (another node holds the lock, or a class is missing)"
                );
                // The summary names the model the tier classifies with: the published one.
                after = classifier.refresh().await.map(drop);
            }
            Err(e) => after = Err(e),
        }
    } else {
        after = classifier.refresh().await.map(drop);
    }
    let store = match classifier.totals().await {
        Ok(t) => format!("{} spam, {} ham", t.spam, t.ham),
        Err(e) => {
            if after.is_ok() {
                after = Err(e);
            }
            "not read".to_string()
        }
    };
    println!(
        "{verb}: {done} messages in {:.1}s: {}; store: {store}; model {}",
        learned.as_secs_f64(),
        summary_with_errors(&outcomes, errors),
        model_text(classifier)
    );
    if let Err(e) = &after {
        eprintln!("{verb}: {e}");
    }
    Ok(if errors == 0 && after.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_starts_as_a_message_is_learned() {
        assert!(looks_like_message(b"Subject: x\r\n\r\nbody\r\n"));
        assert!(looks_like_message(
            b"From a@b.test Mon Dec  2 10:00:00 2026\nSubject: x\n"
        ));
        assert!(looks_like_message(
            b"X-Odd-Name_1: v\r\n\tfolded\r\nSubject: x\r\n"
        ));
        assert!(looks_like_message(b"Received: from x\n\tby y\n"));
        // Lines of `Name: value` with none of the fields messages carry (review:
        // `/etc/passwd` was learned).
        assert!(!looks_like_message(b"X-Odd-Name_1: v\n"));
        assert!(!looks_like_message(
            b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        ));
        assert!(!looks_like_message(b"X-Note: a\n\nSubject: in the body\n"));
        assert!(!looks_like_message(
            b"From here on\nroot:x:0:0:root:/root:/bin/bash\n"
        ));
        assert!(!looks_like_message(b""));
        assert!(!looks_like_message(b"\r\n"));
        assert!(!looks_like_message(b"\x07\x00binary index: data"));
        assert!(!looks_like_message(b"just a line of text: with a colon"));
        assert!(!looks_like_message(b": no name"));
    }

    fn message(subject: &str, body: &str) -> Vec<u8> {
        format!("Subject: {subject}\r\n\r\n{body}\r\n").into_bytes()
    }

    #[test]
    fn files_are_read_a_few_at_a_time_and_a_bounded_size_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, len: u64| {
            let path = dir.path().join(name);
            std::fs::File::create(&path).unwrap().set_len(len).unwrap();
            path
        };
        let small: Vec<_> = (0..40).map(|i| file(&format!("s{i:02}"), 10)).collect();
        let runs: Vec<usize> = in_flight(&small).iter().map(|r| r.len()).collect();
        assert_eq!(runs, [16, 16, 8]);
        let big = BYTES_IN_FLIGHT / 2 + 1;
        let mixed = vec![
            file("b1", big),
            file("b2", big),
            file("b3", 3 * BYTES_IN_FLIGHT),
            file("t1", 1),
            file("t2", 1),
        ];
        let runs: Vec<usize> = in_flight(&mixed).iter().map(|r| r.len()).collect();
        assert_eq!(runs, [1, 1, 1, 2]);
        assert!(in_flight(&[]).is_empty());
    }

    #[test]
    fn copies_of_one_body_go_in_successive_waves_in_file_order() {
        let files = vec![
            ("a", message("first", "one")),
            ("b", message("other", "two")),
            ("c", message("second", "one")),
            ("d", message("third", "one")),
            ("e", message("again", "two")),
            ("f", message("alone", "three")),
        ];
        let waves: Vec<Vec<&str>> = copies_in_turn(files)
            .into_iter()
            .map(|w| w.into_iter().map(|(name, _)| name).collect())
            .collect();
        assert_eq!(waves, vec![vec!["a", "b", "f"], vec!["c", "e"], vec!["d"]]);
    }

    #[test]
    fn the_summary_names_only_what_happened() {
        let mut outcomes = BTreeMap::new();
        assert_eq!(summary_with_errors(&outcomes, 0), "nothing");
        assert_eq!(summary_with_errors(&outcomes, 2), "2 errors");
        outcomes.insert(Outcome::Learned, 3);
        assert_eq!(summary_with_errors(&outcomes, 0), "3 learned");
        assert_eq!(summary_with_errors(&outcomes, 1), "3 learned, 1 errors");
    }
}
