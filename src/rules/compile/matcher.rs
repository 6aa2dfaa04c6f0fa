//! Matchers: one pattern built in the linear `regex` engine or, when it needs to, the
//! backtracking `fancy-regex` engine; rules of one target grouped behind `RegexSet` prefilters.

use crate::rules::perlre::PatternError;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Compiled size limit of one regex (the `regex` crate's program size).
const REGEX_SIZE_LIMIT: usize = 2 << 20;
/// Lazy-DFA cache limit of one regex.
const REGEX_DFA_LIMIT: usize = 2 << 20;
/// Compiled size limit of one `RegexSet` chunk.
const SET_SIZE_LIMIT: usize = 64 << 20;
/// Lazy-DFA cache limit of one `RegexSet` chunk.
const SET_DFA_LIMIT: usize = 16 << 20;
/// Patterns per `RegexSet`: bounded so the lazy DFA keeps its states cached (measured on
/// SpamAssassin's body rules: 24–32 is fastest; 128 was ten times slower).
const SET_CHUNK: usize = 24;
/// Widest counted repetition (`max - min`) a pattern may hold and share a set with the
/// others. A window such as `.{0,80}` between two words makes a lazy DFA build a state at
/// almost every byte where the words recur at random gaps; a set holding such a pattern
/// then gives up its DFA for the slow engine, for every pattern of it (review: 1.8 s to
/// scan a megabyte of body text of the words of three rules). Such patterns have sets of
/// their own: 0.63 s, and SpamAssassin's rules scan corpus mail in a fifth less time.
const MAX_SET_REPEAT: u32 = 15;
/// Backtracking steps one `fancy-regex` search may take before it counts as no match.
pub(crate) const BACKTRACK_LIMIT: usize = 100_000;
/// Hits counted for a `tflags multiple` rule without `maxhits`.
pub(crate) const DEFAULT_MAX_HITS: u32 = 1000;

/// A compiled single pattern in one of the two engines.
#[derive(Debug)]
pub(crate) enum Matcher {
    /// Linear-time `regex` engine.
    Linear(Regex),
    /// Backtracking `fancy-regex` engine (with [`BACKTRACK_LIMIT`]).
    Backtracking(Box<fancy_regex::Regex>),
}

/// One rule inside a [`Group`].
#[derive(Debug)]
pub(crate) struct Member {
    /// The rule's slot in [`CompiledRules::slots`](super::CompiledRules::slots).
    pub slot: usize,
    pub matcher: Matcher,
    /// `!~`: hits when the regex does not match.
    pub negate: bool,
    /// `tflags multiple` limit; `None` for single-hit rules.
    pub max_hits: Option<u32>,
    /// In a set through a linear superset of its pattern: a set match is only a candidate.
    pub prefiltered: bool,
    /// `tflags nosubject`: a body rule that does not read the Subject (the first line).
    pub skips_subject: bool,
}

/// Rules that read the same subject, with set prefilters over the linear ones.
#[derive(Debug, Default)]
pub(crate) struct Group {
    pub members: Vec<Member>,
    /// Each set covers the member indices listed beside it (in set pattern order).
    pub sets: Vec<(RegexSet, Vec<usize>)>,
    /// Members outside every set (backtracking ones, or sets that failed to build).
    pub unset: Vec<usize>,
}

/// A pattern rule that compiled, waiting to be grouped.
pub(super) struct Ready {
    /// The rule's slot in [`CompiledRules::slots`](super::CompiledRules).
    pub slot: usize,
    pub matcher: Matcher,
    /// The translated pattern (for the set and the fingerprint).
    pub pattern: String,
    /// For a backtracking pattern: a linear superset to put in the set instead.
    pub prefilter: Option<String>,
    /// `!~`: hits when the regex does not match.
    pub negate: bool,
    /// `tflags multiple` limit; `None` for single-hit rules.
    pub max_hits: Option<u32>,
    /// `tflags nosubject` on a body rule.
    pub skips_subject: bool,
}

/// Builds a linear regex (ASCII, then Unicode) or, when needed, a backtracking one.
/// Returns the matcher, the pattern as used, and why backtracking was needed. `unwrapped`
/// is the pattern with its bytes past ASCII written plain (see
/// [`perlre::Translated::unwrapped`](crate::rules::perlre)), when it has some.
pub(super) fn compile_matcher(
    pattern: &str,
    unwrapped: Option<&str>,
    try_linear: bool,
) -> Result<(Matcher, String, Option<String>), PatternError> {
    let mut linear_errors = Vec::new();
    // ASCII mode first (`.` is one byte, `\d \w \s` ASCII), but a case-insensitive
    // pattern with a letter past ASCII folds that letter only in Unicode mode (review:
    // `/привет/i` missed `ПРИВЕТ`, while `/[п]ривет/i`, which ASCII mode refuses, folded).
    let unicode_first = folds_beyond_ascii(pattern);
    if try_linear {
        let (ascii, unicode) = (pattern.to_string(), format!("(?u){pattern}"));
        let candidates = if unicode_first {
            [unicode, ascii]
        } else {
            [ascii, unicode]
        };
        for candidate in candidates {
            match linear(&candidate) {
                Ok(re) => return Ok((Matcher::Linear(re), candidate, None)),
                Err(e) => linear_errors.push(e),
            }
        }
    }
    let mut fancy_errors = Vec::new();
    let (ascii, unicode) = (
        fancy_regex::BytesMode::Ascii,
        fancy_regex::BytesMode::UnicodeBytes,
    );
    let fancy = |pattern: &str, mode| {
        fancy_regex::RegexBuilder::new(pattern)
            .bytes_mode(mode)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(REGEX_SIZE_LIMIT)
            .delegate_dfa_size_limit(REGEX_DFA_LIMIT)
            .build()
    };
    // fancy-regex cannot turn Unicode off inside a pattern, so bytes past ASCII cannot meet
    // what needs Unicode mode (a `\p{…}`, a letter past ASCII folded) in a backtracking
    // pattern: such a rule is skipped by name, not matched in ASCII mode without its
    // folding, nor in Unicode mode with its bytes read as characters.
    if let Some(unwrapped) = unwrapped {
        let needs_unicode = unicode_first || fancy(pattern, ascii).is_err();
        if needs_unicode {
            return Err(match fancy(unwrapped, unicode) {
                Ok(_) => PatternError::Unsupported(
                    "bytes past ASCII (`\\xHH`) beside a Unicode property or a folded letter past \
                     ASCII, in a pattern that needs backtracking: no engine here reads both"
                        .into(),
                ),
                Err(e) => classify(&linear_errors, &[e]),
            });
        }
    }
    let modes = if unicode_first {
        [unicode, ascii]
    } else {
        [ascii, unicode]
    };
    for mode in modes {
        match fancy(pattern, mode) {
            Ok(re) => {
                let reason = linear_errors
                    .first()
                    .map(|e| telling_line(&e.to_string()))
                    .unwrap_or_else(|| "backtracking construct".to_string());
                // Said as a linear pattern says it, so its prefilter is built in the same
                // mode and kept out of the ASCII sets (review: an ASCII prefilter of
                // `/привет(?=!)/i` did not fold, and its set never let `ПРИВЕТ!` through).
                let as_used = match mode {
                    fancy_regex::BytesMode::UnicodeBytes => format!("(?u){pattern}"),
                    _ => pattern.to_string(),
                };
                return Ok((Matcher::Backtracking(Box::new(re)), as_used, Some(reason)));
            }
            Err(e) => fancy_errors.push(e),
        }
    }
    Err(classify(&linear_errors, &fancy_errors))
}

/// Whether `pattern` has a character past ASCII and turns case-insensitivity on (`(?i)`,
/// `(?mi:`…; not `(?-i)`) anywhere: such a letter folds its case only in Unicode mode.
fn folds_beyond_ascii(pattern: &str) -> bool {
    if pattern.is_ascii() {
        return false;
    }
    pattern.match_indices("(?").any(|(at, _)| {
        pattern[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .any(|c| c == 'i')
    })
}

/// Why neither engine built a pattern. `fancy-regex` accepts everything the `regex` crate
/// does and more, so its errors decide between a malformed pattern and an engine gap; a size
/// limit hit by either engine means the pattern may well be fine, just too big.
fn classify(linear: &[regex::Error], fancy: &[fancy_regex::Error]) -> PatternError {
    let fancy_text = fancy.first().map(ToString::to_string).unwrap_or_default();
    let message = match linear.first() {
        Some(l) => format!(
            "{}; fancy-regex: {fancy_text}",
            telling_line(&l.to_string())
        ),
        None => fancy_text,
    };
    let too_big = linear
        .iter()
        .any(|e| matches!(e, regex::Error::CompiledTooBig(_)))
        || fancy.iter().any(fancy_too_big);
    if too_big {
        PatternError::Unsupported(format!("too large for the engines' limits: {message}"))
    } else if fancy.iter().any(fancy_lacks_feature) {
        PatternError::Unsupported(message)
    } else {
        PatternError::Invalid(message)
    }
}

/// A `fancy-regex` failure that is about size, not syntax.
fn fancy_too_big(e: &fancy_regex::Error) -> bool {
    use fancy_regex::{CompileError, Error, ParseError};
    match e {
        Error::CompileError(c) => match c.as_ref() {
            CompileError::InnerError(inner) => inner.size_limit().is_some(),
            CompileError::PatternTooComplex | CompileError::DfaBuildError(..) => true,
            _ => false,
        },
        Error::ParseError(_, ParseError::RecursionExceeded) => true,
        _ => false,
    }
}

/// A `fancy-regex` failure on a construct Perl accepts but the engine does not implement.
fn fancy_lacks_feature(e: &fancy_regex::Error) -> bool {
    use fancy_regex::{CompileError, Error, ParseError};
    match e {
        Error::CompileError(c) => matches!(
            c.as_ref(),
            CompileError::FeatureNotYetSupported(_)
                | CompileError::LookBehindNotConst
                | CompileError::VariableLookBehindRequiresFeature
                | CompileError::NamedBackrefOnly
        ),
        Error::ParseError(_, ParseError::ChangingUnicodeModeUnsupported) => true,
        _ => false,
    }
}

/// The most telling line of a `regex` error (its last line says what is wrong).
fn telling_line(e: &str) -> String {
    e.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(e)
        .trim_start_matches("error: ")
        .to_string()
}

pub(super) fn linear(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .build()
}

pub(super) fn build_group(ready: Vec<Ready>) -> Group {
    let mut group = Group::default();
    let mut linear: Vec<(usize, String)> = Vec::new();
    let mut windowed: Vec<(usize, String)> = Vec::new();
    for r in ready {
        let idx = group.members.len();
        // Unicode-mode patterns stay out of the sets: a Unicode word boundary would stop
        // the set's lazy DFA on the first non-ASCII byte and slow every pattern in it.
        let fits_a_set = |p: &String| !p.starts_with("(?u)");
        let set_pattern = match &r.matcher {
            Matcher::Linear(_) => Some(r.pattern).filter(fits_a_set),
            Matcher::Backtracking(_) => r.prefilter.filter(fits_a_set),
        };
        let prefiltered = matches!(r.matcher, Matcher::Backtracking(_)) && set_pattern.is_some();
        match set_pattern {
            Some(p) if counts_wide(&p) => windowed.push((idx, p)),
            Some(p) => linear.push((idx, p)),
            None => group.unset.push(idx),
        }
        group.members.push(Member {
            slot: r.slot,
            matcher: r.matcher,
            negate: r.negate,
            max_hits: r.max_hits,
            prefiltered,
            skips_subject: r.skips_subject,
        });
    }
    if linear.len() + windowed.len() < 3 {
        for (i, _) in linear.iter().chain(&windowed) {
            group.members[*i].prefiltered = false;
        }
        group
            .unset
            .extend(linear.iter().chain(&windowed).map(|(i, _)| *i));
        group.unset.sort_unstable();
        return group;
    }
    // Windowed patterns in sets of their own (see [`MAX_SET_REPEAT`]).
    for chunk in linear.chunks(SET_CHUNK).chain(windowed.chunks(SET_CHUNK)) {
        build_sets(chunk, &mut group);
    }
    group.unset.sort_unstable();
    group
}

/// Whether `pattern` repeats something a counted number of times over a range wider than
/// [`MAX_SET_REPEAT`] (`.{0,80}`; not `*`, `+` or `{8,}`, whose DFA states do not count).
/// A pattern the syntax parser refuses is no judge of this: it goes to a set as before.
fn counts_wide(pattern: &str) -> bool {
    let parsed = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern);
    parsed.is_ok_and(|hir| repeats_wide(&hir))
}

fn repeats_wide(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Repetition(r) => {
            r.max.is_some_and(|max| max - r.min > MAX_SET_REPEAT) || repeats_wide(&r.sub)
        }
        HirKind::Capture(c) => repeats_wide(&c.sub),
        HirKind::Concat(all) | HirKind::Alternation(all) => all.iter().any(repeats_wide),
        _ => false,
    }
}

