//! What a file name says, read the way Windows reads it: the last path component, the
//! extension after the last dot once trailing dots and spaces are gone, invisible
//! formatting characters ignored.

/// Extensions a deceptive name shows before the real one (`invoice.pdf.exe`).
const DECOY_EXTENSIONS: &[&str] = &[
    "7z", "avi", "bmp", "csv", "doc", "docm", "docx", "eml", "gif", "heic", "htm", "html", "ics",
    "jpe", "jpeg", "jpg", "json", "mov", "mp3", "mp4", "mpeg", "mpg", "msg", "odp", "ods", "odt",
    "pdf", "png", "ppt", "pptx", "rar", "rtf", "svg", "tif", "tiff", "txt", "vcf", "wav", "webp",
    "wmv", "xls", "xlsm", "xlsx", "xml", "zip",
];

/// What one file name reveals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct NameFacts {
    /// The extension Windows acts on, lower-case, without the dot.
    pub ext: Option<String>,
    /// A document extension shown just before the real one, padding ignored.
    pub decoy: Option<String>,
    /// The name holds bidirectional controls (U+202E shows `exe.pdf` for `fdp.exe`).
    pub bidi: bool,
}

/// Right-to-left and other direction overrides: they reorder what a reader sees.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that take no room on screen.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    ) || c.is_control()
}

/// Filler between a decoy extension and the real one (`a.pdf      .exe`, `a.pdf___.exe`).
fn is_padding(c: char) -> bool {
    c.is_whitespace() || matches!(c, '_' | '-' | '.' | '~')
}

