//! Text normalisation that resists obfuscation: case and accent folding, invisible-character
//! removal, look-alike letters, digit-for-letter substitutions and letter-spaced words.
//!
//! Everything here is pure and allocation-light so that the tokenizer can call it on every
//! word of every message.

use icu_normalizer::DecomposingNormalizerBorrowed;

/// Returns true for characters that render as nothing and are inserted by spammers to
/// break words apart: Unicode's default-ignorable code points (zero-width spaces and
/// joiners, soft hyphen, bidi controls and isolates, BOM, variation selectors, tag
/// characters, Hangul fillers, ...).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Returns true for combining marks (accents written after their letter, as decomposed
/// text from some mailers has them, and the strike-through and overlay marks spammers put
/// inside words): dropped, so `vi\u{301}agra` reads as one word, and `e` plus U+0301 as
/// the `e` an accented `é` folds to.
pub fn is_combining_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{0483}'..='\u{0489}'
            | '\u{0591}'..='\u{05BD}'
            | '\u{05BF}'
            | '\u{05C1}'..='\u{05C2}'
            | '\u{05C4}'..='\u{05C5}'
            | '\u{05C7}'
            | '\u{0610}'..='\u{061A}'
            | '\u{064B}'..='\u{065F}'
            | '\u{0670}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Folds one lower-case character to its unaccented Latin base form and writes it to `out`.
