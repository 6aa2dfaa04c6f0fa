//! What content is, by its first bytes, and what a name or declared type promises.
//!
//! A small table rather than a general sniffing crate: the policy only needs to know
//! "runs", "is an archive" or "is a document", and every entry here is checked strictly
//! enough (a PE header behind `MZ`, not just two letters) to stay quiet on ordinary files.

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Content {
    /// PE/DOS, ELF or Mach-O program.
    Program,
    /// Windows shortcut (`.lnk`).
    Shortcut,
    /// ISO 9660 or VHD/VHDX disk image.
    DiskImage,
    /// Zip (also docx, xlsx, odt, jar, apk).
    Zip,
    /// gzip (also `.tar.gz`).
    Gzip,
    /// bzip2 (also `.tar.bz2`).
    Bzip2,
    /// xz (also `.tar.xz`).
    Xz,
    /// lzma-alone, as `lzma` and 7-Zip write `.lzma` (also `.tar.lzma`).
    Lzma,
    /// POSIX or GNU tar.
    Tar,
    /// RAR 4 or 5 (its names are read; stored entries opened).
    Rar,
    /// 7-Zip.
    SevenZip,
    /// CAB, zstd, lzip, an unknown RAR version, LZH, ARJ, ACE, cpio, xar or WIM: an
    /// archive or compressed file this policy does not open.
    OtherArchive,
    /// Anything else.
    Other,
}

/// Bytes needed to recognise every entry (ISO 9660's descriptor sits at 0x8001).
pub(super) const SNIFF_LEN: usize = 0x9006;

const LNK_HEADER: [u8; 20] = [
    0x4C, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x46,
];

/// Classifies content by its first bytes (`data` may be only a prefix).
pub(super) fn sniff(data: &[u8]) -> Content {
    let starts = |m: &[u8]| data.starts_with(m);
    if is_zip(data) {
        Content::Zip
    } else if starts(GZIP) {
        Content::Gzip
    } else if is_bzip2(data) {
        Content::Bzip2
    } else if starts(XZ) {
        Content::Xz
    } else if is_lzma_alone(data) {
        Content::Lzma
    } else if is_tar(data) {
        Content::Tar
    } else if starts(RAR4_SIGNATURE) || starts(RAR5_SIGNATURE) {
        Content::Rar
    } else if starts(SEVEN_ZIP_SIGNATURE) {
        Content::SevenZip
    } else if starts(RAR_MARK)
        || starts(b"MSCF\0\0\0\0")
        || starts(ZSTD)
        || starts(b"LZIP\x01")
        || is_unopened_archive(data)
    {
        Content::OtherArchive
    } else if is_pe(data)
        || starts(b"\x7fELF")
        || starts(b"\xfe\xed\xfa\xce")
        || starts(b"\xfe\xed\xfa\xcf")
        || starts(b"\xce\xfa\xed\xfe")
        || starts(b"\xcf\xfa\xed\xfe")
    {
        Content::Program
    } else if starts(&LNK_HEADER) {
        Content::Shortcut
    } else if starts(b"conectix")
        || starts(b"vhdxfile")
        || [0x8001, 0x8801, 0x9001]
            .iter()
            .any(|&at| data.get(at..at + 5) == Some(b"CD001"))
    {
        Content::DiskImage
    } else {
        Content::Other
    }
}

/// The archive formats 7-Zip and WinRAR open by their content, whatever the name, that
/// this policy does not read (attachment probe: LZH named `.zip` or `.lzh` held an `.exe`
/// unflagged). Each by a header strict enough for ordinary files not to match.
fn is_unopened_archive(data: &[u8]) -> bool {
    let at = |offset: usize, m: &[u8]| data.get(offset..offset + m.len()) == Some(m);
    // LZH: a level 0-2 header's method id `-lh?-` or `-lz?-` at offset 2.
    let lzh = at(2, b"-l")
        && data.get(4).is_some_and(|m| matches!(m, b'h' | b'z'))
        && data.get(5).is_some_and(u8::is_ascii_alphanumeric)
        && at(6, b"-");
    // ARJ: its magic, then a basic header size of at most 2,600 bytes.
    let arj = at(0, b"\x60\xea")
        && data
            .get(2..4)
            .is_some_and(|n| (1..=2600).contains(&u16::from_le_bytes([n[0], n[1]])));
    // cpio's portable ASCII forms: the magic and the inode in hex (newc) or octal (odc).
    let cpio = (at(0, b"070701") || at(0, b"070702") || at(0, b"070707"))
        && data
            .get(6..12)
            .is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit));
    lzh || arj || cpio || at(7, b"**ACE**") || at(0, b"xar!\0\x1c") || at(0, b"MSWIM\0\0\0")
}

