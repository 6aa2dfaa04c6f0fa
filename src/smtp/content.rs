//! Message content decoding for DATA and BDAT: strict end of data, dot-unstuffing, and
//! the checks that keep smuggled messages out (SMTP smuggling, CVE-2023-51764 family).
//!
//! Only `CRLF . CRLF` ends DATA. A CR not followed by LF, or an LF not preceded by CR, is a
//! *bare* line ending: it never ends a line for dot handling, is flagged, and is either
//! kept (the message is then rejected) or rewritten to CRLF (`normalize`). Either way the
//! internal server only ever sees CRLF line endings.

use crate::config::BareLineEnding;

/// What went wrong with the content; the first problem found is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentProblem {
    /// More bytes than the size limit; the excess was not buffered.
    TooBig,
    /// A bare CR or LF (only with [`BareLineEnding::Reject`]).
    BareLineEnding,
    /// A line longer than the text line limit.
    LineTooLong,
    /// A NUL byte.
    Nul,
}

/// Incremental decoder; feed it whatever arrives, in any chunking. The decoded content
/// (CRLF line endings, dots unstuffed) is appended to the buffer given to each
/// [`ContentDecoder::feed`], so the caller decides where it goes (memory or disk).
#[derive(Debug)]
pub struct ContentDecoder {
    /// Bytes decoded so far.
    size: usize,
    max_size: usize,
    max_line: usize,
    bare: BareLineEnding,
    /// DATA (dot-terminated, stuffed) or BDAT (counted, raw).
    dot_mode: bool,
    /// The previous byte was a CR whose successor is not known yet.
    pending_cr: bool,
    /// Just after a real CRLF (or the start of DATA): a dot alone here ends DATA.
    after_crlf: bool,
    /// At the start of a line: after a real CRLF, or after a bare line ending `normalize`
    /// made one (its leading dot is transparency too, removed as Postfix removes it).
    line_start: bool,
    /// The current line so far is exactly the (removed) leading dot, after a real CRLF:
    /// a CRLF now ends DATA.
    dot_only: bool,
    line_len: usize,
    problem: Option<ContentProblem>,
    done: bool,
    /// A byte past ASCII was seen: the message is 8-bit whatever MAIL declared.
    eight_bit: bool,
}

impl ContentDecoder {
    /// Decoder for DATA content.
    pub fn data(max_size: usize, max_line: usize, bare: BareLineEnding) -> ContentDecoder {
        Self::new(max_size, max_line, bare, true)
    }

    /// Decoder for the concatenated chunks of a BDAT transaction.
    pub fn bdat(max_size: usize, max_line: usize, bare: BareLineEnding) -> ContentDecoder {
        Self::new(max_size, max_line, bare, false)
    }

    fn new(max_size: usize, max_line: usize, bare: BareLineEnding, dot_mode: bool) -> Self {
        ContentDecoder {
            size: 0,
            max_size,
            // The limit counts the CRLF; lines are measured without it.
            max_line: max_line.saturating_sub(2),
            bare,
            dot_mode,
            pending_cr: false,
            after_crlf: true,
            line_start: true,
            dot_only: false,
            line_len: 0,
            problem: None,
            done: false,
            eight_bit: false,
        }
    }

    /// Whether the DATA terminator was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The first problem found, if any.
    pub fn problem(&self) -> Option<ContentProblem> {
        self.problem
    }

    /// Whether the content has a byte past ASCII. Clients often send 8-bit content
    /// without `BODY=8BITMIME`, and the relay must not pass it raw to a server that does
    /// not offer 8BITMIME (RFC 6152 §3): the envelope records what was seen, not only
    /// what was declared.
    pub fn saw_eight_bit(&self) -> bool {
        self.eight_bit
    }

    /// Bytes decoded so far (the size limit stops the count).
    pub fn len(&self) -> usize {
        self.size
    }

