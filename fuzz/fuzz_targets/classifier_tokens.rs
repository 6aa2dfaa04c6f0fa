//! Message bytes from the internet → the classifier's tokenizer
//! (`classify::tokenize::Tokenizer::features`: MIME parse, lenient base64, HTML rendering,
//! the normalisation against obfuscation, header, URL and address tokens), and the same
//! bytes as text through `classify::html::render` and the word normalisers on their own.
//!
//! The tokens name counters in the state backend that every member of a tier shares, so
//! besides "no panic, no hang": the tokens are the same on a second run (a token that
//! depended on anything but the bytes would split the tier's counts); they are sorted by
//! hash, distinct, and each hash is the stable hash of its name; no name is empty. The
//! normalisers: `deleet` and `fold_mixed_script` answer only for a word they changed, and
//! `fold_mixed_script` only with plain ASCII letters and digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::classify::features::hash_str;
use mxguard::classify::html;
use mxguard::classify::normalize::{deleet, fold_mixed_script, join_spaced_letters, normalize_text};
use mxguard::classify::tokenize::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let first = Tokenizer.features(data);
    let again = Tokenizer.features(data);
    assert_eq!(first.tokens, again.tokens, "tokens differ between two runs");
    for pair in first.tokens.windows(2) {
        assert!(pair[0].hash < pair[1].hash, "tokens not sorted by hash or not distinct");
    }
    for token in &first.tokens {
        assert!(!token.name.is_empty(), "empty token name");
        assert_eq!(token.hash, hash_str(&token.name), "hash of {:?}", token.name);
    }

    let text = String::from_utf8_lossy(data);
    let rendered = html::render(&text);
    assert!(
        rendered.text.len() <= 4 * text.len() + 16,
        "rendered text grew from {} to {} bytes",
        text.len(),
        rendered.text.len()
    );
    let normal = normalize_text(&rendered.text);
    for word in normal.split_whitespace() {
        if let Some(w) = deleet(word) {
            assert_ne!(w, word, "deleet answered without a change");
        }
        if let Some(w) = fold_mixed_script(word) {
            assert_ne!(w, word, "fold_mixed_script answered without a change");
            assert!(w.chars().all(|c| c.is_ascii_alphanumeric()), "fold left {w:?}");
        }
    }
    let chunks: Vec<&str> = normal.split_whitespace().collect();
    let _ = join_spaced_letters(&normal, &chunks);
});
