//! Outlook items saved as files (`.msg`, [MS-OXMSG]): a compound file (CFB) that Outlook
//! opens with a double click, showing the item's attachments, while a MIME reader sees one
//! opaque part. Each attachment is a storage `__attach_version1.0_#XXXXXXXX` holding its
//! names (long file name, file name, display name, and the path of one attached by
//! reference) and its bytes (`PidTagAttachDataBinary`); an attached Outlook item is a
//! storage `__substg1.0_3701000D` holding another item, its attachments read the same way
//! down to [`MAX_DEPTH`] items deep.

use super::compound_file::{read_stream, starts_as_compound_file};
use super::tnef::{name_text, OutlookFile, MAX_FILES, MAX_NAMED_FILES};
use std::io::Cursor;
use std::path::{Component, Path, PathBuf};

/// Items attached in items followed at most: deeper attachments are judged by name only.
pub const MAX_DEPTH: usize = 3;
/// Prefix of an attachment's storage.
const ATTACHMENT: &str = "__attach_version1.0_#";
/// The storage of an attached item (`PidTagAttachDataObject`).
const ATTACHED_ITEM: &str = "__substg1.0_3701000D";
/// The stream of an attachment's bytes (`PidTagAttachDataBinary`).
const DATA: &str = "__substg1.0_37010102";
/// Properties naming an attachment: long file name, file name, display name, long path
/// name and path name (the last two for a file attached by reference).
const NAME_PROPERTIES: [&str; 5] = ["3707", "3704", "3001", "370D", "3708"];
/// Longest name stream read.
const MAX_NAME_BYTES: u64 = 4096;

/// The files of an Outlook item (`data` a compound file holding attachment storages): the
/// first [`MAX_FILES`] with their bytes, the rest (up to [`MAX_NAMED_FILES`]) and those
/// deeper than [`MAX_DEPTH`] by name only, as TNEF's are. The bytes copied never add up to
/// more than the item's own size, however its directory points at its streams. Anything
/// else (a Word or Excel file, which is a compound file too, or one that does not read):
/// none.
pub fn files(data: &[u8]) -> Vec<OutlookFile> {
    if !starts_as_compound_file(data) {
        return Vec::new();
    }
    // The reader walks a directory tree and sector chains the sender wrote; a fault in it
    // must cost this file's judgement, not the session.
    std::panic::catch_unwind(|| read_item(data)).unwrap_or_default()
}

/// Reads the attachments of the compound file `data`.
fn read_item(data: &[u8]) -> Vec<OutlookFile> {
    let Ok(mut item) = cfb::CompoundFile::open(Cursor::new(data)) else {
        return Vec::new();
    };
    let mut storages: Vec<(PathBuf, usize)> = item
        .walk()
        .filter(|entry| entry.is_storage())
        .filter_map(|entry| Some((entry.path().to_path_buf(), attachment_depth(entry.path())?)))
        .take(MAX_NAMED_FILES + 1)
        .collect();
    // Attachments past the bound: a file left out, which the policy scores (review).
    let past_the_bound = storages.len() > MAX_NAMED_FILES;
    storages.truncate(MAX_NAMED_FILES);
    let mut budget = data.len() as u64;
    let mut found = Vec::new();
    for (storage, depth) in storages {
        let mut file = OutlookFile::default();
        for property in NAME_PROPERTIES {
            for (kind, wide) in [("001F", true), ("001E", false)] {
                let stream = storage.join(format!("__substg1.0_{property}{kind}"));
                // Names count against the budget too: two directory entries may name
                // one stream, and 10,000 attachments of ten names would be megabytes
                // (review).
                let limit = MAX_NAME_BYTES.min(budget);
                if let Some(raw) = read_stream(&mut item, &stream, limit).map(|s| s.bytes) {
                    budget -= raw.len() as u64;
                    file.add_name(name_text(&raw, wide));
                }
            }
        }
        let data_path = storage.join(DATA);
        if let Ok(entry) = item.entry(&data_path) {
            let fits = entry.len() <= budget;
            if fits && depth <= MAX_DEPTH && found.len() < MAX_FILES {
                file.data = read_stream(&mut item, &data_path, budget)
                    .map(|s| s.bytes)
                    .unwrap_or_default();
                budget -= file.data.len() as u64;
            } else {
                file.data_left_out = true;
            }
        }
        if !file.names.is_empty() || !file.data.is_empty() || file.data_left_out {
            found.push(file);
        }
    }
    if past_the_bound {
        found.push(OutlookFile {
            data_left_out: true,
            ..OutlookFile::default()
        });
    }
    found
}

