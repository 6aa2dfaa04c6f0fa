//! Tests of the Perl → Rust regex translation.

use super::*;

fn tr(s: &str, f: &str) -> String {
    translate(s, f, false).unwrap().pattern
}

#[test]
fn flags_become_inline() {
    assert_eq!(tr("abc", "i"), "(?i)abc");
    assert_eq!(tr("abc", "ims"), "(?ims)abc");
    assert_eq!(translate("^a$", "", true).unwrap().pattern, "(?m)^a$");
}

/// Regression (review): `$` followed only the `/m` suffix, so an inline `(?m)` left it
/// "end of text", and `/(?m)^To: c$/` could not match a middle header line; `(?x:…)`
/// also held past its group. Inline flags hold to the end of their group, as in Perl.
#[test]
fn inline_flags_hold_to_the_end_of_their_group() {
    assert_eq!(tr(r"(?m)a$", ""), "(?m)a$");
    assert_eq!(tr(r"(?m:a$)b$", ""), r"(?m:a$)b(?:\n?\z)");
    assert_eq!(tr(r"(?-m)a$", "m"), r"(?m)(?-m)a(?:\n?\z)");
    assert_eq!(tr(r"(?x: a b ) c", ""), r"(?:ab) c");
    assert_eq!(tr(r"(a(?m)b$)c$", ""), r"(a(?m)b$)c(?:\n?\z)");
    let re = regex::Regex::new(&tr(r"(?m)^To: c$", "")).unwrap();
    assert!(re.is_match("From: a\nTo: c\nSubject: s\n"));
}

#[test]
fn perl_specific_escapes() {
    assert_eq!(tr(r"a\Z", ""), r"a(?:\n?\z)");
    assert_eq!(tr(r"a$", ""), r"a(?:\n?\z)");
    assert_eq!(tr(r"a$", "m"), "(?m)a$");
    assert_eq!(tr(r"\<b\>", ""), r"\x3Cb\x3E");
    assert_eq!(tr(r"a\/b", ""), r"a\x2Fb");
    assert_eq!(tr(r"\xA", ""), r"\x0A");
    assert_eq!(tr(r"\012", ""), r"\x0A");
    assert_eq!(tr(r"[\x{41}\x{456}]", ""), r"[\x41\x{456}]");
    assert_eq!(tr(r"\Qa.b\E", ""), r"a\.b");
    assert_eq!(tr(r"foo{bar", ""), r"foo\{bar");
    assert_eq!(tr(r"a{,3}", ""), r"a{0,3}");
    assert_eq!(tr(r"[[a&&b~]", ""), r"[\[a\&\&b\~]");
    assert_eq!(tr(r"[[:alpha:]]", ""), r"[[:alpha:]]");
    assert_eq!(tr(r"[]a]", ""), r"[\]a]");
    assert_eq!(tr(r"a(?#c)b", ""), "ab");
    assert_eq!(tr("a b # c\n d", "x"), "abd");
    assert_eq!(tr("[a b]", "x"), "[a b]");
}

