//! A message file's lines as SMTP carries them: files on disk (a corpus, a mail store)
//! often end lines in LF alone, and the parser reads some such files differently (a
//! body's first paragraph lost), so everything that judges or learns a file reads it
//! with CRLF endings, as the gateway reads a message it received.

use std::borrow::Cow;

/// `raw` with every bare LF made CRLF; borrowed when it has none.
pub fn to_crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    let bare = raw
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'));
    if !bare {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_files_become_crlf_and_crlf_stays() {
        assert_eq!(&*to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        assert_eq!(&*to_crlf(b"\nx"), b"\r\nx");
        assert!(matches!(to_crlf(b"a\r\nb"), Cow::Borrowed(_)));
    }
}
