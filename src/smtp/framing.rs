//! Line framing of SMTP commands, apart from the socket: what the connection's buffered
//! bytes hold, however the network cut them. Kept pure so that property — the same lines
//! whatever the read boundaries — can be tested and fuzzed without a socket.

use super::command::verb_start;

/// One framed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line without its line ending (CRLF).
    Complete(Vec<u8>),
    /// A line that ended in a bare LF, without it. RFC 5321 §2.3.8 ends lines in CRLF
    /// only; whether such a line is taken is the session's choice (`bare_line_ending`).
    BareLf(Vec<u8>),
    /// A line over the limit; it was read to its end and discarded. Its first
    /// [`TOO_LONG_HEAD`] bytes are kept, to tell which command it was.
    TooLong(Vec<u8>),
}

/// Bytes kept of a line over the limit.
pub const TOO_LONG_HEAD: usize = 8;

/// What [`Framer::frame`] made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A line, and how many buffered bytes it took (its ending included).
    Line(Line, usize),
    /// No whole line yet: read more. `drop` buffered bytes belong to a line already over
    /// the limit and are to be consumed now, so the buffer stays within the limit.
    NeedMore {
        /// Bytes to consume before reading more.
        drop: usize,
    },
}

/// What framing remembers between reads: whether the line being read is already over
/// the limit, and its first bytes.
#[derive(Debug, Default)]
pub struct Framer {
    discarding: bool,
    discarded_head: Vec<u8>,
}

impl Framer {
    /// Frames the next line of `buffered`, a line being at most `max` bytes with its
    /// ending. A line ends at LF (CRLF or bare LF).
    pub fn frame(&mut self, buffered: &[u8], max: usize) -> Framed {
        let Some(lf) = memchr::memchr(b'\n', buffered) else {
            if buffered.len() < max {
                return Framed::NeedMore { drop: 0 };
            }
            // Keep memory bounded: drop what we have and remember the line is bad.
            extend_head(&mut self.discarded_head, buffered);
            self.discarding = true;
            return Framed::NeedMore {
                drop: buffered.len(),
            };
        };
        let too_long = std::mem::take(&mut self.discarding) || lf + 1 > max;
        let line = &buffered[..lf];
        let line = if too_long {
            let mut head = std::mem::take(&mut self.discarded_head);
            extend_head(&mut head, line);
            Line::TooLong(head)
        } else if let Some(line) = line.strip_suffix(b"\r") {
            Line::Complete(line.to_vec())
        } else {
            Line::BareLf(line.to_vec())
        };
        Framed::Line(line, lf + 1)
    }

    /// Forgets a line being skipped (at STARTTLS, plaintext sent ahead is thrown away).
    pub fn reset(&mut self) {
        self.discarding = false;
        self.discarded_head.clear();
    }
}

/// Adds to `head` what the head of an over-long line is judged by: its first bytes after
/// anything before its verb ([`verb_start`]: blanks, controls; review: `     BDAT 6 LAST`
/// and 520 blanks kept only `"     BDA"`, so its chunk ran as commands), up to
/// [`TOO_LONG_HEAD`] in all, over as many pieces of the line as that takes.
fn extend_head(head: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = if head.is_empty() {
        &bytes[verb_start(bytes)..]
    } else {
        bytes
    };
    let room = TOO_LONG_HEAD.saturating_sub(head.len());
    head.extend(bytes.iter().take(room));
}