///
/// Covers Latin-1 Supplement, Latin Extended-A, full-width ASCII and the Cyrillic and Greek
/// letters that look like Latin ones (only applied by the caller to mixed-script words).
fn push_folded(c: char, out: &mut String) {
    let base: &str = match c {
        'à'..='å' => "a",
        'æ' => "ae",
        'ç' => "c",
        'è'..='ë' => "e",
        'ì'..='ï' => "i",
        'ð' => "d",
        'ñ' => "n",
        'ò'..='ö' | 'ø' => "o",
        'ù'..='ü' => "u",
        'ý' | 'ÿ' => "y",
        'þ' => "th",
        'ß' => "ss",
        '\u{0100}'..='\u{0105}' => "a",
        '\u{0106}'..='\u{010D}' => "c",
        '\u{010E}'..='\u{0111}' => "d",
        '\u{0112}'..='\u{011B}' => "e",
        '\u{011C}'..='\u{0123}' => "g",
        '\u{0124}'..='\u{0127}' => "h",
        '\u{0128}'..='\u{0131}' => "i",
        '\u{0132}'..='\u{0133}' => "ij",
        '\u{0134}'..='\u{0135}' => "j",
        '\u{0136}'..='\u{0138}' => "k",
        '\u{0139}'..='\u{0142}' => "l",
        '\u{0143}'..='\u{014B}' => "n",
        '\u{014C}'..='\u{0151}' => "o",
        '\u{0152}'..='\u{0153}' => "oe",
        '\u{0154}'..='\u{0159}' => "r",
        '\u{015A}'..='\u{0161}' | '\u{017F}' => "s",
        '\u{0162}'..='\u{0167}' => "t",
        '\u{0168}'..='\u{0173}' => "u",
        '\u{0174}'..='\u{0175}' => "w",
        '\u{0176}'..='\u{0178}' => "y",
        '\u{0179}'..='\u{017E}' => "z",
        '\u{FF01}'..='\u{FF5E}' => {
            // Full-width ASCII: shift down to the ASCII block (always a valid char).
            if let Some(a) = char::from_u32(c as u32 - 0xFEE0) {
                out.extend(a.to_lowercase());
            }
            return;
        }
        '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => " ",
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' => "'",
        '\u{201C}' | '\u{201D}' | '\u{201F}' => "\"",
        '\u{2010}'..='\u{2015}' => "-",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(base);
}

/// Lower-cases `text`, strips accents (combining marks too), removes invisible characters
/// and maps typographic spaces, quotes and dashes to ASCII. Returns the normalised string.
///
/// ```
/// use mxguard::classify::normalize::normalize_text;
/// assert_eq!(normalize_text("Ré\u{200B}sumé FREE"), "resume free");
/// ```
pub fn normalize_text(text: &str) -> String {
    let text = unreverse_overrides(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_ref();
    while !rest.is_empty() {
        // Runs of ASCII (most of most mail) are copied and lower-cased whole: no ASCII
        // character is invisible or a mark, and a character at a time cost 6 % of the relay
        // rate's CPU.
        let ascii = rest
            .bytes()
            .position(|b| !b.is_ascii())
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(ascii);
        let start = out.len();
        out.push_str(run);
        out[start..].make_ascii_lowercase();
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            match capital_lookalike(c) {
                Some(small) if in_a_latin_word(&out, chars.as_str()) => out.push(small),
                _ => push_normalized(c, &mut out),
            }
        }
        rest = chars.as_str();
    }
    out
}

/// The right-to-left override, whose text [`normalize_text`] reads reversed.
pub const OVERRIDE: char = '\u{202E}';
/// The end of an override (Unicode's "pop directional formatting").
pub const POP_OVERRIDE: char = '\u{202C}';

/// Text after a right-to-left override (U+202E, which `<bdo dir=rtl>` renders to), up to
/// its pop (U+202C) or the end of its line, in the order a reader sees it: reversed
/// (evasion probe: `\u{202E}argaiv\u{202C}` shows `viagra`, and read as written it took
/// spam under `tag`). The controls themselves are dropped later as invisible.
fn unreverse_overrides(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(OVERRIDE) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OVERRIDE) {
        out.push_str(&rest[..at]);
        let run = &rest[at + OVERRIDE.len_utf8()..];
        let end = run
            .find([POP_OVERRIDE, '\n', '\u{2029}'])
            .unwrap_or(run.len());
        out.extend(run[..end].chars().rev());
        rest = &run[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// A Greek or Cyrillic capital whose lower case looks like another Latin letter than the
/// capital does (`Ν`, Greek Nu, looks like `N`, but `ν` like `v`; `Н` like `H`, `н` like
/// `n`): the small letter of its script that looks as the capital does, which
/// [`fold_mixed_script`] then reads as that Latin letter (review: `ΝOW` read `vow`).
fn capital_lookalike(c: char) -> Option<char> {
    Some(match c {
        // Greek Nu → eta (read `n`); Greek Eta, Cyrillic En → Cyrillic shha (read `h`).
        'Ν' => 'η',
        'Η' | 'Н' => 'һ',
        // Greek Mu → Cyrillic em (read `m`).
        'Μ' => 'м',
        _ => return None,
    })
}

/// Whether the character between `before` (normalised so far) and `after` (still to
/// read) sits in a word with Latin letters. A few characters each way: a word longer
/// than that is no look-alike's disguise, and the look stays bounded on a long run.
fn in_a_latin_word(before: &str, after: &str) -> bool {
    const REACH: usize = 16;
    let latin = |c: &char| c.is_ascii_alphabetic();
    let back = before
        .chars()
        .rev()
        .take(REACH)
        .take_while(|c| c.is_alphabetic());
    // What normalising drops (a zero-width space, a mark) does not end the word ahead.
    let ahead = after
        .chars()
        .filter(|&c| !is_invisible(c) && !is_combining_mark(c))
        .take(REACH)
        .take_while(|c| c.is_alphabetic());
    back.chain(ahead).any(|c| latin(&c))
}

/// Writes one non-ASCII character of [`normalize_text`]'s input, normalized.
fn push_normalized(c: char, out: &mut String) {
    if is_invisible(c) || is_combining_mark(c) {
        return;
    }
    if let Some(latin) = latin_compatibility_form(c) {
        for l in latin.chars().filter(|&l| !is_combining_mark(l)) {
            for l in l.to_lowercase() {
                push_folded(l, out);
            }
        }
    } else {
        // Marks a lower-casing adds are dropped too: `İ` lower-cases to `i` and a
        // combining dot, which split `VİAGRA` into two words (review).
        for l in c.to_lowercase().filter(|&l| !is_combining_mark(l)) {
            push_folded(l, out);
        }
    }
}

/// The Latin letters or digits a letter or digit stands for by Unicode's compatibility
/// decomposition (NFKD), marks included: `ị` (U+1ECB), `ǐ`, mathematical bold `𝐯`,
/// circled `ⓥ`, the `ﬁ` ligature, superscript `²`. Spammers write words in them so that
/// they look the same and tokenize differently. None for anything else: a symbol (`™`
/// would glue `tm` to the word before it), and letters of other scripts, whose
/// decompositions (Hangul jamo, kana with a voicing mark) would break their words apart.
fn latin_compatibility_form(c: char) -> Option<String> {
    // Latin-1 letters and Latin Extended-A are folded by `push_folded`'s table, cheaper
    // than a decomposition for the accented text of most European mail.
    let may_decompose = matches!(
        c,
        '\u{00AA}'..='\u{00BF}'
            | '\u{0180}'..='\u{02FF}'
            | '\u{1D00}'..='\u{1EFF}'
            | '\u{2070}'..='\u{218F}'
            | '\u{2460}'..='\u{24FF}'
            | '\u{FB00}'..='\u{FB06}'
            | '\u{FF00}'..='\u{FFEF}'
            | '\u{1D400}'..='\u{1D7FF}'
            | '\u{1F100}'..='\u{1F1FF}'
    );
    if !may_decompose || !c.is_alphanumeric() {
        return None;
    }
    let mut buf = [0u8; 4];
    let one = c.encode_utf8(&mut buf);
    let decomposed = DecomposingNormalizerBorrowed::new_nfkd().normalize(one);
    let latin = |d: char| d.is_ascii_alphanumeric() || ('\u{00C0}'..='\u{024F}').contains(&d);
    (*decomposed != *one
        && decomposed.chars().any(latin)
        && decomposed.chars().all(|d| latin(d) || is_combining_mark(d)))
    .then(|| decomposed.into_owned())
}

/// Maps Cyrillic and Greek letters that look like Latin ones to those Latin letters.
fn latin_lookalike(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'е' | 'ε' => 'e',
        'һ' => 'h',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'н' | 'η' => 'n',
        'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'у' | 'υ' => 'y',
        'х' | 'χ' => 'x',
        'ν' | 'ѵ' => 'v',
        'ԝ' | 'ω' => 'w',
        // More of Unicode's confusables (evasion probe: each kept a word apart).
        'п' => 'n',
        'г' => 'r',
        'ԁ' => 'd',
        'ɡ' => 'g',
        'ӏ' => 'l',
        'ս' => 'u',
        'ԛ' => 'q',
        'ɑ' => 'a',
        'ı' | 'ɩ' => 'i',
        _ => return None,
    })
}

/// If a word mixes Latin letters with Cyrillic/Greek look-alikes (`vіagra` with a Cyrillic
/// `і`), returns the all-Latin spelling. Words written wholly in another script are left alone.
pub fn fold_mixed_script(word: &str) -> Option<String> {
    let has_latin = word.chars().any(|c| c.is_ascii_alphabetic());
    if !has_latin || word.is_ascii() {
        return None;
    }
    let mut changed = false;
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        match latin_lookalike(c) {
            Some(l) => {
                changed = true;
                out.push(l);
            }
            None => out.push(c),
        }
    }
    // Only a real fold if the result is now plain ASCII letters.
    (changed && out.chars().all(|c| c.is_ascii_alphanumeric())).then_some(out)
}

