//! Files and directories of the spool made durable and private, and the files an admin
//! verb writes handed to the gateway's user without following a link put in their place.

use super::{io_err, SpoolError};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Whether `path` is known not to exist (an error other than "not found" leaves it open).
pub(super) fn surely_absent(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Makes the entries of directory `dir` durable (a rename, a create or a delete in it).
pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Creates a spool directory (and its missing parents) readable by the gateway's user
/// alone: it holds other people's mail, whatever the umask of whoever started it.
pub(super) fn private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Gives `path`, a file an admin verb just made in (or below) the spool directory `dir`,
/// to that directory's owner, the gateway's user, when they differ; removes it when that
/// is not allowed (neither root nor the owner), so nothing the gateway cannot read is left.
///
/// The directory is the gateway user's, so whoever runs as that user could put a symbolic
/// or hard link to `/etc/shadow` at `path` before the change of owner (review): the file is
/// opened without following a link and changed through that descriptor, and only when it
/// is a plain file with no other name.
pub fn give_to_owner_of(dir: &Path, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(dir)?;
    let file = open_no_follow(path)?;
    let (file, meta) = match own_plain_file(file) {
        Ok(found) => found,
        Err(e) => {
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    // The owner's own files are readable to the gateway whatever their group (the owner
    // may not be in the directory's group, and could not change to it).
    if owner.uid() == meta.uid() {
        return Ok(());
    }
    std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid())).map_err(|e| {
        let _ = fs::remove_file(path);
        io::Error::new(
            e.kind(),
            format!(
                "{e}: run this as the spool's owner (uid {}), the gateway's user",
                owner.uid()
            ),
        )
    })
}

/// Opens `path` for reading without following a symbolic link in its last component, nor
/// waiting on a FIFO put there.
pub(super) fn open_no_follow(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// `file` when it is a plain file with one name: not a device, a FIFO, or a hard link to
/// a file elsewhere, whose owner an admin verb must never change.
pub(super) fn own_plain_file(file: fs::File) -> io::Result<(fs::File, fs::Metadata)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not the plain file this command wrote (a link or a special file was put there)",
        ));
    }
    Ok((file, meta))
}

/// Opens for a new spool file: readable and writable by the gateway's user alone.
pub(super) fn private_file() -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.mode(0o600);
    options
}

/// Creates `path` exclusively and writes both parts; durability is the committer's job.
pub(super) fn write_new_file(path: &Path, header: &[u8], body: &[u8]) -> io::Result<()> {
    let mut f = private_file().write(true).create_new(true).open(path)?;
    f.write_all(header)?;
    f.write_all(body)?;
    f.flush()
}
