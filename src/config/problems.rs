//! Collects every problem of a configuration file, each named by its TOML key, so an
//! operator fixes the file in one pass.

use super::source::Source;
use std::time::Duration;

/// The problems found so far: each key and what is wrong with it.
#[derive(Debug, Default)]
pub struct Problems {
    found: Vec<(String, String)>,
    /// The file is read on another host than the gateway's (see
    /// [`super::Config::load_elsewhere`]): the files only the gateway reads are not there.
    files_elsewhere: bool,
}

impl Problems {
    /// Problems of a configuration read away from its gateway: a missing file the gateway
    /// alone reads (its TLS key, rules, classifier seed) is none.
    pub fn away_from_the_gateway() -> Problems {
        Problems {
            found: Vec::new(),
            files_elsewhere: true,
        }
    }

    /// Records that `key` is wrong and why.
    pub fn bad(&mut self, key: &str, message: &str) {
        self.found.push((key.to_owned(), message.to_owned()));
    }

    /// Records that a file or directory `key` names, which only the gateway reads, is
    /// missing or unreadable: not a problem where the file is read away from the gateway.
    pub fn gateway_file(&mut self, key: &str, message: &str) {
        if !self.files_elsewhere {
            self.bad(key, message);
        }
    }

    /// Records that the domain key `key` names, after [`domain_key`], a domain an earlier
    /// key named: `Example.Test` and `example.test` are one domain, and the second value
    /// would silently replace the first (review).
    pub fn domain_named_twice(&mut self, key: &str) {
        self.bad(
            key,
            "named twice (domains are compared in lower case, without a final dot)",
        );
    }

    /// Records `key` as wrong when its `value` is over `max`: every limit has a bound, so
    /// "unlimited" written as a huge number is refused rather than taken (review: a
    /// `scan_mime_parts` of a billion let nested message headers overflow the stack).
    pub fn at_most(&mut self, key: &str, value: usize, max: usize) {
        if value > max {
            self.bad(key, &format!("must be at most {max}"));
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems, one line each (`key: what is wrong`).
    #[cfg(test)]
    pub fn into_lines(self) -> Vec<String> {
        self.found
            .into_iter()
            .map(|(key, message)| format!("{key}: {message}"))
            .collect()
    }

    /// The problems, one line each, led by `FILE:LINE:` where the key is written (for a
    /// key left out, the line of its table; `FILE:` when that is left out too).
    pub(super) fn into_located_lines(self, file: &str, source: &Source) -> Vec<String> {
        self.found
            .into_iter()
            .map(|(key, message)| located(file, source.line_of_key(&key), &key, &message))
            .collect()
    }
}

/// One problem as reported: `FILE:LINE: key: why`, or `FILE: key: why` with no line.
pub(super) fn located(file: &str, line: Option<usize>, key: &str, message: &str) -> String {
    match line {
        Some(line) => format!("{file}:{line}: {key}: {message}"),
        None => format!("{file}: {key}: {message}"),
    }
}

/// The longest time limit taken: sessions and lookups add limits to the clock, and one past
/// its end panicked every session; no wait is meant to last longer.
const LONGEST_LIMIT: Duration = Duration::from_secs(365 * 86_400);

/// Checks a time limit the sessions add to the clock: at most [`LONGEST_LIMIT`], and more
/// than zero when `positive` (a zero timeout would end every wait before it began).
pub(super) fn time_limit(problems: &mut Problems, key: &str, v: Duration, positive: bool) {
    if positive && v.is_zero() {
        problems.bad(key, "must be greater than 0");
    }
    if v > LONGEST_LIMIT {
        problems.bad(key, "must be at most a year");
    }
}

/// A name with at least two labels of letters, digits and hyphens.
pub fn is_plausible_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && name.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A domain name as names are compared: lower case, without the root's dot
/// (`Example.TEST.` is `example.test`, as it stands in addresses and lookups).
pub fn domain_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A name a rule may have (the rules parser's syntax, SpamAssassin's: letters of either
/// case, digits, `_`), such as `local_block` or `ATTACH_BLOCKED_EXT`.
pub fn is_rule_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An upper-case symbol name such as `RCVD_IN_EXAMPLE`.
pub fn is_symbol(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}