/// How many items deep an attachment storage lies (0: an attachment of the item itself),
/// or `None` for any other storage. Its path alternates attachment storages and attached
/// items: `/__attach_…#0/__substg1.0_3701000D/__attach_…#0` is an attachment of an item
/// attached to the item.
fn attachment_depth(path: &Path) -> Option<usize> {
    let names: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    let last = names.last()?;
    if !last.starts_with(ATTACHMENT) {
        return None;
    }
    let in_items = names.iter().enumerate().all(|(i, name)| {
        if i % 2 == 0 {
            name.starts_with(ATTACHMENT)
        } else {
            *name == ATTACHED_ITEM
        }
    });
    in_items.then_some(names.len() / 2)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// One attachment of a test item: where it lies (the attachment indexes from the top,
    /// e.g. `[1, 0]` for the first attachment of the item attached second), its long file
    /// name and its bytes.
    pub(crate) struct Attached<'a> {
        pub(crate) at: &'a [usize],
        pub(crate) name: &'a str,
        pub(crate) data: &'a [u8],
    }

    /// An Outlook item as Outlook writes one, with these attachments (names as UTF-16
    /// streams, bytes as binary ones, attached items as `__substg1.0_3701000D` storages).
    pub(crate) fn outlook_item(attached: &[Attached<'_>]) -> Vec<u8> {
        let mut item = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        let write = |item: &mut cfb::CompoundFile<Cursor<Vec<u8>>>, path: &str, bytes: &[u8]| {
            item.create_stream(path).unwrap().write_all(bytes).unwrap();
        };
        write(&mut item, "/__properties_version1.0", &[0u8; 32]);
        let subject: Vec<u8> = "Invoice"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        write(&mut item, "/__substg1.0_0037001F", &subject);
        for a in attached {
            let mut storage = String::new();
            for (level, index) in a.at.iter().enumerate() {
                if level > 0 {
                    storage.push_str(&format!("/{ATTACHED_ITEM}"));
                    if !item.exists(&storage) {
                        item.create_storage(&storage).unwrap();
                    }
                }
                storage.push_str(&format!("/{ATTACHMENT}{index:08X}"));
                if !item.exists(&storage) {
                    item.create_storage(&storage).unwrap();
                }
            }
            let name: Vec<u8> = a.name.encode_utf16().flat_map(u16::to_le_bytes).collect();
            write(&mut item, &format!("{storage}/__substg1.0_3707001F"), &name);
            write(&mut item, &format!("{storage}/{DATA}"), a.data);
        }
        item.flush().unwrap();
        item.into_inner().into_inner()
    }

    #[test]
    fn attachments_and_attached_items_are_read() {
        let item = outlook_item(&[
            Attached {
                at: &[0],
                name: "report.pdf",
                data: b"%PDF-1.4",
            },
            Attached {
                at: &[1, 0],
                name: "invoice.exe",
                data: b"MZ\x90\x00",
            },
            Attached {
                at: &[1, 1, 0],
                name: "deeper.js",
                data: b"x",
            },
        ]);
        let files = files(&item);
        let named: Vec<(&str, &[u8])> = files
            .iter()
            .map(|f| (f.names[0].as_str(), f.data.as_slice()))
            .collect();
        assert_eq!(
            named,
            [
                ("report.pdf", &b"%PDF-1.4"[..]),
                ("invoice.exe", &b"MZ\x90\x00"[..]),
                ("deeper.js", &b"x"[..]),
            ]
        );
    }

    #[test]
    fn past_the_depth_files_are_named_only() {
        let deep = [0usize; MAX_DEPTH + 2];
        let item = outlook_item(&[Attached {
            at: &deep,
            name: "evil.exe",
            data: b"MZ",
        }]);
        let files = files(&item);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].names, ["evil.exe"]);
        assert!(files[0].data.is_empty() && files[0].data_left_out);
    }

    #[test]
    fn other_compound_files_and_junk_give_nothing() {
        // A Word 97 document is a compound file without attachment storages.
        let mut doc = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        doc.create_stream("/WordDocument")
            .unwrap()
            .write_all(&[0xEC, 0xA5])
            .unwrap();
        doc.flush().unwrap();
        assert!(files(&doc.into_inner().into_inner()).is_empty());
        assert!(files(b"").is_empty());
        assert!(files(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]).is_empty());
        // Damaged items read as far as they read, without a fault.
        let item = outlook_item(&[Attached {
            at: &[0],
            name: "a.exe",
            data: b"MZ",
        }]);
        let mut state = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut damaged = item.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = state as usize % damaged.len();
                damaged[at] = (state >> 8) as u8;
            }
            let _ = read_item(&damaged);
        }
    }
}