/// Builds one set for `chunk`, halving it when the set is too big.
fn build_sets(chunk: &[(usize, String)], group: &mut Group) {
    let built = RegexSetBuilder::new(chunk.iter().map(|(_, p)| p.as_str()))
        .unicode(false)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(SET_DFA_LIMIT)
        .build();
    match built {
        Ok(set) => group
            .sets
            .push((set, chunk.iter().map(|(i, _)| *i).collect())),
        Err(_) if chunk.len() > 1 => {
            let (a, b) = chunk.split_at(chunk.len() / 2);
            build_sets(a, group);
            build_sets(b, group);
        }
        Err(_) => {
            group.members[chunk[0].0].prefiltered = false;
            group.unset.push(chunk[0].0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(pattern: &str, try_linear: bool) -> PatternError {
        match compile_matcher(pattern, None, try_linear) {
            Ok(_) => panic!("{pattern} compiled"),
            Err(e) => e,
        }
    }

    /// Regression (review): windowed patterns (`a.{0,80}b`) shared sets with the others, and
    /// text of their words at random gaps made each such set's lazy DFA give up for the
    /// slow engine: 1.8 s a megabyte. They have sets of their own; counted repetitions of a
    /// narrow range, and unbounded ones, stay with the others.
    #[test]
    fn windowed_patterns_are_kept_out_of_sets() {
        for wide in [
            r"(?i)\bre-?fi\b.{0,80}\brates?\b",
            r"(?:x|reply.{0,40}remove)",
            r"[^>]{0,60}-->",
            r"(a(b{3,40}))",
            r"a{100}b{1,17}",
        ] {
            assert!(counts_wide(wide), "{wide}");
        }
        for narrow in [
            r"a.{0,15}b",
            r"(?:\s*[a-z]{2,12}){8,}",
            r"a.*b.+c",
            r"x{100}",
            r"\{0,80\}",
            r"[{0,80}]",
            "(?u)\\w{1,3}",
        ] {
            assert!(!counts_wide(narrow), "{narrow}");
        }
        let ready = |slot: usize, pattern: &str| Ready {
            slot,
            matcher: Matcher::Linear(linear(pattern).unwrap()),
            pattern: pattern.to_string(),
            prefilter: None,
            negate: false,
            max_hits: None,
            skips_subject: false,
        };
        let group = build_group(vec![
            ready(0, "alpha"),
            ready(1, "beta"),
            ready(2, "gamma.{0,80}delta"),
            ready(3, "epsilon"),
        ]);
        assert!(group.unset.is_empty());
        let members: Vec<&[usize]> = group.sets.iter().map(|(_, m)| m.as_slice()).collect();
        assert_eq!(members, [&[0, 1, 3][..], &[2][..]]);
    }

    #[test]
    fn syntax_errors_in_every_engine_are_invalid() {
        assert!(matches!(error("unclosed(", true), PatternError::Invalid(_)));
        assert!(matches!(error("[z-a]", true), PatternError::Invalid(_)));
        // Only `fancy-regex` is tried for backtracking patterns; its verdict alone decides.
        assert!(matches!(error("(?=a)(", false), PatternError::Invalid(_)));
    }

    #[test]
    fn size_limits_and_engine_gaps_are_unsupported() {
        let e = error(r"\w{100000}", true);
        assert!(
            matches!(&e, PatternError::Unsupported(m) if m.contains("too large")),
            "{e:?}"
        );
        let e = error("a(*SKIP)b", true);
        assert!(
            matches!(&e, PatternError::Unsupported(m) if m.contains("unimplemented")),
            "{e:?}"
        );
    }
}
