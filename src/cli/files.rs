//! Message files given on the command line: directories walked, files read and worked on
//! by several threads, results handed on in file order.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The files a walk found, and how many entries it could not take.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every file found, sorted, each once.
    pub files: Vec<PathBuf>,
    /// Directories that could not be read, and links that lead out of the directory
    /// walked (each reported on stderr): counted as unreadable, so the run ends in
    /// failure, but the rest is still worked on.
    pub unreadable: usize,
    /// The directories walked, where their files must stay when they are opened.
    pub walks: Walks,
}

/// The directories named on the command line and walked: each as named, and where it
/// really is.
#[derive(Debug, Default)]
pub struct Walks(Vec<(PathBuf, PathBuf)>);

impl Walks {
    /// Where a file found in a walk must be, once opened: the real place of the directory
    /// walked it was found under (`None`: named on the command line, read wherever it
    /// leads).
    pub fn root_of(&self, file: &Path) -> Option<&Path> {
        self.0
            .iter()
            .find(|(named, _)| file.starts_with(named))
            .map(|(_, real)| real.as_path())
    }
}

/// Every file under `paths` (directories walked), sorted. A directory reached again (a
/// symlink to it or to one above it) is walked only the first time: following such links
/// made a path per combination of links, until the kernel's limit of 40 links per path.
/// A directory that cannot be read (no permission, removed meanwhile) is reported and
/// skipped: one closed folder of a mail store must not stop the work on all the others.
/// A symbolic link met in a walk is followed only when it leads to a place inside the
/// directory named: `sudo mxguard learn --spam ~alice/Maildir/.Junk` must not learn the
/// `/etc/shadow` a link in that folder names (review); a link named on the command line
/// is followed.
pub fn collect_files(paths: &[PathBuf]) -> Collected {
    use std::os::unix::fs::MetadataExt as _;
    let mut found = Collected::default();
    let mut walked: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    let first_visit = |walked: &mut std::collections::HashSet<(u64, u64)>, dir: &PathBuf| {
        std::fs::metadata(dir).map_or(true, |m| walked.insert((m.dev(), m.ino())))
    };
    for p in paths {
        if !p.is_dir() {
            found.files.push(p.clone());
            continue;
        }
        if !first_visit(&mut walked, p) {
            continue;
        }
        let root = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        found.walks.0.push((p.clone(), root.clone()));
        let mut stack = vec![p.clone()];
        while let Some(dir) = stack.pop() {
            let entries =
                match std::fs::read_dir(&dir).and_then(|d| d.collect::<Result<Vec<_>, _>>()) {
                    Ok(entries) => entries,
                    Err(e) => {
                        eprintln!("{}: cannot read directory: {e}", dir.display());
                        found.unreadable += 1;
                        continue;
                    }
                };
            for entry in entries {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    // A dangling link is kept: reading it says what is wrong.
                    if let Ok(target) = std::fs::canonicalize(&path) {
                        if !target.starts_with(&root) {
                            eprintln!(
                                "{}: a symbolic link out of {}; not followed (name it to read it)",
                                super::shown(&path),
                                super::shown(p)
                            );
                            found.unreadable += 1;
                            continue;
                        }
                    }
                }
                if path.is_dir() {
                    if first_visit(&mut walked, &path) {
                        stack.push(path);
                    }
                } else {
                    found.files.push(path);
                }
            }
        }
    }
    found.files.sort();
    // `scan dir dir/a.eml` names a file twice: judged (or learned) once.
    found.files.dedup();
    found
}

