//! Rules-file parser: SpamAssassin-subset `.cf` files (with `include` and `if` blocks) → [`RuleSet`] plus [`Diagnostic`]s.
//!
//! The parser only checks syntax; regexes are compiled later by [`crate::rules::compile`].
//! Everything it cannot honour is reported with `file:line`, never dropped silently:
//! broken lines of rules we support are [`Severity::Error`], unsupported features
//! (`eval:` rules, plugin directives, unknown `if` conditions) are [`Severity::Skipped`].
//! This file reads files and lines and tracks `if` blocks; `cond.rs` evaluates `if`
//! conditions and `directive.rs` parses rule definitions.

use super::model::{Diagnostic, Origin, Rule, RuleKind, Severity, SymbolInfo, TFlags, Test};
use super::RulesError;
use cond::{eval_condition, eval_ifplugin, Cond};
use directive::{check_name, parse_definition, LineError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod cond;
mod directive;

/// Everything read from a set of rules files.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The evaluable rules, sorted by name (a later definition replaces an earlier one).
    pub rules: Vec<Rule>,
    /// Settings for names that are not evaluable rules here (built-in symbols, skipped rules).
    pub symbols: BTreeMap<String, SymbolInfo>,
    /// Names of rules that were defined but are skipped (eval rules, plugin blocks, ...).
    pub skipped: BTreeMap<String, Origin>,
    /// Every problem, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl RuleSet {
    /// Reads every `*.cf` file of `dir` in lexical order (following `include`s).
    pub fn from_dir(dir: &Path) -> Result<RuleSet, RulesError> {
        let entries = std::fs::read_dir(dir).map_err(|source| RulesError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RulesError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            // A `.cf` that cannot be read (a dangling link mid-deploy) is an error, not a
            // file left out: a reload would have switched on a rule set missing it.
            if path.extension().is_some_and(|e| e == "cf") && !path.is_dir() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(RulesError::NoRules {
                path: dir.to_path_buf(),
            });
        }
        files.sort();
        RuleSet::from_files(&files)
    }

    /// Reads the given files in order (following `include`s).
    pub fn from_files(files: &[PathBuf]) -> Result<RuleSet, RulesError> {
        let mut parser = Parser::default();
        for file in files {
            let text = read_lossy(file).map_err(|source| RulesError::Io {
                path: file.clone(),
                source,
            })?;
            parser.parse_file(file, &text);
        }
        Ok(parser.finish())
    }

    /// Parses rules given as text; `file` labels diagnostics and anchors relative `include`s.
    pub fn parse_text(file: &Path, text: &str) -> RuleSet {
        let mut parser = Parser::default();
        parser.parse_file(file, text);
        parser.finish()
    }

    /// True when some diagnostic is an [`Severity::Error`].
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// Looks a rule up by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.rules.get(i))
    }
}