/// Undoes digit/symbol-for-letter substitutions (`v1agra`, `m0rtgage`, `fr@ud`) inside a word.
///
/// Only substitutes characters that sit *between* letters, so ordinary tokens such as `mp3`,
/// `x86`, `2002` or `ipv6` are not touched. Returns `None` when nothing was substituted.
pub fn deleet(word: &str) -> Option<String> {
    let bytes = word.as_bytes();
    // Most words hold no substitute at all: they leave here without allocating. Nor does
    // one with a substitute at an edge (`1st`, `2nd`), which the loop below refuses.
    if bytes.len() < 3
        || !bytes[0].is_ascii_alphabetic()
        || !bytes[bytes.len() - 1].is_ascii_alphabetic()
        || !bytes.iter().any(|&b| leet_letter(b).is_some())
        || !bytes
            .iter()
            .all(|&b| b.is_ascii_alphabetic() || leet_letter(b).is_some())
    {
        return None;
    }
    let first = bytes.iter().position(u8::is_ascii_alphabetic)?;
    let last = bytes.iter().rposition(u8::is_ascii_alphabetic)?;
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_alphabetic() {
            out.push(char::from(b));
        } else if first < i && i < last {
            out.push(leet_letter(b)?);
        } else {
            // A substitute at the word's edge stays what it is, and the word is not all
            // letters then.
            return None;
        }
    }
    Some(out)
}