/// Threads to use: `jobs`, or one per core for 0; at most [`MAX_WORKERS`].
pub fn threads(jobs: usize) -> usize {
    let asked = match jobs {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    asked.min(MAX_WORKERS)
}

/// Why a file has no result.
#[derive(Debug)]
pub enum FileError {
    /// It could not be read.
    Read(std::io::Error),
    /// It is no regular file (a FIFO, a device, a socket): reading it could block for
    /// ever (a FIFO) or never end (`/dev/zero`).
    NotRegular,
    /// It is larger than `server.limits.message_size_bytes` (this many): the gateway
    /// refuses such a message unjudged, and it is not read into memory here either.
    TooBig(usize),
    /// It was found in a directory walk, and opened it is elsewhere: a link, or a folder
    /// swapped for one after the walk (see [`collect_files`]).
    OutOfWalk,
    /// It does not start as a message does (`learn` only): an empty file, or a mail
    /// store's index met in a directory walk, which learned would count as a message.
    NotAMessage,
    /// The work panicked on it: a defect, reported for this file only, as the gateway
    /// answers 451 for the one message and goes on.
    Panicked,
}

impl FileError {
    /// The name it is counted under in the summary lines.
    pub fn kind(&self) -> &'static str {
        match self {
            FileError::Read(_)
            | FileError::NotRegular
            | FileError::NotAMessage
            | FileError::OutOfWalk => "unreadable",
            FileError::TooBig(_) => "oversized",
            FileError::Panicked => "failed",
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Read(e) => write!(f, "{e}"),
            FileError::NotRegular => f.write_str("not a regular file"),
            FileError::OutOfWalk => {
                f.write_str("leads out of the directory walked; not read (name it to read it)")
            }
            FileError::NotAMessage => f.write_str("not a mail message (no header field first)"),
            FileError::TooBig(limit) => write!(
                f,
                "larger than server.limits.message_size_bytes ({limit}): the gateway refuses it"
            ),
            FileError::Panicked => f.write_str("the checks panicked on this message (a defect)"),
        }
    }
}

/// Reads a message file: a regular file of at most `limit` bytes, and, found in a walk,
/// one that is really inside `within` (checked on the file opened, so a link put in place
/// after the walk is caught too). Opened without blocking, so a FIFO is refused instead of
/// waiting for a writer.
pub fn read_message(
    path: &Path,
    limit: usize,
    within: Option<&Path>,
) -> Result<Vec<u8>, FileError> {
    let (file, meta) = mxguard::config::open_without_waiting(path).map_err(FileError::Read)?;
    if let Some(root) = within {
        if !opened_inside(&file, path, root) {
            return Err(FileError::OutOfWalk);
        }
    }
    if !meta.is_file() {
        return Err(FileError::NotRegular);
    }
    if meta.len() > limit as u64 {
        return Err(FileError::TooBig(limit));
    }
    let mut raw = Vec::with_capacity(meta.len() as usize);
    // A file growing while it is read is still held to the limit.
    if !read_at_most(file, limit, &mut raw).map_err(FileError::Read)? {
        return Err(FileError::TooBig(limit));
    }
    Ok(raw)
}

/// Whether the file opened from `path` is inside `root`: by the name the kernel gives the
/// descriptor, else (no `/proc`) by `path` resolved now.
fn opened_inside(file: &std::fs::File, path: &Path, root: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .or_else(|_| std::fs::canonicalize(path));
    real.is_ok_and(|real| real.starts_with(root))
}

/// Reads `reader` to its end into `into`, but never more than `limit` bytes and one: false
/// when there was more (`/dev/zero`, a file growing while it is read).
pub fn read_at_most(
    reader: impl std::io::Read,
    limit: usize,
    into: &mut Vec<u8>,
) -> std::io::Result<bool> {
    use std::io::Read as _;
    reader
        .take((limit as u64).saturating_add(1))
        .read_to_end(into)?;
    Ok(into.len() <= limit)
}

/// Header fields that every message carries some of: a header section without any is no
/// message (`/etc/passwd` reads as header fields too: `root:x:0:0:…`).
const MESSAGE_FIELDS: [&str; 13] = [
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "received",
    "message-id",
    "return-path",
    "sender",
    "reply-to",
    "delivered-to",
    "mime-version",
    "content-type",
];

/// Whether `raw` starts as a message does: with a header field (`Name:`, the name
/// printable ASCII without spaces) and one of the fields every message carries some of
/// (From, To, Subject, Date, Received, …) in its header section; or with an mbox `From `
/// line.
pub fn looks_like_message(raw: &[u8]) -> bool {
    use mxguard::mail::header_fields::{as_readers_read, first_line, for_each_field};
    let first = first_line(raw);
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    // An mbox folder: each of its messages is looked at on its own (`messages_of`). Only
    // a real separator counts: `From here on…` then `root:x:0:0:…` is no folder (review).
    if mxguard::mail::mbox::is_separator(first) {
        return true;
    }
    let starts_with_a_field = as_readers_read(first)
        .is_some_and(|(name, _)| first[..name].iter().all(u8::is_ascii_graphic));
    if !starts_with_a_field {
        return false;
    }
    let mut known = false;
    for_each_field(raw, |field| {
        known |= as_readers_read(field).is_some_and(|(name, _)| {
            MESSAGE_FIELDS
                .iter()
                .any(|f| f.as_bytes().eq_ignore_ascii_case(&field[..name]))
        });
    });
    known
}