/// A rules file's text, invalid UTF-8 replaced; only a plain file of bounded size is read
/// (review: a FIFO, or `include /dev/zero`, hung `check` and the reload task for good).
fn read_lossy(path: &Path) -> std::io::Result<String> {
    let bytes = crate::config::read_plain_file(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The largest score a rule may have, either way: far past any real score (local block
/// lists use 10,000,000), far below where a message's sum of many such scores, kept in
/// thousandths, would stop being finite.
const MAX_SCORE: f64 = 1e12;

/// Directives that carry no verdict-relevant meaning for this engine and are ignored.
const IGNORED_DIRECTIVES: &[&str] = &["priority", "require_version", "reuse", "test"];

/// The directives rules files are written in: an unknown word a slip or two from one of
/// them (`scroe`, `descirbe`) is a mistake that would leave a rule unscored, not a plugin's
/// directive to skip.
const CORE_DIRECTIVES: &[&str] = &[
    "header", "body", "rawbody", "uri", "full", "meta", "score", "describe", "tflags", "include",
    "ifplugin", "endif", "else",
];

/// The core directive `word` misspells, if it is one or two slips from one (one for
/// names under five letters, where two slips reach too many other words).
fn misspelled_core_directive(word: &str) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    CORE_DIRECTIVES.iter().copied().find(|d| {
        let slips = strsim::damerau_levenshtein(&word, d);
        slips > 0 && slips <= if d.len() >= 5 { 2 } else { 1 }
    })
}

/// Directives that define a rule we cannot evaluate (their names become skipped rules).
const FOREIGN_RULE_DIRECTIVES: &[&str] = &[
    "mimeheader",
    "uri_detail",
    "askdns",
    "urirhssub",
    "urirhsbl",
    "uridnsbl",
    "uridnssub",
    "check_hashbl_emails",
];

/// The maximum nesting of `include`.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A rule as first parsed, before score/describe/tflags are attached.
struct Definition {
    kind: RuleKind,
    test: Test,
    origin: Origin,
}

/// An open `if`/`ifplugin` block.
struct Block {
    /// Whether lines in the current branch are read.
    active: bool,
    /// `Some(reason)` when the block is skipped because of something unsupported (reported at `endif`).
    unsupported: Option<String>,
    /// Whether `else` was seen.
    in_else: bool,
    /// The `else` branch is read though the block is unsupported: the fallback for a
    /// SpamAssassin without a plugin this engine lacks.
    else_reads: bool,
    origin: Origin,
    /// Rule names defined inside while unsupported.
    skipped_names: Vec<String>,
    /// Rule names its read `else` branch defined (see `else_reads`).
    else_names: Vec<String>,
    skipped_lines: usize,
}

#[derive(Default)]
struct Parser {
    definitions: BTreeMap<String, Definition>,
    scores: BTreeMap<String, (f64, Origin)>,
    descriptions: BTreeMap<String, String>,
    tflags: BTreeMap<String, (TFlags, Origin)>,
    skipped: BTreeMap<String, Origin>,
    diagnostics: Vec<Diagnostic>,
    include_stack: Vec<PathBuf>,
}
impl Parser {
    fn diag(&mut self, file: &Path, line: usize, severity: Severity, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
            severity,
        });
    }

    fn parse_file(&mut self, file: &Path, text: &str) {
        let mut blocks: Vec<Block> = Vec::new();
        for (idx, raw_line) in text.lines().enumerate() {
            let lineno = idx + 1;
            let line = strip_comment(raw_line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (directive, rest) = split_word(line);
            let directive_lc = directive.to_ascii_lowercase();
            let origin = Origin {
                file: file.to_path_buf(),
                line: lineno,
            };
            // Conditional blocks are tracked even when inactive.
            match directive_lc.as_str() {
                "if" | "ifplugin" => {
                    let parent_active = blocks.iter().all(|b| b.active);
                    let cond = if directive_lc == "ifplugin" {
                        eval_ifplugin(rest.trim())
                    } else {
                        eval_condition(rest)
                    };
                    let else_reads = matches!(cond, Cond::MissingPlugin(_));
                    let (active, unsupported) = match cond {
                        Cond::Known(b) => (b, None),
                        Cond::MissingPlugin(reason) => (false, Some(reason)),
                        Cond::Unsupported(reason) => (false, Some(reason)),
                        Cond::Unknown(reason) => (false, Some(reason)),
                    };
                    blocks.push(Block {
                        active: active && parent_active,
                        unsupported: if parent_active { unsupported } else { None },
                        in_else: false,
                        else_reads,
                        else_names: Vec::new(),
                        origin,
                        skipped_names: Vec::new(),
                        skipped_lines: 0,
                    });
                    // Remember parent inactivity: a child of an inactive block stays inactive.
                    if !parent_active {
                        if let Some(b) = blocks.last_mut() {
                            b.active = false;
                        }
                    }
                    continue;
                }
                "else" => {
                    let parent_active = blocks
                        .len()
                        .checked_sub(1)
                        .map(|n| blocks[..n].iter().all(|b| b.active))
                        .unwrap_or(true);
                    match blocks.last_mut() {
                        None => self.diag(file, lineno, Severity::Error, "`else` without `if`"),
                        Some(b) if b.in_else => {
                            self.diag(file, lineno, Severity::Error, "second `else` in one block")
                        }
                        Some(b) => {
                            b.in_else = true;
                            // An unsupported condition skips both branches, but for the
                            // fallback of a missing plugin.
                            if b.unsupported.is_none() {
                                b.active = parent_active && !b.active;
                            } else if b.else_reads {
                                b.active = parent_active;
                            }
                            // A block whose parent is inactive stays inactive.
                            if !parent_active {
                                b.active = false;
                            }
                        }
                    }
                    continue;
                }
                "endif" => {
                    match blocks.pop() {
                        None => self.diag(file, lineno, Severity::Error, "`endif` without `if`"),
                        Some(b) => self.close_block(b),
                    }
                    continue;
                }
                _ => {}
            }
            if !blocks.iter().all(|b| b.active) {
                // Count what an unsupported block hides, for its report at `endif`.
                if let Some(b) = blocks.iter_mut().rev().find(|b| b.unsupported.is_some()) {
                    b.skipped_lines += 1;
                    if let Some(name) = defined_name(&directive_lc, rest) {
                        b.skipped_names.push(name.to_string());
                    }
                }
                continue;
            }
            if let Some(name) = defined_name(&directive_lc, rest) {
                for b in blocks.iter_mut().filter(|b| b.else_reads && b.in_else) {
                    b.else_names.push(name.to_string());
                }
            }
            if let Err(e) = self.parse_line(file, lineno, &directive_lc, rest) {
                match e {
                    LineError::Error(m) => self.diag(file, lineno, Severity::Error, m),
                    LineError::Skipped(m) => self.diag(file, lineno, Severity::Skipped, m),
                }
            }
        }
        while let Some(b) = blocks.pop() {
            self.diag(
                &b.origin.file,
                b.origin.line,
                Severity::Error,
                "`if`/`ifplugin` block is never closed by `endif`",
            );
            self.close_block(b);
        }
    }

    fn close_block(&mut self, b: Block) {
        let Some(reason) = b.unsupported else {
            return;
        };
        if b.skipped_lines == 0 {
            return;
        }
        let mut names = b.skipped_names;
        names.sort();
        names.dedup();
        // SpamAssassin reads the block (it has the plugin), so what it defines there is
        // what counts, even over a fallback defined before (`if !plugin(...)`); but not
        // over the fallback its own `else` branch defined, which is read here.
        names.retain(|name| !b.else_names.contains(name));
        for name in &names {
            self.definitions.remove(name);
            self.skipped
                .entry(name.clone())
                .or_insert_with(|| b.origin.clone());
        }
        let mut listed: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
        if names.len() > 8 {
            listed.push("...");
        }
        let message = format!(
            "{reason}: block skipped ({} lines, {} rules{}{})",
            b.skipped_lines,
            names.len(),
            if names.is_empty() { "" } else { ": " },
            listed.join(", ")
        );
        self.diag(&b.origin.file, b.origin.line, Severity::Skipped, message);
    }

    fn parse_line(
        &mut self,
        file: &Path,
        lineno: usize,
        directive: &str,
        rest: &str,
    ) -> Result<(), LineError> {
        let origin = Origin {
            file: file.to_path_buf(),
            line: lineno,
        };
        match directive {
            "lang" => Ok(()),
            d if IGNORED_DIRECTIVES.contains(&d) => Ok(()),
            "header" | "body" | "rawbody" | "uri" | "full" | "meta" => {
                let (name, def) = split_word(rest);
                check_name(name)?;
                let def = def.trim();
                if def.is_empty() {
                    return Err(LineError::Error(format!(
                        "{directive} {name}: missing definition"
                    )));
                }
                match parse_definition(directive, def) {
                    Ok((kind, test)) => {
                        self.skipped.remove(name);
                        self.definitions
                            .insert(name.to_string(), Definition { kind, test, origin });
                        Ok(())
                    }
                    Err(LineError::Skipped(m)) => {
                        self.definitions.remove(name);
                        self.skipped.insert(name.to_string(), origin);
                        Err(LineError::Skipped(format!("{directive} {name}: {m}")))
                    }
                    Err(LineError::Error(m)) => {
                        self.definitions.remove(name);
                        Err(LineError::Error(format!("{directive} {name}: {m}")))
                    }
                }
            }
            "score" => {
                let (name, values) = split_word(rest);
                check_name(name)?;
                // One score, or four (SpamAssassin's score sets); the engine uses the first,
                // set 0, which is what `spamassassin -L` without a trained Bayes uses, so an
                // imported rule scores as it does there. (The fourth, set 3, would switch on
                // network rules that mxguard evaluates differently, and give the classifier's
                // `BAYES_xx` symbols SpamAssassin's scores.)
                let count = values.split_whitespace().count();
                if count != 1 && count != 4 {
                    return Err(LineError::Error(format!(
                        "score {name}: {count} values (one, or four score sets)"
                    )));
                }
                // As SpamAssassin reads them: a value in parentheses makes the whole line
                // relative, and a value is `-?DIGITS[.DIGITS]` (no `.5`, no `1e3`).
                let mut relative = false;
                let mut first = None;
                for written in values.split_whitespace() {
                    let number = match written.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
                        Some(inner) => {
                            relative = true;
                            inner
                        }
                        None => written,
                    };
                    if !is_score_number(number) {
                        return Err(LineError::Error(format!(
                            "score {name}: `{written}` is not a number (digits, an optional sign and decimals)"
                        )));
                    }
                    first.get_or_insert(number);
                }
                let first = first
                    .ok_or_else(|| LineError::Error(format!("score {name}: missing value")))?;
                let mut value: f64 = first.parse().map_err(|_| {
                    LineError::Error(format!("score {name}: `{first}` is not a number"))
                })?;
                // `(1.5)` is relative to the score set before, as SpamAssassin reads it.
                if relative {
                    let Some((before, _)) = self.scores.get(name) else {
                        return Err(LineError::Error(format!(
                            "score {name}: relative score without an earlier score"
                        )));
                    };
                    value += before;
                }
                // 310 digits read as infinity, and a finite score near `f64::MAX` becomes
                // infinite in a message's sum (kept in thousandths): either breaks every
                // verdict and the spool's record of it. SpamAssassin's largest are 1000.
                if !value.is_finite() || value.abs() > MAX_SCORE {
                    return Err(LineError::Error(format!(
                        "score {name}: `{first}` is out of range (at most 10^12 either way)"
                    )));
                }
                self.scores.insert(name.to_string(), (value, origin));
                Ok(())
            }
            "describe" => {
                let (name, text) = split_word(rest);
                check_name(name)?;
                self.descriptions
                    .insert(name.to_string(), text.trim().to_string());
                Ok(())
            }
            "tflags" => {
                let (name, words) = split_word(rest);
                check_name(name)?;
                let mut flags = TFlags::default();
                for word in words.split_whitespace() {
                    match word {
                        "nice" => flags.nice = true,
                        "multiple" => flags.multiple = true,
                        w if w.starts_with("maxhits=") => {
                            let n = w["maxhits=".len()..].parse::<u32>().map_err(|_| {
                                LineError::Error(format!("tflags {name}: bad `{w}`"))
                            })?;
                            flags.maxhits = Some(n);
                        }
                        w => {
                            flags.other.insert(w.to_string());
                        }
                    }
                }
                self.tflags.insert(name.to_string(), (flags, origin));
                Ok(())
            }
            "include" => {
                let target = rest.trim();
                if target.is_empty() {
                    return Err(LineError::Error("include: missing file name".into()));
                }
                let base = file.parent().unwrap_or_else(|| Path::new("."));
                let path = base.join(target);
                self.include(file, lineno, &path);
                Ok(())
            }
            "loadplugin" | "tryplugin" => Err(LineError::Skipped(format!(
                "{directive}: SpamAssassin plugins are not loaded"
            ))),
            d if FOREIGN_RULE_DIRECTIVES.contains(&d) => {
                let (name, _) = split_word(rest);
                if !name.is_empty() {
                    self.definitions.remove(name);
                    self.skipped.insert(name.to_string(), origin);
                }
                Err(LineError::Skipped(format!(
                    "`{directive}` rules need a SpamAssassin plugin"
                )))
            }
            other => match misspelled_core_directive(other) {
                Some(meant) => Err(LineError::Error(format!(
                    "unknown directive `{other}` (a misspelled `{meant}`?)"
                ))),
                None => Err(LineError::Skipped(format!("unknown directive `{other}`"))),
            },
        }
    }

    fn include(&mut self, from: &Path, lineno: usize, path: &Path) {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.include_stack.contains(&key) {
            self.diag(
                from,
                lineno,
                Severity::Error,
                format!("include {}: include loop", path.display()),
            );
            return;
        }
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            self.diag(
                from,
                lineno,
                Severity::Error,
                format!("include {}: includes nested too deeply", path.display()),
            );
            return;
        }
        match read_lossy(path) {
            Ok(text) => {
                self.include_stack.push(key);
                self.parse_file(path, &text);
                self.include_stack.pop();
            }
            Err(e) => self.diag(
                from,
                lineno,
                Severity::Error,
                format!("include {}: {e}", path.display()),
            ),
        }
    }

    fn finish(mut self) -> RuleSet {
        let mut rules = Vec::with_capacity(self.definitions.len());
        let mut symbols: BTreeMap<String, SymbolInfo> = BTreeMap::new();
        let definitions = std::mem::take(&mut self.definitions);
        let mut scores = std::mem::take(&mut self.scores);
        let mut descriptions = std::mem::take(&mut self.descriptions);
        let mut tflags = std::mem::take(&mut self.tflags);
        for (name, def) in definitions {
            let flags = tflags.remove(&name).map(|(f, _)| f).unwrap_or_default();
            let score = scores.remove(&name);
            let score = self.check_negative(&name, score, &flags);
            rules.push(Rule {
                description: descriptions.remove(&name),
                tflags: flags,
                score,
                kind: def.kind,
                test: def.test,
                origin: def.origin,
                name,
            });
        }
        for (name, (score, origin)) in scores {
            let flags = tflags.remove(&name).map(|(f, _)| f).unwrap_or_default();
            let checked = self.check_negative(&name, Some((score, origin.clone())), &flags);
            let info = symbols.entry(name).or_default();
            info.score = checked;
            info.score_origin = Some(origin);
            info.tflags = flags;
        }
        for (name, (flags, _)) in tflags {
            symbols.entry(name).or_default().tflags = flags;
        }
        for (name, text) in descriptions {
            symbols.entry(name).or_default().description = Some(text);
        }
        RuleSet {
            rules,
            symbols,
            skipped: self.skipped,
            diagnostics: self.diagnostics,
        }
    }

    /// A negative score needs `tflags nice`; otherwise the rule is disabled (score 0) and reported.
    fn check_negative(
        &mut self,
        name: &str,
        score: Option<(f64, Origin)>,
        flags: &TFlags,
    ) -> Option<f64> {
        let (value, origin) = score?;
        if value < 0.0 && !flags.nice && !name.starts_with("__") {
            self.diag(
                &origin.file,
                origin.line,
                Severity::Skipped,
                format!(
                    "score {name} {value}: negative score without `tflags {name} nice`; rule disabled"
                ),
            );
            return Some(0.0);
        }
        Some(value)
    }
}

/// The rule name a line would define, for reporting skipped blocks.
fn defined_name<'a>(directive: &str, rest: &'a str) -> Option<&'a str> {
    match directive {
        "header" | "body" | "rawbody" | "uri" | "full" | "meta" => {}
        d if FOREIGN_RULE_DIRECTIVES.contains(&d) => {}
        _ => return None,
    }
    let (name, _) = split_word(rest);
    (!name.is_empty()).then_some(name)
}

/// Removes a `#` comment (SpamAssassin: an unescaped `#`), then unescapes `\#`.
fn strip_comment(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut end = bytes.len();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'#' && (i == 0 || bytes[i - 1] != b'\\') {
            end = i;
            break;
        }
        i += 1;
    }
    line[..end].replace("\\#", "#")
}

/// Splits off the first whitespace-delimited word.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// A score value as SpamAssassin takes one: `-?DIGITS` with optional `.DIGITS`.
fn is_score_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, decimals) = match digits.split_once('.') {
        Some((whole, decimals)) => (whole, Some(decimals)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && decimals.is_none_or(all_digits)
}
