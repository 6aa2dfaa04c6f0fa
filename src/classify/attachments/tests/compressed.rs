//! bzip2, xz and lzma files, which Windows 11 opens natively: judged like a gzip's file
//! (regression, review: `invoice.tar.xz` holding `evil.exe` got no symbol at all).

use super::tarballs::tar_of;
use super::*;
use std::io::Write;

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let options = lzma_rust2::XzOptions::with_preset(1);
    let mut writer = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
    writer.write_all(data).unwrap();
    writer.finish().unwrap()
}

fn lzma(data: &[u8]) -> Vec<u8> {
    let options = lzma_rust2::LzmaOptions::with_preset(1);
    let mut writer = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &options, None).unwrap();
    writer.write_all(data).unwrap();
    writer.finish().unwrap()
}

#[test]
fn a_program_in_a_bzip2_xz_or_lzma_file_is_found() {
    let tar = tar_of(&[("readme.txt", b"hello".as_slice()), ("evil.exe", &pe())]);
    for (label, compressed) in [("bz2", bzip2(&tar)), ("xz", xz(&tar)), ("lzma", lzma(&tar))] {
        // As `.tar.*`, and by content under any name.
        let name = format!("invoice.tar.{label}");
        assert_eq!(
            symbols(&[part(&name, "", &compressed)]),
            vec!["ARCHIVE_BLOCKED_EXT"],
            "{label}"
        );
        assert_eq!(
            symbols(&[part("data.bin", "", &compressed)]),
            vec!["ARCHIVE_BLOCKED_EXT"],
            "{label} unnamed"
        );
        // A program compressed alone is named after the file, as unxz names it.
        let single = match label {
            "bz2" => bzip2(&pe()),
            "xz" => xz(&pe()),
            _ => lzma(&pe()),
        };
        let name = format!("invoice.exe.{label}");
        assert_eq!(
            symbols(&[part(&name, "", &single)]),
            vec!["ARCHIVE_BLOCKED_EXT"],
            "{label} single"
        );
    }
    // Harmless content stays quiet.
    let tar = tar_of(&[("notes.txt", b"hello".as_slice())]);
    assert!(symbols(&[part("notes.tar.xz", "", &xz(&tar))]).is_empty());
    assert!(symbols(&[part("notes.txt.bz2", "", &bzip2(b"hello"))]).is_empty());
}

#[test]
fn an_archive_in_a_compressed_file_is_opened_one_level_deeper() {
    let inner = super::zipbuild::zip_of(&[("run.vbs", b"x".as_slice())]);
    assert_eq!(
        symbols(&[part("photos.zip.xz", "", &xz(&inner))]),
        vec!["ARCHIVE_BLOCKED_EXT"]
    );
    // Past the last level it is left unopened, and says so.
    assert_eq!(
        symbols_with(
            &policy_with(1, 1000, 1 << 20),
            &[part("photos.zip.xz", "", &xz(&inner))]
        ),
        vec!["ARCHIVE_TOO_DEEP", "ARCHIVE_UNINSPECTED"]
    );
}

#[test]
fn a_compressed_bomb_stops_at_the_budget() {
    let zeros = vec![0u8; 4 << 20];
    for compressed in [bzip2(&zeros), xz(&zeros), lzma(&zeros)] {
        assert!(compressed.len() < 64 * 1024);
        assert_eq!(
            symbols_with(
                &policy_with(3, 1000, 1 << 20),
                &[part("zeros.bin", "", &compressed)]
            ),
            vec!["ARCHIVE_BOMB"]
        );
    }
}

/// Regression (review): every empty bzip2 stream of a file cost a fresh decoder and its
/// block buffers: 15 MB of 14-byte streams held a core for 41 s. As for gzip members, a
/// file has at most 1,000 streams and one per 4 KiB beyond.
#[test]
fn a_flood_of_empty_bzip2_streams_is_unreadable() {
    let empty = bzip2(b"");
    assert!(empty.len() < 64);
    let flood = empty.repeat(20_000);
    let found = symbols(&[part("data.bz2", "", &flood)]);
    assert!(found.contains(&"ARCHIVE_UNREADABLE"), "{found:?}");
    // Real multi-stream files (pbzip2 writes one stream per block) are read whole.
    let mut parts = bzip2(b"first half ");
    parts.extend(bzip2(&pe()));
    let found = symbols(&[part("invoice.exe.bz2", "", &parts)]);
    assert_eq!(found, vec!["ARCHIVE_BLOCKED_EXT"]);
}

