//! Rule compilation: [`RuleSet`] → [`CompiledRules`], multi-pattern matchers per target, meta order.
//!
//! Patterns of one target (each header target, `body`, `rawbody`, `uri`, `full`) are compiled
//! into `regex::bytes::RegexSet`s, so a thousand rules cost about one pass over each part; the
//! individual regex runs only for the set's matches (to count `multiple` hits, or to confirm a
//! body/uri match line by line). Patterns that need lookaround, backreferences, atomic groups
//! or possessive quantifiers go to `fancy-regex` with a backtrack limit and are listed in
//! [`CompileReport::backtracking`]. Only rules that can matter are compiled: scored rules and
//! whatever their metas need (a rule with `score NAME 0` runs only if a meta uses it).
//! A pattern no engine compiles is an [`Severity::Error`] when it is malformed, so a broken
//! rules file never replaces a working policy; valid Perl the engines cannot run (branch
//! reset, conditionals, `\X`, most backtracking verbs, ...) is [`Severity::Skipped`].
//! This file decides what to compile and records it; `matcher.rs` builds the regexes and
//! sets, `order.rs` orders the metas.

use super::meta::Node;
use super::model::{
    effective_score, Diagnostic, HeaderOp, HeaderTarget, Origin, Pattern, Rule, RuleKind, Severity,
    Test,
};
use super::parse::RuleSet;
use super::perlre::{self, PatternError};
use matcher::{build_group, compile_matcher, linear, Ready, DEFAULT_MAX_HITS};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod matcher;
mod order;

pub(crate) use matcher::{Group, Matcher, Member};

/// What a value slot holds.
#[derive(Debug, Clone)]
pub(crate) struct SlotInfo {
    pub name: String,
    /// `None` for a symbol only known by name (a built-in check's symbol, or undefined).
    pub kind: Option<RuleKind>,
    /// Score per hit.
    pub score: f64,
    /// Reported as a hit: not a `__` sub-rule and not disabled by `score 0`.
    pub reportable: bool,
    /// Whether a `score` line set the score.
    pub scored_by_file: bool,
    pub description: Option<String>,
    /// Most hits counted (`tflags multiple`); 1 for every other rule.
    pub max_hits: u32,
}

/// The most hits a `tflags multiple` rule counts; `None` for a rule that counts one hit.
/// SpamAssassin reads `maxhits=0` as no limit in `body`, `rawbody` and `uri` rules, but
/// stops after the first hit in `header` and `full` ones (`last if ++$hits >= 0`).
fn max_hits_of(rule: &Rule) -> Option<u32> {
    let most = match rule.tflags.maxhits {
        Some(0) if matches!(rule.kind, RuleKind::Header | RuleKind::Full) => 1,
        None | Some(0) => DEFAULT_MAX_HITS,
        Some(n) => n,
    };
    rule.tflags.multiple.then_some(most)
}

/// What a meta does when it reads a rule the engine skips (an `eval:` rule, a rule of an
/// unimplemented plugin, a regex no engine runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SkippedRuleMetas {
    /// The meta is skipped too (default): SpamAssassin evaluates the rule, so a meta that
    /// reads it as "not hit" would fire where SpamAssassin's does not, or stay silent.
    #[default]
    Skip,
    /// The meta is evaluated with the skipped rule reading as not hit.
    Evaluate,
}

/// How long the backtracking searches of one message may take together by default.
pub const DEFAULT_BACKTRACK_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// How a rule set is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// Metas that read skipped rules.
    pub skipped_rule_metas: SkippedRuleMetas,
    /// Symbols the gateway's built-in checks produce (`SPF_FAIL`, `RDNS_NONE`, ...): a
    /// skipped rule of the same name is not missing, a check stands in for it.
    pub provided: BTreeSet<String>,
    /// Rules and symbols an action is tied to (`policy.actions`): evaluated and reported
    /// even when scored 0, since the action decides whatever the score.
    pub acted_on: BTreeSet<String>,
    /// How long the backtracking searches (`fancy-regex`: lookaround, backreferences) of
    /// one message may take together; the ones left then read as unknown.
    pub backtrack_budget: std::time::Duration,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            skipped_rule_metas: SkippedRuleMetas::default(),
            provided: BTreeSet::new(),
            acted_on: BTreeSet::new(),
            backtrack_budget: DEFAULT_BACKTRACK_BUDGET,
        }
    }
}

