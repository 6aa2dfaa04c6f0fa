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

/// What a reload reads besides the configuration file ([`Config::named_inputs`]).
///
/// [`Config::named_inputs`]: super::Config::named_inputs
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadInputs {
    /// The rules directory: a start needs its watch.
    pub rules_dir: Option<PathBuf>,
    /// The shadow policy's rules directory.
    pub shadow_rules_dir: Option<PathBuf>,
    /// Recipient lists, the shadow policy's file, the tier key, certificate and key.
    pub files: Vec<PathBuf>,
}

/// Watches `config_file` and the input files (through their directories) and the rules
/// directories (recursively). The configuration's directory and the rules directory must
/// be watched for a start; the others are watched when they can be. The receiver yields
/// once per debounced burst of relevant changes.
pub fn watch(
    config_file: &Path,
    inputs: &ReloadInputs,
) -> notify::Result<(ConfigWatch, mpsc::UnboundedReceiver<()>)> {
    let mut watched_files: Vec<PathBuf> = std::iter::once(config_file)
        .chain(inputs.files.iter().map(PathBuf::as_path))
        .map(absolute)
        .collect();
    // A file that is a link into another directory (`mxguard.toml -> /srv/deploy/mx.toml`,
    // as configuration management lays files out): the target is written, in a directory
    // the watch did not see (review). Its directory is watched too, and its path counts.
    let targets: Vec<PathBuf> = watched_files
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .collect();
    watched_files.extend(targets);
    watched_files.sort();
    watched_files.dedup();
    let rules_dir = inputs.rules_dir.as_deref().map(absolute);
    let shadow_rules_dir = inputs.shadow_rules_dir.as_deref().map(absolute);
    let rules_dirs: Vec<PathBuf> = rules_dir.iter().chain(&shadow_rules_dir).cloned().collect();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    // A file reached through a symbolic link in its directory (Kubernetes mounts a
    // ConfigMap as `mx.toml -> ..data/mx.toml` and swaps `..data`): the link changes, not
    // the file's own name.
    let links: Vec<PathBuf> = watched_files
        .iter()
        .filter_map(|f| linked_entry(f))
        .collect();
    let relevant = {
        let watched_files = watched_files.clone();
        let rules_dirs = rules_dirs.clone();
        move |p: &Path| {
            watched_files.iter().any(|f| f == p)
                || links.iter().any(|l| l == p)
                || rules_dirs
                    .iter()
                    .any(|d| p == d || (p.starts_with(d) && !is_editor_scratch(p)))
        }
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if finishes_a_change(&event.kind) && event.paths.iter().any(|p| relevant(p)) {
                let _ = raw_tx.send(());
            }
        }
    })?;
    // The watches a start needs first: near the system's limit of watches, the optional
    // ones must not take the last.
    let config_dir = absolute(config_file).parent().map(Path::to_path_buf);
    if let Some(dir) = &config_dir {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    if let Some(dir) = &rules_dir {
        watcher.watch(dir, RecursiveMode::Recursive)?;
    }
    // The rules directory's parent too: a directory removed and made again later (a
    // deploy with a gap) is seen coming back, and the watch renewed (review).
    let mut file_dirs: Vec<&Path> = watched_files
        .iter()
        .filter_map(|f| f.parent())
        .chain(rules_dir.as_deref().and_then(Path::parent))
        .collect();
    file_dirs.sort();
    file_dirs.dedup();
    file_dirs.retain(|d| Some(*d) != config_dir.as_deref());
    let shadow_dir = shadow_rules_dir
        .as_deref()
        .filter(|d| Some(*d) != rules_dir.as_deref());
    let optional = file_dirs
        .into_iter()
        .map(|d| (d, RecursiveMode::NonRecursive))
        .chain(shadow_dir.map(|d| (d, RecursiveMode::Recursive)));
    for (dir, mode) in optional {
        // A directory that cannot be watched (permissions) leaves its files to SIGHUP.
        if let Err(e) = watcher.watch(dir, mode) {
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

/// Whether an event ends a change a reload should read. A write is one piece of a file
/// being written in place: a reload then read it half-written (review: an edit paused
/// for 1.5 s put a policy without `[policy.actions]` in force meanwhile). Closing the file
/// after writing ends it, as do creating, removing and renaming (how editors save).
/// Backends that report no closing (not Linux's) count writes, as before.
fn finishes_a_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Data(_)) => !cfg!(target_os = "linux"),
        _ => true,
    }
}

/// Files editors keep beside the one edited (vim's `.x.cf.swp` and `4913` probe, emacs'
/// `#x.cf#` and `x.cf~`, hidden temporary files): changes to them are no edit of a rules
/// file (review: three writes of a swap file made three reloads).
fn is_editor_scratch(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || name == "4913"
        || [".swp", ".swx", ".swo"].iter().any(|s| name.ends_with(s))
}

/// The entry of `file`'s directory that a change of `file` goes through when `file` is a
/// symbolic link to a relative path through another link there (`..data/mx.toml`).
fn linked_entry(file: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(file).ok()?;
    if target.is_absolute() {
        return None;
    }
    let first = target.components().next()?;
    let entry = file.parent()?.join(first);
    (entry != file).then_some(entry)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}