/// The first bytes of every RAR version, and of RAR 4 and RAR 5 archives.
pub(super) const RAR_MARK: &[u8] = b"Rar!\x1a\x07";
pub(super) const RAR4_SIGNATURE: &[u8] = b"Rar!\x1a\x07\x00";
pub(super) const RAR5_SIGNATURE: &[u8] = b"Rar!\x1a\x07\x01\x00";
/// A 7-Zip archive's first bytes.
pub(super) const SEVEN_ZIP_SIGNATURE: &[u8] = b"7z\xbc\xaf\x27\x1c";

/// gzip's magic and its one compression method (deflate).
const GZIP: &[u8] = b"\x1f\x8b\x08";
/// Whether `data` is a CAB archive (also OneNote `.onepkg` and InfoPath `.xsn`).
pub(super) fn is_cab(data: &[u8]) -> bool {
    data.starts_with(b"MSCF\0\0\0\0")
}

/// xz's stream header magic.
const XZ: &[u8] = b"\xfd7zXZ\x00";
/// A zstd frame's magic.
const ZSTD: &[u8] = b"\x28\xb5\x2f\xfd";

/// A bzip2 stream: `BZh`, the block size digit, then a block's or the end's 48-bit magic
/// (the digits of pi, or of the square root of pi for an empty stream).
fn is_bzip2(data: &[u8]) -> bool {
    data.starts_with(b"BZh")
        && data.get(3).is_some_and(|d| (b'1'..=b'9').contains(d))
        && data
            .get(4..10)
            .is_some_and(|m| m == b"\x31\x41\x59\x26\x53\x59" || m == b"\x17\x72\x45\x38\x50\x90")
}

/// An lzma-alone header, which has no magic: the properties byte `lc=3 lp=0 pb=2` that
/// every writer uses, a dictionary size of 2^n or 2^n + 2^(n-1) (as `lzma` and 7-Zip
/// write them), and a size that is unknown (all ones) or below 2^40.
fn is_lzma_alone(data: &[u8]) -> bool {
    let (Some(&0x5d), Some(dict), Some(size)) = (data.first(), data.get(1..5), data.get(5..13))
    else {
        return false;
    };
    let dict = u32::from_le_bytes([dict[0], dict[1], dict[2], dict[3]]);
    let shape = dict >> dict.trailing_zeros();
    let dict_ok = dict >= 1 << 12 && (shape == 1 || shape == 3);
    let size_ok = size.iter().all(|&b| b == 0xff) || size[5..].iter().all(|&b| b == 0);
    dict_ok && size_ok
}

/// Where a tar header's magic sits, and how long a head must be to show it.
const TAR_MAGIC_AT: usize = 257;
const TAR_HEAD_LEN: usize = TAR_MAGIC_AT + 6;

/// A POSIX (`ustar\0`) or GNU (`ustar  `) tar header, or an old V7 one, which carries no
/// magic: a named first header whose checksum holds.
fn is_tar(data: &[u8]) -> bool {
    let magic = data
        .get(TAR_MAGIC_AT..TAR_HEAD_LEN)
        .is_some_and(|m| m == b"ustar\0" || m == b"ustar ");
    let v7 = data
        .get(..TAR_BLOCK)
        .is_some_and(|h| h[0] != 0 && tar_checksum_holds(h));
    magic || v7
}

/// A tar header block's size.
const TAR_BLOCK: usize = 512;

/// Whether a tar header's checksum field (octal, at 148) equals the sum of its bytes with
/// that field read as spaces; tar readers refuse a header whose checksum fails.
pub(super) fn tar_checksum_holds(header: &[u8]) -> bool {
    let Some(header) = header.get(..TAR_BLOCK) else {
        return false;
    };
    let Some(stated) = tar_number(&header[148..156]) else {
        return false;
    };
    let sum: usize = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                usize::from(b)
            }
        })
        .sum();
    // An empty field reads 0, which no header sums to (the field alone counts 256).
    sum == stated
}

