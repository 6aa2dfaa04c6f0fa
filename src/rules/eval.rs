//! Evaluation: runs [`CompiledRules`] over a [`MessageView`] and returns the [`Hit`]s with scores.

use super::compile::{CompiledRules, Group, Matcher, Member};
use super::message::MessageView;
use std::collections::HashSet;

/// One rule or symbol that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The rule or symbol name.
    pub name: String,
    /// What it adds to the message score: score per hit × `count`.
    pub score: f64,
    /// How many times it matched (1 unless the rule has `tflags multiple`).
    pub count: u32,
}

impl Matcher {
    /// Whether `hay` matches; `None` when a backtracking search ran out of its step limit
    /// before it knew (padding can make that happen): then neither `=~` nor `!~` hits.
    fn is_match(&self, hay: &[u8]) -> Option<bool> {
        match self {
            Matcher::Linear(re) => Some(re.is_match(hay)),
            Matcher::Backtracking(re) => re.is_match(hay).ok(),
        }
    }

    fn count(&self, hay: &[u8], max: u32) -> u32 {
        let max = max as usize;
        let n = match self {
            Matcher::Linear(re) => re.find_iter(hay).take(max).count(),
            Matcher::Backtracking(re) => re
                .find_iter(hay)
                .take(max)
                .take_while(|m| m.is_ok())
                .count(),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

fn record(counts: &mut [u32], member: &Member, found: u32) {
    if found == 0 {
        return;
    }
    let slot = &mut counts[member.slot];
    *slot = match member.max_hits {
        Some(max) => slot.saturating_add(found).min(max),
        None => 1,
    };
}

impl Group {
    /// Runs the group over one subject.
    fn run(&self, hay: &[u8], counts: &mut [u32], unknown: &mut [bool]) {
        self.run_pieces(&[hay], counts, unknown);
    }

    /// Runs the group over a subject read in pieces: a rule matches when it matches inside
    /// one piece, and `!~` hits when no piece matches.
    /// A rule whose search ran out of its step limit in every piece where it did not match
    /// is marked in `unknown` (see [`CompiledRules::evaluate`]'s metas).
    fn run_pieces(&self, pieces: &[&[u8]], counts: &mut [u32], unknown: &mut [bool]) {
        if self.members.is_empty() {
            return;
        }
        // Per member: matched in some piece, or unknown in some piece (a search past its
        // step limit) and matched in none.
        let mut matched = vec![Some(false); self.members.len()];
        let mut found = vec![0u32; self.members.len()];
        let mut in_piece = vec![false; self.members.len()];
        let mut outside_sets = vec![false; self.members.len()];
        for &i in &self.unset {
            outside_sets[i] = true;
        }
        for piece in pieces {
            in_piece.fill(false);
            for (set, members) in &self.sets {
                for i in set.matches(piece).iter() {
                    in_piece[members[i]] = true;
                }
            }
            for (i, member) in self.members.iter().enumerate() {
                let settled = matched[i] == Some(true) && member.max_hits.is_none();
                if settled || !(in_piece[i] || outside_sets[i]) {
                    continue;
                }
                let here = if in_piece[i] && !member.prefiltered {
                    Some(true)
                } else {
                    member.matcher.is_match(piece)
                };
                match here {
                    Some(true) => {
                        matched[i] = Some(true);
                        if let (Some(max), false) = (member.max_hits, member.negate) {
                            let more = member.matcher.count(piece, max - found[i].min(max));
                            found[i] = found[i].saturating_add(more.max(1)).min(max);
                        }
                    }
                    None if matched[i] == Some(false) => matched[i] = None,
                    _ => {}
                }
            }
        }
        for (i, member) in self.members.iter().enumerate() {
            // Unknown (a search past its step limit): neither a match nor its absence.
            if matched[i].is_none() {
                unknown[member.slot] = true;
            }
            if matched[i] != Some(!member.negate) {
                continue;
            }
            record(counts, member, found[i].max(1));
        }
    }

    /// Runs the group over lines: the sets prefilter the joined text, the individual regex
    /// confirms each candidate line by line (so no match spans two lines).
    fn run_lines(&self, joined: &str, lines: &[String], counts: &mut [u32]) {
        if self.members.is_empty() || lines.is_empty() {
            return;
        }
        let mut candidate = vec![false; self.members.len()];
        for (set, members) in &self.sets {
            for i in set.matches(joined.as_bytes()).iter() {
                candidate[members[i]] = true;
            }
        }
        for &i in &self.unset {
            candidate[i] = match &self.members[i].matcher {
                m @ Matcher::Linear(_) => m.is_match(joined.as_bytes()) == Some(true),
                Matcher::Backtracking(_) => true,
            };
        }
        for (member, _) in self.members.iter().zip(&candidate).filter(|(_, &c)| c) {
            // The set read the Subject too: a candidate of a rule that skips it is checked
            // on the lines after it.
            let (joined, lines) = if member.skips_subject {
                let after = joined.split_once('\n').map_or("", |(_, rest)| rest);
                (after, lines.get(1..).unwrap_or_default())
            } else {
                (joined, lines)
            };
            // Linear patterns: one scan of the joined text; a match without a newline is a
            // match inside one line. Only if some match spans lines are lines tried one by one.
            if let Matcher::Linear(re) = &member.matcher {
                let limit = member.max_hits.unwrap_or(1);
                let mut found = 0u32;
                let mut spans = false;
                for m in re.find_iter(joined.as_bytes()) {
                    if m.as_bytes().contains(&b'\n') {
                        spans = true;
                        break;
                    }
                    found += 1;
                    if found >= limit {
                        break;
                    }
                }
                if !spans {
                    record(counts, member, found);
                    continue;
                }
            }
            let mut found = 0u32;
            for line in lines {
                match member.max_hits {
                    Some(max) => {
                        found += member.matcher.count(line.as_bytes(), max - found);
                        if found >= max {
                            break;
                        }
                    }
                    None => {
                        if member.matcher.is_match(line.as_bytes()) == Some(true) {
                            found = 1;
                            break;
                        }
                    }
                }
            }
            record(counts, member, found);
        }
    }
}

impl CompiledRules {
    /// Evaluates every rule against `view`.
    ///
    /// `external` lists symbols that built-in checks already found (e.g. `GTUBE`, `SPF_FAIL`,
    /// `BAYES_99`) with the score the check gave them. Metas see them as hits (value 1), and
    /// they are returned among the hits: scored by the rules files' `score` line when there is
    /// one (`score NAME 0` drops them), else with the given score. The result is therefore
    /// the complete symbol list for the message, sorted by name; `__` sub-rules never appear.
    pub fn evaluate(&self, view: &MessageView, external: &[(&str, f64)]) -> Vec<Hit> {
        let mut counts = vec![0u32; self.slots.len()];
        let mut unknown = vec![false; self.slots.len()];
        for (target, group) in &self.headers {
            let text = view
                .header_text(target)
                .or_else(|| target.if_unset.clone())
                .unwrap_or_default();
            group.run(text.as_bytes(), &mut counts, &mut unknown);
        }
        for (slot, target) in &self.exists {
            if view.has_target(target) {
                counts[*slot] = 1;
            }
        }
        self.body
            .run_lines(view.body_text(), view.body_lines(), &mut counts);
        self.uri
            .run_lines(view.uris_text(), view.uris(), &mut counts);
        self.rawbody
            .run_pieces(&view.rawbody_pieces(), &mut counts, &mut unknown);
        self.full.run(view.full(), &mut counts, &mut unknown);

        for (name, _) in external {
            if let Some(&slot) = self.by_name.get(*name) {
                counts[slot] = counts[slot].max(1);
            }
        }
        // Each meta is computed with every unknown rule (a search past its step limit) read
        // as not hit, and again as hit: a meta whose result differs is unknown too, and
        // does not fire. Read as 0 only, `meta NICE !__RULE` fired (a nice score) whenever
        // padding ran `__RULE`'s search out of steps.
        let mut low: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
        let mut high = low.clone();
        let any_unknown = unknown.contains(&true);
        for (slot, &u) in unknown.iter().enumerate() {
            if u && counts[slot] == 0 {
                high[slot] = 1.0;
            }
        }
        let is_hit = |v: f64| v != 0.0 && v.is_finite();
        for (slot, expr) in &self.metas {
            let v = expr.eval(&|s: &usize| low.get(*s).copied().unwrap_or(0.0));
            let hit = is_hit(v);
            // A meta's value is its result, as in SpamAssassin: a counting sub-meta
            // (`__SALES_PHRASES (A + B + …)`) is read as its count by the metas above it
            // (`__SALES_PHRASES >= 3`), not as 1.
            low[*slot] = if hit { v } else { 0.0 };
            counts[*slot] = u32::from(hit);
            if !any_unknown {
                continue;
            }
            let w = expr.eval(&|s: &usize| high.get(*s).copied().unwrap_or(0.0));
            high[*slot] = if is_hit(w) { w } else { 0.0 };
            if is_hit(w) != hit {
                unknown[*slot] = true;
                low[*slot] = 0.0;
                high[*slot] = 1.0;
                counts[*slot] = 0;
            }
        }

        let mut hits = Vec::new();
        for (info, &count) in self.slots.iter().zip(&counts) {
            if count > 0 && info.kind.is_some() && info.reportable {
                hits.push(Hit {
                    name: info.name.clone(),
                    score: info.score * f64::from(count),
                    count,
                });
            }
        }
        let mut seen = HashSet::new();
        for &(name, given) in external {
            if name.starts_with("__") || !seen.insert(name) {
                continue;
            }
            let info = self.by_name.get(name).and_then(|&s| self.slots.get(s));
            match info {
                Some(info) if info.kind.is_some() => {} // a rule: reported above
                Some(info) if info.scored_by_file => {
                    // Scored 0 silences the symbol, unless an action is tied to it.
                    if info.score != 0.0 || info.reportable {
                        hits.push(Hit {
                            name: name.to_string(),
                            score: info.score,
                            count: 1,
                        });
                    }
                }
                _ => hits.push(Hit {
                    name: name.to_string(),
                    score: given,
                    count: 1,
                }),
            }
        }
        hits.sort_by(|a, b| a.name.cmp(&b.name));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): a backtracking search that ran out of its step limit counted as
    /// "no match", so a negated rule (`!~`) fired on exactly the text built to exhaust it.
    #[test]
    fn a_search_past_its_step_limit_is_unknown_not_a_miss() {
        let evil = fancy_regex::RegexBuilder::new(r"^(?:(?=a)a|a)+(?!a)b")
            .backtrack_limit(1_000)
            .build()
            .unwrap();
        let m = Matcher::Backtracking(Box::new(evil));
        assert_eq!(m.is_match(format!("{}c", "a".repeat(40)).as_bytes()), None);
        assert_eq!(m.is_match(b"ab"), Some(true));
        assert_eq!(m.is_match(b"c"), Some(false));
    }
}
