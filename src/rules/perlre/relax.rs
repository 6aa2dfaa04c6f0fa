//! Prefilters for backtracking patterns: a linear-engine superset of a translated pattern, so
//! a backtracking rule can still sit in a `RegexSet` and run only on candidate text.

/// A linear-engine superset of a translated backtracking pattern, used to prefilter it:
/// lookaround assertions are removed (an assertion only ever rejects matches), atomic groups
/// become plain groups, possessive quantifiers greedy ones, and a backreference any text
/// (`(?s-u:.*)`). `None` when the pattern has named backreferences or recursion, or refers
/// to a group it does not have.
pub(crate) fn relax(pattern: &str, constructs: &[&str]) -> Option<String> {
    if constructs.contains(&"recursion") {
        return None;
    }
    let chars: Vec<char> = pattern.chars().collect();
    relax_chars(&chars, capture_groups(&chars))
}

/// What a backreference becomes: any bytes at all. Its group's own source, which an
/// earlier version copied there, is read under the flags in force where the copy stands,
/// not where the group stood: `(?i:(abc))x\1` became `(?i:(abc))x(?:abc)`, which
/// `ABCxABC` does not match, so the rule was never run on it and never hit.
const ANY_TEXT: &str = "(?s-u:.*)";

/// How many numbered capture groups the pattern has.
fn capture_groups(chars: &[char]) -> usize {
    let mut groups = 0;
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
        } else if c == '[' {
            in_class = true;
            if chars.get(i + 1) == Some(&'^') {
                i += 1;
            }
        } else if c == '(' {
            let capturing = chars.get(i + 1) != Some(&'?')
                || (chars.get(i + 2) == Some(&'P') && chars.get(i + 3) == Some(&'<'));
            if capturing {
                groups += 1;
            }
        }
        i += 1;
    }
    groups
}

fn relax_chars(chars: &[char], groups: usize) -> Option<String> {
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            if chars.get(i + 1) == Some(&'K') {
                i += 2;
                continue;
            }
            if !in_class && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                let mut j = i + 1;
                let mut n = 0usize;
                while let Some(d) = chars.get(j).and_then(|d| d.to_digit(10)) {
                    n = n.checked_mul(10)?.checked_add(d as usize)?;
                    j += 1;
                }
                if n == 0 || n > groups {
                    return None;
                }
                out.push_str(ANY_TEXT);
                i = j;
                continue;
            }
            if !in_class && matches!(chars.get(i + 1), Some('g' | 'k')) {
                return None;
            }
            out.push(c);
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                // A leading `]` or `^]` is literal.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                i += 1;
                continue;
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                let look = matches!(
                    (chars.get(i + 2), chars.get(i + 3)),
                    (Some('=' | '!'), _) | (Some('<'), Some('=' | '!'))
                );
                if look {
                    i = skip_group(chars, i)?;
                    // A quantified assertion cannot be relaxed by deletion.
                    if matches!(chars.get(i), Some('*' | '+' | '?' | '{')) {
                        return None;
                    }
                    continue;
                }
                if chars.get(i + 2) == Some(&'>') {
                    out.push_str("(?:");
                    i += 3;
                    continue;
                }
                if chars.get(i + 2) == Some(&'P') && chars.get(i + 3) != Some(&'<') {
                    return None;
                }
                out.push(c);
                i += 1;
            }
            '*' | '+' | '?' | '}' => {
                out.push(c);
                i += 1;
                if chars.get(i) == Some(&'+') {
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The index just past the group opening at `start`.
fn skip_group(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
        } else {
            match c {
                '[' => {
                    in_class = true;
                    if chars.get(i + 1) == Some(&'^') {
                        i += 1;
                    }
                    if chars.get(i + 1) == Some(&']') {
                        i += 1;
                    }
                }
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_patterns_drop_assertions() {
        assert_eq!(
            relax(r"(?i)a(?!b(?:c))d(?<=x)e", &["lookahead"]).as_deref(),
            Some("(?i)ade")
        );
        assert_eq!(
            relax(r"a++(?>b)", &["atomic group"]).as_deref(),
            Some("a+(?:b)")
        );
        assert_eq!(relax(r"[(?=]x", &["lookahead"]).as_deref(), Some("[(?=]x"));
        assert_eq!(
            relax(r"(a(b))x\1\2", &["backreference"]).as_deref(),
            Some("(a(b))x(?s-u:.*)(?s-u:.*)")
        );
        assert_eq!(relax(r"(a)\k<x>", &["backreference"]), None);
        assert_eq!(relax(r"\3", &["backreference"]), None);
        assert_eq!(relax(r"a(?=b)?", &["lookahead"]), None);
    }

    /// Regression (review): each backreference inlined its group's source, so chained
    /// groups grew as a power of their length (a 329-byte pattern gave a 13 MB prefilter);
    /// a backreference is now any text, so the prefilter is the pattern's size.
    #[test]
    fn a_prefilter_stays_bounded() {
        let chained = |n: usize| {
            let refs = |g: usize| format!("\\{g}").repeat(n);
            format!("(a)({})({})({}){}", refs(1), refs(2), refs(3), refs(4))
        };
        for n in [2, 20, 200] {
            let pattern = chained(n);
            let relaxed = relax(&pattern, &["backreference"]).unwrap();
            assert!(
                relaxed.len() <= pattern.len() * 5,
                "n={n}: {} bytes",
                relaxed.len()
            );
        }
    }

    /// Regression (review): the copy of a group stood outside the group's flags, so the
    /// prefilter was no superset: `ABCxABC` matches `(?i:(abc))x\1` but not the copy.
    #[test]
    fn a_backreference_under_flags_keeps_the_prefilter_a_superset() {
        let relaxed = relax(r"(?i:(abc))x\1", &["backreference"]).unwrap();
        let prefilter = regex::bytes::Regex::new(&relaxed).unwrap();
        assert!(prefilter.is_match(b"ABCxABC"), "{relaxed}");
        assert!(prefilter.is_match(b"abcx\xff"), "{relaxed}");
    }
}
