//! What the readers leave unjudged is flagged (`ARCHIVE_UNINSPECTED` when no ordinary mail
//! gets there, `ARCHIVE_NESTED_SKIPPED` past the limits big bundles reach too), and names
//! are judged past the limits that stop content (regressions, review of the attachment
//! policy: each of these hid `evil.exe` behind a symbol of 0.5 to 3 points, or none).

use super::zipbuild::{raw_zip, zip_of, RawEntry};
use super::*;

/// Bytes of fake central-directory headers, each naming 64 KiB with no NUL: without a
/// bound on the bytes already scanned, some 1,000 of them spent the message's bound on
/// header names.
fn header_pad(count: usize) -> Vec<u8> {
    let mut pad = Vec::new();
    for _ in 0..count {
        pad.extend_from_slice(b"PK\x01\x02");
        pad.extend_from_slice(&[1u8; 24]);
        pad.extend_from_slice(&[0xff, 0xff]);
        pad.extend_from_slice(&[1u8; 16]);
    }
    // The last of them names 64 KiB too.
    pad.extend_from_slice(&[b'a'; 1 << 16]);
    pad
}

#[test]
fn junk_header_signatures_cannot_spend_the_bound_on_names() {
    let pad = header_pad(1100);
    let names: Vec<String> = (0..1000).map(|i| format!("f{i}.txt")).collect();
    let mut entries: Vec<RawEntry<'_>> = vec![RawEntry::stored("pad.bin", &pad)];
    entries.extend(names.iter().map(|n| RawEntry::stored(n, b"x")));
    entries.push(RawEntry::stored("evil.exe", b"x"));
    let z = raw_zip(&entries);
    let found = symbols(&[part("docs.zip", "application/zip", &z)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
}

#[test]
fn nested_archives_left_unopened_are_uninspected() {
    let inner = zip_of(&[("evil.exe", pe().as_slice())]);
    // Past the entry limit.
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.txt")).collect();
    let mut entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    entries.push(("inner.zip", &inner));
    let z = zip_of(&entries);
    assert_eq!(
        symbols_with(&policy_with(3, 3, 1 << 20), &[part("a.zip", "", &z)]),
        vec!["ARCHIVE_NESTED_SKIPPED", "ARCHIVE_TOO_MANY_ENTRIES"]
    );
    // Past the byte budget (ordinary data, no bomb).
    let noise = noise(1 << 20);
    let z = zip_of(&[("data.bin", noise.as_slice()), ("inner.zip", &inner)]);
    assert_eq!(
        symbols_with(&policy_with(3, 1000, 1 << 19), &[part("a.zip", "", &z)]),
        vec!["ARCHIVE_NESTED_SKIPPED", "ARCHIVE_TOO_LARGE"]
    );
    // In a method the reader lacks (xz, method 95; bytes that hide the inner names).
    let hidden = {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&inner).unwrap();
        e.finish().unwrap()
    };
    let mut xz_entry = RawEntry::stored("inner.zip", &hidden);
    xz_entry.method = 95;
    let z = raw_zip(&[xz_entry]);
    assert_eq!(
        symbols(&[part("a.zip", "", &z)]),
        vec!["ARCHIVE_UNINSPECTED", "ARCHIVE_UNREADABLE"]
    );
    // An entry left unread that is no archive by name says nothing more.
    let z = zip_of(&[
        ("data.bin", noise.as_slice()),
        ("notes.txt", b"x".as_slice()),
    ]);
    assert_eq!(
        symbols_with(&policy_with(3, 1000, 1 << 19), &[part("a.zip", "", &z)]),
        vec!["ARCHIVE_TOO_LARGE"]
    );
}

#[test]
fn bzip2_and_lzma_zip_entries_are_read() {
    use std::io::{Cursor, Write};
    use zip::write::SimpleFileOptions;
    let inner = zip_of(&[("evil.exe", pe().as_slice())]);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Bzip2);
    w.start_file("inner.zip", options).unwrap();
    w.write_all(&inner).unwrap();
    let z = w.finish().unwrap().into_inner();
    assert_eq!(
        symbols(&[part("a.zip", "", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
}

#[test]
fn an_lzma_zip_entry_declaring_a_huge_dictionary_is_not_read() {
    // Version 9.20, five bytes of properties: lc=3 lp=0 pb=2 and a 2 GiB dictionary.
    let mut data = vec![9, 20, 5, 0, 0x5d, 0, 0, 0, 0x80];
    data.extend_from_slice(&[0u8; 32]);
    let mut entry = RawEntry::stored("inner.zip", &data);
    entry.method = 14;
    entry.size = 1000;
    let z = raw_zip(&[entry]);
    assert_eq!(
        symbols(&[part("a.zip", "", &z)]),
        vec!["ARCHIVE_UNINSPECTED", "ARCHIVE_UNREADABLE"]
    );
}

#[test]
fn a_zip_with_bytes_after_its_end_record_is_read() {
    let z = zip_of(&[("evil.exe", pe().as_slice())]);
    let mut pdf = PDF.to_vec();
    pdf.extend_from_slice(&z);
    pdf.extend_from_slice(b"\n%%EOF\n");
    let found = symbols(&[part("a.pdf", "application/pdf", &pdf)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
    // The same inside a zip, named as an image.
    let outer = zip_of(&[("photo.gif", pdf.as_slice())]);
    let found = symbols(&[part("photos.zip", "", &outer)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
    // An end-record signature in a document's tail that leads to no directory is not a zip.
    let mut text = b"plain text ".repeat(10);
    text.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00\x30\x00\x00\x00");
    text.extend_from_slice(&[0u8; 8]);
    text.extend_from_slice(b" and more text");
    assert!(symbols(&[part("notes.txt", "text/plain", &text)]).is_empty());
}

#[test]
fn names_past_the_entry_limit_of_any_reader_are_judged() {
    // A tar: the 1,001st entry's name is judged, and an archive past the limit flagged.
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.txt")).collect();
    let inner = zip_of(&[("a.txt", b"x".as_slice())]);
    let mut files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    files.push(("evil.exe", b"x"));
    files.push(("more.zip", &inner));
    let tar = super::tarballs::tar_of(&files);
    assert_eq!(
        symbols_with(&policy_with(3, 3, 1 << 20), &[part("a.tar", "", &tar)]),
        vec![
            "ARCHIVE_BLOCKED_EXT",
            "ARCHIVE_NESTED_SKIPPED",
            "ARCHIVE_TOO_MANY_ENTRIES"
        ]
    );
}

/// Regression (review of the fix): ordinary mail met `ARCHIVE_UNINSPECTED`, which the
/// shipped configuration refuses: an Office file's embedded workbook past the depth, a
/// `.gz` or Office file inside a bundle that spent the byte budget.
#[test]
fn ordinary_bundles_past_the_limits_are_not_refused() {
    // zip → zip → docx whose chart data is an embedded .xlsx (a zip at depth 4).
    let xlsx = zip_of(&[("xl/workbook.xml", b"<workbook/>".as_slice())]);
    let docx = zip_of(&[
        ("word/document.xml", b"<document/>".as_slice()),
        ("word/embeddings/Microsoft_Excel_Worksheet.xlsx", &xlsx),
    ]);
    let inner = zip_of(&[("report.docx", docx.as_slice())]);
    let outer = zip_of(&[("reports.zip", inner.as_slice())]);
    let found = symbols(&[part("mail.zip", "", &outer)]);
    assert!(!found.contains(&"ARCHIVE_UNINSPECTED"), "{found:?}");
    // A bundle whose logs spend the budget, a rotated .gz log after them.
    let noise = noise(1 << 20);
    let gz = super::tarballs::gzip(None, b"old log lines");
    let tar = super::tarballs::tar_of(&[
        ("app.log.1.gz", gz.as_slice()),
        ("report.docx", &docx),
        ("app.log", &noise),
    ]);
    let tgz = super::tarballs::gzip(None, &tar);
    let found = symbols_with(
        &policy_with(3, 1000, 1 << 19),
        &[part("sosreport.tar.gz", "", &tgz)],
    );
    assert!(found.contains(&"ARCHIVE_TOO_LARGE"), "{found:?}");
    assert!(!found.contains(&"ARCHIVE_UNINSPECTED"), "{found:?}");
}

/// Regression (review of the fix): past the entry limit a gzip was not even judged by
/// the name gunzip gives its file.
#[test]
fn a_gzip_past_the_entry_limit_is_judged_by_name() {
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    let many = zip_of(&entries);
    let gz = super::tarballs::gzip(None, &pe());
    let found = symbols_with(
        &policy_with(3, 5, 1 << 20),
        &[part("many.zip", "", &many), part("invoice.exe.gz", "", &gz)],
    );
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
}
