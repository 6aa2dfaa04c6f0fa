//! `mxguard learn`: teach the classifier spam or ham from message files (or forget them),
//! import or export a seed. Works on the configured state store, also while the gateway
//! runs; after learning, the logistic model is retrained and published to the tier.

use super::files::collect_files;
use anyhow::Context as _;
use mxguard::classify::{seed::Seed, Class, Classifier, Outcome, Settings, Source};
use mxguard::config::Config;
use mxguard::metrics::Metrics;
use mxguard::state::State;
use std::collections::BTreeMap;
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
    let state = State::open(&config.state, Arc::new(Metrics::new()))
        .await
        .context("opening the state store")?
        .patient(PATIENCE);
    let classifier = Classifier::new(
        Source::State(state),
        Settings {
            node: format!("learn:{}", std::process::id()),
        },
    );
    if !config.classifier.enabled {
        eprintln!("note: [classifier] enabled = false: the gateway does not use what is learned");
    }
    match action {
        LearnAction::Learn(class, paths) => learn_files(&classifier, Some(class), &paths).await,
        LearnAction::Forget(paths) => learn_files(&classifier, None, &paths).await,
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

/// Learns (`class` given) or forgets every file, a few at once, with progress on stderr.
async fn learn_files(
    classifier: &Classifier,
    class: Option<Class>,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let files = collect_files(paths)?;
    let started = Instant::now();
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    let mut errors = 0usize;
    let mut done = 0usize;
    let mut last_progress = Instant::now();
    for chunk in files.chunks(IN_FLIGHT) {
        let work = chunk.iter().map(|file| async move {
            let raw = tokio::fs::read(file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let outcome = match class {
                Some(c) => classifier.learn(&raw, c).await?,
                None => classifier.forget(&raw).await?,
            };
            anyhow::Ok(outcome)
        });
        for (file, result) in chunk.iter().zip(futures::future::join_all(work).await) {
            done += 1;
            match result {
                Ok(o) => *outcomes.entry(o).or_default() += 1,
                Err(e) => {
                    errors += 1;
                    eprintln!("{}: {e:#}", file.display());
                }
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            eprintln!(
                "learn: {done}/{} messages ({:.0}/s)",
                files.len(),
                done as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
    }
    let learned = started.elapsed();
    // The logistic model follows the ledger: rebuilt and published for the whole tier.
    let changed = outcomes.iter().any(|(o, n)| {
        *n > 0 && matches!(o, Outcome::Learned | Outcome::Moved | Outcome::Forgotten)
    });
    if changed {
        if classifier.retrain().await?.is_none() {
            eprintln!(
                "learn: model not retrained (another node holds the lock, or a class is missing)"
            );
        }
    } else {
        classifier.refresh().await?;
    }
    let t = classifier.totals().await?;
    let verb = if class.is_some() { "learn" } else { "forget" };
    println!(
        "{verb}: {} messages in {:.1}s: {}, {errors} errors; store: {} spam, {} ham; model {}",
        files.len(),
        learned.as_secs_f64(),
        summary(&outcomes),
        t.spam,
        t.ham,
        model_text(classifier)
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
