//! A classifier seed: a learn ledger and the logistic model trained on it, in one file.
//! The project ships one trained on the training corpus (`config/classifier-seed.bin`),
//! so a fresh gateway classifies out of the box: it is imported into an empty store on
//! first start (or by `mxguard learn --import`), and `scan` reads it when the store has
//! learned nothing. Importing replays the ledger, so counts are exact and shipped examples
//! can be forgotten like local ones.
//!
//! Format (little-endian): `MXSEED1\n` (`MXSEED2\n` when it holds autolearned entries); the token dictionary (u32 count, sorted u64
//! hashes); the entries (u32 count; each a 32-byte digest, a class byte, `S`/`H` learned
//! by hand or `s`/`h` autolearned followed by the varint unix time it was learned, then a
//! varint token count and varint gaps between the entry's sorted dictionary indices); the
//! model (u32 length, [`LrModel::to_bytes`], length 0 for none).

use super::bayes::Counts;
use super::ftrl::{self, LrModel};
use super::ledger::{Class, Entry};
use super::store::Memory;
use super::ClassifyError;
use std::collections::HashMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"MXSEED1\n";
/// A seed holding autolearned entries (`s`/`h` with a time), which a version-1 reader
/// would refuse as "entry of no class": it is told apart by its first bytes.
const MAGIC_AUTOLEARNED: &[u8; 8] = b"MXSEED2\n";

/// A learn ledger with the model trained on it.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// Body digest and what was learned, sorted by digest.
    pub entries: Vec<([u8; 32], Entry)>,
    /// The logistic model trained on exactly these entries (none for a seed whose model
    /// an earlier release trained: it is trained again).
    pub model: Option<LrModel>,
    /// [`Seed::id`] of the bytes it was read from.
    file_id: Option<String>,
}

impl PartialEq for Seed {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.model == other.model
    }
}

