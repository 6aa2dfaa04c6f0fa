//! gzip and tar: the file a gzip holds, the files of a tar (also `.tar.gz`), archives
//! nested in them, bombs and broken ones.

use super::zipbuild::{deflated_zeros, zip_of};
use super::*;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use std::io::Write;

/// `data` gzipped, storing `name` in the header when one is given (gzip from a pipe, or
/// `gzip -n`, stores none).
pub(super) fn gzip(name: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder: GzEncoder<&mut Vec<u8>> = match name {
            Some(n) => GzBuilder::new()
                .filename(n)
                .write(&mut out, Compression::default()),
            None => GzEncoder::new(&mut out, Compression::default()),
        };
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap();
    }
    out
}

/// A POSIX tar of these files (GNU long-name records for names over 100 bytes).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn the_file_a_gzip_holds_is_judged_by_each_of_its_names() {
    // Named by the attachment only (gzip from a pipe): what gunzip would write.
    assert_eq!(
        symbols(&[part(
            "invoice.exe.gz",
            "application/gzip",
            &gzip(None, b"x")
        )]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    // Named in its header, behind a harmless attachment name.
    assert_eq!(
        symbols(&[part("report.gz", "", &gzip(Some("report.js"), b"x"))]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    // A program behind a document's name.
    assert_eq!(
        symbols(&[part("scan.pdf.gz", "", &gzip(None, &pe()))]),
        vec!["ARCHIVE_TYPE_MISMATCH"]
    );
    // A harmless gzip yields nothing, whatever its type says.
    assert!(symbols(&[part(
        "notes.txt.gz",
        "application/x-gzip",
        &gzip(None, b"hi")
    )])
    .is_empty());
}

#[test]
fn the_files_of_a_tar_and_of_a_tar_gz_are_judged() {
    let long = format!("{}/setup.exe", "d".repeat(120));
    let tar = tar_of(&[
        ("docs/readme.txt", b"hello".as_slice()),
        ("docs/invoice.pdf", pe().as_slice()),
        (long.as_str(), b"x".as_slice()),
    ]);
    let expected = vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TYPE_MISMATCH"];
    assert_eq!(symbols(&[part("files.tar", "", &tar)]), expected);
    // Found by content behind another name, and gzipped.
    assert_eq!(symbols(&[part("files.dat", "", &tar)]), expected);
    assert_eq!(
        symbols(&[part("files.tgz", "", &gzip(None, &tar))]),
        expected
    );
    let clean = tar_of(&[("a.txt", b"a".as_slice()), ("b.pdf", PDF)]);
    assert!(symbols(&[part("clean.tar.gz", "", &gzip(None, &clean))]).is_empty());
}

#[test]
fn archives_inside_tarballs_are_opened_to_the_configured_depth() {
    let zip = zip_of(&[("run.vbs", b"x".as_slice())]);
    let tgz = gzip(None, &tar_of(&[("photos.zip", zip.as_slice())]));
    // The tar.gz is level 1, the zip in it level 2.
    assert_eq!(
        symbols(&[part("photos.tar.gz", "", &tgz)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    let found = policy().inspect(&[Attachment {
        names: &["photos.tar.gz".to_string()],
        content_type: "",
        data: &tgz,
    }]);
    assert_eq!(found[0].file, "photos.tar.gz/photos.tar/photos.zip/run.vbs");
    assert_eq!(
        symbols_with(
            &policy_with(1, 1000, 1 << 20),
            &[part("photos.tar.gz", "", &tgz)]
        ),
        vec!["ARCHIVE_TOO_DEEP"]
    );
    // A zip holding a gzip holding a program.
    let zip = zip_of(&[("update.gz", gzip(Some("update.scr"), b"x").as_slice())]);
    assert_eq!(
        symbols(&[part("update.zip", "application/zip", &zip)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
}

#[test]
fn a_gzip_of_gigabytes_of_zeros_is_a_bomb() {
    // 4000 MiB of zeros in about 4 MB: header, deflate stream, and a trailer never reached.
    let mut bomb = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    bomb.extend_from_slice(&deflated_zeros(4000));
    bomb.extend_from_slice(&[0; 8]);
    assert_eq!(
        symbols(&[part("zeros.gz", "application/gzip", &bomb)]),
        vec!["ARCHIVE_BOMB"]
    );
}

#[test]
fn too_many_tar_entries_stop_the_inspection() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), b"x".as_slice()))
        .collect();
    assert_eq!(
        symbols_with(
            &policy_with(3, 10, 1 << 20),
            &[part("many.tar", "", &tar_of(&files))]
        ),
        vec!["ARCHIVE_TOO_MANY_ENTRIES"]
    );
}

#[test]
fn broken_gzips_and_tars_are_unreadable_and_never_panic() {
    let tgz = gzip(None, &tar_of(&[("a.txt", b"hello".as_slice())]));
    assert_eq!(
        symbols(&[part("a.gz", "", b"not a gzip at all")]),
        vec!["ARCHIVE_UNREADABLE"]
    );
    let mut corrupt = tgz.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    assert!(symbols(&[part("a.tgz", "", &corrupt)]).contains(&"ARCHIVE_UNREADABLE"));
    let mut tar = tar_of(&[("a.txt", b"hello".as_slice())]);
    tar[148] ^= 0x01; // the header checksum
    assert_eq!(
        symbols(&[part("a.tar", "", &tar)]),
        vec!["ARCHIVE_UNREADABLE"]
    );
    // Every prefix of a tar.gz: no panic.
    for cut in 0..tgz.len() {
        let _ = symbols(&[part("a.tgz", "", &tgz[..cut])]);
    }
}