/// The lines `input` holds read in one piece, from a model of the rules rather than the
/// framer's own loop: each LF-terminated segment is one line, too long when it exceeds
/// `max` with its ending. Bytes after the last LF make no line. Used by the tests and
/// the `smtp_lines` fuzz target to check [`Framer`] under any read boundaries.
pub fn reference_lines(input: &[u8], max: usize) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut rest = input;
    while let Some(lf) = memchr::memchr(b'\n', rest) {
        let segment = &rest[..lf];
        let line = if lf + 1 > max {
            let start = verb_start(segment);
            let end = (start + TOO_LONG_HEAD).min(segment.len());
            Line::TooLong(segment[start..end].to_vec())
        } else if let Some(line) = segment.strip_suffix(b"\r") {
            Line::Complete(line.to_vec())
        } else {
            Line::BareLf(segment.to_vec())
        };
        lines.push(line);
        rest = &rest[lf + 1..];
    }
    lines
}

/// Frames `input` as it arrives in reads of the given sizes (cycled; a size of 0 is read
/// as 1), the way the connection buffers it, and returns the lines with the largest the
/// buffer grew to. Used by the tests and the `smtp_lines` fuzz target.
pub fn frame_in_reads(input: &[u8], max: usize, reads: &[usize]) -> (Vec<Line>, usize) {
    let mut framer = Framer::default();
    let mut buffer = Vec::new();
    let mut lines = Vec::new();
    let mut peak = 0;
    let mut offset = 0;
    let mut sizes = reads.iter().map(|&n| n.max(1)).cycle();
    while offset < input.len() {
        let n = sizes.next().unwrap_or(1).min(input.len() - offset);
        buffer.extend_from_slice(&input[offset..offset + n]);
        offset += n;
        peak = peak.max(buffer.len());
        loop {
            match framer.frame(&buffer, max) {
                Framed::Line(line, used) => {
                    lines.push(line);
                    buffer.drain(..used);
                }
                Framed::NeedMore { drop } => {
                    buffer.drain(..drop);
                    break;
                }
            }
        }
    }
    (lines, peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_bare_lf_and_long_lines_are_told_apart() {
        let input = b"EHLO a\r\nNOOP\nMAIL FROM:<x@y>\r\n";
        let lines = reference_lines(input, 12);
        assert_eq!(
            lines,
            vec![
                Line::Complete(b"EHLO a".to_vec()),
                Line::BareLf(b"NOOP".to_vec()),
                Line::TooLong(b"MAIL FRO".to_vec()),
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_taken_and_one_more_byte_is_not() {
        assert_eq!(
            reference_lines(b"NOOP\r\n", 6),
            vec![Line::Complete(b"NOOP".to_vec())]
        );
        assert_eq!(
            reference_lines(b"NOOPS\r\n", 6),
            vec![Line::TooLong(b"NOOPS\r".to_vec())]
        );
    }

    #[test]
    fn the_head_of_a_long_line_skips_leading_blanks_across_reads() {
        let mut input = vec![b' '; 520];
        input.extend_from_slice(b"BDAT 6 LAST\r\nQUIT\r\n");
        let (lines, _) = frame_in_reads(&input, 100, &[7, 64, 3]);
        assert_eq!(
            lines,
            vec![
                Line::TooLong(b"BDAT 6 L".to_vec()),
                Line::Complete(b"QUIT".to_vec()),
            ]
        );
    }

    #[test]
    fn read_boundaries_never_change_the_lines_and_the_buffer_stays_bounded() {
        let mut input = Vec::new();
        for i in 0..40u8 {
            input.extend(std::iter::repeat_n(b'a' + i % 26, usize::from(i) * 7));
            input.extend_from_slice(if i % 3 == 0 { b"\n" } else { b"\r\n" });
        }
        input.extend_from_slice(b"tail without an ending");
        for max in [1, 2, 8, 50, 120, 1000] {
            let expected = reference_lines(&input, max);
            for reads in [&[1][..], &[2, 5], &[7, 1, 300], &[4096]] {
                let (lines, peak) = frame_in_reads(&input, max, reads);
                assert_eq!(lines, expected, "max {max} reads {reads:?}");
                let largest_read = reads.iter().max().copied().unwrap_or(1);
                assert!(peak < max + largest_read, "max {max} reads {reads:?}");
            }
        }
    }
}
