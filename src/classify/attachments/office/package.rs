//! OLE packages: a file (any file, a program too) embedded in a document as an object
//! that opens it on a double click. The `\x01Ole10Native` stream holds its label, its
//! original path, the temporary path it is written to, and its bytes.

/// The stream that holds a package.
pub(super) const STREAM_NAME: &str = "\u{1}Ole10Native";
/// Longest name read (a Windows path is at most 260 characters; a longer one is cut).
const MAX_NAME: usize = 1024;
/// Bytes of the packaged file kept: enough to tell a program by its first bytes.
const HEAD: usize = 1024;

/// A packaged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::classify::attachments) struct Package {
    /// Its label, and the file names of its source and temporary paths (the label is what
    /// the document shows, the paths what Windows names the file when it opens it).
    pub names: Vec<String>,
    /// Its first bytes.
    pub head: Vec<u8>,
}

/// Reads a package stream: a 32-bit size, two bytes of flags, the label, the source path,
/// eight bytes, the temporary path, a 32-bit size and the file's bytes. A stream cut
/// short gives the names read before the cut.
pub(super) fn read(stream: &[u8]) -> Option<Package> {
    read_from(stream, 6)
}

/// Reads an OLE 1 package's native data (in RTF): the same without the size in front.
pub(super) fn read_native(data: &[u8]) -> Option<Package> {
    read_from(data, 2)
}

fn read_from(stream: &[u8], start: usize) -> Option<Package> {
    let mut at = start;
    let mut names = Vec::new();
    let label = c_string(stream, &mut at)?;
    names.push(label);
    let source = c_string(stream, &mut at);
    at += 8;
    let temporary = c_string(stream, &mut at);
    let temporary_read = temporary.is_some();
    for path in [source, temporary].into_iter().flatten() {
        let file_name = path.rsplit(['\\', '/']).next().unwrap_or_default();
        if !file_name.is_empty() && !names.iter().any(|n| n == file_name) {
            names.push(file_name.to_string());
        }
    }
    names.retain(|n| !n.is_empty());
    // The file's size, then its bytes, follow the temporary path.
    let head = if temporary_read {
        stream
            .get(at + 4..)
            .map(|bytes| bytes.get(..HEAD).unwrap_or(bytes).to_vec())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Package { names, head })
}

/// The NUL-terminated string at `*at`, read as TNEF's and Outlook's 8-bit names are (UTF-8,
/// else Latin-1), moving `*at` past its NUL; `None` when the stream ends first.
fn c_string(stream: &[u8], at: &mut usize) -> Option<String> {
    let rest = stream.get(*at..)?;
    let len = memchr::memchr(0, rest)?;
    *at += len + 1;
    let bytes = rest.get(..len.min(MAX_NAME)).unwrap_or_default();
    Some(crate::mail::tnef::name_text(bytes, false))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A package stream as Windows' Packager writes one.
    pub(crate) fn package_stream(label: &str, source: &str, data: &[u8]) -> Vec<u8> {
        let mut body = vec![2u8, 0];
        for text in [label, source] {
            body.extend_from_slice(text.as_bytes());
            body.push(0);
        }
        body.extend_from_slice(&[0, 0, 3, 0, 0, 0, 0, 0]);
        body.extend_from_slice(format!("C:\\Users\\x\\AppData\\Local\\Temp\\{label}").as_bytes());
        body.push(0);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        let mut stream = (body.len() as u32).to_le_bytes().to_vec();
        stream.extend_from_slice(&body);
        stream
    }

    #[test]
    fn a_package_s_names_and_first_bytes_are_read() {
        let stream = package_stream("invoice.pdf", "C:\\build\\payload.exe", b"MZ\x90\x00rest");
        let p = read(&stream).unwrap();
        assert_eq!(p.names, vec!["invoice.pdf", "payload.exe"]);
        assert!(p.head.starts_with(b"MZ"));
        // Cut short: what was read before the cut.
        let p = read(&stream[..20]).unwrap();
        assert_eq!(p.names, vec!["invoice.pdf"]);
        assert!(read(b"\x10\0\0\0\x02\0no end").is_none());
    }
}
