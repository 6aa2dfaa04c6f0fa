//! DATA and BDAT content from the internet → `smtp::content::ContentDecoder`.
//!
//! The first input byte picks the mode (DATA/BDAT, reject/normalize) and the chunking, the
//! second the size limit (16 to 4,096 bytes, so inputs reach it: review, a fixed 64 KiB was
//! never reached by inputs of at most 8 KiB); the rest is what the client sends. Properties: the result does not depend on how the
//! bytes were split into reads; DATA ends only at a real `CRLF.CRLF` (never a smuggling
//! variant); accepted content has CRLF line endings only; dot-stuffing the decoded content
//! and decoding it again gives it back (what the relay client sends is what we judged); the
//! size limit holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::config::BareLineEnding;
use mxguard::smtp::content::{ContentDecoder, ContentProblem};

const MAX_LINE: usize = 1000;

fn decoder(dot: bool, bare: BareLineEnding, max_size: usize) -> ContentDecoder {
    if dot {
        ContentDecoder::data(max_size, MAX_LINE, bare)
    } else {
        ContentDecoder::bdat(max_size, MAX_LINE, bare)
    }
}

/// Feeds `input` in chunks whose sizes cycle through `sizes`, appending the decoded
/// content to `out`; returns the bytes used.
fn feed(
    d: &mut ContentDecoder,
    out: &mut Vec<u8>,
    input: &[u8],
    sizes: &[usize],
    dot: bool,
) -> usize {
    let mut used = 0;
    let mut k = 0;
    while used < input.len() && !d.is_done() {
        let n = sizes[k % sizes.len()].min(input.len() - used);
        k += 1;
        let before = out.len();
        let took = d.feed(&input[used..used + n], out);
        assert!(
            out.len() - before <= 2 * took + 2,
            "more than twice the input appended"
        );
        assert!(took <= n);
        used += took;
        // Only the DATA terminator may leave bytes unconsumed.
        if took < n {
            assert!(dot && d.is_done(), "bytes left without an end of data");
            break;
        }
    }
    if !dot {
        d.finish_bdat(out);
    }
    used
}

fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 8);
    let mut at_line_start = true;
    for &b in content {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !content.is_empty() && !content.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn has_bare_line_ending(c: &[u8]) -> bool {
    c.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || c[i - 1] != b'\r'))
            || (b == b'\r' && c.get(i + 1) != Some(&b'\n'))
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, size, input @ ..] = data else {
        return;
    };
    let (mode, max_size) = (*mode, 16 * (1 + *size as usize));
    let dot = mode & 1 == 0;
    let bare = if mode & 2 == 0 {
        BareLineEnding::Reject
    } else {
        BareLineEnding::Normalize
    };
    let sizes: Vec<usize> = [1 + (mode >> 2) as usize % 7, 1, 3, 17, 4096].to_vec();

    let (mut whole, mut content) = (decoder(dot, bare, max_size), Vec::new());
    let used_whole = feed(&mut whole, &mut content, input, &[usize::MAX], dot);
    let (mut split, mut split_content) = (decoder(dot, bare, max_size), Vec::new());
    let used_split = feed(&mut split, &mut split_content, input, &sizes, dot);
    assert_eq!(used_whole, used_split, "consumed bytes depend on chunking");
    assert_eq!(whole.is_done(), split.is_done());
    assert_eq!(whole.problem(), split.problem());
    let problem = whole.problem();
    let done = whole.is_done();
    // Past the limit what was passed on before is thrown away with the message, and how
    // much of it there is depends on the reads: only below the limit must it be the same.
    if problem != Some(ContentProblem::TooBig) {
        assert_eq!(content, split_content, "content depends on chunking");
    }
    assert!(split_content.len() <= max_size, "the limit held only for one read");
    assert_eq!(whole.len(), content.len(), "len() counts what was appended");

    if dot && done {
        let consumed = &input[..used_whole];
        assert!(
            consumed == b".\r\n" || consumed.ends_with(b"\r\n.\r\n"),
            "DATA ended without CRLF.CRLF: {consumed:?}"
        );
    }
    // Past the limit nothing more is passed on (the caller discards the message).
    assert!(content.len() <= max_size, "{} bytes past a limit of {max_size}", content.len());
    if problem.is_none() && (done || !dot) {
        assert!(
            !has_bare_line_ending(&content),
            "bare CR/LF in accepted content"
        );
        // What the relay sends (stuffed) must decode to exactly what was judged.
        let wire = dot_stuff(&content);
        let mut again = ContentDecoder::data(usize::MAX, usize::MAX, BareLineEnding::Reject);
        let mut decoded = Vec::new();
        let used = again.feed(&wire, &mut decoded);
        assert!(
            again.is_done() && used == wire.len(),
            "stuffed content does not round-trip"
        );
        assert_eq!(again.problem(), None);
        let mut expected = content.clone();
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(decoded, expected);
    }
});