impl CompileOptions {
    /// Whether a hit of `name`, scored `score`, counts: scored, or tied to an action.
    /// `score NAME 0` otherwise silences it, as in SpamAssassin.
    fn counts(&self, name: &str, score: f64) -> bool {
        score != 0.0 || self.acted_on.contains(name)
    }
}

/// What compilation did, for `mxguard check` and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompileReport {
    /// Active (compiled) rules per kind.
    pub counts: BTreeMap<RuleKind, usize>,
    /// Rules using the backtracking engine, with the construct that needs it.
    pub backtracking: Vec<(String, String)>,
    /// Rules that were defined but skipped (parser or compiler), sorted.
    pub skipped: Vec<String>,
    /// Rules defined but not compiled: `score 0` or sub-rules no scored meta uses.
    pub disabled: Vec<String>,
    /// Names used by metas that no rule here defines (symbols from built-in checks, or 0).
    pub external_refs: Vec<String>,
    /// Metas whose result depends on a skipped rule, with the first such rule they read
    /// (skipped themselves under [`SkippedRuleMetas::Skip`]).
    pub skipped_metas: Vec<(String, String)>,
}

impl CompileReport {
    /// Total active rules.
    pub fn active(&self) -> usize {
        self.counts.values().sum()
    }
}

/// A rules set ready to evaluate messages: immutable, cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct CompiledRules {
    pub(crate) slots: Vec<SlotInfo>,
    pub(crate) by_name: HashMap<String, usize>,
    pub(crate) headers: Vec<(HeaderTarget, Group)>,
    /// `exists:` rules: slot and the (pseudo-)header whose presence they test.
    pub(crate) exists: Vec<(usize, HeaderTarget)>,
    pub(crate) body: Group,
    pub(crate) rawbody: Group,
    pub(crate) uri: Group,
    pub(crate) full: Group,
    /// Metas in dependency order.
    pub(crate) metas: Vec<(usize, Node<usize>)>,
    pub(crate) report: CompileReport,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Canonical lines of the effective rule set (see [`CompiledRules::fingerprint`]).
    pub(crate) canonical: Vec<String>,
    /// See [`CompileOptions::backtrack_budget`].
    pub(crate) backtrack_budget: std::time::Duration,
    /// Rules and symbols with `tflags noautolearn` (see [`CompiledRules::not_for_autolearn`]).
    pub(crate) noautolearn: BTreeSet<String>,
}

impl RuleSet {
    /// Compiles the rules with the default options; see [`CompiledRules::compile`].
    pub fn compile(&self) -> CompiledRules {
        CompiledRules::compile(self)
    }

    /// Compiles the rules with `options`.
    pub fn compile_with(&self, options: &CompileOptions) -> CompiledRules {
        Compiler::new(self, options).run()
    }
}

impl CompiledRules {
    /// Compiles a rule set. Never fails: rules that cannot be compiled are left out and
    /// reported in [`CompiledRules::diagnostics`] (which also holds the parser's), as errors
    /// when their regex is malformed (see [`CompiledRules::has_errors`]).
    pub fn compile(set: &RuleSet) -> CompiledRules {
        Compiler::new(set, &CompileOptions::default()).run()
    }

    /// What was compiled, skipped and disabled.
    pub fn report(&self) -> &CompileReport {
        &self.report
    }

    /// Every diagnostic from parsing and compiling, in file order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// True when some diagnostic is an [`Severity::Error`]: the files are broken.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// `names` with every meta that reads one of them, directly or through another meta:
    /// a meta built on a symbol says what that symbol says.
    pub fn with_metas_reading(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = names.clone();
        // In dependency order: a meta's metas are decided before it.
        for (slot, node) in &self.metas {
            let mut reads = false;
            node.for_each_ref(&mut |r: &usize| {
                reads |= self.slots.get(*r).is_some_and(|s| out.contains(&s.name));
            });
            if let Some(meta) = self.slots.get(*slot).filter(|_| reads) {
                out.insert(meta.name.clone());
            }
        }
        out
    }

