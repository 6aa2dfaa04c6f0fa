//! Zip archives: what is inside, nesting, encryption and malformed archives.

use super::zipbuild::{crc32, raw_zip, streamed_zip_of, zip_of, zipcrypto_zip_of, RawEntry};
use super::*;

fn zip_part(name: &str, data: &[u8]) -> Part {
    part(name, "application/zip", data)
}

#[test]
fn blocked_and_deceptive_names_inside_a_zip() {
    let z = zip_of(&[
        ("readme.txt", b"hello".as_slice()),
        ("docs/invoice.pdf.exe", b"x".as_slice()),
    ]);
    assert_eq!(
        symbols(&[zip_part("invoice.zip", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_DOUBLE_EXT"]
    );
    let z = zip_of(&[("scan\u{202E}gpj.js", b"x".as_slice())]);
    assert_eq!(
        symbols(&[zip_part("scan.zip", &z)]),
        vec!["ARCHIVE_BIDI_NAME", "ARCHIVE_BLOCKED_EXT"]
    );
}

#[test]
fn a_program_named_as_a_document_inside_a_zip() {
    let z = zip_of(&[("invoice.pdf", pe().as_slice())]);
    assert_eq!(
        symbols(&[zip_part("invoice.zip", &z)]),
        vec!["ARCHIVE_TYPE_MISMATCH"]
    );
}

#[test]
fn a_clean_zip_yields_nothing() {
    let z = zip_of(&[
        ("report.pdf", PDF),
        ("data/table.csv", b"a,b\n1,2\n".as_slice()),
        ("empty.txt", b"".as_slice()),
    ]);
    assert!(symbols(&[zip_part("reports.zip", &z)]).is_empty());
    // Found by content even without a zip name or type.
    assert!(symbols(&[part("", "application/octet-stream", &z)]).is_empty());
    let evil = zip_of(&[("a.exe", b"x".as_slice())]);
    assert_eq!(
        symbols(&[part("", "application/octet-stream", &evil)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
}

#[test]
fn nested_zips_are_opened_to_the_configured_depth() {
    let level3 = zip_of(&[("payload.scr", b"x".as_slice())]);
    let level2 = zip_of(&[("inner.zip", level3.as_slice())]);
    let level1 = zip_of(&[("middle.zip", level2.as_slice())]);
    // Depth 3 (default) opens all three levels and finds the program.
    assert_eq!(
        symbols(&[zip_part("outer.zip", &level1)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    let found = policy().inspect(&[Attachment {
        names: &["outer.zip".to_string()],
        content_type: "application/zip",
        data: &level1,
        content_left_out: false,
    }]);
    assert_eq!(found[0].file, "outer.zip/middle.zip/inner.zip/payload.scr");
    // Depth 2 stops before the third level and says so.
    assert_eq!(
        symbols_with(
            &policy_with(2, 1000, 1 << 20),
            &[zip_part("outer.zip", &level1)]
        ),
        vec!["ARCHIVE_TOO_DEEP", "ARCHIVE_UNINSPECTED"]
    );
    // Depth 0 opens nothing.
    assert!(symbols_with(
        &policy_with(0, 1000, 1 << 20),
        &[zip_part("outer.zip", &level1)]
    )
    .is_empty());
}

#[test]
fn a_nested_zip_hiding_behind_another_name_is_opened() {
    let inner = zip_of(&[("run.vbs", b"x".as_slice())]);
    let outer = zip_of(&[("photos.dat", inner.as_slice())]);
    assert_eq!(
        symbols(&[zip_part("photos.zip", &outer)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
}

#[test]
fn zipcrypto_encrypted_entries_are_flagged_and_their_names_still_judged() {
    let z = zipcrypto_zip_of(&[("invoice.exe", b"MZ secret".as_slice())]);
    assert_eq!(
        symbols(&[zip_part("invoice.zip", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_ENCRYPTED"]
    );
    let z = zipcrypto_zip_of(&[("photo.jpg", b"secret".as_slice())]);
    assert_eq!(
        symbols(&[zip_part("photo.zip", &z)]),
        vec!["ARCHIVE_ENCRYPTED"]
    );
}

#[test]
fn aes_encrypted_entries_are_flagged() {
    // WinZip AE-2: method 99, the encrypted flag, and the 0x9901 extra field naming the
    // real method (deflate) and AES-256.
    let extra = [
        0x01, 0x99, 0x07, 0x00, 0x02, 0x00, b'A', b'E', 0x03, 0x08, 0x00,
    ];
    let data = [0u8; 40];
    let z = raw_zip(&[RawEntry {
        name: "secret.docx",
        method: 99,
        flags: 1,
        data: &data,
        crc: 0,
        size: 20,
        extra: &extra,
    }]);
    assert_eq!(
        symbols(&[zip_part("secret.zip", &z)]),
        vec!["ARCHIVE_ENCRYPTED"]
    );
}

#[test]
fn unreadable_zips_are_flagged() {
    // Named and typed as a zip, but not one.
    assert_eq!(
        symbols(&[zip_part("files.zip", b"this is not a zip at all")]),
        vec!["ARCHIVE_UNREADABLE"]
    );
    // A compression method this build cannot decompress (bzip2).
    let z = raw_zip(&[RawEntry {
        method: 12,
        ..RawEntry::stored("data.bin", b"BZh91AY&SY")
    }]);
    assert_eq!(
        symbols(&[zip_part("data.zip", &z)]),
        vec!["ARCHIVE_UNREADABLE"]
    );
    // A wrong CRC is found at the end of the entry.
    let z = raw_zip(&[RawEntry {
        crc: 1,
        ..RawEntry::stored("a.txt", b"hello")
    }]);
    assert_eq!(
        symbols(&[zip_part("a.zip", &z)]),
        vec!["ARCHIVE_UNREADABLE"]
    );
}

#[test]
fn too_many_entries_stop_the_inspection() {
    let names: Vec<String> = (0..30).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    let z = zip_of(&entries);
    assert_eq!(
        symbols_with(&policy_with(3, 10, 1 << 20), &[zip_part("many.zip", &z)]),
        vec!["ARCHIVE_TOO_MANY_ENTRIES"]
    );
    assert!(symbols_with(&policy_with(3, 30, 1 << 20), &[zip_part("many.zip", &z)]).is_empty());
    // The count is per message: two archives of 6 entries exceed a limit of 10.
    let six: Vec<(&str, &[u8])> = entries[..6].to_vec();
    let z6 = zip_of(&six);
    assert_eq!(
        symbols_with(
            &policy_with(3, 10, 1 << 20),
            &[zip_part("a.zip", &z6), zip_part("b.zip", &z6)]
        ),
        vec!["ARCHIVE_TOO_MANY_ENTRIES"]
    );
}

/// Regression (review): an archive over the entry limit was left unopened and none of its
/// names judged, so a blocked file behind 1,001 harmless entries scored 1 point; and the
/// name a local header gives (streaming extractors read it), or the raw name behind an
/// Info-ZIP Unicode alias, was never judged. Every name the headers carry is.
#[test]
fn names_of_every_header_are_judged_even_in_an_archive_left_unopened() {
    let names: Vec<String> = (0..30).map(|i| format!("f{i}.txt")).collect();
    let mut entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    entries.push(("invoice.js", b"x".as_slice()));
    let z = zip_of(&entries);
    assert_eq!(
        symbols_with(&policy_with(3, 10, 1 << 20), &[zip_part("many.zip", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TOO_MANY_ENTRIES"]
    );
    // The local header says invoice.js, the central directory invoice.tx.
    let mut z = raw_zip(&[RawEntry::stored("invoice.tx", PDF)]);
    z[30..40].copy_from_slice(b"invoice.js");
    let found = symbols(&[zip_part("invoice.zip", &z)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
}

#[test]
fn truncated_and_corrupted_zips_never_panic() {
    let inner = zip_of(&[("a.exe", b"x".as_slice())]);
    let z = zip_of(&[
        ("doc.pdf", PDF),
        ("inner.zip", inner.as_slice()),
        ("notes.txt", b"hello hello hello hello".as_slice()),
    ]);
    let p = policy();
    for cut in 0..z.len() {
        let _ = symbols_with(&p, &[zip_part("t.zip", &z[..cut])]);
    }
    // Flip each byte in turn (deterministic, no RNG): headers, sizes, offsets, data.
    for i in 0..z.len() {
        let mut bad = z.clone();
        bad[i] ^= 0xA5;
        let _ = symbols_with(&p, &[zip_part("t.zip", &bad)]);
    }
}

#[test]
fn hostile_end_records_do_not_exhaust() {
    // Thousands of end-of-central-directory signatures and central headers claiming
    // entries that do not exist.
    let mut flood = Vec::new();
    for _ in 0..20_000 {
        flood.extend_from_slice(
            b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\0\0",
        );
    }
    let found = symbols(&[zip_part("flood.zip", &flood)]);
    assert_eq!(found, vec!["ARCHIVE_UNREADABLE"]);
    let mut headers = b"PK\x03\x04".to_vec();
    for _ in 0..5000 {
        headers.extend_from_slice(b"PK\x01\x02");
    }
    let found = symbols(&[zip_part("headers.zip", &headers)]);
    assert_eq!(found, vec!["ARCHIVE_TOO_MANY_ENTRIES"]);
}

#[test]
fn many_bad_entries_with_long_names_yield_few_short_findings() {
    let long = "x".repeat(5000);
    let names: Vec<String> = (0..200).map(|i| format!("{long}{i}.exe")).collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    let inner = zip_of(&entries);
    let outer = zip_of(&[(format!("{long}.zip").as_str(), inner.as_slice())]);
    let found = policy().inspect(&[Attachment {
        names: &[format!("{long}.zip")],
        content_type: "application/zip",
        data: &outer,
        content_left_out: false,
    }]);
    assert_eq!(
        found.len(),
        1,
        "{:?}",
        found.iter().map(|f| f.symbol).collect::<Vec<_>>()
    );
    assert_eq!(found[0].symbol, Symbol::ArchiveBlockedExt);
    assert!(
        found[0].file.chars().count() < 400,
        "{}",
        found[0].file.len()
    );
}

// --- review regressions ---

#[test]
fn names_after_the_byte_budget_ran_out_are_still_judged() {
    // Ordinary data spends the expansion budget; the program after it must still be seen
    // by name (names cost no decompression).
    let big = noise(2 << 20);
    let z = raw_zip(&[
        RawEntry::stored("big.dat", &big),
        RawEntry::stored("invoice.exe", b"x"),
    ]);
    let found = symbols_with(&policy_with(3, 1000, 1 << 20), &[zip_part("files.zip", &z)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
    // The same when the program is in a second attached zip.
    let small = raw_zip(&[RawEntry::stored("big.dat", &big)]);
    let evil = zip_of(&[("run.exe", b"x".as_slice())]);
    let found = symbols_with(
        &policy_with(3, 1000, 1 << 20),
        &[zip_part("a.zip", &small), zip_part("b.zip", &evil)],
    );
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
}

#[test]
fn header_signatures_outside_the_central_directory_do_not_count_as_entries() {
    // One entry, a blocked program; the archive comment is full of central-header
    // signatures, which are not entries.
    let mut z = zip_of(&[("invoice.exe", b"x".as_slice())]);
    let comment = b"PK\x01\x02".repeat(300);
    let n = z.len();
    z[n - 2..].copy_from_slice(&(comment.len() as u16).to_le_bytes());
    z.extend_from_slice(&comment);
    let found = symbols_with(
        &policy_with(3, 100, 1 << 20),
        &[zip_part("invoice.zip", &z)],
    );
    assert_eq!(found, vec!["ARCHIVE_BLOCKED_EXT"]);
    // The same signatures inside a stored file's content.
    let text = b"PK\x01\x02".repeat(300);
    let z = raw_zip(&[
        RawEntry::stored("notes.txt", &text),
        RawEntry::stored("invoice.exe", b"x"),
    ]);
    let found = symbols_with(
        &policy_with(3, 100, 1 << 20),
        &[zip_part("invoice.zip", &z)],
    );
    assert_eq!(found, vec!["ARCHIVE_BLOCKED_EXT"]);
}

#[test]
fn duplicate_entry_names_are_not_collapsed() {
    // Two entries with one name: the zip crate indexes by name.
    let z = raw_zip(&[
        RawEntry::stored("invoice.pdf", &pe()),
        RawEntry::stored("invoice.pdf", PDF),
    ]);
    let found = symbols(&[zip_part("invoice.zip", &z)]);
    assert!(
        found.contains(&"ARCHIVE_TYPE_MISMATCH") || found.contains(&"ARCHIVE_UNREADABLE"),
        "{found:?}"
    );
}

#[test]
fn a_local_header_naming_another_file_than_the_central_directory_is_unreadable() {
    // README: "a zip showing one name to one tool and another to the next is unreadable".
    // The central directory says invoice.pdf; the local header (what streaming extractors
    // read) says invoice.exe.
    let mut z = raw_zip(&[RawEntry::stored("invoice.pdf", PDF)]);
    assert_eq!(&z[30..41], b"invoice.pdf");
    z[30..41].copy_from_slice(b"invoice.exe");
    let found = symbols(&[zip_part("invoice.zip", &z)]);
    assert!(
        found.contains(&"ARCHIVE_UNREADABLE") || found.contains(&"ARCHIVE_BLOCKED_EXT"),
        "{found:?}"
    );
}

#[test]
fn a_local_entry_missing_from_the_central_directory_is_unreadable() {
    // A program whose local header and data sit in the archive but that the central
    // directory does not list: tools that read local headers extract it.
    let hidden = raw_zip(&[RawEntry::stored("run.exe", &pe())]);
    let shown = raw_zip(&[RawEntry::stored("readme.txt", b"hello")]);
    // hidden's local header + data, then shown's whole archive with offsets moved.
    let local_len = 30 + "run.exe".len() + pe().len();
    let mut z = hidden[..local_len].to_vec();
    let base = z.len() as u32;
    let mut rest = shown.clone();
    // Central header's local-header offset (at +42 of the central header) and the end
    // record's central-directory offset (at +16 of the end record).
    let cd = u32::from_le_bytes(rest[rest.len() - 6..rest.len() - 2].try_into().unwrap()) as usize;
    let off = u32::from_le_bytes(rest[cd + 42..cd + 46].try_into().unwrap()) + base;
    rest[cd + 42..cd + 46].copy_from_slice(&off.to_le_bytes());
    let n = rest.len();
    rest[n - 6..n - 2].copy_from_slice(&((cd as u32) + base).to_le_bytes());
    z.extend_from_slice(&rest);
    let found = symbols(&[zip_part("files.zip", &z)]);
    assert!(
        found.contains(&"ARCHIVE_UNREADABLE") || found.contains(&"ARCHIVE_BLOCKED_EXT"),
        "{found:?}"
    );
}

/// Regression (review): the raw header pass read no extra fields, so a blocked name given
/// only by an entry's Info-ZIP Unicode Path alias (which `unzip` extracts under) was
/// judged only by the reader, and never in an archive over the entry limit.
#[test]
fn a_unicode_path_alias_is_judged_in_an_archive_left_unopened() {
    let alias_name = b"invoice.exe";
    let mut extra = 0x7075u16.to_le_bytes().to_vec();
    extra.extend_from_slice(&(5 + alias_name.len() as u16).to_le_bytes());
    extra.push(1);
    extra.extend_from_slice(&crc32(b"readme.txt").to_le_bytes());
    extra.extend_from_slice(alias_name);
    let names: Vec<String> = (0..30).map(|i| format!("f{i}.txt")).collect();
    let mut entries: Vec<RawEntry<'_>> = names.iter().map(|n| RawEntry::stored(n, b"x")).collect();
    entries.push(RawEntry {
        extra: &extra,
        ..RawEntry::stored("readme.txt", b"hello")
    });
    let z = raw_zip(&entries);
    assert_eq!(
        symbols_with(&policy_with(3, 10, 1 << 20), &[zip_part("many.zip", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TOO_MANY_ENTRIES"]
    );
}

/// Regression (review): header signatures every few bytes, each naming the 64 KiB that
/// follow, were each copied whole: a 160 KB attachment took 1.6 GB and 11 s. Names are
/// now remembered by hash and read within a byte bound; the blocked name of the real
/// entry in front of them is still found.
#[test]
fn overlapping_headers_with_long_names_stay_bounded() {
    let mut z = raw_zip(&[RawEntry::stored("invoice.exe", b"MZ")]);
    let mut header = b"PK\x03\x04".to_vec();
    header.resize(26, 0);
    header.extend_from_slice(&u16::MAX.to_le_bytes());
    header.extend_from_slice(&[0, 0]);
    while z.len() < 300_000 {
        z.extend_from_slice(&header);
        z.extend_from_slice(b"abcdefgh");
    }
    let found = symbols(&[zip_part("docs.zip", &z)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
}

/// Regression (review): an attachment was opened as an archive only when its first bytes,
/// its name or its type said so; `unzip` and 7-Zip find a zip by its end record whatever
/// comes before it, so a zip of `invoice.exe` behind `%PDF-1.4` named `docs.pdf` passed.
#[test]
fn a_zip_behind_other_bytes_is_opened_whatever_it_is_called() {
    let z = zip_of(&[("invoice.exe", b"MZ".as_slice())]);
    for prefix in [b"%PDF-1.4\n".as_slice(), b"X".as_slice()] {
        let mut data = prefix.to_vec();
        data.extend_from_slice(&z);
        for (name, ctype) in [("docs.pdf", "application/pdf"), ("docs", "")] {
            let found = symbols(&[part(name, ctype, &data)]);
            assert!(
                found.contains(&"ARCHIVE_BLOCKED_EXT"),
                "{name} after {prefix:?}: {found:?}"
            );
        }
    }
    // A document that is no zip is not opened.
    assert_eq!(
        symbols(&[part("docs.pdf", "application/pdf", PDF)]),
        Vec::<&str>::new()
    );
}

/// A zip of `invoice.exe` behind 100 bytes of junk, as `unzip` and Python's `zipfile`
/// still read it.
pub(super) fn zip_behind_junk() -> Vec<u8> {
    let mut data = vec![b'X'; 100];
    data.extend_from_slice(&zip_of(&[("invoice.exe", b"MZ".as_slice())]));
    data
}

/// Regression (review): a nested entry was opened only when its first bytes said zip, gzip
/// or tar, while the top level also finds a zip by its end record: `docs.zip` = 100 junk
/// bytes and a zip of `invoice.exe`, inside `outer.zip`, gave no symbol.
#[test]
fn a_nested_zip_behind_other_bytes_is_opened() {
    let inner = zip_behind_junk();
    for name in ["docs.zip", "docs.dat"] {
        let outer = zip_of(&[(name, inner.as_slice())]);
        assert_eq!(
            symbols(&[zip_part("outer.zip", &outer)]),
            vec!["ARCHIVE_BLOCKED_EXT"],
            "{name}"
        );
    }
}

/// An entry named as an archive is opened whatever its bytes, and flagged when it is none.
#[test]
fn a_nested_entry_named_as_an_archive_that_is_none_is_unreadable() {
    let outer = zip_of(&[("docs.zip", b"just some text, no archive".as_slice())]);
    assert_eq!(
        symbols(&[zip_part("outer.zip", &outer)]),
        vec!["ARCHIVE_UNREADABLE"]
    );
    // Past the last level it is too deep, as an archive found by its bytes is.
    let outer = zip_of(&[("docs.zip", zip_behind_junk().as_slice())]);
    assert_eq!(
        symbols_with(
            &policy_with(1, 1000, 1 << 20),
            &[zip_part("outer.zip", &outer)]
        ),
        vec!["ARCHIVE_TOO_DEEP", "ARCHIVE_UNINSPECTED"]
    );
}

/// Regression (review): a zip over the entry limit was left unopened: its names were
/// judged, but `docs.zip` listed first, holding `invoice.exe`, was never opened, and only
/// `ARCHIVE_TOO_MANY_ENTRIES` (1 point) was scored. Its first entries are read by their
/// local headers, as many as the count allows.
#[test]
fn an_archive_among_the_first_entries_of_an_over_full_zip_is_opened() {
    let inner = zip_of(&[("invoice.exe", b"MZ".as_slice())]);
    let names: Vec<String> = (0..30).map(|i| format!("f{i}.txt")).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("docs.zip", inner.as_slice())];
    entries.extend(names.iter().map(|n| (n.as_str(), b"x".as_slice())));
    let z = zip_of(&entries);
    assert_eq!(
        symbols_with(&policy_with(3, 10, 1 << 20), &[zip_part("many.zip", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TOO_MANY_ENTRIES"]
    );
    // Regression (review of this change): entries written by a streaming zipper (sizes in
    // data descriptors) or a zip behind bytes holding a local header signature stopped the
    // read at once.
    let streamed = streamed_zip_of(&entries);
    let mut behind_junk = b"PK\x03\x04junk".to_vec();
    behind_junk.extend_from_slice(&z);
    for (label, data) in [("streamed", &streamed), ("behind junk", &behind_junk)] {
        assert_eq!(
            symbols_with(&policy_with(3, 10, 1 << 20), &[zip_part("many.zip", data)]),
            vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TOO_MANY_ENTRIES"],
            "{label}"
        );
    }
    // Listed past the count, it is left (its name is still judged).
    let mut late: Vec<(&str, &[u8])> = entries[1..].to_vec();
    late.push(("docs.zip", inner.as_slice()));
    let z = zip_of(&late);
    assert_eq!(
        symbols_with(&policy_with(3, 10, 1 << 20), &[zip_part("many.zip", &z)]),
        vec!["ARCHIVE_NESTED_SKIPPED", "ARCHIVE_TOO_MANY_ENTRIES"]
    );
}

/// Regression (review): a zip the zip crate refuses (an extra field declaring more bytes
/// than it holds), which unzip still extracts, gave only ARCHIVE_UNREADABLE: the
/// `inner.zip` in it, holding `evil.exe`, was never opened. The entries are then read as
/// unzip reads them.
#[test]
fn a_zip_the_reader_refuses_is_still_read_as_unzip_reads_it() {
    let inner = zip_of(&[("evil.exe", b"MZ program".as_slice())]);
    // Deflated, so no header of the inner zip shows in the outer one's bytes.
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut deflate, &inner).unwrap();
    let deflated = deflate.finish().unwrap();
    let lying_extra = [0xfe, 0xca, 0x00, 0x01];
    let outer = raw_zip(&[RawEntry {
        method: 8,
        data: &deflated,
        crc: crc32(&inner),
        size: inner.len() as u32,
        extra: &lying_extra,
        ..RawEntry::stored("inner.zip", &inner)
    }]);
    assert!(
        zip::ZipArchive::new(std::io::Cursor::new(outer.as_slice())).is_err(),
        "the zip crate takes this one: the test tests nothing"
    );
    let found = symbols(&[zip_part("outer.zip", &outer)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
    assert!(found.contains(&"ARCHIVE_UNREADABLE"), "{found:?}");
}

/// Regression (review): an encrypted entry named as an archive was only
/// `ARCHIVE_ENCRYPTED` (2 points): a program in a zip inside a password-protected zip
/// (the password in the body) was never judged, and nothing said so.
#[test]
fn an_encrypted_entry_named_as_an_archive_is_uninspected() {
    let inner = zip_of(&[("invoice.exe", b"MZ program".as_slice())]);
    assert_eq!(
        symbols(&[zip_part("docs.zip", &inner)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    let outer = zipcrypto_zip_of(&[("docs.zip", inner.as_slice())]);
    let found = symbols(&[zip_part("invoice.zip", &outer)]);
    assert!(found.contains(&"ARCHIVE_UNINSPECTED"), "{found:?}");
    assert!(found.contains(&"ARCHIVE_ENCRYPTED"), "{found:?}");
    // An encrypted document is only encrypted.
    let outer = zipcrypto_zip_of(&[("report.pdf", b"%PDF-1.4".as_slice())]);
    let found = symbols(&[zip_part("report.zip", &outer)]);
    assert_eq!(found, vec!["ARCHIVE_ENCRYPTED"]);
}
