//! Charsets that mail-parser reads otherwise than mail clients do. Its table follows the
//! WHATWG Encoding standard, which turns HZ, ISO-2022-CN and ISO-2022-KR text into a single
//! U+FFFD (a browser must not guess them), and lacks some spellings clients accept (`utf7`,
//! `unicode-1-1-utf-7`, `utf16`, UTF-32). Outlook and Apple Mail decode those charsets,
//! and a client that does not know a label falls back to a default that shows ASCII as
//! ASCII: a spam labelled `hz-gb-2312` showed its pitch to them and nothing to the body
//! rules and the classifier (charset probe). Here each is decoded as those clients do.

use mail_parser::decoders::charsets::map::charset_decoder;

/// How a client reads a label mail-parser reads otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientReading {
    /// A label mail-parser's table knows under this spelling.
    Label(String),
    /// UTF-32.
    Utf32 {
        /// Little-endian; `None`: by the byte-order mark, little-endian without one
        /// (Windows' code page 12000).
        little: Option<bool>,
    },
    /// HZ (RFC 1843): ASCII, with GB 2312 between `~{` and `~}`.
    Hz,
    /// ISO-2022-KR (RFC 1557) and ISO-2022-CN (RFC 1922): ASCII, with the designated
    /// double-byte set between Shift Out and Shift In.
    Iso2022,
    /// 8-bit bytes under a US-ASCII label: the label says nothing of them; UTF-8 where they
    /// are UTF-8, as in an unlabelled text.
    NotAscii,
}

/// The label as clients compare it: quotes and every blank (the line break of a folded
/// parameter among them) gone, lower case.
fn normalized(label: &str) -> String {
    label
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
        .flat_map(char::to_lowercase)
        .collect()
}

/// How a client reads text labelled `label` where mail-parser reads it otherwise; `None`
/// where its reading stands. `parsed` is the label as mail-parser got it (`""` for none:
/// it reads no `charset= utf-16` with a blank after the `=`); `ascii`: the bytes are all
/// ASCII (a US-ASCII label then says all there is to say of them).
pub fn client_reading(label: &str, parsed: &str, ascii: bool) -> Option<ClientReading> {
    let clean = normalized(label);
    let name = |s: &str| Some(ClientReading::Label(s.to_string()));
    match clean.as_str() {
        "utf7" | "unicode-1-1-utf-7" | "x-utf-7" | "x-unicode-2-0-utf-7" | "unicode-2-0-utf-7" => {
            name("utf-7")
        }
        "utf16" | "utf-16-le" => name("utf-16le"),
        "utf-16-be" => name("utf-16be"),
        "utf-32" | "utf32" | "ucs-4" | "ucs4" | "iso-10646-ucs-4" => {
            Some(ClientReading::Utf32 { little: None })
        }
        "utf-32le" | "utf-32-le" | "utf32le" => Some(ClientReading::Utf32 { little: Some(true) }),
        "utf-32be" | "utf-32-be" | "utf32be" => Some(ClientReading::Utf32 {
            little: Some(false),
        }),
        "hz-gb-2312" | "hz" => Some(ClientReading::Hz),
        "iso-2022-kr" | "csiso2022kr" | "iso-2022-cn" | "iso-2022-cn-ext" => {
            Some(ClientReading::Iso2022)
        }
        // mail-parser reads the label as Windows-1252: its text is ASCII where the bytes are.
        "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" if !ascii => {
            Some(ClientReading::NotAscii)
        }
        // A label mail-parser did not get or did not know as written (`charset=⏎ utf-16`,
        // folded), which its table knows once cleaned.
        other
            if charset_decoder(parsed.trim().as_bytes()).is_none()
                && charset_decoder(other.as_bytes()).is_some() =>
        {
            name(other)
        }
        _ => None,
    }
}

/// Bytes of an HTML page a browser's prescan reads for its `<meta>` charset.
const META_PRESCAN_BYTES: usize = 1024;

/// Text that starts with a byte-order mark (UTF-8, UTF-16LE or UTF-16BE), decoded as the
/// mark says, as Windows programs read such files; `None` without one.
pub fn decode_by_bom(data: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let (encoding, mark) = encoding_rs::Encoding::for_bom(data)?;
    Some(encoding.decode_without_bom_handling(&data[mark..]).0)
}