/// A tar header number: octal digits (space or NUL padded; none reads 0), or GNU's
/// base-256 form (high bit of the first byte set).
pub(super) fn tar_number(field: &[u8]) -> Option<usize> {
    let (&first, rest) = field.split_first()?;
    if first & 0x80 != 0 {
        return rest.iter().try_fold(usize::from(first & 0x7f), |n, &b| {
            n.checked_mul(256)?.checked_add(usize::from(b))
        });
    }
    let digits = std::str::from_utf8(field).ok()?;
    let digits = digits.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    usize::from_str_radix(digits, 8).ok()
}

impl Content {
    /// An archive or compressed file: opened when the policy can, else flagged as
    /// uninspected.
    pub(super) fn opens(self) -> bool {
        !matches!(
            self,
            Content::Program | Content::Shortcut | Content::DiskImage | Content::Other
        )
    }
}

/// A zip's local header, empty-archive end record or spanning marker.
pub(super) fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04")
        || data.starts_with(b"PK\x05\x06")
        || data.starts_with(b"PK\x07\x08")
}

/// `MZ` with a plausible DOS header; when the PE header offset lies inside `data`, the
/// `PE\0\0` signature must be there too.
fn is_pe(data: &[u8]) -> bool {
    if !data.starts_with(b"MZ") || data.len() < 64 {
        return false;
    }
    let Some(off) = data.get(0x3C..0x40) else {
        return false;
    };
    let pe = u32::from_le_bytes([off[0], off[1], off[2], off[3]]) as usize;
    match data.get(pe..pe.saturating_add(4)) {
        Some(sig) => sig == b"PE\0\0",
        // Only a prefix was read, or a bare DOS program: MZ and a full header suffice.
        None => true,
    }
}

/// Extensions of formats that are not archives: documents, images, audio, video, text.
const FLAT_EXTENSIONS: &[&str] = &[
    "avi", "bmp", "csv", "doc", "eml", "gif", "heic", "htm", "html", "ics", "jpe", "jpeg", "jpg",
    "json", "mov", "mp3", "mp4", "mpeg", "mpg", "msg", "pdf", "png", "ppt", "rtf", "svg", "tif",
    "tiff", "txt", "vcf", "wav", "webp", "wmv", "xls", "xml",
];

/// Extensions of documents that are zips inside, and of archives.
const CONTAINER_EXTENSIONS: &[&str] = &[
    "7z", "docm", "docx", "epub", "gz", "odp", "ods", "odt", "pptm", "pptx", "rar", "tar", "tgz",
    "xlsm", "xlsx", "zip",
];

/// Declared types of formats that are not archives.
fn is_flat_type(t: &str) -> bool {
    let (major, minor) = t.split_once('/').unwrap_or((t, ""));
    matches!(major, "text" | "image" | "audio" | "video")
        || matches!(
            minor,
            "pdf" | "rtf" | "msword" | "vnd.ms-excel" | "vnd.ms-powerpoint" | "vnd.ms-outlook"
        )
}

/// Declared types of documents that are zips inside, and of archives.
fn is_container_type(t: &str) -> bool {
    let minor = t.split_once('/').map_or("", |(_, m)| m);
    minor.starts_with("vnd.openxmlformats-officedocument.")
        || minor.starts_with("vnd.oasis.opendocument.")
        || matches!(
            minor,
            "zip"
                | "x-zip-compressed"
                | "x-zip"
                | "x-rar-compressed"
                | "vnd.rar"
                | "x-7z-compressed"
                | "gzip"
                | "x-gzip"
                | "x-tar"
                | "x-gtar"
                | "x-compressed-tar"
                | "epub+zip"
        )
}

/// What the name (first) or the declared type promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Promise {
    /// A document, image, media or text file.
    Flat,
    /// An archive or a zip-based document.
    Container,
    /// Nothing harmless: no claim, or a program's name.
    Nothing,
}

/// The promise of an extension, falling back to the declared type when the name is silent.
pub(super) fn promise(ext: Option<&str>, content_type: &str) -> Promise {
    match ext {
        Some(e) if FLAT_EXTENSIONS.contains(&e) => return Promise::Flat,
        Some(e) if CONTAINER_EXTENSIONS.contains(&e) => return Promise::Container,
        _ => {}
    }
    if is_flat_type(content_type) {
        Promise::Flat
    } else if is_container_type(content_type) {
        Promise::Container
    } else {
        Promise::Nothing
    }
}