/// The letter a digit or symbol stands for inside a word.
fn leet_letter(b: u8) -> Option<char> {
    match b {
        b'0' => Some('o'),
        b'1' | b'!' | b'|' => Some('i'),
        b'3' => Some('e'),
        b'4' | b'@' => Some('a'),
        b'5' | b'$' => Some('s'),
        b'7' | b'+' => Some('t'),
        _ => None,
    }
}

/// Joins letter-spaced words: `v i a g r a` (as separate chunks) and `v-i-a-g-r-a`,
/// `v.i.a.g.r.a`, `v_i_a_g_r_a` (as one chunk). Returns the joined words found.
///
/// `chunks` are the whitespace-separated chunks of `text` (already normalised), in order
/// and borrowed from it: the blanks between them tell where a spaced word ends. A gap
/// wider than the one between a run's first two letters ends a word (a tab counts as
/// eight spaces), as a line break does (review: `b u y  v i a g r a  n o w` gave one
/// 12-letter word, and a longer phrase none at all, being longer than any word).
pub fn join_spaced_letters(text: &str, chunks: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut run = String::new();
    let mut run_len = 0usize;
    // The gap between the run's first two letters: the spacing inside its word.
    let mut run_gap: Option<usize> = None;
    let flush = |run: &mut String, run_len: &mut usize, found: &mut Vec<String>| {
        if *run_len >= 4 {
            found.push(std::mem::take(run));
        }
        run.clear();
        *run_len = 0;
    };
    for (gap, tok) in with_gaps(text, chunks) {
        // Punctuation a sentence puts around a word (`(v i a g r a).`) is no part of it.
        let word = tok.trim_matches(|c: char| !c.is_alphanumeric());
        let mut chars = word.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                let wider = match run_gap {
                    Some(inside) => gap > inside,
                    None => gap == usize::MAX,
                };
                // A letter opened by punctuation, or after a wider gap, starts a run;
                // one closed by punctuation ends one.
                if wider || (word.len() != tok.len() && !tok.starts_with(c)) {
                    flush(&mut run, &mut run_len, &mut found);
                }
                if run_len == 0 {
                    run_gap = None;
                } else if run_gap.is_none() {
                    run_gap = Some(gap);
                }
                run.push(c);
                run_len += 1;
                if !tok.ends_with(c) {
                    flush(&mut run, &mut run_len, &mut found);
                }
                continue;
            }
            _ => flush(&mut run, &mut run_len, &mut found),
        }
        if let Some(j) = join_separated_letters(word) {
            found.push(j);
        }
    }
    flush(&mut run, &mut run_len, &mut found);
    found
}

/// Each chunk with the width of the blanks before it (a tab as wide as eight spaces: a
/// word spaced with tabs is joined, but a tab after space-spaced letters ends the word):
/// `usize::MAX` for the first, across a line break, where text was left out between two
/// chunks, or for a chunk that is not a slice of `text`.
fn with_gaps<'a>(text: &str, chunks: &[&'a str]) -> Vec<(usize, &'a str)> {
    let base = text.as_ptr() as usize;
    let mut prev_end: Option<usize> = None;
    chunks
        .iter()
        .map(|&chunk| {
            let start = (chunk.as_ptr() as usize)
                .checked_sub(base)
                .filter(|s| s + chunk.len() <= text.len());
            let gap = match (prev_end, start) {
                (Some(end), Some(start)) => match text.get(end..start) {
                    Some(blanks)
                        if blanks.trim().is_empty()
                            && !blanks.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) =>
                    {
                        blanks.chars().map(|c| if c == '\t' { 8 } else { 1 }).sum()
                    }
                    _ => usize::MAX,
                },
                _ => usize::MAX,
            };
            prev_end = start.map(|s| s + chunk.len());
            (gap, chunk)
        })
        .collect()
}

