//! The spool's `lock` file: one gateway per spool, and a lock that a probe or a release
//! takes for a moment never makes a starting gateway give up.

use super::files::private_file;
use super::{io_err, SpoolError};
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

/// Takes the spool's `lock` file for this process (an advisory `flock`, released when the
/// process ends, however it ends), or says the spool is in use.
pub(super) fn lock_spool(dir: &Path) -> Result<fs::File, SpoolError> {
    let path = dir.join("lock");
    let file = open_lock_file(&path)?;
    match try_for_a_moment(|| file.try_lock()) {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::InUse(dir.to_owned())),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

/// Tries to take a lock a few times while someone else holds it: [`Spool::in_use`](super::Spool::in_use) takes
/// the lock for an instant to look at it, and a gateway starting in that instant must not
/// give up (review).
pub(super) fn try_for_a_moment(
    mut try_lock: impl FnMut() -> Result<(), fs::TryLockError>,
) -> Result<(), fs::TryLockError> {
    for pause in LOCK_RETRY_PAUSES {
        match try_lock() {
            Err(fs::TryLockError::WouldBlock) => std::thread::sleep(pause),
            done => return done,
        }
    }
    try_lock()
}

/// The pauses between tries of a spool's lock held by someone else (see [`lock_spool`]).
pub(super) const LOCK_RETRY_PAUSES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
];

/// Opens (creating it, never truncating it) a file only locked, never written; never
/// through a symbolic link, which whoever runs as the gateway's user could put there for
/// an admin verb run as root to open.
pub(super) fn open_lock_file(path: &Path) -> Result<fs::File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("open", path))
}

/// Opens an existing lock file to probe it: never creating it (a probe leaves no trace)
/// nor through a symbolic link.
pub(super) fn open_existing_lock_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}
