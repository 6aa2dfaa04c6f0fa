//! Evaluation: runs [`CompiledRules`] over a [`MessageView`] and returns the [`Hit`]s with scores.

use super::compile::{CompiledRules, Group, Matcher, Member};
use super::message::MessageView;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The symbol a message gets when its backtracking searches ran out of their time (see
/// [`Budget`]).
pub const BACKTRACK_BUDGET_SYMBOL: &str = "RULES_BACKTRACK_BUDGET";

/// What one evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The symbols, as [`CompiledRules::evaluate`] returns them.
    pub hits: Vec<Hit>,
    /// The backtracking searches ran out of their time: the rules left read as unknown.
    pub backtrack_budget_spent: bool,
}

/// The time the backtracking searches of one message may still take. A search is bounded
/// in steps (`BACKTRACK_LIMIT`) but runs once per body line and header, so a message of
/// many lines built for a lookaround rule of an imported set took seconds per rule (9 s
/// for 200 KB). Only the time inside backtracking searches counts (not the linear rules,
/// nor waiting for a CPU), and one rule may take at most a quarter of it, so a message
/// built against one rule cannot leave the others undecided. A search refused for lack of
/// time reads as unknown, as a search past its step limit does.
struct Budget {
    left: Duration,
    per_rule: Duration,
    /// Time taken so far, by rule slot.
    taken: HashMap<usize, Duration>,
    /// Some search was refused for lack of time.
    spent: bool,
}

impl Budget {
    fn new(time: Duration) -> Budget {
        Budget {
            left: time,
            per_rule: time / 4,
            taken: HashMap::new(),
            spent: false,
        }
    }

    /// Whether another search of the rule in `slot` may run.
    fn allows(&mut self, slot: usize) -> bool {
        let taken = self.taken.get(&slot).copied().unwrap_or_default();
        let allowed = !self.left.is_zero() && taken < self.per_rule;
        self.spent |= !allowed;
        allowed
    }

