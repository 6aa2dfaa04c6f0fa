//! 7-Zip archives: names, content, solid blocks, encryption, limits, malformed ones. The
//! archives are written by `sevenz-rust2`'s writer (LZMA2, as 7-Zip writes by default).

use super::zipbuild::zip_of;
use super::*;
use crate::classify::attachments::archive::sevenzip_header::{archive_with, fix_crcs};
use sevenz_rust2::encoder_options::AesEncoderOptions;
use sevenz_rust2::{ArchiveEntry, ArchiveWriter, EncoderMethod, Password, SourceReader};
use std::io::Cursor;

/// How the archive is written.
#[derive(Clone, Copy)]
enum Layout {
    /// One block per file.
    Plain,
    /// Every file in one solid block.
    Solid,
    /// Content encrypted, header in clear.
    EncryptedContent,
    /// Content and header encrypted (`7z -mhe=on`).
    EncryptedHeader,
    /// Content in another of 7-Zip's methods.
    Method(EncoderMethod),
}

fn seven_zip(files: &[(&str, &[u8])], layout: Layout) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new())).expect("writer");
    writer.set_encrypt_header(matches!(layout, Layout::EncryptedHeader));
    if let Layout::Method(method) = layout {
        writer.set_content_methods(vec![method.into()]);
    }
    if matches!(layout, Layout::EncryptedContent | Layout::EncryptedHeader) {
        writer.set_content_methods(vec![
            AesEncoderOptions::new(Password::from("secret")).into(),
            EncoderMethod::LZMA2.into(),
        ]);
    }
    if matches!(layout, Layout::Solid) {
        let entries = files
            .iter()
            .map(|(n, _)| ArchiveEntry::new_file(n))
            .collect();
        let readers = files.iter().map(|(_, d)| SourceReader::from(*d)).collect();
        writer
            .push_archive_entries(entries, readers)
            .expect("solid");
    } else {
        for (name, data) in files {
            let entry = if name.ends_with('/') {
                ArchiveEntry::new_directory(name.trim_end_matches('/'))
            } else {
                ArchiveEntry::new_file(name)
            };
            writer
                .push_archive_entry(entry, Some(*data))
                .expect("entry");
        }
    }
    // The writer declares an 8 MiB dictionary for the header, as libarchive does.
    writer.finish().expect("finish").into_inner()
}

fn seven_part(name: &str, data: &[u8]) -> Part {
    part(name, "application/x-7z-compressed", data)
}

