//! Static recipient lists: one file per domain, one local part or address per line.
//!
//! A line is a local part (`alice`), a full address (`alice@example.test`) or a
//! pattern with `*` wildcards (`sales-*`, `*`). Matching ignores case. `#` starts a comment.

use std::collections::HashSet;
use std::path::Path;

/// The valid recipients of one domain.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecipientList {
    exact: HashSet<String>,
    patterns: Vec<String>,
}

impl RecipientList {
    /// Reads a list file; the error names the file and line.
    pub fn load(path: &Path) -> Result<RecipientList, String> {
        let bytes = super::read_plain_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
        Self::parse(&text).map_err(|(line, msg)| format!("{}:{line}: {msg}", path.display()))
    }

    /// Parses list text; the error carries the 1-based line number.
    pub fn parse(text: &str) -> Result<RecipientList, (usize, String)> {
        let mut list = RecipientList::default();
        for (n, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            if entry.contains(char::is_whitespace) {
                return Err((n + 1, format!("{entry:?}: one entry per line")));
            }
            // The domain part is implied by the file; keep only the local part.
            let local = match entry.rsplit_once('@') {
                Some((local, _)) => local,
                None => entry,
            };
            if local.is_empty() {
                return Err((n + 1, format!("{entry:?}: empty local part")));
            }
            let local = fold_case(local);
            if local.contains('*') {
                list.patterns.push(local);
            } else {
                list.exact.insert(local);
            }
        }
        Ok(list)
    }

    /// The entries sorted, one per line: the list's identity for the policy fingerprint.
    pub fn canonical(&self) -> String {
        let mut entries: Vec<&str> = self
            .exact
            .iter()
            .chain(&self.patterns)
            .map(|s| s.as_str())
            .collect();
        entries.sort_unstable();
        entries.dedup();
        entries.join("\n")
    }

    /// Whether `local_part` (of this list's domain) is a valid recipient.
    pub fn contains(&self, local_part: &str) -> bool {
        let local = fold_case(local_part);
        self.exact.contains(&local) || self.patterns.iter().any(|p| wildcard_match(p, &local))
    }
}

/// Lower case for comparing local parts: ASCII as ASCII, other letters by Unicode, except
/// where Unicode would fold a non-ASCII letter onto ASCII: `\u{212A}evin` (KELVIN SIGN) must
/// not be taken for `kevin`, a listed mailbox, whose server would then refuse it and bounce
/// to the (forged) sender.
fn fold_case(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    for c in local.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if c.to_lowercase().any(|l| l.is_ascii()) {
            out.push(c);
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// `*` matches any run of characters, including none.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return text.is_empty(),
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_entries_match_case_insensitively() {
        let list = RecipientList::parse("alice\nBob@example.test # comment\nsales-*\n*-bounces\n")
            .unwrap();
        assert!(list.contains("alice"));
        assert!(list.contains("BOB"));
        assert!(list.contains("sales-emea"));
        assert!(list.contains("sales-"));
        assert!(list.contains("list-bounces"));
        assert!(!list.contains("carol"));
        assert!(!list.contains("presales"));
    }

    /// Regression (review): the list lowercased by Unicode, which folds KELVIN SIGN onto
    /// ASCII `k`: `\u{212A}evin@` was taken for the listed `kevin@`, accepted, refused by the
    /// internal server and bounced to the forged sender.
    #[test]
    fn a_look_alike_that_unicode_folds_onto_ascii_is_not_the_listed_mailbox() {
        let list = RecipientList::parse("kevin\nj\u{f6}rg\n").unwrap();
        assert!(list.contains("Kevin"));
        assert!(!list.contains("\u{212A}evin"));
        assert!(list.contains("J\u{d6}RG"), "non-ASCII letters still fold");
        assert!(!list.contains("\u{130}"), "capital I with dot is not i");
    }

    #[test]
    fn star_alone_accepts_everyone() {
        let list = RecipientList::parse("*\n").unwrap();
        assert!(list.contains("anyone"));
    }

    #[test]
    fn bad_line_is_reported_with_its_number() {
        let err = RecipientList::parse("alice\nbob carol\n").unwrap_err();
        assert_eq!(err.0, 2);
    }

    #[test]
    fn wildcard_needs_every_literal_in_order() {
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxcyyb"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }
}