    /// Whether nothing was decoded yet.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Ends a BDAT transaction: a CR left hanging at the very end is a bare CR.
    pub fn finish_bdat(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.bare_line_ending(out);
        }
        self.done = true;
    }

    fn flag(&mut self, p: ContentProblem) {
        if self.problem.is_none() {
            self.problem = Some(p);
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.problem == Some(ContentProblem::TooBig) {
            return;
        }
        if self.size + bytes.len() > self.max_size {
            // Keep scanning for the terminator but pass nothing more on.
            self.problem = Some(ContentProblem::TooBig);
            return;
        }
        self.size += bytes.len();
        out.extend_from_slice(bytes);
    }

    fn end_line(&mut self) {
        self.line_len = 0;
        self.dot_only = false;
    }

    fn bare_line_ending(&mut self, out: &mut Vec<u8>) {
        match self.bare {
            BareLineEnding::Reject => self.flag(ContentProblem::BareLineEnding),
            BareLineEnding::Normalize => self.emit(b"\r\n", out),
        }
        self.end_line();
        // A bare line ending never makes a following dot end DATA (smuggling); a line it
        // starts is still unstuffed.
        self.after_crlf = false;
        self.line_start = true;
    }

    fn count(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > self.max_line {
            self.flag(ContentProblem::LineTooLong);
        }
    }

    /// Consumes bytes, appending the decoded content to `out`; returns how many were
    /// used. In DATA mode input after the terminator is left unconsumed (it is the next
    /// pipelined command). Never appends more than twice the input, plus two bytes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() && !self.done {
            let b = input[i];
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    i += 1;
                    if self.dot_mode && self.dot_only {
                        self.done = true;
                        return i;
                    }
                    self.emit(b"\r\n", out);
                    self.end_line();
                    self.after_crlf = true;
                    self.line_start = true;
                    continue;
                }
                // Bare CR: handle it, then look at `b` afresh.
                self.bare_line_ending(out);
                continue;
            }
            match b {
                b'\r' => {
                    self.pending_cr = true;
                    i += 1;
                }
                b'\n' => {
                    self.bare_line_ending(out);
                    i += 1;
                }
                b'.' if self.dot_mode && self.line_start => {
                    // Leading dot: removed (unstuffing); alone on its line after a real
                    // CRLF it ends DATA. Not counted: the line limit leaves out the dot
                    // added for transparency (RFC 5321 §4.5.3.1.6).
                    self.dot_only = self.after_crlf;
                    self.after_crlf = false;
                    self.line_start = false;
                    i += 1;
                }
                _ => {
                    self.after_crlf = false;
                    self.line_start = false;
                    self.dot_only = false;
                    // Copy the run up to the next byte that needs attention.
                    let run_end = memchr::memchr3(b'\r', b'\n', 0, &input[i..])
                        .map(|p| i + p)
                        .unwrap_or(input.len());
                    if run_end == i {
                        // A NUL byte.
                        self.flag(ContentProblem::Nul);
                        self.count(1);
                        self.emit(&input[i..=i], out);
                        i += 1;
                        continue;
                    }
                    self.count(run_end - i);
                    self.eight_bit = self.eight_bit || !input[i..run_end].is_ascii();
                    self.emit(&input[i..run_end], out);
                    i = run_end;
                }
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder with the content it produced.
    struct Decoded {
        d: ContentDecoder,
        out: Vec<u8>,
    }

    impl Decoded {
        fn new(d: ContentDecoder) -> Decoded {
            Decoded { d, out: Vec::new() }
        }
        fn feed(&mut self, input: &[u8]) -> usize {
            self.d.feed(input, &mut self.out)
        }
        fn is_done(&self) -> bool {
            self.d.is_done()
        }
        fn problem(&self) -> Option<ContentProblem> {
            self.d.problem()
        }
        fn len(&self) -> usize {
            self.d.len()
        }
        fn finish_bdat(&mut self) {
            self.d.finish_bdat(&mut self.out)
        }
        fn into_content(self) -> Vec<u8> {
            self.out
        }
    }

    fn decode(input: &[u8], bare: BareLineEnding) -> (Decoded, usize) {
        let mut d = Decoded::new(ContentDecoder::data(1 << 20, 1000, bare));
        let used = d.feed(input);
        (d, used)
    }

    #[test]
    fn terminator_ends_data_and_leaves_the_rest() {
        let input = b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (d, used) = decode(input, BareLineEnding::Reject);
        assert!(d.is_done());
        assert_eq!(&input[used..], b"QUIT\r\n");
        assert_eq!(d.problem(), None);
        assert_eq!(d.into_content(), b"Subject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn empty_message_terminator_at_start() {
        let (d, used) = decode(b".\r\n", BareLineEnding::Reject);
        assert!(d.is_done());
        assert_eq!(used, 3);
        assert!(d.into_content().is_empty());
    }

    #[test]
    fn dots_are_unstuffed() {
        let (d, _) = decode(
            b"..leading\r\n...\r\nmid.dot\r\n.\r\n",
            BareLineEnding::Reject,
        );
        assert_eq!(d.into_content(), b".leading\r\n..\r\nmid.dot\r\n");
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_result() {
        let input = b"a\r\n..b\r\nc\rd\r\n.\r\nNEXT";
        let (whole, used_whole) = decode(input, BareLineEnding::Normalize);
        let mut d = Decoded::new(ContentDecoder::data(
            1 << 20,
            1000,
            BareLineEnding::Normalize,
        ));
        let mut used = 0;
        for chunk in input.chunks(1) {
            if d.is_done() {
                break;
            }
            used += d.feed(chunk);
        }
        assert_eq!(used, used_whole);
        assert_eq!(d.into_content(), whole.into_content());
    }

    /// Every SMTP smuggling end-of-data variant must be content, never a terminator.
    #[test]
    fn smuggling_variants_do_not_end_data() {
        let variants: [&[u8]; 8] = [
            b"\n.\n",
            b"\n.\r",
            b"\r.\n",
            b"\r.\r",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n\x00.\r\n",
            b"\r\n.\r\r\n",
        ];
        for v in variants {
            for bare in [BareLineEnding::Reject, BareLineEnding::Normalize] {
                let mut input = b"Subject: a\r\n\r\nx".to_vec();
                input.extend_from_slice(v);
                input.extend_from_slice(
                    b"MAIL FROM:<s@evil.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\n",
                );
                let (d, used) = decode(&input, bare);
                assert!(!d.is_done(), "{v:?} ended DATA ({bare:?})");
                assert_eq!(used, input.len());
                let mut d = d;
                let rest = b"\r\n.\r\n";
                assert_eq!(d.feed(rest), rest.len());
                assert!(d.is_done());
                assert!(
                    d.problem().is_some() || bare == BareLineEnding::Normalize,
                    "{v:?}"
                );
                if bare == BareLineEnding::Normalize {
                    let content = d.into_content();
                    assert!(
                        !content.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
                        "{v:?}"
                    );
                    assert!(
                        !content.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'),
                        "{v:?}"
                    );
                }
            }
        }
    }

    /// Regression (review): in `normalize` mode a line begun by a bare line ending kept its
    /// transparency dot (`\n..x` arrived as `..x`), where Postfix removes it as on any line;
    /// a dot alone there still does not end DATA.
    #[test]
    fn a_line_after_a_normalised_line_ending_is_unstuffed() {
        let (d, _) = decode(
            b"line1\n..hidden\n..\r\n..crlf\r\n\n.\r\nafter\r\n.\r\n",
            BareLineEnding::Normalize,
        );
        assert!(d.is_done());
        assert_eq!(
            d.into_content(),
            b"line1\r\n.hidden\r\n.\r\n.crlf\r\n\r\n\r\nafter\r\n"
        );
    }

    #[test]
    fn bare_line_endings_are_flagged_or_normalised() {
        let (d, _) = decode(b"a\nb\rc\r\n.\r\n", BareLineEnding::Reject);
        assert_eq!(d.problem(), Some(ContentProblem::BareLineEnding));
        let (d, _) = decode(b"a\nb\rc\r\n.\r\n", BareLineEnding::Normalize);
        assert_eq!(d.problem(), None);
        assert_eq!(d.into_content(), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn size_limit_stops_buffering_but_finds_the_end() {
        let mut d = Decoded::new(ContentDecoder::data(10, 1000, BareLineEnding::Reject));
        let input = b"0123456789abcdef\r\nmore\r\n.\r\n";
        assert_eq!(d.feed(input), input.len());
        assert!(d.is_done());
        assert_eq!(d.problem(), Some(ContentProblem::TooBig));
        assert_eq!(d.len(), 0);
        assert!(d.into_content().is_empty());
    }

    /// Regression (review): the dot added for transparency counted towards the line
    /// limit, so a 998-octet line starting with a dot was refused as too long.
    #[test]
    fn the_stuffed_dot_does_not_count_towards_the_line_limit() {
        let mut wire = b"..".to_vec();
        wire.extend_from_slice(&[b'a'; 997]);
        wire.extend_from_slice(b"\r\n.\r\n");
        let (d, _) = decode(&wire, BareLineEnding::Reject);
        assert_eq!(d.problem(), None);
        assert_eq!(d.into_content().len(), 998 + 2);
        let mut wire = b"..".to_vec();
        wire.extend_from_slice(&[b'a'; 998]);
        wire.extend_from_slice(b"\r\n.\r\n");
        let (d, _) = decode(&wire, BareLineEnding::Reject);
        assert_eq!(d.problem(), Some(ContentProblem::LineTooLong));
    }

    #[test]
    fn long_lines_and_nul_are_flagged() {
        let mut long = vec![b'a'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(
            decode(&long, BareLineEnding::Reject).0.problem(),
            Some(ContentProblem::LineTooLong)
        );
        let mut ok = vec![b'a'; 998];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(decode(&ok, BareLineEnding::Reject).0.problem(), None);
        assert_eq!(
            decode(b"a\x00b\r\n.\r\n", BareLineEnding::Reject)
                .0
                .problem(),
            Some(ContentProblem::Nul)
        );
    }

    #[test]
    fn bdat_keeps_dots_and_checks_line_endings_across_chunks() {
        let mut d = Decoded::new(ContentDecoder::bdat(1 << 20, 1000, BareLineEnding::Reject));
        d.feed(b".hidden\r");
        d.feed(b"\n.\r\n");
        d.finish_bdat();
        assert_eq!(d.problem(), None);
        assert_eq!(d.into_content(), b".hidden\r\n.\r\n");
        let mut d = Decoded::new(ContentDecoder::bdat(1 << 20, 1000, BareLineEnding::Reject));
        d.feed(b"x\r");
        d.finish_bdat();
        assert_eq!(d.problem(), Some(ContentProblem::BareLineEnding));
    }

    /// Regression (review of the relay): only `BODY=8BITMIME` marked a message 8-bit, so
    /// undeclared 8-bit content went raw to an internal server without 8BITMIME. The
    /// decoder notes any byte past ASCII, in DATA and BDAT, however the input is cut.
    #[test]
    fn a_byte_past_ascii_is_noticed_whatever_the_chunking() {
        let input = "Subject: x\r\n\r\n..caf\u{e9}\r\n.\r\n".as_bytes();
        let (d, _) = decode(input, BareLineEnding::Reject);
        assert!(d.d.saw_eight_bit());
        let mut bytes = Decoded::new(ContentDecoder::data(1 << 20, 1000, BareLineEnding::Reject));
        for chunk in input.chunks(1) {
            bytes.feed(chunk);
        }
        assert!(bytes.d.saw_eight_bit());
        let mut bdat = Decoded::new(ContentDecoder::bdat(1 << 20, 1000, BareLineEnding::Reject));
        bdat.feed(b"Subject: x\r\n\r\n");
        assert!(!bdat.d.saw_eight_bit());
        bdat.feed(&[0xe9, b'\r', b'\n']);
        bdat.finish_bdat();
        assert!(bdat.d.saw_eight_bit());
        let (ascii, _) = decode(b"Subject: x\r\n\r\nplain\r\n.\r\n", BareLineEnding::Reject);
        assert!(!ascii.d.saw_eight_bit());
    }
}