/// Whether content contradicts what was promised: a program, shortcut or disk image
/// dressed as anything harmless, or an archive dressed as a flat document.
pub(super) fn contradicts(content: Content, promised: Promise) -> bool {
    match content {
        Content::Program | Content::Shortcut | Content::DiskImage => promised != Promise::Nothing,
        Content::Zip
        | Content::Gzip
        | Content::Bzip2
        | Content::Xz
        | Content::Lzma
        | Content::Tar
        | Content::Rar
        | Content::SevenZip
        | Content::OtherArchive => promised == Promise::Flat,
        Content::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_numbers_in_both_forms() {
        assert_eq!(tar_number(b"00000000644\0"), Some(0o644));
        assert_eq!(tar_number(b"     12 "), Some(0o12));
        assert_eq!(
            tar_number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(tar_number(b"9"), None);
    }

    /// A minimal PE: DOS header pointing at a `PE\0\0` signature.
    pub(crate) fn pe_bytes() -> Vec<u8> {
        let mut v = vec![0u8; 256];
        v[0] = b'M';
        v[1] = b'Z';
        v[0x3C] = 0x80;
        v[0x80..0x84].copy_from_slice(b"PE\0\0");
        v
    }

    #[test]
    fn programs_archives_and_images_are_recognised() {
        assert_eq!(sniff(&pe_bytes()), Content::Program);
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01"), Content::Program);
        assert_eq!(sniff(b"\xcf\xfa\xed\xfe\x07"), Content::Program);
        assert_eq!(sniff(&LNK_HEADER), Content::Shortcut);
        assert_eq!(sniff(b"PK\x03\x04rest"), Content::Zip);
        assert_eq!(sniff(b"Rar!\x1a\x07\x01\x00"), Content::Rar);
        assert_eq!(sniff(b"Rar!\x1a\x07\x00"), Content::Rar);
        assert_eq!(sniff(b"7z\xbc\xaf\x27\x1c\x00\x04"), Content::SevenZip);
        assert_eq!(sniff(b"MSCF\0\0\0\0"), Content::OtherArchive);
        // Regression (attachment probe): formats 7-Zip and WinRAR open by content.
        assert_eq!(sniff(b"\x2a\x1c-lh5-\x10\x00"), Content::OtherArchive);
        assert_eq!(sniff(b"\x60\xea\x2a\x00\x1e"), Content::OtherArchive);
        assert_eq!(sniff(b"0707010000a1b2000081a4"), Content::OtherArchive);
        assert_eq!(sniff(b"\0\0\0\0\0\0\0**ACE**"), Content::OtherArchive);
        assert_eq!(sniff(b"xar!\0\x1c\0\x01"), Content::OtherArchive);
        assert_eq!(sniff(b"MSWIM\0\0\0\xd0\0"), Content::OtherArchive);
        // Text that starts like them is text.
        assert_eq!(sniff(b"070701 is a date"), Content::Other);
        assert_eq!(sniff(b"a -lh- b"), Content::Other);
        let mut iso = vec![0u8; 0x8010];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(sniff(&iso), Content::DiskImage);
        assert_eq!(sniff(b"%PDF-1.7\n"), Content::Other);
        assert_eq!(sniff(b""), Content::Other);
    }

    #[test]
    fn two_letters_are_not_a_program() {
        // Text that happens to start with "MZ", and a DOS header whose PE offset points at
        // something else.
        assert_eq!(sniff(b"MZ is a postcode prefix"), Content::Other);
        let mut fake = pe_bytes();
        fake[0x80..0x84].copy_from_slice(b"XXXX");
        assert_eq!(sniff(&fake), Content::Other);
    }

    #[test]
    fn promises_come_from_the_name_then_the_type() {
        assert_eq!(promise(Some("pdf"), ""), Promise::Flat);
        assert_eq!(promise(Some("docx"), "application/pdf"), Promise::Container);
        assert_eq!(promise(None, "application/pdf"), Promise::Flat);
        assert_eq!(promise(Some("dat"), "image/png"), Promise::Flat);
        assert_eq!(promise(None, "application/octet-stream"), Promise::Nothing);
        assert_eq!(
            promise(Some("exe"), "application/octet-stream"),
            Promise::Nothing
        );
        assert_eq!(
            promise(
                None,
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            ),
            Promise::Container
        );
    }

    #[test]
    fn contradictions() {
        assert!(contradicts(Content::Program, Promise::Flat));
        assert!(contradicts(Content::Program, Promise::Container));
        assert!(!contradicts(Content::Program, Promise::Nothing));
        assert!(contradicts(Content::Zip, Promise::Flat));
        assert!(!contradicts(Content::Zip, Promise::Container));
        assert!(!contradicts(Content::Other, Promise::Flat));
    }
}