/// The charset an HTML page declares in a `<meta charset>` or `<meta http-equiv
/// content="…; charset=…">` within its first [`META_PRESCAN_BYTES`], as a browser's
/// prescan finds it; `None` for none, and for the UTF-8, ASCII and UTF-16 labels, which
/// add nothing to reading undeclared text as UTF-8 (a page's UTF-16 label means UTF-8 to a
/// browser).
pub fn meta_charset(page: &[u8]) -> Option<String> {
    let head = &page[..page.len().min(META_PRESCAN_BYTES)];
    let lower = head.to_ascii_lowercase();
    let mut at = 0;
    while let Some(found) = find(&lower, at, b"<meta") {
        let tag_end = find(&lower, found, b">").unwrap_or(lower.len());
        let tag = &lower[found..tag_end];
        at = tag_end;
        let Some(key) = find(tag, 0, b"charset") else {
            continue;
        };
        let rest = &tag[key + b"charset".len()..];
        // `charset` not followed by `=` (`<meta name="charsets">`) declares nothing; the
        // prescan goes on to the next tag.
        let Some(rest) = rest.trim_ascii_start().strip_prefix(b"=") else {
            continue;
        };
        let rest = rest.trim_ascii_start();
        let rest = rest
            .strip_prefix(b"\"")
            .or(rest.strip_prefix(b"'"))
            .unwrap_or(rest);
        let len = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || b"._:+-".contains(b)))
            .unwrap_or(rest.len());
        let label = std::str::from_utf8(&rest[..len]).ok()?;
        if label.is_empty() {
            continue;
        }
        return match label {
            "utf-8" | "utf8" | "us-ascii" | "ascii" | "unicode-1-1-utf-8" => None,
            l if l.starts_with("utf-16") || l == "utf16" => None,
            l => Some(l.to_string()),
        };
    }
    None
}

impl ClientReading {
    /// `bytes` decoded as a client reads them.
    pub fn decode(&self, bytes: &[u8]) -> String {
        match self {
            ClientReading::Label(label) => match charset_decoder(label.as_bytes()) {
                Some(decode) => decode(bytes),
                None => super::lenient::utf8_or_windows_1252(bytes),
            },
            ClientReading::Utf32 { little } => {
                let little = little.unwrap_or(!bytes.starts_with(&[0, 0, 0xfe, 0xff]));
                utf32(bytes, little)
            }
            ClientReading::Hz => hz(bytes),
            ClientReading::Iso2022 => iso2022(bytes),
            ClientReading::NotAscii => super::lenient::utf8_or_windows_1252(bytes),
        }
    }
}

/// UTF-32 in the given byte order, a leading byte-order mark dropped; a code unit that is
/// no character, and a cut one at the end, read U+FFFD.
fn utf32(bytes: &[u8], little: bool) -> String {
    let mut out = String::with_capacity(bytes.len() / 4);
    for (i, unit) in bytes.chunks(4).enumerate() {
        let Ok(unit): Result<[u8; 4], _> = unit.try_into() else {
            out.push('\u{FFFD}');
            break;
        };
        let value = if little {
            u32::from_le_bytes(unit)
        } else {
            u32::from_be_bytes(unit)
        };
        if i == 0 && value == 0xfeff {
            continue;
        }
        out.push(char::from_u32(value).unwrap_or('\u{FFFD}'));
    }
    out
}

/// Double-byte text of a 7-bit set (GB 2312, KS C 5601: each byte 0x21–0x7E) as its EUC
/// form decodes it; a byte outside the set, or one left alone at the end, reads U+FFFD.
fn double_bytes(seven_bit: &[u8], encoding: &'static encoding_rs::Encoding, out: &mut String) {
    let euc: Vec<u8> = seven_bit
        .iter()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .map(|b| b | 0x80)
        .collect();
    let (text, _) = encoding.decode_without_bom_handling(&euc);
    out.push_str(&text);
}

/// HZ: `~{` starts GB 2312, `~}` ends it, `~~` is a tilde, `~` and a line break joins lines.
fn hz(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'~', Some(b'~')) => {
                out.push('~');
                i += 2;
            }
            (b'~', Some(b'\n')) => i += 2,
            (b'~', Some(b'\r')) => {
                i += if bytes.get(i + 2) == Some(&b'\n') {
                    3
                } else {
                    2
                }
            }
            (b'~', Some(b'{')) => {
                let start = i + 2;
                let end = find(bytes, start, b"~}").unwrap_or(bytes.len());
                double_bytes(&bytes[start..end], encoding_rs::GBK, &mut out);
                i = (end + 2).min(bytes.len());
            }
            (b, _) => {
                out.push(ascii_or_replacement(b));
                i += 1;
            }
        }
    }
    out
}

/// ISO-2022-KR and -CN: escape sequences dropped; Shift Out (0x0E) switches to the
/// double-byte set last designated (`ESC $ ) C` KS C 5601, `ESC $ ) A` GB 2312, any other
/// unknown: U+FFFD for its text), Shift In (0x0F) or a line end back to ASCII.
fn iso2022(bytes: &[u8]) -> String {
    const ESC: u8 = 0x1b;
    let mut out = String::with_capacity(bytes.len());
    let mut designated: Option<&'static encoding_rs::Encoding> = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            ESC => {
                // `ESC $ ) F`, `ESC $ * F`, `ESC $ + F` designate; `ESC N`/`ESC O` shift
                // one character (CN's planes 2 and up, which no decoder here reads).
                let sequence = &bytes[i + 1..bytes.len().min(i + 4)];
                match sequence {
                    [b'$', b')', b'C', ..] => designated = Some(encoding_rs::EUC_KR),
                    [b'$', b')', b'A', ..] => designated = Some(encoding_rs::GBK),
                    [b'$', b')' | b'*' | b'+', _, ..] => designated = None,
                    _ => {}
                }
                i += match sequence {
                    [b'$', _, _, ..] => 4,
                    [b'N' | b'O', ..] => 4,
                    [_, ..] => 2,
                    [] => 1,
                };
            }
            0x0e => {
                let start = i + 1;
                let end = bytes[start..]
                    .iter()
                    .position(|&b| matches!(b, 0x0f | b'\n' | ESC))
                    .map_or(bytes.len(), |p| start + p);
                match designated {
                    Some(encoding) => double_bytes(&bytes[start..end], encoding, &mut out),
                    None if end > start => out.push('\u{FFFD}'),
                    None => {}
                }
                i = if bytes.get(end) == Some(&0x0f) {
                    end + 1
                } else {
                    end
                };
            }
            0x0f => i += 1,
            b => {
                out.push(ascii_or_replacement(b));
                i += 1;
            }
        }
    }
    out
}

