//! Prefilters for backtracking patterns: a linear-engine superset of a translated pattern, so
//! a backtracking rule can still sit in a `RegexSet` and run only on candidate text.

/// A linear-engine superset of a translated backtracking pattern, used to prefilter it:
/// lookaround assertions are removed (an assertion only ever rejects matches), atomic groups
/// become plain groups and possessive quantifiers greedy ones. `None` when the pattern has
/// backreferences or recursion, which cannot be relaxed this way.
pub(crate) fn relax(pattern: &str, constructs: &[&str]) -> Option<String> {
    if constructs.contains(&"recursion") {
        return None;
    }
    let chars: Vec<char> = pattern.chars().collect();
    let groups = capture_groups(&chars);
    relax_chars(&chars, &groups, 0)
}

/// The source of each numbered capture group (index 0 is group 1).
fn capture_groups(chars: &[char]) -> Vec<String> {
    let mut groups = Vec::new();
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
                let content_start = if chars.get(i + 1) == Some(&'?') {
                    // (?P<name>
                    match chars[i..].iter().position(|&c| c == '>') {
                        Some(p) => i + p + 1,
                        None => return groups,
                    }
                } else {
                    i + 1
                };
                match skip_group(chars, i) {
                    Some(end) => groups.push(chars[content_start..end - 1].iter().collect()),
                    None => return groups,
                }
            }
        }
        i += 1;
    }
    groups
}

/// Longest prefilter built: each backreference inlines its group's source, so chained
/// groups grow as a power of their length (a 329-byte pattern gave 13 MB). Past this the
/// rule runs without a prefilter.
const MAX_RELAXED_BYTES: usize = 32 * 1024;

fn relax_chars(chars: &[char], groups: &[String], depth: usize) -> Option<String> {
    if depth > 4 {
        return None;
    }
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
                // A backreference matches text its group matched: the group's pattern is a superset.
                let mut j = i + 1;
                let mut n = 0usize;
                while let Some(d) = chars.get(j).and_then(|d| d.to_digit(10)) {
                    n = n.checked_mul(10)?.checked_add(d as usize)?;
                    j += 1;
                }
                let source: Vec<char> = groups.get(n.checked_sub(1)?)?.chars().collect();
                out.push_str("(?:");
                out.push_str(&relax_chars(&source, groups, depth + 1)?);
                out.push(')');
                if out.len() > MAX_RELAXED_BYTES {
                    return None;
                }
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
            Some("(a(b))x(?:a(b))(?:b)")
        );
        assert_eq!(relax(r"(a)\k<x>", &["backreference"]), None);
        assert_eq!(relax(r"\3", &["backreference"]), None);
        assert_eq!(relax(r"a(?=b)?", &["lookahead"]), None);
    }

    /// Regression (review): each backreference inlined its group's source, so chained
    /// groups grew as a power of their length: a 329-byte pattern gave a 13 MB prefilter
    /// (and one of 1.3 KB would have taken gigabytes). Past the bound there is none.
    #[test]
    fn a_prefilter_stays_bounded() {
        let chained = |n: usize| {
            let refs = |g: usize| format!("\\{g}").repeat(n);
            format!("(a)({})({})({}){}", refs(1), refs(2), refs(3), refs(4))
        };
        assert!(relax(&chained(2), &["backreference"]).is_some());
        for n in [20, 40, 200] {
            let relaxed = relax(&chained(n), &["backreference"]);
            assert!(
                relaxed
                    .as_ref()
                    .is_none_or(|r| r.len() <= MAX_RELAXED_BYTES),
                "n={n}: {} bytes",
                relaxed.map_or(0, |r| r.len())
            );
        }
    }
}