    /// The score a `score` line gives `name`, if one does.
    pub fn score_of(&self, name: &str) -> Option<f64> {
        let slot = self.slots.get(*self.by_name.get(name)?)?;
        slot.scored_by_file.then_some(slot.score)
    }

    /// See [`CompileOptions::backtrack_budget`].
    pub fn backtrack_budget(&self) -> std::time::Duration {
        self.backtrack_budget
    }

    /// The `describe` text of a rule or symbol.
    pub fn description(&self, name: &str) -> Option<&str> {
        let slot = *self.by_name.get(name)?;
        self.slots.get(slot)?.description.as_deref()
    }

    /// The rules that can be reported as hits (not sub-rules, not disabled), by name.
    pub fn rule_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .slots
            .iter()
            .filter(|s| s.kind.is_some() && s.reportable)
            .map(|s| s.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// The rules and symbols marked `tflags noautolearn`: as in SpamAssassin, their score
    /// does not count towards autolearning (a statement about the sender, such as GTUBE's
    /// test string, not about the words a classifier learns).
    pub fn not_for_autolearn(&self) -> &BTreeSet<String> {
        &self.noautolearn
    }

    /// The score per hit of a rule or symbol, if the files define or score it.
    pub fn score(&self, name: &str) -> Option<f64> {
        let slot = *self.by_name.get(name)?;
        let info = self.slots.get(slot)?;
        (info.kind.is_some() || info.scored_by_file).then_some(info.score)
    }
}

struct Compiler<'a> {
    set: &'a RuleSet,
    options: &'a CompileOptions,
    diagnostics: Vec<Diagnostic>,
    report: CompileReport,
    slots: Vec<SlotInfo>,
    by_name: HashMap<String, usize>,
    canonical: Vec<String>,
}