/// `v-i-a-g-r-a` → `viagra`: single letters separated by one repeated punctuation mark.
fn join_separated_letters(tok: &str) -> Option<String> {
    let chars: Vec<char> = tok.chars().collect();
    if chars.len() < 7 || chars.len().is_multiple_of(2) {
        return None;
    }
    let sep = chars[1];
    if !matches!(sep, '-' | '.' | '_' | '*' | '/' | '|' | '+' | '~' | ',') {
        return None;
    }
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i % 2 == 0 {
            if !c.is_alphanumeric() {
                return None;
            }
            out.push(c);
        } else if c != sep {
            return None;
        }
    }
    // Dotted numbers and dates (1.2.3.4) are not obfuscation.
    out.chars()
        .any(|c| c.is_alphabetic())
        .then_some(out)
        .filter(|_| !tok.chars().all(|c| c.is_ascii_digit() || c == sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): a combining mark is neither a word character nor invisible, so
    /// `vi\u{301}agra` split into `vi` and `agra`, and decomposed text gave other tokens
    /// than the same text precomposed.
    #[test]
    fn combining_marks_neither_split_words_nor_change_them() {
        assert_eq!(normalize_text("vi\u{301}agra"), "viagra");
        assert_eq!(normalize_text("v\u{336}i\u{336}agra"), "viagra");
        assert_eq!(
            normalize_text("re\u{301}sume\u{301}"),
            normalize_text("résumé")
        );
    }

    #[test]
    fn lowercases_and_strips_accents() {
        assert_eq!(
            normalize_text("CAFÉ Ñandú Œuvre Straße"),
            "cafe nandu oeuvre strasse"
        );
    }

    #[test]
    fn removes_zero_width_and_soft_hyphen() {
        assert_eq!(normalize_text("vi\u{200B}ag\u{00AD}ra\u{FEFF}"), "viagra");
        assert_eq!(normalize_text("fr\u{200D}ee"), "free");
    }

    /// Regression (review): only some invisible characters were dropped: bidi isolates,
    /// variation selectors, tag characters, Hangul fillers (letters, so they stayed inside
    /// the word) and the like broke `viagra` apart; so did Cyrillic, Hebrew and Arabic
    /// combining marks.
    #[test]
    fn every_default_ignorable_character_and_more_marks_are_dropped() {
        for c in [
            '\u{2066}',
            '\u{2069}',
            '\u{FE0F}',
            '\u{FE00}',
            '\u{E0041}',
            '\u{061C}',
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{180B}',
            '\u{17B4}',
            '\u{1BCA0}',
            '\u{1D173}',
            '\u{0483}',
            '\u{05B0}',
            '\u{064E}',
        ] {
            assert_eq!(
                normalize_text(&format!("vi{c}agra")),
                "viagra",
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn maps_fullwidth_and_typographic_characters() {
        assert_eq!(normalize_text("ＦＲＥＥ"), "free");
        assert_eq!(
            normalize_text("it\u{2019}s\u{00A0}a\u{2014}deal"),
            "it's a-deal"
        );
    }

    #[test]
    fn deleet_substitutes_only_inside_words() {
        assert_eq!(deleet("v1agra").as_deref(), Some("viagra"));
        assert_eq!(deleet("m0rtgage").as_deref(), Some("mortgage"));
        assert_eq!(deleet("fr@ud").as_deref(), Some("fraud"));
        assert_eq!(deleet("v14gra").as_deref(), Some("viagra"));
        assert_eq!(deleet("c1al1s").as_deref(), Some("cialis"));
        assert_eq!(deleet("mp3"), None);
        assert_eq!(deleet("x86"), None);
        assert_eq!(deleet("2002"), None);
        assert_eq!(deleet("ipv6"), None);
        assert_eq!(deleet("hello"), None);
    }

    /// The rule as first written (character by character, each substitute checked for a
    /// letter on both sides); the shipped seed's tokens were made with it, so the fast
    /// version must agree with it on every word.
    fn deleet_reference(word: &str) -> Option<String> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() < 3 {
            return None;
        }
        let mut out = String::new();
        let mut changed = false;
        for (i, &c) in chars.iter().enumerate() {
            let sub = match c {
                '0' => Some('o'),
                '1' | '!' | '|' => Some('i'),
                '3' => Some('e'),
                '4' | '@' => Some('a'),
                '5' | '$' => Some('s'),
                '7' | '+' => Some('t'),
                _ => None,
            };
            let inside = chars[..i].iter().any(|p| p.is_ascii_alphabetic())
                && chars[i + 1..].iter().any(|n| n.is_ascii_alphabetic());
            match sub {
                Some(s) if inside => {
                    changed = true;
                    out.push(s);
                }
                _ => out.push(c),
            }
        }
        (changed && out.chars().all(|c| c.is_ascii_alphabetic())).then_some(out)
    }

    #[test]
    fn deleet_agrees_with_the_reference_on_every_short_word() {
        let alphabet: Vec<char> = "aZ1@0|+9-é".chars().collect();
        let mut word = Vec::new();
        for len in 0..=5u32 {
            for mut n in 0..alphabet.len().pow(len) {
                word.clear();
                for _ in 0..len {
                    word.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let w: String = word.iter().collect();
                assert_eq!(deleet(&w), deleet_reference(&w), "{w:?}");
            }
        }
    }

    /// [`join_spaced_letters`] over the whitespace-separated chunks of `text`.
    fn joined(text: &str) -> Vec<String> {
        let chunks: Vec<&str> = text.split_whitespace().collect();
        join_spaced_letters(text, &chunks)
    }

    #[test]
    fn joins_letter_spaced_words() {
        assert_eq!(joined("buy v i a g r a now"), vec!["viagra".to_string()]);
        assert_eq!(joined("v-i-a-g-r-a"), vec!["viagra".to_string()]);
        assert_eq!(joined("f.r.e.e"), vec!["free".to_string()]);
        assert!(joined("a b").is_empty(), "short runs are normal text");
        assert!(joined("1.2.3.4").is_empty(), "dotted numbers are not words");
    }

    /// Regression (review): the blanks between chunks were lost, so the words of a
    /// letter-spaced phrase ran together: `b u y  v i a g r a  n o w` gave `buyviagranow`,
    /// and a longer phrase nothing (longer than any word).
    #[test]
    fn a_wider_gap_ends_a_letter_spaced_word() {
        let words = |v: &[&str]| v.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            joined("b u y  v i a g r a  n o w"),
            words(&["viagra"]),
            "three-letter words are left to the plain tokens, as before"
        );
        assert_eq!(
            joined("c h e a p   v i a g r a   f o r   y o u   t o d a y"),
            words(&["cheap", "viagra", "today"])
        );
        assert_eq!(
            joined("v i a g r a\np i l l s"),
            words(&["viagra", "pills"])
        );
        assert_eq!(
            joined("v  i  a  g  r  a"),
            words(&["viagra"]),
            "wide but even"
        );
        // Review: tabs counted as a line break, so a word spaced with tabs never joined.
        assert_eq!(joined("v\ti\ta\tg\tr\ta"), words(&["viagra"]));
        assert_eq!(
            joined("b u y\tv i a g r a"),
            words(&["viagra"]),
            "a tab ends a word"
        );
        assert_eq!(
            joined("v i a g r a\u{2028}n o w x"),
            words(&["viagra", "nowx"])
        );
        assert_eq!(
            joined("v\u{2009}i\u{2009}a\u{2009}g\u{2009}r\u{2009}a"),
            words(&["viagra"])
        );
        // Chunks that are not slices of the text are read as apart.
        assert!(join_spaced_letters("x", &["v", "i", "a", "g"]).is_empty());
    }

    /// Regression (review): punctuation touching a letter-spaced word kept it apart:
    /// `v-i-a-g-r-a.`, `(v.i.a.g.r.a)` and `v i a g r a.` gave no `viagra`.
    #[test]
    fn letter_spaced_words_are_joined_inside_punctuation() {
        let viagra = vec!["viagra".to_string()];
        assert_eq!(joined("v-i-a-g-r-a."), viagra);
        assert_eq!(joined("v-i-a-g-r-a,"), viagra);
        assert_eq!(joined("(v.i.a.g.r.a)"), viagra);
        assert_eq!(joined("buy v i a g r a. now"), viagra);
        assert_eq!(joined("x y (v i a g r a) z"), viagra);
    }

    /// Regression (review): accents were folded only in Latin-1 and Latin Extended-A, with
    /// no compatibility decomposition: `vịagra`, `vǐagra`, mathematical bold and circled
    /// letters each made a word of their own.
    #[test]
    fn compatibility_forms_of_latin_letters_fold_to_them() {
        for word in ["vịagra", "vǐagra", "𝐯𝐢𝐚𝐠𝐫𝐚", "ⓥⓘⓐⓖⓡⓐ", "ＶＩＡＧＲＡ"]
        {
            assert_eq!(normalize_text(word), "viagra", "{word}");
        }
        assert_eq!(normalize_text("ﬁnance²"), "finance2");
        // Symbols and other scripts stay as they are.
        assert_eq!(normalize_text("offer™"), "offer™");
        assert_eq!(normalize_text("한국어 が й"), "한국어 が й");
    }

    #[test]
    fn folds_mixed_script_lookalikes() {
        assert_eq!(fold_mixed_script("vіagra").as_deref(), Some("viagra"));
        assert_eq!(
            fold_mixed_script("привет"),
            None,
            "all-Cyrillic words are kept"
        );
        assert_eq!(fold_mixed_script("viagra"), None);
    }

    /// Regression (review): capitals were folded by the look of their lower case, so
    /// `ΝOW` (Greek Nu) read `vow` and `НOT` (Cyrillic En) `not`.
    #[test]
    fn capital_lookalikes_fold_by_their_own_look() {
        let folded = |w: &str| fold_mixed_script(&normalize_text(w));
        assert_eq!(folded("ΝOW").as_deref(), Some("now"));
        assert_eq!(folded("НOT").as_deref(), Some("hot"));
        assert_eq!(folded("ΗOME").as_deref(), Some("home"));
        assert_eq!(folded("ΜONEY").as_deref(), Some("money"));
        assert_eq!(folded("VIAGRΑ").as_deref(), Some("viagra"));
        assert_eq!(folded("Ν\u{200B}OW").as_deref(), Some("now"));
        // Words of their own script keep their case folding.
        assert_eq!(normalize_text("ΝΑΙ ΝΕΤ НЕТ"), "ναι νετ нет");
        assert_eq!(normalize_text("ΜΕ ΗΜΕΡΑ"), "με ημερα");
    }

    /// Regression (evasion probe): look-alikes past the first table kept words apart.
    #[test]
    fn more_confusables_fold_in_mixed_words() {
        for (word, latin) in [
            ("moпey", "money"),
            ("fгee", "free"),
            ("ԁrugs", "drugs"),
            ("viaɡra", "viagra"),
            ("piӏls", "pills"),
            ("bսy", "buy"),
            ("ѵiagra", "viagra"),
            ("vıagra", "viagra"),
        ] {
            assert_eq!(fold_mixed_script(word).as_deref(), Some(latin), "{word}");
        }
    }

    /// Regression (evasion probe): text written backwards after a right-to-left override
    /// (which a reader sees the right way round) was read as written.
    #[test]
    fn right_to_left_overrides_read_as_a_reader_sees_them() {
        assert_eq!(
            normalize_text("buy \u{202E}argaiv\u{202C} now"),
            "buy viagra now"
        );
        assert_eq!(
            normalize_text("\u{202E}slliP paehC\nnext"),
            "cheap pills\nnext"
        );
        assert_eq!(normalize_text("\u{202E}"), "");
        assert_eq!(normalize_text("plain \u{202C}text"), "plain text");
    }
}