#[test]
fn an_lzma_dictionary_past_the_limit_is_refused_not_allocated() {
    // lc=3 lp=0 pb=2, a 1 GiB dictionary, size unknown, then some stream bytes.
    let mut header = vec![0x5d, 0, 0, 0, 0x40];
    header.extend_from_slice(&[0xff; 8]);
    header.extend_from_slice(&[0u8; 64]);
    assert_eq!(
        symbols(&[part("backup.tar.lzma", "", &header)]),
        vec!["ARCHIVE_UNINSPECTED", "ARCHIVE_UNREADABLE"]
    );
}

/// Regression (review): the limit was exactly 64 MiB while the decoders count their
/// buffers too, so `xz -9` and `lzma -9` files (64 MiB dictionaries) were refused.
#[test]
fn a_64_mib_dictionary_is_within_the_limit() {
    // lc=3 lp=0 pb=2, a 64 MiB dictionary, an empty file: the range coder's five bytes.
    let mut empty = vec![0x5d, 0, 0, 0, 0x04];
    empty.extend_from_slice(&[0u8; 8]);
    empty.extend_from_slice(&[0u8; 5]);
    assert!(symbols(&[part("backup.tar.lzma", "", &empty)]).is_empty());
}

#[test]
fn formats_not_opened_here_are_uninspected() {
    let zstd = b"\x28\xb5\x2f\xfd\x04\x58\x00\x00";
    let lzip = b"LZIP\x01\x0c\x00\x00\x00\x00";
    let cab = b"MSCF\0\0\0\0\x10\x00\x00\x00";
    for (name, data) in [
        ("backup.tar.zst", zstd.as_slice()),
        ("data.bin", zstd.as_slice()),
        ("backup.tar.lz", lzip.as_slice()),
    ] {
        assert!(
            symbols(&[part(name, "", data)]).contains(&"ARCHIVE_UNINSPECTED"),
            "{name}"
        );
    }
    // CAB is blocked by name, and holds OneNote and InfoPath files (review).
    assert!(symbols(&[part("notes.onepkg", "", cab)]).is_empty());
    // Named otherwise, it is opened by its content (7-Zip, WinRAR): a CAB holding
    // `evil.exe` named `invoice.zip` got no finding at all (review).
    for name in ["invoice.zip", "invoice.rar", "report.docx", "data.dat"] {
        assert!(
            symbols(&[part(name, "", cab)]).contains(&"ARCHIVE_UNINSPECTED"),
            "{name}"
        );
    }
    // Bytes that only look a little like a header are not taken for lzma.
    assert!(symbols(&[part("notes.txt", "", b"]\x00\x00\x10\x00plain text")]).is_empty());
}

/// Regression (pipeline cost probe): the budget counted decompressed bytes alike whatever
/// decoded them, so 64 MiB of bzip2 (2.7 s of CPU) or PPMd (9.6 s) cost one message what
/// 64 MiB of deflate (0.1 s) does. A byte of bzip2 now costs eight of deflate's: content
/// that a gzip reads whole within the budget runs a bzip2 out of it.
#[test]
fn a_dear_codec_spends_the_budget_faster() {
    let text = noise(200_000);
    let tar = tar_of(&[("notes.txt", text.as_slice())]);
    let policy = policy_with(3, 100, 1 << 20);
    let gz = super::tarballs::gzip(Some("notes.tar"), &tar);
    assert!(symbols_with(&policy, &[part("notes.tar.gz", "", &gz)]).is_empty());
    let bz = bzip2(&tar);
    assert_eq!(
        symbols_with(&policy, &[part("notes.tar.bz2", "", &bz)]),
        ["ARCHIVE_TOO_LARGE"]
    );
}

/// Regression (review of the codec costs): a zip's bzip2 entries were charged as deflate,
/// and an archive inside a dear one at the outer one's cost.
#[test]
fn a_zip_entry_costs_by_its_method_and_a_nested_archive_by_its_own() {
    use super::zipbuild::zip_by;
    let text = noise(200_000);
    let policy = policy_with(3, 100, 1 << 20);
    let deflated = zip_by(zip::CompressionMethod::Deflated, &[("notes.txt", &text)]);
    assert!(symbols_with(&policy, &[part("notes.zip", "", &deflated)]).is_empty());
    let bzipped = zip_by(zip::CompressionMethod::Bzip2, &[("notes.txt", &text)]);
    assert_eq!(
        symbols_with(&policy, &[part("notes.zip", "", &bzipped)]),
        ["ARCHIVE_TOO_LARGE"]
    );
    // A deflate zip inside a bzip2 file: the zip's 200 KB at deflate's price.
    let inner = zip_by(zip::CompressionMethod::Stored, &[("notes.txt", &text)]);
    let policy = policy_with(3, 100, 2 << 20);
    assert!(symbols_with(&policy, &[part("notes.zip.bz2", "", &bzip2(&inner))]).is_empty());
}
