//! File watch for hot reload: the configuration file, the rules directory and the other
//! files a reload reads (recipient lists, the shadow policy, keys and certificates).
//!
//! Editors save by writing a new file and renaming it over the old one, so the watch is on
//! directories, not files. Events are debounced: a burst of writes becomes one reload.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last change before a reload is asked for.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Keeps the OS watch alive; changes arrive on the receiver given by [`watch`].
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for ConfigWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigWatch")
    }
}

/// Watches `config_file` and each of `files` (through their directories), `rules_dir` and
/// each of `other_rules_dirs` (recursively). The configuration's directory and `rules_dir`
/// must be watched for a start; the others are watched when they can be. The receiver
/// yields once per debounced burst of relevant changes.
pub fn watch(
    config_file: &Path,
    rules_dir: Option<&Path>,
    other_rules_dirs: &[PathBuf],
    files: &[PathBuf],
) -> notify::Result<(ConfigWatch, mpsc::UnboundedReceiver<()>)> {
    let mut watched_files: Vec<PathBuf> = std::iter::once(config_file)
        .chain(files.iter().map(PathBuf::as_path))
        .map(absolute)
        .collect();
    watched_files.sort();
    watched_files.dedup();
    let rules_dir = rules_dir.map(absolute);
    let other_rules_dirs: Vec<PathBuf> = other_rules_dirs.iter().map(|d| absolute(d)).collect();
    let rules_dirs: Vec<PathBuf> = rules_dir.iter().chain(&other_rules_dirs).cloned().collect();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let relevant = {
        let watched_files = watched_files.clone();
        let rules_dirs = rules_dirs.clone();
        move |p: &Path| {
            watched_files.iter().any(|f| f == p) || rules_dirs.iter().any(|d| p.starts_with(d))
        }
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() && event.paths.iter().any(|p| relevant(p)) {
                let _ = raw_tx.send(());
            }
        }
    })?;
    let config_dir = watched_files
        .iter()
        .find(|f| f.as_path() == absolute(config_file))
        .and_then(|f| f.parent().map(Path::to_path_buf));
    if let Some(dir) = &config_dir {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    // The watches a start needs first: near the system's limit of watches, the optional
    // ones below must not take the last.
    if let Some(dir) = &rules_dir {
        watcher.watch(dir, RecursiveMode::Recursive)?;
    }
    let mut dirs: Vec<&Path> = watched_files.iter().filter_map(|f| f.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs
        .into_iter()
        .filter(|d| Some(*d) != config_dir.as_deref())
    {
        // A directory that cannot be watched (permissions) leaves that file to SIGHUP.
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "not watched for changes: reload with SIGHUP after editing files there");
        }
    }
    for dir in other_rules_dirs
        .iter()
        .filter(|d| Some(*d) != rules_dir.as_ref())
    {
        if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "not watched for changes: reload with SIGHUP after editing files there");
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Swallow the rest of the burst.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {}
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok((ConfigWatch { _watcher: watcher }, rx))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}
