//! The seal on a queue file's first line: the queue id, the length and a CRC-32 of the bytes
//! after the envelope line, and a CRC-32 of the envelope line
//! (`MXGUARD-SPOOL 1 id=ID len=N crc32=HEX envcrc32=HEX`; files sealed before the envelope's
//! checksum existed carry no `envcrc32`).
//!
//! Why: the spool reuses the files of delivered messages (`recycle.rs`) and makes data and
//! names durable together with one flush. A crash before that flush can leave a new name
//! over bytes that never reached the disk: the old message, or old and new blocks mixed.
//! Such a file was never acknowledged to anyone; the seal tells it from a message (wrong
//! id, length or checksum) so it is never delivered. The envelope has its own checksum: an
//! old envelope of the same length under a new seal would send the new message to the old
//! message's recipients. Files without a seal (written by
//! earlier releases, or in the big-message format) are read as before.

use super::SpoolError;
use std::path::Path;

/// Why a file whose bytes differ from its seal's checksum is not a message.
pub(super) const TORN: &str = "checksum differs from the seal: torn by a crash";

/// What the seal records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seal {
    id: String,
    len: u64,
    crc: u32,
    envelope_crc: Option<u32>,
}

impl Seal {
    /// The seal of `envelope` (the envelope line, without its newline) and `parts` (the
    /// bytes after it, written one after the other) stored as queue id `id`.
    pub(super) fn of(id: &str, envelope: &[u8], parts: &[&[u8]]) -> Seal {
        let mut hasher = crc32fast::Hasher::new();
        let mut len = 0u64;
        for p in parts {
            hasher.update(p);
            len += p.len() as u64;
        }
        Seal {
            id: id.to_owned(),
            len,
            crc: hasher.finalize(),
            envelope_crc: Some(crc32fast::hash(envelope)),
        }
    }

    /// The text after the magic, before the newline.
    pub(super) fn encode(&self) -> String {
        let mut text = format!(" id={} len={} crc32={:08x}", self.id, self.len, self.crc);
        if let Some(crc) = self.envelope_crc {
            text.push_str(&format!(" envcrc32={crc:08x}"));
        }
        text
    }

    /// Parses what follows the magic on the first line (without the newline): empty for an
    /// unsealed file, `None` when it is not a seal.
    pub(super) fn parse(text: &[u8]) -> Option<Option<Seal>> {
        if text.is_empty() {
            return Some(None);
        }
        let text = std::str::from_utf8(text).ok()?;
        let mut fields = text.strip_prefix(' ')?.split(' ');
        let id = fields.next()?.strip_prefix("id=")?;
        let len = fields.next()?.strip_prefix("len=")?.parse().ok()?;
        let crc = u32::from_str_radix(fields.next()?.strip_prefix("crc32=")?, 16).ok()?;
        let envelope_crc = match fields.next() {
            None => None,
            Some(field) => Some(u32::from_str_radix(field.strip_prefix("envcrc32=")?, 16).ok()?),
        };
        if fields.next().is_some() || id.is_empty() {
            return None;
        }
        Some(Some(Seal {
            id: id.to_owned(),
            len,
            crc,
            envelope_crc,
        }))
    }

    /// Checks the envelope line (without its newline) of the file at `path` against the
    /// seal, when the seal has its checksum.
    pub(super) fn check_envelope(&self, path: &Path, envelope: &[u8]) -> Result<(), SpoolError> {
        match self.envelope_crc {
            Some(crc) if crc32fast::hash(envelope) != crc => Err(SpoolError::Corrupt(
                path.to_owned(),
                "envelope checksum differs from the seal: torn by a crash".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Checks the seal of the file at `path` (named by its queue id) holding `len` bytes
    /// after the envelope line; `all` is those bytes when they were all read (the checksum
    /// is checked then; a message streamed from disk is checked by id and length).
    pub(super) fn check(
        &self,
        path: &Path,
        len: u64,
        all: Option<&[u8]>,
    ) -> Result<(), SpoolError> {
        let corrupt = |why: String| Err(SpoolError::Corrupt(path.to_owned(), why));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name != self.id {
            return corrupt(format!(
                "sealed for {}: left by a crash, never acknowledged",
                self.id
            ));
        }
        if len != self.len {
            return corrupt(format!(
                "{len} bytes, sealed with {}: torn by a crash",
                self.len
            ));
        }
        if let Some(bytes) = all {
            if crc32fast::hash(bytes) != self.crc {
                return corrupt(TORN.into());
            }
        }
        Ok(())
    }

    /// The CRC-32 the seal records.
    pub(super) fn crc(&self) -> u32 {
        self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_seal_round_trips_and_catches_every_kind_of_torn_file() {
        let seal = Seal::of("ABC123", b"{}", &[b"Received: x\r\n", b"body\r\n"]);
        let text = seal.encode();
        assert_eq!(Seal::parse(text.as_bytes()), Some(Some(seal.clone())));
        assert_eq!(Seal::parse(b""), Some(None));
        assert_eq!(Seal::parse(b" id=A len=x crc32=0"), None);
        assert_eq!(Seal::parse(b"junk"), None);
        let path = PathBuf::from("/spool/queue/ABC123");
        let good = b"Received: x\r\nbody\r\n";
        assert!(seal.check(&path, good.len() as u64, Some(good)).is_ok());
        assert!(seal.check(&path, good.len() as u64, None).is_ok());
        let other_name = PathBuf::from("/spool/queue/DEF456");
        assert!(seal
            .check(&other_name, good.len() as u64, Some(good))
            .is_err());
        assert!(seal.check(&path, good.len() as u64 + 1, None).is_err());
        let mixed = b"Received: x\r\nbadx\r\n";
        assert!(seal.check(&path, mixed.len() as u64, Some(mixed)).is_err());
        assert!(seal.check_envelope(&path, b"{}").is_ok());
        assert!(seal.check_envelope(&path, b"[]").is_err());
        let before_envelope_checksums = b" id=ABC123 len=19 crc32=00000000";
        let old = Seal::parse(before_envelope_checksums).unwrap().unwrap();
        assert!(old.check_envelope(&path, b"anything").is_ok());
        assert_eq!(Seal::parse(b" id=A len=1 crc32=0 crc32=0"), None);
    }
}
