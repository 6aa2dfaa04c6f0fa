//! File watch for hot reload: the configuration file and the rules directory.
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

/// Watches `config_file` (through its directory) and `rules_dir` (recursively). The
/// receiver yields once per debounced burst of relevant changes.
pub fn watch(
    config_file: &Path,
    rules_dir: Option<&Path>,
) -> notify::Result<(ConfigWatch, mpsc::UnboundedReceiver<()>)> {
    let config_file = absolute(config_file);
    let rules_dir = rules_dir.map(absolute);
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let relevant = {
        let config_file = config_file.clone();
        let rules_dir = rules_dir.clone();
        move |p: &Path| p == config_file || rules_dir.as_deref().is_some_and(|d| p.starts_with(d))
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() && event.paths.iter().any(|p| relevant(p)) {
                let _ = raw_tx.send(());
            }
        }
    })?;
    if let Some(dir) = config_file.parent() {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    if let Some(dir) = &rules_dir {
        watcher.watch(dir, RecursiveMode::Recursive)?;
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