/// The messages of a file that starts as one (one message, or an mbox folder's), and how
/// many of an mbox's were left out for not starting as a message does: an empty one, a
/// bare `From ` line, must not be learned or counted as mail.
pub fn messages_of(raw: &[u8]) -> (Vec<std::borrow::Cow<'_, [u8]>>, usize) {
    let (placed, left) = placed_messages_of(raw);
    (placed.into_iter().map(|(_, m)| m).collect(), left)
}

/// A message of a file, with its place in the folder (see [`placed_messages_of`]).
pub type Placed<'a> = (Option<usize>, std::borrow::Cow<'a, [u8]>);

/// [`messages_of`], each message with its place in a folder of several (1 for the first
/// entry, counted with those left out), `None` for a file of one message: `scan` names a
/// folder's messages `FILE#N`, and `FILE#2` must be the folder's second entry.
pub fn placed_messages_of(raw: &[u8]) -> (Vec<Placed<'_>>, usize) {
    let entries = mxguard::mail::mbox::messages(raw);
    let several = entries.len() > 1;
    let (taken, left): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .enumerate()
        .map(|(n, m)| (several.then_some(n + 1), m))
        .partition(|(_, m)| looks_like_message(m));
    (taken, left.len())
}

/// Runs the checks on one message of a file: a panic (a defect) fails that message
/// alone, as one file's fails that file, in every verb that reads folders.
pub fn caught<T>(judge: impl FnOnce() -> T) -> Result<T, FileError> {
    catch_unwind(AssertUnwindSafe(judge)).map_err(|_| FileError::Panicked)
}

/// Most threads one run works with, whatever `--jobs` says: past the cores a machine
/// has, more only hold more results in memory.
const MAX_WORKERS: usize = 256;

/// How many results each worker may finish ahead of the oldest one not yet handed on:
/// what a slow file (a big mbox folder) makes the others wait in memory.
const AHEAD_PER_WORKER: usize = 64;

/// Longest a finished result waits to be handed on while fewer than a run are ready.
const HAND_ON_EVERY: Duration = Duration::from_millis(100);

/// Results finished out of order, the index of the next one to hand on, and whether
/// nobody hands them on any more.
struct InOrder<T> {
    done: std::collections::BTreeMap<usize, Result<T, FileError>>,
    /// The next result to take from `done`.
    next_out: usize,
    /// Results handed on (taken ones included once `each` has had them): the window is
    /// counted from here, so results taken and not yet handed on count as held.
    handed_out: usize,
    /// When results were last handed on.
    last_handed: Instant,
    abandoned: bool,
    /// Workers waiting for room, so that handing results on wakes nobody in vain.
    waiting: usize,
    /// Whether the thread handing results on waits for them (the same reason).
    handing_waits: bool,
}

/// Marks the results abandoned when the thread handing them on leaves, normally or by a
/// panic in `each`: workers waiting for room would otherwise wait for ever, and the
/// scope that joins them with them.
struct Abandon<'a, T> {
    state: &'a std::sync::Mutex<InOrder<T>>,
    room: &'a std::sync::Condvar,
}

impl<T> Drop for Abandon<'_, T> {
    fn drop(&mut self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abandoned = true;
        self.room.notify_all();
    }
}