/// Regression (review): `\xHH` past ASCII is a byte to SpamAssassin, but the translated
/// `\xE9` read as the character U+00E9 when the pattern was compiled in Unicode mode (for a
/// `\p{…}` or a folded letter past ASCII), so `/caf\xc3\xa9 \p{L}/` never matched `café x`.
/// Bytes are written so that every mode reads them as bytes; a class of both bytes and
/// characters past ASCII, which no engine reads, is refused by name.
#[test]
fn bytes_past_ascii_stay_bytes_in_every_mode() {
    assert_eq!(tr(r"caf\xc3\xa9", ""), r"caf(?-u:\xC3)(?-u:\xA9)");
    assert_eq!(tr(r"[\x80-\xff]{2}", ""), r"(?-u:[\x80-\xFF]){2}");
    assert_eq!(tr(r"[^\xd0a]", ""), r"(?-u:[^\xD0a])");
    assert_eq!(tr(r"[a-z]\x41", ""), r"[a-z]\x41");
    assert!(matches!(
        translate(r"[\xd0\p{Cyrillic}]", "", false),
        Err(PatternError::Unsupported(_))
    ));
    assert!(matches!(
        translate(r"[\xE9é]", "", false),
        Err(PatternError::Unsupported(_))
    ));
    let text = "café x привет".as_bytes();
    for (perl, flags) in [
        (r"caf\xc3\xa9 \p{L}", ""),
        (r"(?:пока|\xd0\xbf\xd1\x80)", "i"),
        (r"[\x80-\xff]{4}|\p{Greek}", ""),
        (r"(?:[\x80-\xff]{2}){3}|ё", "i"),
    ] {
        let pattern = format!("(?u){}", tr(perl, flags));
        let re = regex::bytes::Regex::new(&pattern).unwrap();
        assert!(re.is_match(text), "{perl} ({pattern})");
    }
    // And in ASCII mode, as before.
    let ascii = regex::bytes::RegexBuilder::new(&tr(r"caf\xc3\xa9", ""))
        .unicode(false)
        .build()
        .unwrap();
    assert!(ascii.is_match(text));
}

#[test]
fn backtracking_constructs_are_named() {
    assert_eq!(
        translate("a(?=b)", "", false).unwrap().backtracking,
        vec!["lookahead"]
    );
    assert_eq!(
        translate(r"(a)\1", "", false).unwrap().backtracking,
        vec!["backreference"]
    );
    assert_eq!(
        translate(r"a++(?>b)", "", false).unwrap().backtracking,
        vec!["atomic group", "possessive quantifier"]
    );
    assert!(translate("a(?{ 1 })", "", false).is_err());
}

#[test]
fn malformed_patterns_are_invalid_perl_features_unsupported() {
    for bad in [
        r"[abc", r"(?#c", r"(?z)a", r"(?i", r"\x{zz}", r"\18", r"(?<>a)",
    ] {
        assert!(
            matches!(translate(bad, "", false), Err(PatternError::Invalid(_))),
            "{bad}: {:?}",
            translate(bad, "", false)
        );
    }
    for perl in [
        r"(?|a|b)",
        r"a(?{ 1 })",
        r"(a)?(?(1)b|c)",
        r"(?n)(a)",
        r"(a)(?-1)",
    ] {
        assert!(
            matches!(
                translate(perl, "", false),
                Err(PatternError::Unsupported(_))
            ),
            "{perl}: {:?}",
            translate(perl, "", false)
        );
    }
}

#[test]
fn perl_only_constructs_are_named() {
    let named = |s: &str| translate(s, "", false).unwrap().perl_only;
    assert_eq!(named(r"\X"), vec!["`\\X` (grapheme cluster)"]);
    assert_eq!(named(r"a(*SKIP)b"), vec!["backtracking control verb"]);
    assert_eq!(named(r"(a)(?1)"), vec!["recursion"]);
    assert!(named(r"(a)\g{-1}").is_empty());
    // Unicode properties are no excuse any more: both engines read them.
    assert!(named(r"\p{Latin}").is_empty());
    // Perl would refuse these too: nothing to excuse a compile failure.
    assert!(named(r"unclosed(").is_empty());
    assert!(named(r"[\X]").is_empty());
    assert!(named(r"(*").is_empty());
}