/// The last path component of a name, cut at its first NUL: the C string APIs that
/// extract files stop there (Info-ZIP's `unzip` writes `invoice.js` for
/// `invoice.js\0.txt`); no file system keeps one.
fn last_component(name: &str) -> &str {
    let name = name.split('\0').next().unwrap_or(name);
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The name a file is saved under on Windows, case kept: the last component without the
/// characters that take no room or reorder what is shown, and without trailing dots and
/// spaces (`evil.exe. ` is `evil.exe`).
fn saved_name(name: &str) -> String {
    let cleaned: String = last_component(name)
        .chars()
        .filter(|&c| !is_bidi_control(c) && !is_invisible(c))
        .collect();
    cleaned
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string()
}

/// Whether a (lower-case) extension is a COM class id (`{3050f4d8-98b5-11cf-bb82-
/// 00aa00bdce0b}`): Windows Explorer hides such a suffix and opens the file with the
/// handler the class names (here, an HTML application), whatever the name shows before it.
pub(super) fn is_class_id(ext: &str) -> bool {
    let Some(inner) = ext.strip_prefix('{').and_then(|e| e.strip_suffix('}')) else {
        return false;
    };
    inner.len() == 36
        && inner.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Reads a file name.
pub(super) fn analyse(name: &str) -> NameFacts {
    let bidi = last_component(name).chars().any(is_bidi_control);
    let cleaned = saved_name(name).to_lowercase();
    let Some((stem, ext)) = cleaned.rsplit_once('.') else {
        return NameFacts {
            ext: None,
            decoy: None,
            bidi,
        };
    };
    let decoy = stem
        .trim_end_matches(is_padding)
        .rsplit_once('.')
        .map(|(_, d)| d.trim())
        .filter(|d| DECOY_EXTENSIONS.contains(d))
        .map(str::to_string);
    NameFacts {
        ext: Some(ext.to_string()).filter(|e| !e.is_empty()),
        decoy,
        bidi,
    }
}

/// The name gunzip gives the file of a gzip named `name`: its suffix (`.gz`, `-gz`, `.z`,
/// `-z`, `_z`) dropped, `.tgz` and `.taz` read as `.tar`; read as Windows reads names
/// (`invoice.exe.gz.` is `invoice.exe.gz`). A gzip made from a pipe stores no name of its
/// own, and a recipient's tool names the file this way.
pub(super) fn gunzipped(name: &str) -> Option<String> {
    unpacked(name, &[".tgz", ".taz"], &[".gz", "-gz", ".z", "-z", "_z"])
}

/// The name bunzip2, unxz and unlzma give the file of a compressed file named `name`:
/// `.bz2`, `.bz`, `.xz` and `.lzma` dropped, `.tbz`, `.tbz2`, `.txz` and `.tlz` read as
/// `.tar`.
pub(super) fn decompressed(name: &str) -> Option<String> {
    unpacked(
        name,
        &[".tbz2", ".tbz", ".txz", ".tlz"],
        &[".bz2", ".bz", ".xz", ".lzma"],
    )
}

/// `name` (as Windows saves it) with the first of `tar_suffixes` it ends in read as
/// `.tar`, or else the first of `suffixes` dropped (any case); `None` without one, or
/// when nothing would be left.
fn unpacked(name: &str, tar_suffixes: &[&str], suffixes: &[&str]) -> Option<String> {
    let cleaned = saved_name(name);
    let lower = cleaned.to_lowercase();
    let stem = |suffix: &str| {
        let cut = cleaned.len().checked_sub(suffix.len())?;
        cleaned.get(..cut).filter(|s| !s.is_empty())
    };
    if let Some(suffix) = tar_suffixes.iter().find(|s| lower.ends_with(*s)) {
        return stem(suffix).map(|s| format!("{s}.tar"));
    }
    suffixes
        .iter()
        .find(|s| lower.ends_with(*s))
        .and_then(|s| stem(s))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str) -> Option<String> {
        analyse(name).ext
    }

    #[test]
    fn the_extension_windows_acts_on() {
        assert_eq!(ext("setup.EXE").as_deref(), Some("exe"));
        assert_eq!(ext("C:\\fakepath\\x.scr").as_deref(), Some("scr"));
        assert_eq!(ext("dir/sub/x.js").as_deref(), Some("js"));
        assert_eq!(ext("evil.exe.").as_deref(), Some("exe"));
        assert_eq!(ext("evil.exe . . ").as_deref(), Some("exe"));
        assert_eq!(ext("evil.e\u{200B}xe").as_deref(), Some("exe"));
        assert_eq!(ext("evil.exe\u{0}").as_deref(), Some("exe"));
        // Regression (review): the NUL was dropped as an invisible character, so the
        // extension after it was judged; an extracting tool stops at it.
        assert_eq!(ext("invoice.js\u{0}.txt").as_deref(), Some("js"));
        assert_eq!(ext("README"), None);
        assert_eq!(ext(""), None);
        assert_eq!(ext("..."), None);
        assert_eq!(ext(".exe").as_deref(), Some("exe"));
    }

    #[test]
    fn decoys_before_the_real_extension() {
        for name in [
            "invoice.pdf.exe",
            "Invoice.PDF.scr",
            "invoice.pdf                                   .exe",
            "invoice.pdf\u{00A0}\u{00A0}\u{00A0}.exe",
            "invoice.pdf____.exe",
            "invoice.pdf. . .exe",
            "scan.jpg.js",
        ] {
            let facts = analyse(name);
            assert!(facts.decoy.is_some(), "{name:?}: {facts:?}");
        }
        for name in ["setup.v2.exe", "report.pdf", "archive.tar.gz", "a.b.c"] {
            assert_eq!(analyse(name).decoy, None, "{name:?}");
        }
    }

    #[test]
    fn the_name_gunzip_gives() {
        let g = |n: &str| gunzipped(n);
        assert_eq!(g("invoice.exe.gz").as_deref(), Some("invoice.exe"));
        assert_eq!(g("docs/Setup.GZ").as_deref(), Some("Setup"));
        assert_eq!(g("backup.tgz").as_deref(), Some("backup.tar"));
        assert_eq!(g("invoice.exe.gz. ").as_deref(), Some("invoice.exe"));
        assert_eq!(g("invoice.exe.g\u{200B}z").as_deref(), Some("invoice.exe"));
        assert_eq!(g("run.js-gz").as_deref(), Some("run.js"));
        assert_eq!(g(".gz"), None);
        assert_eq!(g("report.pdf"), None);
    }

    #[test]
    fn right_to_left_override_is_seen_and_ignored_for_the_extension() {
        // Shown as "invoiceexe.pdf"; the bytes are "invoice", RLO, "fdp.exe": an .exe.
        let facts = analyse("invoice\u{202E}fdp.exe");
        assert!(facts.bidi);
        assert_eq!(facts.ext.as_deref(), Some("exe"));
        assert!(!analyse("plain.pdf").bidi);
    }
}