/// Reads (see [`read_message`]) and works on every file with up to `jobs` threads,
/// handing each result to `each` in file order once it and all before it are done, in runs
/// (half a window of results, the last ones, or whatever is ready [`HAND_ON_EVERY`] after
/// the last run): a run over a million files printed nothing until the end, and held
/// every result (a few gigabytes) until then; one hand-on per result cost a context switch
/// per message on two cores (3,800 a corpus run) and a quarter of the scan rate. Workers
/// stay at most [`AHEAD_PER_WORKER`] results each ahead of the oldest one not handed on.
/// A thread the system refuses is done without (`--jobs 100000`); with none at all, the
/// work is done on this thread.
pub fn scan_parallel<T: Send>(
    files: &[PathBuf],
    walks: &Walks,
    jobs: usize,
    limit: usize,
    work: impl Fn(&[u8]) -> T + Sync,
    mut each: impl FnMut(&Path, Result<T, FileError>),
) {
    // Reading the file is guarded too: a worker that died without its result would leave
    // the thread handing results on waiting for it for ever (review).
    let run_one = |file: &Path| {
        caught(|| read_message(file, limit, walks.root_of(file)))
            .and_then(|read| read.and_then(|raw| caught(|| work(&raw))))
    };
    // No more threads than files (review: `--jobs 200000` spawned 200,000 for one), nor
    // than MAX_WORKERS, which also bounds the results held ahead.
    let jobs = jobs.min(files.len()).clamp(1, MAX_WORKERS);
    let window = jobs.saturating_mul(AHEAD_PER_WORKER);
    let run = (window / 2).max(1);
    let state = std::sync::Mutex::new(InOrder {
        done: std::collections::BTreeMap::new(),
        next_out: 0,
        handed_out: 0,
        last_handed: Instant::now(),
        abandoned: false,
        waiting: 0,
        handing_waits: false,
    });
    // Each signal goes only to whoever waits for it: results ready to this thread, room
    // in the window to workers.
    let ready = std::sync::Condvar::new();
    let room = std::sync::Condvar::new();
    // A poisoned lock only means a panic elsewhere; the map is still whole.
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let next = AtomicUsize::new(0);
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(file) = files.get(i) else { return };
        let mut ordered = lock();
        while i >= ordered.handed_out.saturating_add(window) && !ordered.abandoned {
            ordered.waiting += 1;
            ordered = room.wait(ordered).unwrap_or_else(|p| p.into_inner());
            ordered.waiting -= 1;
        }
        if ordered.abandoned {
            return;
        }
        drop(ordered);
        let result = run_one(file);
        let mut ordered = lock();
        ordered.done.insert(i, result);
        // Woken when the result it waits for arrives, or when enough are ready: between
        // the two it waits at most HAND_ON_EVERY by itself.
        let wake = ordered.handing_waits
            && (i == ordered.next_out
                || (ordered.done.contains_key(&ordered.next_out)
                    && (ordered.done.len() >= run || next.load(Ordering::Relaxed) >= files.len())));
        drop(ordered);
        if wake {
            ready.notify_one();
        }
    };
    std::thread::scope(|scope| {
        let _abandon = Abandon {
            state: &state,
            room: &room,
        };
        let mut workers = 0;
        for _ in 0..jobs.min(files.len()) {
            let spawned = std::thread::Builder::new().spawn_scoped(scope, worker);
            if spawned.is_err() {
                break;
            }
            workers += 1;
        }
        let mut handed = 0;
        while handed < files.len() {
            let batch = if workers == 0 {
                vec![run_one(&files[handed])]
            } else {
                let mut ordered = lock();
                let mut batch = Vec::new();
                loop {
                    let waited = ordered.last_handed.elapsed();
                    if ordered.done.contains_key(&ordered.next_out) {
                        let all_claimed = next.load(Ordering::Relaxed) >= files.len();
                        if ordered.done.len() >= run || all_claimed || waited >= HAND_ON_EVERY {
                            // Every result done in order at once.
                            let InOrder { done, next_out, .. } = &mut *ordered;
                            while let Some(result) = done.remove(next_out) {
                                batch.push(result);
                                *next_out += 1;
                            }
                            break;
                        }
                        ordered.handing_waits = true;
                        ordered = ready
                            .wait_timeout(ordered, HAND_ON_EVERY.saturating_sub(waited))
                            .map_or_else(|p| p.into_inner().0, |(guard, _)| guard);
                    } else {
                        ordered.handing_waits = true;
                        ordered = ready.wait(ordered).unwrap_or_else(|p| p.into_inner());
                    }
                    ordered.handing_waits = false;
                }
                batch
            };
            for result in batch {
                each(&files[handed], result);
                handed += 1;
            }
            if workers > 0 {
                // Room counted once results are handed on, not when taken: a slow `each`
                // would otherwise hold a second window (review).
                let mut ordered = lock();
                ordered.handed_out = handed;
                ordered.last_handed = Instant::now();
                let wake = ordered.waiting > 0;
                drop(ordered);
                if wake {
                    room.notify_all();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review of the walk's link rule): the rule was kept when the walk ran,
    /// and files were opened later following links, so a file swapped for a link in
    /// between (or a link left dangling, then made) was read wherever it led.
    #[test]
    fn a_file_swapped_for_a_link_after_the_walk_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let walked = dir.path().join("walked");
        std::fs::create_dir(&walked).unwrap();
        let inside = walked.join("a.eml");
        std::fs::write(&inside, b"Subject: in\r\n\r\nx\r\n").unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"Subject: out\r\n\r\nx\r\n").unwrap();
        let found = collect_files(std::slice::from_ref(&walked));
        assert_eq!(found.files, vec![inside.clone()]);
        let within = found.walks.root_of(&inside);
        assert!(read_message(&inside, 1 << 20, within).is_ok());
        std::fs::remove_file(&inside).unwrap();
        std::os::unix::fs::symlink(&outside, &inside).unwrap();
        assert!(matches!(
            read_message(&inside, 1 << 20, within),
            Err(FileError::OutOfWalk)
        ));
        // Named on the command line, a link is read.
        assert!(found.walks.root_of(&outside).is_none());
        assert!(read_message(&inside, 1 << 20, None).is_ok());
    }
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    /// `n` messages `000.eml`, `001.eml`, … whose Subject is their number (three digits
    /// from byte 9).
    fn numbered_messages(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i:03}.eml"));
                std::fs::write(&path, format!("Subject: {i:03}\r\n\r\nbody\r\n")).unwrap();
                path
            })
            .collect()
    }

    /// Runs `scan_parallel` over 300 numbered messages with `jobs` workers, the work on
    /// message `slow` waiting (10 s at most) until a first result has been handed on;
    /// checks that every result went out in order, and says whether that wait ended
    /// because one had.
    fn slow_file_saw_a_result_go_out(jobs: usize, slow: usize) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let files = numbered_messages(dir.path(), 300);
        let first_out = AtomicBool::new(false);
        let waited_for_it = AtomicBool::new(false);
        let mut seen = Vec::new();
        scan_parallel(
            &files,
            &Walks::default(),
            jobs,
            1 << 20,
            |raw| {
                let n: usize = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
                if n == slow {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !first_out.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    waited_for_it.store(first_out.load(Ordering::SeqCst), Ordering::SeqCst);
                }
                n
            },
            |_, result| {
                seen.push(result.unwrap());
                first_out.store(true, Ordering::SeqCst);
            },
        );
        assert_eq!(seen, (0..files.len()).collect::<Vec<_>>());
        waited_for_it.load(Ordering::SeqCst)
    }

    /// Results are handed on in file order while later files are still being worked on:
    /// the last file's work waits for the first result to be handed on, which a run that
    /// collected every result first would never do.
    #[test]
    fn results_go_out_in_order_before_the_run_ends() {
        assert!(
            slow_file_saw_a_result_go_out(4, 299),
            "nothing went out before the end"
        );
    }

    /// Regression (review of the runs): results waited for half a window of others, so a
    /// quick file before a slow one (a big folder) went out only after it; now within a
    /// tenth of a second. The second file's work waits for the first result to go out.
    #[test]
    fn a_result_goes_out_while_a_slow_file_is_worked_on() {
        assert!(
            slow_file_saw_a_result_go_out(1, 1),
            "the first result waited for the slow second file"
        );
    }

    /// Regression (review of the runs): room was counted from the results taken, not
    /// those handed on, so while a slow `each` handed on one window, workers filled
    /// another: twice the results in memory.
    #[test]
    fn results_held_stay_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let files = numbered_messages(dir.path(), 600);
        let finished = AtomicUsize::new(0);
        let handed = AtomicUsize::new(0);
        let most_held = AtomicUsize::new(0);
        scan_parallel(
            &files,
            &Walks::default(),
            1,
            1 << 20,
            |raw| {
                let held =
                    finished.fetch_add(1, Ordering::SeqCst) + 1 - handed.load(Ordering::SeqCst);
                most_held.fetch_max(held, Ordering::SeqCst);
                raw.len()
            },
            |_, _| {
                std::thread::sleep(Duration::from_micros(200));
                handed.fetch_add(1, Ordering::SeqCst);
            },
        );
        assert_eq!(handed.load(Ordering::SeqCst), files.len());
        assert!(
            most_held.load(Ordering::SeqCst) <= AHEAD_PER_WORKER,
            "{} results held, window {AHEAD_PER_WORKER}",
            most_held.load(Ordering::SeqCst)
        );
    }

    /// A panic where results are handed on (`each`) ends the run: workers waiting for
    /// room are let go, or the scope joining them would wait for ever.
    #[test]
    fn a_panic_handing_results_on_does_not_hang_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..500)
            .map(|n| {
                let path = dir.path().join(format!("{n:03}.eml"));
                std::fs::write(&path, "Subject: x\r\n\r\nbody\r\n").unwrap();
                path
            })
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let run = std::panic::catch_unwind(|| {
                // One worker, room for 64 results ahead: it waits on the 65th.
                scan_parallel(
                    &files,
                    &Walks::default(),
                    1,
                    1 << 20,
                    |raw| raw.len(),
                    |_, _| panic!("each"),
                );
            });
            let _ = tx.send(run.is_err());
        });
        let panicked = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the run hung after a panic in each");
        assert!(panicked);
    }
}
