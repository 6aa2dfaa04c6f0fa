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
pub(super) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
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
        content_left_out: false,
    }]);
    assert_eq!(found[0].file, "photos.tar.gz/photos.tar/photos.zip/run.vbs");
    assert_eq!(
        symbols_with(
            &policy_with(1, 1000, 1 << 20),
            &[part("photos.tar.gz", "", &tgz)]
        ),
        vec!["ARCHIVE_TOO_DEEP", "ARCHIVE_UNINSPECTED"]
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

/// A tar header block: `name`, type `kind`, `size` in its field, checksum set.
fn tar_header(name: &[u8], kind: u8, size: usize, magic: bool) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    if magic {
        h[257..265].copy_from_slice(b"ustar\x0000");
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// One raw tar record: a header saying `size` (its data's, unless the test lies), then
/// the data padded to whole blocks.
fn tar_record(name: &[u8], kind: u8, size: usize, data: &[u8], magic: bool) -> Vec<u8> {
    let mut out = tar_header(name, kind, size, magic);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

/// A tar of raw records: (name, type, data), each header's size its data's, two zero
/// blocks at the end.
fn raw_tar(records: &[(&[u8], u8, &[u8])], magic: bool) -> Vec<u8> {
    let mut out: Vec<u8> = records
        .iter()
        .flat_map(|(name, kind, data)| tar_record(name, *kind, data.len(), data, magic))
        .collect();
    out.resize(out.len() + 1024, 0);
    out
}

/// A PAX extended header body of these records.
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

/// A tar whose PAX record (`records`) precedes a GNU long-name record naming
/// `readme.txt`, then the file: the names a reader might take from either.
fn pax_before_a_long_name(records: &[u8]) -> Vec<u8> {
    raw_tar(
        &[
            (b"PaxHeaders/x", b'x', records),
            (b"././@LongLink", b'L', b"readme.txt\0"),
            (b"readme.txt", b'0', b"x"),
        ],
        true,
    )
}

/// Regression (review): the tar reader shows one name per entry by its own precedence (a
/// GNU long name over a PAX `path`), while GNU tar extracts under the PAX one, and Python's
/// `tarfile` under `GNU.sparse.name`: every name a header carries is judged.
#[test]
fn every_name_a_tar_header_carries_is_judged() {
    let path = pax(&[("path", "invoice.exe")]);
    let tar = pax_before_a_long_name(&path);
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_BLOCKED_EXT"));
    let sparse = pax(&[("GNU.sparse.name", "invoice.exe")]);
    let tar = raw_tar(
        &[
            (b"PaxHeaders/x", b'x', &sparse),
            (b"readme.txt", b'0', b"x"),
        ],
        true,
    );
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_BLOCKED_EXT"));
}

/// Regression (review): a file was sliced by its header's size, which a PAX `size`
/// overrides: a zip stored behind a header saying 0 bytes was never opened. And a file of
/// a type tar does not know (`A`), which GNU tar extracts as a file, was not looked at.
#[test]
fn tar_files_are_read_at_their_real_size_whatever_their_type() {
    let zip = zip_of(&[("run.vbs", b"x".as_slice())]);
    let size = pax(&[("size", &zip.len().to_string())]);
    let mut tar = tar_record(b"PaxHeaders/x", b'x', size.len(), &size, true);
    // The header says 0 bytes; the PAX record says how many follow.
    tar.extend(tar_record(b"photos.zip", b'0', 0, &zip, true));
    tar.resize(tar.len() + 1024, 0);
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_BLOCKED_EXT"));
    let tar = raw_tar(&[(b"invoice.pdf", b'A', &pe())], true);
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_TYPE_MISMATCH"));
}

/// Regression (review): a V7 tar (no `ustar` magic) was not known as a tar, so a `.tgz`
/// of one was never walked.
#[test]
fn old_tars_without_magic_are_known_by_their_checksum() {
    let tar = raw_tar(&[(b"invoice.exe", b'0', b"MZ")], false);
    assert_eq!(
        symbols(&[part("files.tgz", "", &gzip(None, &tar))]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
}

/// Regression (review): the decoder reports the last member's header only, while
/// `gunzip -N` names the file after the first: every member's stored name is judged.
#[test]
fn the_name_of_every_gzip_member_is_judged() {
    let mut data = gzip(Some("invoice.exe"), &pe());
    data.extend(gzip(Some("notes.txt"), b""));
    assert!(symbols(&[part("notes.gz", "", &data)]).contains(&"ARCHIVE_BLOCKED_EXT"));
}

/// Regression (review): the name gunzip gives was cut from the shown path, which is the
/// first name only and shortened past 100 characters, and missed `invoice.exe.gz.`.
#[test]
fn every_name_of_a_gzip_is_shortened_as_gunzip_would() {
    let data = gzip(None, b"x");
    let long = format!("{}.exe.gz", "a".repeat(120));
    for names in [
        vec![long],
        vec!["report.gz".to_string(), "invoice.exe.gz".to_string()],
        vec!["invoice.exe.gz.".to_string()],
    ] {
        let p = Part {
            names: names.clone(),
            content_type: String::new(),
            data: data.clone(),
        };
        assert!(symbols(&[p]).contains(&"ARCHIVE_BLOCKED_EXT"), "{names:?}");
    }
}

/// Regression: bytes after the last member (a tape block's zero padding, a mailer's junk)
/// made a gzip `ARCHIVE_UNREADABLE` (2 points) and hid nothing from gunzip, which writes
/// the file and ignores them (silently for zeros, with a warning for junk).
#[test]
fn bytes_after_the_last_gzip_member_are_ignored_as_gunzip_ignores_them() {
    let tgz = gzip(None, &tar_of(&[("invoice.exe", b"x".as_slice())]));
    for tail in [&[0u8; 512][..], b"junk here", b"PK"] {
        let mut data = tgz.clone();
        data.extend_from_slice(tail);
        assert_eq!(
            symbols(&[part("a.tgz", "", &data)]),
            vec!["ARCHIVE_BLOCKED_EXT"],
            "{tail:?}"
        );
    }
    // A member that opens and breaks is gunzip's "unexpected end of file".
    let mut data = tgz.clone();
    data.extend_from_slice(b"\x1f\x8b");
    assert!(symbols(&[part("a.tgz", "", &data)]).contains(&"ARCHIVE_UNREADABLE"));
}

/// Regression (review of the gunzip reader): each member costs a fresh decoder (some 43 KB
/// of state), and 500,000 empty members fit in a 10 MB attachment. Past a thousand members
/// and one per 4 KiB the gzip is unreadable; a file cut into many members (BGZF) is not.
#[test]
fn a_flood_of_empty_gzip_members_is_unreadable() {
    let empty = gzip(None, b"");
    let flood: Vec<u8> = empty.repeat(20_000);
    assert!(symbols(&[part("a.gz", "", &flood)]).contains(&"ARCHIVE_UNREADABLE"));
    let mut blocks = Vec::new();
    for i in 0..200u32 {
        blocks.extend(gzip(
            None,
            format!("block {i} of a divided file\n").as_bytes(),
        ));
    }
    assert_eq!(symbols(&[part("a.gz", "", &blocks)]), Vec::<&str>::new());
}

/// Regression (review): only one reader ran, chosen by the first bytes, so a gzip member
/// in front of a zip (which `unzip` reads by its end record) hid the zip's files.
#[test]
fn a_zip_behind_a_gzip_member_is_still_read_as_a_zip() {
    let mut data = gzip(None, b"x");
    data.extend(zip_of(&[("invoice.exe", b"x".as_slice())]));
    assert!(symbols(&[part("invoice.zip", "", &data)]).contains(&"ARCHIVE_BLOCKED_EXT"));
}

/// Regression (review): a `.tar.gz` whose expansion the budget cut had the names after the
/// cut left unjudged (only `ARCHIVE_TOO_LARGE`, 0.5 points). The tar is read on for names
/// only, for at most the budget again.
#[test]
fn names_after_the_budget_cut_a_tar_gz_are_still_judged() {
    let noise = noise(3 << 19);
    let tar = tar_of(&[
        ("data.bin", noise.as_slice()),
        ("invoice.exe", b"MZ".as_slice()),
    ]);
    let tgz = gzip(None, &tar);
    let found = symbols_with(
        &policy_with(3, 1000, 1 << 20),
        &[part("backup.tgz", "", &tgz)],
    );
    assert_eq!(found, vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_TOO_LARGE"]);
    // Past twice the budget the names are left: the cost stays bounded, and the cut is
    // flagged (it was silent: review).
    let found = symbols_with(
        &policy_with(3, 1000, 1 << 18),
        &[part("backup.tgz", "", &tgz)],
    );
    assert_eq!(
        found,
        vec![
            "ARCHIVE_TOO_LARGE",
            "ARCHIVE_TOO_MANY_ENTRIES",
            "ARCHIVE_UNINSPECTED"
        ]
    );
    // A `.tar.gz` after the one that spent the budget is read for names too, from what
    // the message has left for names (shared by all its archives, not each one's own).
    let big = gzip(None, &tar_of(&[("data.bin", noise.as_slice())]));
    // Past the piece read when the budget ran out (64 KiB, read anyway).
    let small = gzip(
        None,
        &tar_of(&[
            ("pad.bin", &noise[..1 << 17]),
            ("invoice.pdf.exe", b"MZ".as_slice()),
        ]),
    );
    let parts = [part("backup.tgz", "", &big), part("setup.tgz", "", &small)];
    assert_eq!(
        symbols_with(&policy_with(3, 1000, 1 << 20), &parts),
        vec![
            "ARCHIVE_BLOCKED_EXT",
            "ARCHIVE_DOUBLE_EXT",
            "ARCHIVE_TOO_LARGE"
        ]
    );
    assert_eq!(
        symbols_with(&policy_with(3, 1000, 1 << 18), &parts),
        vec![
            "ARCHIVE_TOO_LARGE",
            "ARCHIVE_TOO_MANY_ENTRIES",
            "ARCHIVE_UNINSPECTED"
        ]
    );
}

/// Regression (review): a PAX record of no interest longer than 64 KiB hid the `path`
/// record after it, and a PAX `size` was given to a GNU long-name record between it and
/// the file it describes (GNU tar and Python's `tarfile` give it to the file), which put
/// the name reader inside file data.
#[test]
fn long_pax_records_and_records_between_hide_no_name() {
    let long = "A".repeat(100_000);
    let records = pax(&[("comment", &long), ("path", "invoice.exe")]);
    let tar = pax_before_a_long_name(&records);
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_BLOCKED_EXT"));

    let size = pax(&[("size", "1024")]);
    let mut tar = tar_record(b"PaxHeaders/x", b'x', size.len(), &size, true);
    tar.extend(tar_record(
        b"././@LongLink",
        b'L',
        11,
        b"readme.txt\0",
        true,
    ));
    tar.extend(tar_record(b"readme.txt", b'0', 0, &[b'x'; 1024], true));
    tar.extend(raw_tar(&[(b"invoice.exe", b'0', b"MZ")], true));
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_BLOCKED_EXT"));
}

/// Regression (review): a zip behind junk bytes inside a `.tgz` or a gzip was never opened
/// (only the top level looked for a zip end record).
#[test]
fn a_zip_behind_other_bytes_inside_a_tarball_is_opened() {
    let inner = super::archives::zip_behind_junk();
    let tgz = gzip(None, &tar_of(&[("docs.zip", inner.as_slice())]));
    assert_eq!(
        symbols(&[part("outer.tgz", "", &tgz)]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    // By its name, and by its end record when the gzip names nothing.
    for name in ["docs.zip.gz", "docs.gz"] {
        assert_eq!(
            symbols(&[part(name, "", &gzip(None, &inner))]),
            vec!["ARCHIVE_BLOCKED_EXT"],
            "{name}"
        );
    }
}

/// Regression (review): the tar readers stopped at the first block whose checksum fails,
/// while GNU tar skips to the next header and extracts on: 512 bytes of junk before
/// `evil.exe` hid its name, and junk in the first block of a file named `.tar` hid every
/// name (the content was not taken for a tar at all).
#[test]
fn junk_blocks_in_a_tar_hide_no_name() {
    let readme = tar_of(&[("a.txt", b"hello".as_slice())]);
    let evil = tar_of(&[("evil.exe", b"MZ program".as_slice())]);
    // A tar's entries, without the end marker of the first.
    let first = &readme[..1024];
    let junk = vec![b'J'; 512];
    let mid: Vec<u8> = [first, &junk, &evil].concat();
    let found = symbols(&[part("docs.tar", "application/x-tar", &mid)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
    assert!(found.contains(&"ARCHIVE_UNINSPECTED"), "{found:?}");
    let leading: Vec<u8> = [&junk, evil.as_slice()].concat();
    let found = symbols(&[part("docs.tar", "application/x-tar", &leading)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
}

/// Regression (review): a Solaris `X` header, which GNU tar, libarchive and Python's
/// `tarfile` apply as they apply `x`, was not read: its `path` was never judged, and a
/// `size` in it (which the `tar` crate ignores) moves where GNU tar reads the entries.
#[test]
fn solaris_extended_headers_are_read_as_pax_ones() {
    let path = pax(&[("path", "invoice.js")]);
    let tar = raw_tar(
        &[
            (b"PaxHeaders/a.txt", b'X', &path),
            (b"invoice.txt", b'0', b"WScript.Shell"),
        ],
        true,
    );
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_BLOCKED_EXT"));
    let size = pax(&[("size", "0")]);
    let tar = raw_tar(
        &[
            (b"PaxHeaders/a.txt", b'X', &size),
            (b"notes.txt", b'0', b"hello"),
        ],
        true,
    );
    assert!(symbols(&[part("a.tar", "", &tar)]).contains(&"ARCHIVE_UNINSPECTED"));
}