#[test]
fn braced_escapes_belong_to_their_escape() {
    // Regression: `\p{L}` became `\p\{L\}` (a broken class), so the rule was skipped.
    assert_eq!(tr(r"\p{L}+", ""), r"\p{L}+");
    assert_eq!(tr(r"[\P{Lu}x]", ""), r"[\P{Lu}x]");
    assert_eq!(tr(r"\pL", ""), r"\pL");
    // Regression: `\N{U+41}` and `\b{wb}` compiled silently as literal braces.
    assert_eq!(tr(r"\N{U+41}b", ""), r"\x41b");
    assert_eq!(tr(r"\N{U+263A}", ""), r"\x{263A}");
    assert!(matches!(
        translate(r"\N{LATIN SMALL LETTER A}", "", false),
        Err(PatternError::Unsupported(_))
    ));
    for boundary in [r"a\b{wb}", r"\B{gcb}x"] {
        assert!(
            matches!(
                translate(boundary, "", false),
                Err(PatternError::Unsupported(_))
            ),
            "{boundary}"
        );
    }
    assert!(matches!(
        translate(r"\p{L", "", false),
        Err(PatternError::Invalid(_))
    ));
}

/// Regression (review): `\g1` reached fancy-regex as written, where it is a subroutine
/// call (anything group 1 could match), so `(\w)\g1\g1\g1` fired on any four word
/// characters instead of one repeated four times; `\g{N}`, `\g{-N}` and `\k{name}` were
/// skipped as Perl-only.
#[test]
fn every_perl_backreference_form_is_a_backreference() {
    let is_match = |perl: &str, text: &str| {
        let pattern = tr(perl, "");
        fancy_regex::Regex::new(&pattern)
            .unwrap_or_else(|e| panic!("{perl} -> {pattern}: {e}"))
            .is_match(text)
            .unwrap()
    };
    for (perl, hit, miss) in [
        (r"^(\w)\g1\g1\g1$", "aaaa", "abcd"),
        (r"^(a|b)\g1$", "bb", "ab"),
        (r"^(a|b)\g{1}$", "aa", "ab"),
        (r"^(a)(b|c)\g{-1}$", "acc", "acb"),
        (r"^(a)(b|c)\g-2$", "aba", "abb"),
        (r"^(a|b)\g{1}0$", "aa0", "a0"),
        (r"^(?<x>a|b)\g{x}$", "bb", "ba"),
        (r"^(?<x>a|b)\k{x}$", "aa", "ab"),
        (r"^(?<x>a|b)\k<x>$", "aa", "ab"),
        (r"^(?<x>a|b)\k'x'$", "bb", "ba"),
    ] {
        assert!(is_match(perl, hit), "{perl} should match {hit:?}");
        assert!(!is_match(perl, miss), "{perl} should not match {miss:?}");
    }
    for bad in [r"(a)\g{-2}", r"\g{0}", r"(a)\g", r"(a)\k<x"] {
        assert!(
            matches!(translate(bad, "", false), Err(PatternError::Invalid(_))),
            "{bad}: {:?}",
            translate(bad, "", false)
        );
    }
}

/// Regression (review): spelled out in a class, `\h` or `\v` before a `-` started a range:
/// `[\h-_.]` became `[\t -_.]` and matched every letter. Perl calls it a false range and
/// SpamAssassin refuses the rule; so is it refused here. Before `]`, `-` is a literal.
#[test]
fn a_spelled_out_escape_never_starts_a_range() {
    for bad in [r"x[\h-_.]y", r"x[\v-z]y"] {
        assert!(
            matches!(translate(bad, "", false), Err(PatternError::Invalid(_))),
            "{bad}"
        );
    }
    assert_eq!(tr(r"[\h-]", ""), r"[\t -]");
}

/// Regression (review): each `{` read ahead to the next `}`, so a pattern of unclosed
/// braces took quadratic time. The scan stops where a quantifier cannot go on; braces
/// read as before.
#[test]
fn unclosed_braces_are_read_in_linear_time() {
    assert_eq!(tr("a{2}b{1, 3}c{,4}", ""), "a{2}b{1,3}c{0,4}");
    assert_eq!(tr("a{x}", ""), r"a\{x\}");
    let long = "a{".repeat(100_000);
    let translated = tr(&long, "");
    assert_eq!(translated.matches(r"\{").count(), 100_000);
}
