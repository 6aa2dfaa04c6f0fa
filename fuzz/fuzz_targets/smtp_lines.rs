//! Bytes a client sends → `smtp::framing::Framer`, as the connection frames command lines
//! from whatever its reads bring in.
//!
//! Input: a line limit (first byte), read sizes (the next bytes, up to eight), the rest is
//! the stream. Properties: never panics; the lines are those of a model that splits the
//! whole stream at each LF (`reference_lines`), whatever the read boundaries (one byte at
//! a time, the fuzzer's sizes, all at once); the buffer never holds more than a line's
//! limit plus one read; a line taken whole fits the limit with its ending.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::smtp::framing::{frame_in_reads, reference_lines, Line};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(limit % 64) + 1;
    let take = rest.len().min(8);
    let (sizes, stream) = rest.split_at(take);
    let reads: Vec<usize> = sizes.iter().map(|&n| usize::from(n % 32) + 1).collect();
    let reads = if reads.is_empty() { vec![1] } else { reads };
    let expected = reference_lines(stream, max);
    for reads in [&reads[..], &[1][..], &[stream.len().max(1)][..]] {
        let (lines, peak) = frame_in_reads(stream, max, reads);
        assert_eq!(lines, expected, "max {max} reads {reads:?}");
        let largest = reads.iter().copied().max().unwrap_or(1);
        assert!(peak < max + largest, "buffer of {peak} with max {max}, reads {reads:?}");
    }
    for line in &expected {
        match line {
            Line::Complete(bytes) => assert!(bytes.len() + 2 <= max),
            Line::BareLf(bytes) => assert!(bytes.len() < max && !bytes.ends_with(b"\r")),
            Line::TooLong(head) => assert!(head.len() <= mxguard::smtp::framing::TOO_LONG_HEAD),
        }
    }
});