#[test]
fn blocked_and_deceptive_names_inside_a_7z() {
    let z = seven_zip(
        &[
            ("docs/", b""),
            ("readme.txt", b"hello"),
            ("docs/invoice.pdf.exe", b"MZ"),
        ],
        Layout::Plain,
    );
    assert_eq!(
        symbols(&[seven_part("invoice.7z", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_DOUBLE_EXT"]
    );
    let clean = seven_zip(
        &[
            ("readme.txt", b"hello"),
            ("report.pdf", PDF),
            ("empty.txt", b""),
        ],
        Layout::Solid,
    );
    assert!(symbols(&[seven_part("docs.7z", &clean)]).is_empty());
}

#[test]
fn the_content_of_7z_entries_is_sniffed_and_opened_in_solid_blocks_too() {
    let program = pe();
    let inner = zip_of(&[("run.exe", b"x".as_slice())]);
    for layout in [Layout::Plain, Layout::Solid] {
        let z = seven_zip(
            &[
                ("notes.txt", b"first"),
                ("empty.txt", b""),
                ("invoice.pdf", &program),
                ("payload/inner.zip", &inner),
            ],
            layout,
        );
        assert_eq!(
            symbols(&[seven_part("invoice.7z", &z)]),
            vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TYPE_MISMATCH"]
        );
    }
    // A 7z inside a zip is read too.
    let z7 = seven_zip(&[("setup.scr", b"x")], Layout::Plain);
    let z = zip_of(&[("archive.7z", z7.as_slice())]);
    assert_eq!(
        symbols(&[part("outer.zip", "application/zip", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
}

#[test]
fn encrypted_7z_content_and_headers_are_flagged() {
    let z = seven_zip(&[("invoice.exe", b"MZ")], Layout::EncryptedContent);
    assert_eq!(
        symbols(&[seven_part("invoice.7z", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_ENCRYPTED"]
    );
    let z = seven_zip(&[("invoice.exe", b"MZ")], Layout::EncryptedHeader);
    assert_eq!(
        symbols(&[seven_part("invoice.7z", &z)]),
        vec!["ARCHIVE_ENCRYPTED"]
    );
}

#[test]
fn a_7z_bomb_stops_at_the_budget_and_limits_hold() {
    // 8 MiB of zeros compress to about a kilobyte.
    let zeros = vec![0u8; 8 << 20];
    let z = seven_zip(&[("zeros.bin", &zeros), ("late.exe", b"x")], Layout::Solid);
    assert!(z.len() < 64 * 1024, "{}", z.len());
    let found = symbols_with(&policy_with(3, 100, 1 << 20), &[seven_part("b.7z", &z)]);
    assert_eq!(found, vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_BOMB"]);
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.txt")).collect();
    let mut files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    files.push(("last.exe", b"x"));
    let z = seven_zip(&files, Layout::Plain);
    assert_eq!(
        symbols_with(&policy_with(3, 3, 1 << 20), &[seven_part("many.7z", &z)]),
        // Names past the entry limit are judged all the same (they were not: review).
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TOO_MANY_ENTRIES"]
    );
}

#[test]
fn malformed_7zs_are_unreadable_and_never_panic() {
    let z = seven_zip(&[("invoice.txt", b"0123456789abcdef")], Layout::Plain);
    for cut in [z.len() / 2, z.len() - 1, 40, 33] {
        assert_eq!(
            symbols(&[seven_part("x.7z", &z[..cut])]),
            vec!["ARCHIVE_UNREADABLE"],
            "cut at {cut}"
        );
    }
    assert_eq!(
        symbols(&[seven_part("invoice.7z", b"just some bytes")]),
        vec!["ARCHIVE_UNREADABLE"]
    );
    // Every byte flipped in turn: a symbol or none, never a panic or a hang.
    for i in 0..z.len() {
        let mut bad = z.clone();
        bad[i] ^= 0x5a;
        let _ = symbols(&[seven_part("x.7z", &bad)]);
    }
}

#[test]
fn a_7z_header_too_big_to_read_is_not_read() {
    // A plain header of 3 MiB: past the 2 MiB the reader may hold, whatever it declares.
    let mut header = vec![0x01, 0x00];
    header.resize(3 << 20, 0);
    assert_eq!(
        symbols(&[seven_part("x.7z", &archive_with(&header))]),
        vec!["ARCHIVE_TOO_MANY_ENTRIES", "ARCHIVE_UNINSPECTED"]
    );
    // A start header of zeros: the reader would search the whole file for a header.
    let mut zeros = magic::SEVEN_ZIP_SIGNATURE.to_vec();
    zeros.resize(32, 0);
    zeros.extend(std::iter::repeat_n([0x01u8, 0x00], 1000).flatten());
    assert_eq!(
        symbols(&[seven_part("x.7z", &zeros)]),
        vec!["ARCHIVE_UNREADABLE"]
    );
}

#[test]
fn a_7z_is_opened_whatever_it_is_called_and_in_every_method_of_7_zips_menu() {
    let z = seven_zip(&[("invoice.exe", b"MZ")], Layout::Plain);
    for name in ["data.bin", ""] {
        assert_eq!(
            symbols(&[part(name, "application/octet-stream", &z)]),
            vec!["ARCHIVE_BLOCKED_EXT"],
            "{name:?}"
        );
    }
    let outer = zip_of(&[("data.bin", z.as_slice())]);
    assert_eq!(
        symbols(&[part("outer.zip", "application/zip", &outer)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    let program = pe();
    for method in [
        EncoderMethod::PPMD,
        EncoderMethod::BZIP2,
        EncoderMethod::DEFLATE,
    ] {
        let z = seven_zip(&[("invoice.pdf", &program)], Layout::Method(method));
        assert_eq!(
            symbols(&[seven_part("invoice.7z", &z)]),
            vec!["ARCHIVE_TYPE_MISMATCH"],
            "{method:?}"
        );
    }
    // A method the reader lacks (Deflate64): the content cannot be judged.
    let mut z = seven_zip(
        &[("invoice.pdf", &program)],
        Layout::Method(EncoderMethod::DEFLATE),
    );
    let at = z
        .windows(3)
        .position(|w| w == EncoderMethod::ID_DEFLATE)
        .expect("method id");
    z[at + 2] = 0x09;
    fix_crcs(&mut z);
    assert_eq!(
        symbols(&[seven_part("invoice.7z", &z)]),
        vec!["ARCHIVE_UNREADABLE"]
    );
}

#[test]
fn mutated_7zs_never_panic_a_reader() {
    // Each byte after the signature flipped in turn, the CRCs made right again so the
    // header parser is reached, read without the panic guard `inspect` puts around it.
    let z = seven_zip(
        &[
            ("a.txt", b"first"),
            ("b.exe", b"MZ"),
            ("c.zip", b"PK\x05\x06"),
        ],
        Layout::Solid,
    );
    let policy = policy();
    for i in 8..z.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = z.clone();
            bad[i] ^= flip;
            fix_crcs(&mut bad);
            let _ = walk_uncaught(&policy, &bad);
        }
    }
}