impl<'a> Compiler<'a> {
    fn new(set: &'a RuleSet, options: &'a CompileOptions) -> Self {
        Compiler {
            set,
            options,
            diagnostics: set.diagnostics.clone(),
            report: CompileReport::default(),
            slots: Vec::new(),
            by_name: HashMap::new(),
            canonical: Vec::new(),
        }
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&s) = self.by_name.get(name) {
            return s;
        }
        let info = self.set.symbols.get(name);
        let score = info
            .map(|i| effective_score(name, i.score, &i.tflags))
            .unwrap_or(0.0);
        let scored = info.is_some_and(|i| i.score.is_some());
        let s = self.slots.len();
        self.slots.push(SlotInfo {
            name: name.to_string(),
            kind: None,
            score,
            reportable: !name.starts_with("__") && (!scored || self.options.counts(name, score)),
            scored_by_file: scored,
            description: info.and_then(|i| i.description.clone()),
            max_hits: 1,
        });
        self.by_name.insert(name.to_string(), s);
        s
    }

    fn diag(&mut self, origin: &Origin, severity: Severity, message: String) {
        self.diagnostics.push(Diagnostic {
            file: origin.file.clone(),
            line: origin.line,
            message,
            severity,
        });
    }

    fn run(mut self) -> CompiledRules {
        let set = self.set;
        let rules: BTreeMap<&str, &Rule> = set.rules.iter().map(|r| (r.name.as_str(), r)).collect();

        // 1. Which rules matter: scored ones, those an action is tied to, and everything
        // their metas reach.
        let mut needed: BTreeSet<&str> = BTreeSet::new();
        let mut stack: Vec<&str> = rules
            .values()
            .filter(|r| !r.is_subrule() && self.options.counts(&r.name, r.effective_score()))
            .map(|r| r.name.as_str())
            .collect();
        // Symbols scored in the files may be produced by metas' dependencies too.
        while let Some(name) = stack.pop() {
            if !needed.insert(name) {
                continue;
            }
            if let Some(Rule {
                test: Test::Meta(expr),
                ..
            }) = rules.get(name)
            {
                expr.tree.for_each_ref(&mut |dep: &String| {
                    if let Some((k, _)) = rules.get_key_value(dep.as_str()) {
                        stack.push(k);
                    }
                });
            }
        }
        self.report.disabled = rules
            .keys()
            .filter(|n| !needed.contains(*n))
            .map(|n| n.to_string())
            .collect();

        // 2. Slots for every needed rule.
        for name in &needed {
            let Some(rule) = rules.get(name) else {
                continue;
            };
            let s = self.slot(name);
            let score = rule.effective_score();
            self.slots[s] = SlotInfo {
                name: rule.name.clone(),
                kind: Some(rule.kind),
                score,
                reportable: !rule.is_subrule() && self.options.counts(&rule.name, score),
                scored_by_file: rule.score.is_some(),
                description: rule.description.clone(),
                max_hits: max_hits_of(rule).unwrap_or(1),
            };
        }

        // 3. Pattern rules.
        let mut header_groups: BTreeMap<HeaderTarget, Vec<Ready>> = BTreeMap::new();
        let mut exists = Vec::new();
        let mut by_kind: BTreeMap<RuleKind, Vec<Ready>> = BTreeMap::new();
        let mut skipped: BTreeSet<String> = set.skipped.keys().cloned().collect();
        let mut metas: Vec<&Rule> = Vec::new();
        for name in &needed {
            let Some(rule) = rules.get(name) else {
                continue;
            };
            let slot = self.by_name[*name];
            let max_hits = max_hits_of(rule);
            let canon_head = format!(
                "{}\t{}\t{:?}\t{}",
                rule.kind,
                rule.name,
                rule.effective_score(),
                rule.tflags.canonical()
            );
            match &rule.test {
                Test::Meta(_) => metas.push(rule),
                Test::Header {
                    target,
                    op: HeaderOp::Exists,
                    ..
                } => {
                    self.canonical
                        .push(format!("{canon_head}\texists:{}", target.canonical()));
                    exists.push((slot, target.clone()));
                    *self.report.counts.entry(RuleKind::Header).or_default() += 1;
                }
                Test::Header {
                    target,
                    op,
                    pattern: Some(pattern),
                } => {
                    let negate = *op == HeaderOp::NotMatches;
                    if let Some(ready) =
                        self.compile_pattern(rule, slot, pattern, false, negate, max_hits)
                    {
                        self.canonical.push(format!(
                            "{canon_head}\t{}\t{}\t{}",
                            target.canonical(),
                            if negate { "!~" } else { "=~" },
                            ready.pattern
                        ));
                        header_groups.entry(target.clone()).or_default().push(ready);
                        *self.report.counts.entry(RuleKind::Header).or_default() += 1;
                    } else {
                        // Its score still scores a built-in symbol of its name (review).
                        self.canonical.push(format!("{canon_head}\tskipped"));
                        skipped.insert(rule.name.clone());
                    }
                }
                Test::Header { pattern: None, .. } => {}
                Test::Pattern(pattern) => {
                    let line_mode = matches!(rule.kind, RuleKind::Body | RuleKind::Uri);
                    if let Some(ready) =
                        self.compile_pattern(rule, slot, pattern, line_mode, false, max_hits)
                    {
                        self.canonical
                            .push(format!("{canon_head}\t{}", ready.pattern));
                        by_kind.entry(rule.kind).or_default().push(ready);
                        *self.report.counts.entry(rule.kind).or_default() += 1;
                    } else {
                        self.canonical.push(format!("{canon_head}\tskipped"));
                        skipped.insert(rule.name.clone());
                    }
                }
            }
        }

        // A broken regex is an error even in a rule nothing uses yet (`score NAME 0`, an
        // unused sub-rule): it would break the rules file the day it is switched on.
        for name in &self.report.disabled.clone() {
            if let Some(rule) = rules.get(name.as_str()) {
                self.validate_disabled(rule);
            }
        }

        // 4. Metas: resolve references to slots, order by dependency, drop cycles. A meta
        // reading a skipped rule (directly or through another meta) is skipped too.
        let meta_order = self.order_metas(&metas);
        let mut compiled_metas = Vec::new();
        let mut external: BTreeSet<String> = BTreeSet::new();
        for rule in meta_order {
            let Test::Meta(expr) = &rule.test else {
                continue;
            };
            let slot = self.by_name[rule.name.as_str()];
            let mut refs = Vec::new();
            expr.tree
                .for_each_ref(&mut |n: &String| refs.push(n.clone()));
            // SpamAssassin never runs a rule scored 0, so its metas read it as not hit:
            // a skipped rule scored 0 leaves them as decided as SpamAssassin's.
            let never_run = |r: &str| {
                !r.starts_with("__") && set.symbols.get(r).and_then(|s| s.score) == Some(0.0)
            };
            let missing = |r: &&String| {
                skipped.contains(r.as_str())
                    && !self.options.provided.contains(r.as_str())
                    && !never_run(r)
            };
            if let Some(dep) = refs.iter().find(missing) {
                self.report
                    .skipped_metas
                    .push((rule.name.clone(), dep.clone()));
                if self.options.skipped_rule_metas == SkippedRuleMetas::Skip {
                    let message = format!(
                        "meta {}: reads {dep}, which is skipped: meta skipped too",
                        rule.name
                    );
                    self.diag(&rule.origin, Severity::Skipped, message);
                    self.canonical.push(format!(
                        "{}\t{}\t{:?}\tskipped",
                        rule.kind,
                        rule.name,
                        rule.effective_score()
                    ));
                    skipped.insert(rule.name.clone());
                    self.slots[slot].kind = None;
                    self.slots[slot].reportable = false;
                    continue;
                }
            }
            for r in &refs {
                if !rules.contains_key(r.as_str()) {
                    external.insert(r.clone());
                }
                self.slot(r);
            }
            let by_name = &self.by_name;
            let node = expr
                .tree
                .map_refs(&mut |n: &String| by_name.get(n).copied().unwrap_or(slot));
            self.canonical.push(format!(
                "{}\t{}\t{:?}\t{}\t{}",
                rule.kind,
                rule.name,
                rule.effective_score(),
                rule.tflags.canonical(),
                expr
            ));
            compiled_metas.push((slot, node));
            *self.report.counts.entry(RuleKind::Meta).or_default() += 1;
        }

        // 5. Scores for symbols that are not rules (built-in checks' symbols).
        for (name, info) in &set.symbols {
            if rules.contains_key(name.as_str()) {
                continue;
            }
            if let Some(score) = info.score {
                self.canonical.push(format!("symbol\t{name}\t{score:?}"));
                self.slot(name);
            }
        }

        // Disabled rules keep their score, so `score NAME 0` also silences a built-in
        // check reporting the same symbol.
        for rule in &set.rules {
            if !needed.contains(rule.name.as_str()) && rule.score.is_some() {
                // That score decides verdicts: it is part of the fingerprint (review: `score
                // SPF_FAIL 9` and `1` on a rule never compiled showed one fingerprint).
                self.canonical.push(format!(
                    "symbol\t{}\t{:?}",
                    rule.name,
                    rule.effective_score()
                ));
                let s = self.slot(&rule.name);
                self.slots[s].score = rule.effective_score();
                self.slots[s].scored_by_file = true;
                self.slots[s].reportable = false;
            }
        }

        let headers = header_groups
            .into_iter()
            .map(|(target, members)| (target, build_group(members)))
            .collect();
        let mut take = |k: RuleKind| by_kind.remove(&k).unwrap_or_default();
        let body = build_group(take(RuleKind::Body));
        let uri = build_group(take(RuleKind::Uri));
        let rawbody = build_group(take(RuleKind::Rawbody));
        let full = build_group(take(RuleKind::Full));

        self.report.skipped = skipped.into_iter().collect();
        self.report.external_refs = external.into_iter().collect();
        self.report.backtracking.sort();
        self.canonical.sort();
        self.diagnostics
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        CompiledRules {
            slots: self.slots,
            by_name: self.by_name,
            headers,
            exists,
            body,
            rawbody,
            uri,
            full,
            metas: compiled_metas,
            report: self.report,
            diagnostics: self.diagnostics,
            canonical: self.canonical,
            backtrack_budget: self.options.backtrack_budget,
            noautolearn: noautolearn(set),
        }
    }

    fn compile_pattern(
        &mut self,
        rule: &Rule,
        slot: usize,
        pattern: &Pattern,
        line_mode: bool,
        negate: bool,
        max_hits: Option<u32>,
    ) -> Option<Ready> {
        let translated = match perlre::translate(&pattern.source, &pattern.flags, line_mode) {
            Ok(t) => t,
            Err(e) => {
                self.pattern_failed(rule, &e);
                return None;
            }
        };
        match compile_matcher(
            &translated.pattern,
            translated.unwrapped.as_deref(),
            translated.backtracking.is_empty(),
        ) {
            Ok((matcher, pattern, reason)) => {
                let prefilter = match matcher {
                    Matcher::Backtracking(_) => perlre::relax(&pattern, &translated.backtracking)
                        .filter(|relaxed| linear(relaxed).is_ok()),
                    Matcher::Linear(_) => None,
                };
                if let Some(reason) = reason {
                    self.report.backtracking.push((
                        rule.name.clone(),
                        reason_text(&translated.backtracking, reason),
                    ));
                }
                Some(Ready {
                    slot,
                    matcher,
                    pattern,
                    prefilter,
                    negate,
                    max_hits,
                    skips_subject: rule.kind == RuleKind::Body
                        && rule.tflags.other.contains("nosubject"),
                })
            }
            Err(e) => {
                // Valid Perl the engines lack explains the failure better than their syntax
                // errors do: such a rule is skipped, not blamed on the rules file.
                let e = if translated.perl_only.is_empty() {
                    e
                } else {
                    PatternError::Unsupported(format!(
                        "uses {}: {e}",
                        translated.perl_only.join(", ")
                    ))
                };
                self.pattern_failed(rule, &e);
                None
            }
        }
    }

    /// Checks the regex of a rule that is not compiled: a malformed one is reported.
    fn validate_disabled(&mut self, rule: &Rule) {
        let (pattern, line_mode) = match &rule.test {
            Test::Header {
                pattern: Some(p), ..
            } => (p, false),
            Test::Pattern(p) => (p, matches!(rule.kind, RuleKind::Body | RuleKind::Uri)),
            _ => return,
        };
        let checked = perlre::translate(&pattern.source, &pattern.flags, line_mode).and_then(|t| {
            compile_matcher(
                &t.pattern,
                t.unwrapped.as_deref(),
                t.backtracking.is_empty(),
            )
            .map(|_| ())
            .map_err(|e| match e {
                PatternError::Invalid(m) if !t.perl_only.is_empty() => PatternError::Unsupported(m),
                other => other,
            })
        });
        if let Err(e @ PatternError::Invalid(_)) = checked {
            self.pattern_failed(rule, &e);
        }
    }

    /// Reports a pattern no engine takes: an error when it is malformed (SpamAssassin's lint
    /// refuses those too), else a skipped rule.
    fn pattern_failed(&mut self, rule: &Rule, e: &PatternError) {
        let (severity, what) = match e {
            PatternError::Invalid(_) => (Severity::Error, "invalid regex"),
            PatternError::Unsupported(_) => (Severity::Skipped, "regex not supported"),
        };
        let message = format!("{} {}: {what}: {e}", rule.kind, rule.name);
        self.diag(&rule.origin, severity, message);
    }
}

fn reason_text(constructs: &[&str], fallback: String) -> String {
    if constructs.is_empty() {
        fallback
    } else {
        constructs.join(", ")
    }
}

/// The names `tflags` marks `noautolearn`, rules and symbols alike.
fn noautolearn(set: &RuleSet) -> BTreeSet<String> {
    let marked = |flags: &crate::rules::model::TFlags| flags.other.contains("noautolearn");
    let rules = set
        .rules
        .iter()
        .filter(|r| marked(&r.tflags))
        .map(|r| r.name.clone());
    let symbols = set
        .symbols
        .iter()
        .filter(|(_, info)| marked(&info.tflags))
        .map(|(name, _)| name.clone());
    rules.chain(symbols).collect()
}
