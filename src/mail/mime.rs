//! A bound on the MIME parts a parser is given. mail-parser keeps about a kilobyte per part,
//! so a 25 MB message of 500,000 empty parts cost 600 MB to parse; cutting the message
//! before its part limit bounds that whatever the message.

/// Default most MIME parts parsed of one message (`server.limits.scan_mime_parts`).
pub const DEFAULT_MAX_PARTS: usize = 1000;

/// `raw` cut at the start of its `(max_parts + 1)`-th line that begins with `--` (every
/// part starts with such a boundary line), and whether it was cut. Lines of text that
/// start with `--` count too, so a message may keep fewer parts than the limit, never more.
pub fn cut_to_parts(raw: &[u8], max_parts: usize) -> (&[u8], bool) {
    let cut = memchr::memmem::find_iter(raw, b"\n--")
        .nth(max_parts)
        .map(|at| at + 1);
    match cut {
        Some(at) => (&raw[..at], true),
        None => (raw, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: usize) -> Vec<u8> {
        let mut m = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
        for _ in 0..n {
            m.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        }
        m.extend_from_slice(b"--b--\r\n");
        m
    }

    #[test]
    fn a_message_within_the_limit_is_whole_and_one_over_it_is_cut_at_a_line() {
        let m = parts(3);
        assert_eq!(cut_to_parts(&m, 4), (&m[..], false));
        let (kept, cut) = cut_to_parts(&m, 2);
        assert!(cut);
        assert!(
            kept.ends_with(b"x\r\n"),
            "{:?}",
            String::from_utf8_lossy(kept)
        );
        assert_eq!(kept.windows(3).filter(|w| w == b"--b").count(), 2);
    }
}