/// 16 hex digits of the SHA-256 of `bytes`.
fn digest_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bad(why: &str) -> ClassifyError {
    ClassifyError::Format(format!("seed: {why}"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads the pieces of a seed in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ClassifyError> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, ClassifyError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn varint(&mut self) -> Result<u64, ClassifyError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }
}

impl Seed {
    /// A seed of learn-ledger `entries` (sorted by digest) and the model trained on them.
    pub fn new(entries: Vec<([u8; 32], Entry)>, model: Option<LrModel>) -> Seed {
        Seed {
            entries,
            model,
            file_id: None,
        }
    }

    /// The token counts the entries add up to (what `scan` classifies with in memory).
    pub fn memory(&self) -> Memory {
        let mut m = Memory::default();
        for (_, e) in &self.entries {
            let add = |c: &mut Counts| match e.class {
                Class::Spam => c.spam += 1,
                Class::Ham => c.ham += 1,
            };
            add(&mut m.totals);
            for h in &e.hashes {
                add(m.counts.entry(*h).or_default());
            }
        }
        m
    }

    /// The file form (see the module doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut dictionary: Vec<u64> = self
            .entries
            .iter()
            .flat_map(|(_, e)| e.hashes.iter().copied())
            .collect();
        dictionary.sort_unstable();
        dictionary.dedup();
        let index: HashMap<u64, u64> = dictionary
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i as u64))
            .collect();
        let mut out = Vec::with_capacity(dictionary.len() * 8 + self.entries.len() * 300);
        let autolearned = self.entries.iter().any(|(_, e)| e.autolearned);
        out.extend_from_slice(if autolearned {
            MAGIC_AUTOLEARNED
        } else {
            MAGIC
        });
        out.extend_from_slice(&(dictionary.len() as u32).to_le_bytes());
        for h in &dictionary {
            out.extend_from_slice(&h.to_le_bytes());
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (digest, entry) in &self.entries {
            out.extend_from_slice(digest);
            if entry.autolearned {
                out.push(if entry.class.is_spam() { b's' } else { b'h' });
                put_varint(&mut out, entry.learned_at);
            } else {
                out.push(if entry.class.is_spam() { b'S' } else { b'H' });
            }
            let mut indices: Vec<u64> = entry
                .hashes
                .iter()
                .filter_map(|h| index.get(h).copied())
                .collect();
            indices.sort_unstable();
            put_varint(&mut out, indices.len() as u64);
            let mut last = 0;
            for i in indices {
                put_varint(&mut out, i - last);
                last = i;
            }
        }
        let model = self
            .model
            .as_ref()
            .map(LrModel::to_bytes)
            .unwrap_or_default();
        out.extend_from_slice(&(model.len() as u32).to_le_bytes());
        out.extend_from_slice(&model);
        out
    }

    /// Reads [`Seed::to_bytes`]'s form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Seed, ClassifyError> {
        let (rest, autolearned_allowed) = match bytes.strip_prefix(MAGIC) {
            Some(rest) => (rest, false),
            None => (
                bytes
                    .strip_prefix(MAGIC_AUTOLEARNED)
                    .ok_or_else(|| bad("not a seed file"))?,
                true,
            ),
        };
        let mut r = Reader(rest);
        let n_tokens = r.u32()? as usize;
        let raw = r.take(
            n_tokens
                .checked_mul(8)
                .ok_or_else(|| bad("too many tokens"))?,
        )?;
        let dictionary: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        // Strictly ascending, as `to_bytes` writes it: a hash listed twice gets past the
        // gap check through two indices, counts twice for one message, and the store's own
        // export of it could not be imported again (review).
        if dictionary.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(bad("the token dictionary is not strictly ascending"));
        }
        let n_entries = r.u32()? as usize;
        let mut entries = Vec::with_capacity(n_entries.min(1 << 20));
        for _ in 0..n_entries {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(r.take(32)?);
            let (class, autolearned) = match r.take(1)?[0] {
                b'S' => (Class::Spam, false),
                b'H' => (Class::Ham, false),
                b's' if autolearned_allowed => (Class::Spam, true),
                b'h' if autolearned_allowed => (Class::Ham, true),
                _ => return Err(bad("entry of no class")),
            };
            let learned_at = if autolearned { r.varint()? } else { 0 };
            let count = r.varint()? as usize;
            let mut hashes = Vec::with_capacity(count.min(1 << 16));
            let mut index = 0u64;
            for k in 0..count {
                let gap = r.varint()?;
                // Indices ascend: a gap of 0 after the first repeats a token, which would
                // count twice for one message.
                if k > 0 && gap == 0 {
                    return Err(bad("a token listed twice in one message"));
                }
                index = index
                    .checked_add(gap)
                    .ok_or_else(|| bad("index overflow"))?;
                let h = usize::try_from(index)
                    .ok()
                    .and_then(|i| dictionary.get(i))
                    .ok_or_else(|| bad("token index out of range"))?;
                hashes.push(*h);
            }
            hashes.sort_unstable();
            entries.push((
                digest,
                Entry {
                    class,
                    hashes,
                    autolearned,
                    learned_at,
                },
            ));
        }
        let model_len = r.u32()? as usize;
        let model_bytes = r.take(model_len)?;
        let earlier_model = ftrl::is_earlier_form(model_bytes);
        // An earlier release's model is left out: an import retrains the store from the
        // entries (off the async threads), and `scan` trains one in memory.
        let model = match model_len {
            0 => None,
            _ if earlier_model => None,
            _ => Some(LrModel::from_bytes(model_bytes)?),
        };
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        entries.sort_unstable_by_key(|a| a.0);
        // One body is one ledger entry: a second would count twice in `scan`'s counts
        // ([`Seed::memory`]) but once in a store it is imported into.
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(bad("a message listed twice"));
        }
        Ok(Seed {
            entries,
            model,
            file_id: Some(digest_id(bytes)),
        })
    }

    /// Content hash of the seed (16 hex digits): names the seed an unfinished import was
    /// filling a store from.
    pub fn id(&self) -> String {
        // The file's own bytes when read from one: an earlier release's model, left out,
        // must not change the name an import cut half-way under that release recorded.
        match &self.file_id {
            Some(id) => id.clone(),
            None => digest_id(&self.to_bytes()),
        }
    }

    /// Reads a seed file.
    pub fn read(path: &Path) -> Result<Seed, ClassifyError> {
        // A plain file only: `--import /dev/zero` filled memory, and a FIFO with no
        // writer waited for ever.
        let bytes = crate::config::read_plain_file(path).map_err(|source| ClassifyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Seed::from_bytes(&bytes)
    }

    /// Writes a seed file (through a temporary file, so a reader never sees half of it).
    /// A symbolic link is written through, to the file it names; anything but a regular
    /// file there is refused: the rename would replace the link (or, for root, a device
    /// such as `/dev/stdout`) with a regular file (review).
    pub fn write(&self, path: &Path) -> Result<(), ClassifyError> {
        let io = |source| ClassifyError::Io {
            path: path.to_owned(),
            source,
        };
        // The file replaced keeps its owner, group and mode: `sudo mxguard learn --export`
        // onto the gateway's configured seed left a root-owned 0600 file the gateway could
        // no longer read (review of the change).
        let mut replaced = None;
        let target = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {
                replaced = Some(meta);
                std::fs::canonicalize(path).map_err(io)?
            }
            Ok(_) => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file: a seed is written to a file",
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(path).is_ok() {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "a symbolic link to nothing: name the file itself",
                    )));
                }
                path.to_owned()
            }
            Err(e) => return Err(io(e)),
        };
        let path = target.as_path();
        // A hidden name of our own beside the target: `path.with_extension("tmp")` would
        // overwrite, then rename away, an operator's `backup.tmp` when asked for `backup.seed`.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        // A file of a run cut short with our process id.
        let _ = std::fs::remove_file(&tmp);
        // Synced before the rename, and the directory after it: a crash must leave the
        // old seed or the new one, never an empty file in place of a backup (review).
        let written = write_synced(&tmp, &self.to_bytes())
            .and_then(|()| match &replaced {
                Some(old) => take_over(&tmp, old),
                None => Ok(()),
            })
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| sync_parent(path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

/// Gives the file at `path` the owner, group and mode of `old`, the file it replaces. A
/// change of owner only root may make is left out for anyone else (the file is theirs).
fn take_over(path: &Path, old: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::os::unix::fs::chown(path, Some(old.uid()), Some(old.gid())) {
        Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => return Err(e),
        _ => {}
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(old.mode() & 0o7777))
}

/// Writes `bytes` to a new file at `path`, readable by its owner alone (the ledger's
/// token hashes tell what was learned, and the store they come from is private), and
/// syncs it to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs the directory holding `path`, so a rename into it is on the disk.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ftrl::{train, Example};

    /// Regression (review): `learn --import /dev/zero` read until memory ran out.
    #[test]
    fn a_seed_is_read_from_a_plain_file_only() {
        let e = Seed::read(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not a plain file"), "{e}");
    }

    /// Regression (review): the temporary file was `path.with_extension("tmp")`, so
    /// `learn --export backup.seed` overwrote and removed an unrelated `backup.tmp`.
    #[test]
    fn writing_a_seed_leaves_other_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("backup.tmp");
        std::fs::write(&mine, "an operator's own file").unwrap();
        let target = dir.path().join("backup.seed");
        Seed::default().write(&target).unwrap();
        assert_eq!(
            std::fs::read_to_string(&mine).unwrap(),
            "an operator's own file"
        );
        assert!(Seed::read(&target).is_ok());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "a temporary file was left behind");
    }

    /// Regression (review): a damaged seed (or one written by another tool) that listed a
    /// token twice in one message, or one message twice, was read as it was: the token
    /// counted twice for one message (in `scan`'s counts and in the store it was imported
    /// into), and the message twice in `scan`'s counts but once in the store, so `scan` and
    /// the gateway classified alike mail differently.
    #[test]
    fn a_seed_listing_a_token_or_a_message_twice_is_refused() {
        let entry = |hashes: Vec<u64>| Entry {
            class: Class::Spam,
            hashes,
            autolearned: false,
            learned_at: 0,
        };
        let token_twice = Seed {
            entries: vec![([1; 32], entry(vec![3, 3, 7]))],
            model: None,
            file_id: None,
        };
        let read = Seed::from_bytes(&token_twice.to_bytes());
        assert!(read.is_err(), "{read:?}");
        let message_twice = Seed {
            entries: vec![([1; 32], entry(vec![3])), ([1; 32], entry(vec![7]))],
            model: None,
            file_id: None,
        };
        let read = Seed::from_bytes(&message_twice.to_bytes());
        assert!(read.is_err(), "{read:?}");
        // The first token of the dictionary (index 0, a first gap of 0) is fine.
        let first = Seed {
            entries: vec![([1; 32], entry(vec![3, 7])), ([2; 32], entry(vec![3]))],
            model: None,
            file_id: None,
        };
        assert_eq!(Seed::from_bytes(&first.to_bytes()).unwrap(), first);
        // A later review: one hash listed twice in the dictionary, so two indices (a gap
        // of 1) name it.
        let mut bytes = Seed {
            entries: vec![([1; 32], entry(vec![3, 7]))],
            model: None,
            file_id: None,
        }
        .to_bytes();
        let second = MAGIC.len() + 4 + 8;
        bytes[second..second + 8].copy_from_slice(&3u64.to_le_bytes());
        let read = Seed::from_bytes(&bytes);
        assert!(read.is_err(), "{read:?}");
    }

    /// Regression (review): a seed kept only `S`/`H`, so autolearned entries came back
    /// from `--export`/`--import` as learned by hand: never forgotten under
    /// `autolearn_max`, and never moved by a later autolearn.
    #[test]
    fn autolearned_entries_keep_their_mark_and_time() {
        let auto = Entry {
            class: Class::Ham,
            hashes: vec![5, 8],
            autolearned: true,
            learned_at: 1_764_000_000,
        };
        let by_hand = Entry {
            class: Class::Spam,
            hashes: vec![5],
            autolearned: false,
            learned_at: 0,
        };
        let seed = Seed {
            entries: vec![([1; 32], auto), ([2; 32], by_hand)],
            model: None,
            file_id: None,
        };
        let bytes = seed.to_bytes();
        assert!(bytes.starts_with(b"MXSEED2\n"));
        assert_eq!(Seed::from_bytes(&bytes).unwrap(), seed);
        // A version-1 seed holds no autolearned entry.
        let mut as_v1 = bytes.clone();
        as_v1[..8].copy_from_slice(MAGIC);
        assert!(Seed::from_bytes(&as_v1).is_err());
    }

    /// Regression (review): the rename replaced a symbolic link with a regular file (and,
    /// for root, `/dev/stdout` itself), and the file was made under the umask (0644).
    #[test]
    fn a_seed_is_written_through_a_link_privately_and_never_over_a_device() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let seed = Seed {
            entries: Vec::new(),
            model: None,
            file_id: None,
        };
        let real = dir.path().join("real.seed");
        std::fs::write(&real, b"old").unwrap();
        // A file replaced keeps its mode (and owner).
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            std::os::unix::fs::chown(&real, Some(65534), Some(65534)).unwrap();
        }
        let link = dir.path().join("link.seed");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        seed.write(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(Seed::read(&real).unwrap(), seed);
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        if as_root {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(std::fs::metadata(&real).unwrap().uid(), 65534);
        }
        let fresh = dir.path().join("fresh.seed");
        seed.write(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(seed.write(Path::new("/dev/null")).is_err());
        let dangling = dir.path().join("dangling.seed");
        std::os::unix::fs::symlink(dir.path().join("nowhere/x"), &dangling).unwrap();
        assert!(seed.write(&dangling).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn seeds_round_trip_and_add_up() {
        let e1 = Entry {
            class: Class::Spam,
            hashes: vec![3, 99, u64::MAX],
            autolearned: false,
            learned_at: 0,
        };
        let e2 = Entry {
            class: Class::Ham,
            hashes: vec![3, 7],
            autolearned: false,
            learned_at: 0,
        };
        let examples = [
            Example {
                hashes: &e1.hashes,
                is_spam: true,
            },
            Example {
                hashes: &e2.hashes,
                is_spam: false,
            },
        ];
        let model = Some(train(&examples, 2));
        let seed = Seed {
            entries: vec![([1; 32], e1.clone()), ([2; 32], e2.clone())],
            model,
            file_id: None,
        };
        let bytes = seed.to_bytes();
        assert_eq!(Seed::from_bytes(&bytes).unwrap(), seed);
        let m = seed.memory();
        assert_eq!(m.totals, Counts { spam: 1, ham: 1 });
        assert_eq!(m.counts[&3], Counts { spam: 1, ham: 1 });
        assert_eq!(m.counts[&7], Counts { spam: 0, ham: 1 });
        // Damage anywhere is an error, never a panic.
        for cut in [0, 9, 20, bytes.len() - 1] {
            assert!(Seed::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut garbage = bytes.clone();
        garbage.extend_from_slice(b"x");
        assert!(Seed::from_bytes(&garbage).is_err());

        // A seed exported by an earlier release holds a model of the earlier feature
        // scaling: read with a model trained again from its entries, never with that one.
        let model_at = bytes.len() - seed.model.as_ref().unwrap().to_bytes().len();
        let mut earlier = bytes.clone();
        earlier[model_at..model_at + 8].copy_from_slice(b"MXLR001\n");
        let read = Seed::from_bytes(&earlier).unwrap();
        assert_eq!(read.entries, seed.entries);
        assert_eq!(read.model, None, "the earlier model is left out");
        // Named by its file, as an import cut half-way under the earlier release named it.
        assert_eq!(read.id(), digest_id(&earlier));
        assert_eq!(Seed::from_bytes(&bytes).unwrap().id(), seed.id());
    }
}