    /// Runs one search of the rule in `slot` and counts its time.
    fn timed<T>(&mut self, slot: usize, search: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let found = search();
        let took = started.elapsed();
        self.left = self.left.saturating_sub(took);
        *self.taken.entry(slot).or_default() += took;
        found
    }
}

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
    /// before it knew (padding can make that happen), or `budget` had no time left for it:
    /// then neither `=~` nor `!~` hits.
    fn is_match(&self, hay: &[u8], budget: &mut Budget, slot: usize) -> Option<bool> {
        match self {
            Matcher::Linear(re) => Some(re.is_match(hay)),
            Matcher::Backtracking(re) if budget.allows(slot) => {
                budget.timed(slot, || re.is_match(hay).ok())
            }
            Matcher::Backtracking(_) => None,
        }
    }

    /// Matches in `hay`, at most `max`, and whether a backtracking search stopped before it
    /// had seen all of `hay` (its step limit, or the budget).
    fn count(&self, hay: &[u8], max: u32, budget: &mut Budget, slot: usize) -> (u32, bool) {
        let max = max as usize;
        let (n, cut) = match self {
            Matcher::Linear(re) => (re.find_iter(hay).take(max).count(), false),
            Matcher::Backtracking(_) if !budget.allows(slot) => (0, true),
            Matcher::Backtracking(re) => budget.timed(slot, || {
                let mut n = 0;
                let mut cut = false;
                for m in re.find_iter(hay).take(max) {
                    if m.is_err() {
                        cut = true;
                        break;
                    }
                    n += 1;
                }
                (n, cut)
            }),
        };
        (u32::try_from(n).unwrap_or(u32::MAX), cut)
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
    fn run(&self, hay: &[u8], counts: &mut [u32], unknown: &mut [bool], budget: &mut Budget) {
        self.run_pieces(&[hay], counts, unknown, budget);
    }

    /// Runs the group over a subject read in pieces: a rule matches when it matches inside
    /// one piece, and `!~` hits when no piece matches.
    /// A rule whose search ran out of its step limit in every piece where it did not match
    /// is marked in `unknown` (see [`CompiledRules::evaluate`]'s metas).
    fn run_pieces(
        &self,
        pieces: &[&[u8]],
        counts: &mut [u32],
        unknown: &mut [bool],
        budget: &mut Budget,
    ) {
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
                    member.matcher.is_match(piece, budget, member.slot)
                };
                match here {
                    Some(true) => {
                        matched[i] = Some(true);
                        if let (Some(max), false) = (member.max_hits, member.negate) {
                            let (more, cut) = member.matcher.count(
                                piece,
                                max - found[i].min(max),
                                budget,
                                member.slot,
                            );
                            found[i] = found[i].saturating_add(more.max(1)).min(max);
                            if cut && found[i] < max {
                                unknown[member.slot] = true;
                            }
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
    /// confirms each candidate line by line (so no match spans two lines). A rule that
    /// matched no line but could not tell for some (a search past its step limit, or no
    /// budget left) is marked in `unknown`, as in [`Group::run_pieces`].
    fn run_lines(
        &self,
        joined: &str,
        lines: &[String],
        counts: &mut [u32],
        unknown: &mut [bool],
        budget: &mut Budget,
    ) {
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
                Matcher::Linear(re) => re.is_match(joined.as_bytes()),
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
            let mut undecided = false;
            for line in lines {
                match member.max_hits {
                    Some(max) => {
                        let (more, cut) =
                            member
                                .matcher
                                .count(line.as_bytes(), max - found, budget, member.slot);
                        found += more;
                        undecided |= cut;
                        if found >= max {
                            break;
                        }
                    }
                    None => match member
                        .matcher
                        .is_match(line.as_bytes(), budget, member.slot)
                    {
                        Some(true) => {
                            found = 1;
                            break;
                        }
                        Some(false) => {}
                        None => undecided = true,
                    },
                }
            }
            // Read as "not hit", a rule whose searches ran out fired the metas that test
            // for its absence (`meta NICE !__RULE`) on the very text built to exhaust it;
            // a count cut short is as undecided for the metas that compare it.
            if undecided && found < member.max_hits.unwrap_or(1) {
                unknown[member.slot] = true;
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
        self.evaluate_counted(view, external).hits
    }

    /// [`CompiledRules::evaluate`], saying also whether the backtracking searches ran out
    /// of their time (`policy.backtrack_budget`).
    pub fn evaluate_counted(&self, view: &MessageView, external: &[(&str, f64)]) -> Evaluation {
        let mut budget = Budget::new(self.backtrack_budget);
        let mut counts = vec![0u32; self.slots.len()];
        let mut unknown = vec![false; self.slots.len()];
        for (target, group) in &self.headers {
            let text = view
                .header_text(target)
                .or_else(|| target.if_unset.clone())
                .unwrap_or_default();
            group.run(text.as_bytes(), &mut counts, &mut unknown, &mut budget);
        }
        for (slot, target) in &self.exists {
            if view.has_target(target) {
                counts[*slot] = 1;
            }
        }
        self.body.run_lines(
            view.body_text(),
            view.body_lines(),
            &mut counts,
            &mut unknown,
            &mut budget,
        );
        self.uri.run_lines(
            view.uris_text(),
            view.uris(),
            &mut counts,
            &mut unknown,
            &mut budget,
        );
        self.rawbody.run_pieces(
            &view.rawbody_pieces(),
            &mut counts,
            &mut unknown,
            &mut budget,
        );
        self.full
            .run(view.full(), &mut counts, &mut unknown, &mut budget);

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
        // A count cut short (`tflags multiple`) lies between what was counted and the
        // rule's most hits.
        for (slot, &u) in unknown.iter().enumerate() {
            if u {
                let most = self.slots.get(slot).map_or(1, |info| info.max_hits);
                high[slot] = f64::from(most.max(1).max(counts[slot]));
            }
        }
        let is_hit = |v: f64| v != 0.0 && v.is_finite();
        for (slot, expr) in &self.metas {
            let v = expr.eval(&|s: &usize| low.get(*s).copied().unwrap_or(0.0));
            let hit = is_hit(v);
            // A meta's value is its result, as in SpamAssassin: a counting sub-meta
            // (`__SALES_PHRASES (A + B + …)`) is read as its count by the metas above it
            // (`__SALES_PHRASES >= 3`), not as 1. A negative result that is true is read
            // as 1, as SpamAssassin records a hit.
            low[*slot] = if hit { hit_value(v) } else { 0.0 };
            counts[*slot] = u32::from(hit);
            if !any_unknown {
                continue;
            }
            let w = expr.eval(&|s: &usize| high.get(*s).copied().unwrap_or(0.0));
            high[*slot] = if is_hit(w) { hit_value(w) } else { 0.0 };
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
        Evaluation {
            hits,
            backtrack_budget_spent: budget.spent,
        }
    }
}

/// The value a meta that fired passes to the metas above it: its result, or 1 when that is
/// negative (SpamAssassin's `got_hit` records a hit of at most 0 as 1).
fn hit_value(v: f64) -> f64 {
    if v > 0.0 {
        v
    } else {
        1.0
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
        let budget = &mut Budget::new(Duration::from_secs(60));
        assert_eq!(
            m.is_match(format!("{}c", "a".repeat(40)).as_bytes(), budget, 0),
            None
        );
        assert_eq!(m.is_match(b"ab", budget, 0), Some(true));
        assert_eq!(m.is_match(b"c", budget, 0), Some(false));
        // No time left: unknown, the search not even tried.
        let spent = &mut Budget::new(Duration::ZERO);
        assert_eq!(m.is_match(b"ab", spent, 0), None);
        assert_eq!(m.count(b"ab ab", 10, spent, 0), (0, true));
        assert!(spent.spent);
    }

    /// Regression (review): the budget was one deadline for the whole evaluation, so time
    /// in the linear rules (or waiting for a CPU) counted, and a message built against one
    /// backtracking rule left every later one undecided. Only search time counts, and a
    /// rule that used its quarter leaves the rest to the others.
    #[test]
    fn one_rule_takes_at_most_a_quarter_of_the_budget() {
        let mut budget = Budget::new(Duration::from_secs(4));
        budget.timed(7, || std::thread::sleep(Duration::from_millis(1)));
        assert!(budget.left < Duration::from_secs(4));
        assert!(budget.allows(7));
        budget.taken.insert(7, Duration::from_secs(1));
        assert!(!budget.allows(7), "rule 7 used its share");
        assert!(budget.allows(8), "the others still run");
        assert!(budget.spent);
    }
}