/// A byte outside the double-byte runs: ASCII as itself, any other as U+FFFD.
fn ascii_or_replacement(b: u8) -> char {
    if b.is_ascii() {
        char::from(b)
    } else {
        '\u{FFFD}'
    }
}

/// The first `needle` in `bytes` from `from` on.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(bytes.get(from..)?, needle).map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(label: &str, bytes: &[u8]) -> Option<String> {
        client_reading(label, label, bytes.is_ascii()).map(|r| r.decode(bytes))
    }

    #[test]
    fn hz_and_iso_2022_read_their_ascii_and_their_double_bytes() {
        assert_eq!(
            read("hz-gb-2312", b"Buy now ~~ cheap~\nrx ~{;6S-~} here").as_deref(),
            Some("Buy now ~ cheaprx \u{6b22}\u{8fce} here")
        );
        assert_eq!(
            read("ISO-2022-KR", b"\x1b$)CBuy now \x0e0!\x0f pills\n").as_deref(),
            Some("Buy now \u{ac00} pills\n")
        );
        assert_eq!(
            read("iso-2022-cn", b"\x1b$)ABuy \x0e;6\x0f now").as_deref(),
            Some("Buy \u{6b22} now")
        );
        // A set no decoder here reads is one U+FFFD, the ASCII around it kept.
        assert_eq!(
            read("iso-2022-cn-ext", b"\x1b$)GBuy \x0e!!\x0f now").as_deref(),
            Some("Buy \u{FFFD} now")
        );
    }

    #[test]
    fn spellings_clients_accept_read_as_their_charset() {
        assert_eq!(read("utf7", b"Hi +AFY-iagra").as_deref(), Some("Hi Viagra"));
        assert_eq!(
            read("unicode-1-1-utf-7", b"+AFY-iagra").as_deref(),
            Some("Viagra")
        );
        let utf16le: Vec<u8> = "Viagra".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(read("utf16", &utf16le).as_deref(), Some("Viagra"));
        assert_eq!(read("UTF-16-LE", &utf16le).as_deref(), Some("Viagra"));
        let utf32be: Vec<u8> = [0xfeffu32, 0x56, 0x69]
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        assert_eq!(read("utf-32", &utf32be).as_deref(), Some("Vi"));
        let utf32le: Vec<u8> = [0x56u32, 0x69]
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        assert_eq!(read("utf32", &utf32le).as_deref(), Some("Vi"));
        assert_eq!(
            read("utf-32le", &utf32le[..7]).as_deref(),
            Some("V\u{FFFD}")
        );
        // A label mail-parser did not get (a blank after the `=`) or got with a blank.
        let folded = |parsed| client_reading("utf-16le", parsed, false).map(|r| r.decode(&utf16le));
        assert_eq!(folded("").as_deref(), Some("Viagra"));
        assert_eq!(folded("\"utf-16 le\"").as_deref(), Some("Viagra"));
        assert_eq!(folded("utf-16le"), None);
    }

    #[test]
    fn a_pages_meta_charset_is_found_as_a_browser_finds_it() {
        assert_eq!(
            meta_charset(b"<html><head><META charset=\"Windows-1251\">").as_deref(),
            Some("windows-1251")
        );
        let equiv =
            b"<meta name=x><meta http-equiv=Content-Type content='text/html; charset=koi8-r'>";
        assert_eq!(meta_charset(equiv).as_deref(), Some("koi8-r"));
        assert_eq!(meta_charset(b"<meta charset=utf-8><p>x"), None);
        assert_eq!(
            meta_charset(b"<meta name=\"charsets\"><meta charset=koi8-r>").as_deref(),
            Some("koi8-r")
        );
        let late = [b" ".repeat(1100), b"<meta charset=koi8-r>".to_vec()].concat();
        assert_eq!(meta_charset(&late), None);
    }

    #[test]
    fn labels_mail_parser_reads_as_clients_do_are_left_to_it() {
        for label in [
            "utf-8",
            "UTF-16",
            "iso-8859-1",
            "windows-1251",
            "utf-7",
            "x-unknown",
        ] {
            assert_eq!(client_reading(label, label, true), None, "{label}");
        }
        assert_eq!(client_reading("us-ascii", "us-ascii", true), None);
        assert_eq!(
            read("us-ascii", "V\u{ad}iagra".as_bytes()).as_deref(),
            Some("V\u{ad}iagra")
        );
    }
}
