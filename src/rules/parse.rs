//! Rules-file parser: SpamAssassin-subset `.cf` files (with `include` and `if` blocks) → [`RuleSet`] plus [`Diagnostic`]s.
//!
//! The parser only checks syntax; regexes are compiled later by [`crate::rules::compile`].
//! Everything it cannot honour is reported with `file:line`, never dropped silently:
//! broken lines of rules we support are [`Severity::Error`], unsupported features
//! (`eval:` rules, plugin directives, unknown `if` conditions) are [`Severity::Skipped`].

use super::meta::MetaExpr;
use super::RulesError;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The line is broken: a rules file with errors should not replace a working policy.
    Error,
    /// The line is valid SpamAssassin syntax that this engine does not evaluate; it is skipped.
    Skipped,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Skipped => "skipped",
        })
    }
}

/// One problem found while reading or compiling rules, located at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The rules file (as opened, includes resolved against their parent's directory).
    pub file: PathBuf,
    /// 1-based line number; 0 when the problem concerns the whole file.
    pub line: usize,
    /// What is wrong and what the engine did about it.
    pub message: String,
    /// Whether the file is broken or a feature was skipped.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.severity,
            self.message
        )
    }
}

/// Where a rule or setting was defined.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The rules file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The kind of a rule: which part of the message it looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKind {
    /// `header`: one header (or a pseudo-header such as `ALL` or `ToCc`).
    Header,
    /// `body`: decoded text of all text parts, HTML rendered, Subject as the first line.
    Body,
    /// `rawbody`: decoded text parts, HTML not rendered.
    Rawbody,
    /// `uri`: each URL found in text and HTML parts.
    Uri,
    /// `full`: the whole raw message.
    Full,
    /// `meta`: an arithmetic/boolean expression over other rules and symbols.
    Meta,
}

impl RuleKind {
    /// The directive that defines rules of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Header => "header",
            RuleKind::Body => "body",
            RuleKind::Rawbody => "rawbody",
            RuleKind::Uri => "uri",
            RuleKind::Full => "full",
            RuleKind::Meta => "meta",
        }
    }

    /// All kinds, in a stable order (for reports).
    pub const ALL: [RuleKind; 6] = [
        RuleKind::Header,
        RuleKind::Body,
        RuleKind::Rawbody,
        RuleKind::Uri,
        RuleKind::Full,
        RuleKind::Meta,
    ];
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Perl regex as written between its delimiters, with its trailing flags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// The text between the delimiters, unchanged (escaped delimiters stay escaped).
    pub source: String,
    /// The effective flags among `i`, `m`, `s`, `x`, sorted (`g` and `o` are dropped).
    pub flags: String,
}

/// Which header(s) a `header` rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderSource {
    /// A named header, lower-cased; all instances are joined with newlines.
    Named(String),
    /// `ALL`: every top-level header as `Name: value` lines.
    All,
    /// `ToCc`: the `To` and `Cc` headers together.
    ToCc,
    /// `MESSAGEID`: `Message-Id`, `Resent-Message-Id`, `X-Message-Id`.
    MessageId,
    /// `EnvelopeFrom`: the envelope sender as recorded in `Return-Path` (or `X-Envelope-From`).
    EnvelopeFrom,
}

/// What part of an address header a `header` rule sees (`:addr`, `:name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrPart {
    /// The whole value.
    Whole,
    /// `:addr`: the e-mail addresses, one per line.
    Addr,
    /// `:name`: the display names, one per line.
    Name,
}

/// Which instances of a repeated header are read (`:first`, `:last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Instance {
    /// All instances, joined with newlines.
    All,
    /// `:first`: the topmost instance only.
    First,
    /// `:last`: the bottom instance only.
    Last,
}

/// The left-hand side of a `header` rule: header name plus modifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeaderTarget {
    /// The header or pseudo-header.
    pub source: HeaderSource,
    /// `:raw`: undecoded (no RFC 2047 decoding, folding kept).
    pub raw: bool,
    /// `:addr` / `:name`.
    pub part: AddrPart,
    /// `:first` / `:last`.
    pub instance: Instance,
    /// `[if-unset: VALUE]`: the value used when the header is missing (default: empty).
    pub if_unset: Option<String>,
}

impl HeaderTarget {
    /// A canonical text form such as `from:addr:first`, used in reports and fingerprints.
    pub fn canonical(&self) -> String {
        let mut out = match &self.source {
            HeaderSource::Named(n) => n.clone(),
            HeaderSource::All => "ALL".to_string(),
            HeaderSource::ToCc => "ToCc".to_string(),
            HeaderSource::MessageId => "MESSAGEID".to_string(),
            HeaderSource::EnvelopeFrom => "EnvelopeFrom".to_string(),
        };
        if self.raw {
            out.push_str(":raw");
        }
        match self.part {
            AddrPart::Whole => {}
            AddrPart::Addr => out.push_str(":addr"),
            AddrPart::Name => out.push_str(":name"),
        }
        match self.instance {
            Instance::All => {}
            Instance::First => out.push_str(":first"),
            Instance::Last => out.push_str(":last"),
        }
        if let Some(v) = &self.if_unset {
            out.push_str(" [if-unset: ");
            out.push_str(v);
            out.push(']');
        }
        out
    }
}

/// How a `header` rule tests its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderOp {
    /// `=~`: hits when the regex matches (a missing header reads as empty).
    Matches,
    /// `!~`: hits when the regex does not match (so a missing header usually hits).
    NotMatches,
    /// `exists:Name`: hits when the header is present.
    Exists,
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// A `header` rule.
    Header {
        /// The header and modifiers.
        target: HeaderTarget,
        /// The operator.
        op: HeaderOp,
        /// The regex (absent for [`HeaderOp::Exists`]).
        pattern: Option<Pattern>,
    },
    /// A `body`, `rawbody`, `uri` or `full` regex.
    Pattern(Pattern),
    /// A `meta` expression.
    Meta(MetaExpr),
}

/// Parsed `tflags`: the ones the engine honours plus the rest, kept for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TFlags {
    /// `nice`: the rule is meant to lower the score; a negative score is allowed.
    pub nice: bool,
    /// `multiple`: count every match, not just the first.
    pub multiple: bool,
    /// `maxhits=N`: stop counting after N matches.
    pub maxhits: Option<u32>,
    /// Every other flag as written (`net`, `learn`, `publish`, ...), sorted.
    pub other: BTreeSet<String>,
}

impl TFlags {
    /// A canonical text form (sorted words), used in fingerprints.
    pub fn canonical(&self) -> String {
        let mut words: Vec<String> = self.other.iter().cloned().collect();
        if self.nice {
            words.push("nice".into());
        }
        if self.multiple {
            words.push("multiple".into());
        }
        if let Some(n) = self.maxhits {
            words.push(format!("maxhits={n}"));
        }
        words.sort();
        words.join(" ")
    }
}

/// One evaluable rule with everything the files said about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule (symbol) name.
    pub name: String,
    /// Which part of the message it reads.
    pub kind: RuleKind,
    /// The test itself.
    pub test: Test,
    /// The `score` line's first value, if any.
    pub score: Option<f64>,
    /// The `describe` text, if any.
    pub description: Option<String>,
    /// The `tflags`.
    pub tflags: TFlags,
    /// Where the rule was (last) defined.
    pub origin: Origin,
}

impl Rule {
    /// True for `__NAME` sub-rules: evaluated for metas, never reported or scored.
    pub fn is_subrule(&self) -> bool {
        self.name.starts_with("__")
    }

    /// The score a hit adds: the `score` line, else SpamAssassin's default
    /// (1.0, 0.01 for `T_` rules, negated for `nice` rules); always 0 for sub-rules.
    pub fn effective_score(&self) -> f64 {
        if self.is_subrule() {
            return 0.0;
        }
        effective_score(&self.name, self.score, &self.tflags)
    }
}

/// The effective score of a symbol (see [`Rule::effective_score`]).
pub(crate) fn effective_score(name: &str, score: Option<f64>, tflags: &TFlags) -> f64 {
    match score {
        Some(s) => s,
        None => {
            let base = if name.starts_with("T_") { 0.01 } else { 1.0 };
            if tflags.nice {
                -base
            } else {
                base
            }
        }
    }
}

/// `score`/`describe`/`tflags` for a name that no rule in the files defines:
/// a symbol from a built-in check (e.g. `SPF_FAIL`, `BAYES_99`) or a skipped rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolInfo {
    /// The `score` line's first value, if any.
    pub score: Option<f64>,
    /// The `describe` text, if any.
    pub description: Option<String>,
    /// The `tflags`.
    pub tflags: TFlags,
    /// Where the score was set, if it was.
    pub score_origin: Option<Origin>,
}

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
            if path.extension().is_some_and(|e| e == "cf") && path.is_file() {
                files.push(path);
            }
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

fn read_lossy(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Plugins whose `ifplugin` blocks are evaluated: only the core rule runner.
const IMPLEMENTED_PLUGINS: &[&str] = &["Mail::SpamAssassin::Plugin::Check"];

/// `can(...)` features whose answer is known for this engine.
const KNOWN_FEATURES: &[(&str, bool)] = &[
    // The bug (rules misfiring on a Perl regex quirk) does not exist here.
    ("Mail::SpamAssassin::Conf::feature_bug6558_free", true),
    // Perl 5.10 regex syntax (possessive quantifiers, named groups) is translated.
    ("Mail::SpamAssassin::Conf::perl_min_version_5010000", true),
    // Naming only: both spellings of the list directives are equally unsupported.
    (
        "Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
        true,
    ),
    (
        "Mail::SpamAssassin::Conf::compat_welcomelist_blocklist",
        true,
    ),
    // `%{...}` captures inside regexes are not implemented.
    ("Mail::SpamAssassin::Conf::feature_capture_rules", false),
    // DNS rules are built-in checks, not rules-file features.
    ("Mail::SpamAssassin::Conf::feature_dns_block_rule", false),
];

/// Directives that carry no verdict-relevant meaning for this engine and are ignored.
const IGNORED_DIRECTIVES: &[&str] = &["priority", "require_version", "reuse", "test"];

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
    origin: Origin,
    /// Rule names defined inside while unsupported.
    skipped_names: Vec<String>,
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

/// The outcome of one line.
enum LineError {
    Error(String),
    Skipped(String),
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
                        Cond::Known(plugin_implemented(rest.trim()))
                            .or_unsupported_plugin(rest.trim())
                    } else {
                        eval_condition(rest)
                    };
                    let (active, unsupported) = match cond {
                        Cond::Known(b) => (b, None),
                        Cond::Unsupported(reason) => (false, Some(reason)),
                        Cond::Unknown(reason) => (false, Some(reason)),
                    };
                    blocks.push(Block {
                        active: active && parent_active,
                        unsupported: if parent_active { unsupported } else { None },
                        in_else: false,
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
                            // An unsupported condition skips both branches.
                            if b.unsupported.is_none() {
                                b.active = parent_active && !b.active;
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
        for name in &names {
            if !self.definitions.contains_key(name) {
                self.skipped
                    .entry(name.clone())
                    .or_insert_with(|| b.origin.clone());
            }
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
                let first = values
                    .split_whitespace()
                    .next()
                    .ok_or_else(|| LineError::Error(format!("score {name}: missing value")))?;
                let number = first.trim_start_matches('(').trim_end_matches(')');
                let value: f64 = number.parse().map_err(|_| {
                    LineError::Error(format!("score {name}: `{first}` is not a number"))
                })?;
                if !value.is_finite() {
                    return Err(LineError::Error(format!(
                        "score {name}: `{first}` is not a finite number"
                    )));
                }
                for extra in values.split_whitespace().skip(1) {
                    let n = extra.trim_start_matches('(').trim_end_matches(')');
                    if n.parse::<f64>().is_err() {
                        return Err(LineError::Error(format!(
                            "score {name}: `{extra}` is not a number"
                        )));
                    }
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
            other => Err(LineError::Skipped(format!("unknown directive `{other}`"))),
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

/// The result of an `if` condition.
enum Cond {
    Known(bool),
    /// A plugin we do not implement.
    Unsupported(String),
    /// Something the evaluator does not understand.
    Unknown(String),
}

impl Cond {
    fn or_unsupported_plugin(self, plugin: &str) -> Cond {
        match self {
            Cond::Known(false) => Cond::Unsupported(format!("ifplugin {plugin}: not implemented")),
            other => other,
        }
    }
}

fn plugin_implemented(name: &str) -> bool {
    IMPLEMENTED_PLUGINS.contains(&name)
}

/// Evaluates an `if` condition: `version`, `perl_version`, `plugin(X)`, `can(X)`, `!`, `&&`, `||`,
/// comparisons and parentheses. `version` is treated as newer than any version named.
fn eval_condition(text: &str) -> Cond {
    let tokens = match tokenize_condition(text) {
        Ok(t) => t,
        Err(e) => return Cond::Unknown(format!("if {}: {e}", text.trim())),
    };
    let mut p = CondParser { tokens, pos: 0 };
    match p.or() {
        Ok(v) if p.pos == p.tokens.len() => match v {
            CondVal::Bool(b) => Cond::Known(b),
            CondVal::Num(n) => Cond::Known(n != 0.0),
            CondVal::Unknown(why) => Cond::Unknown(format!("if {}: {why}", text.trim())),
        },
        Ok(_) => Cond::Unknown(format!("if {}: trailing tokens", text.trim())),
        Err(e) => Cond::Unknown(format!("if {}: {e}", text.trim())),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum CondTok {
    LParen,
    RParen,
    Not,
    And,
    Or,
    Cmp(String),
    Num(f64),
    Word(String),
    Call(String, String),
}

fn tokenize_condition(text: &str) -> Result<Vec<CondTok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(CondTok::LParen);
                i += 1
            }
            ')' => {
                out.push(CondTok::RParen);
                i += 1
            }
            '&' if next == Some('&') => {
                out.push(CondTok::And);
                i += 2
            }
            '|' if next == Some('|') => {
                out.push(CondTok::Or);
                i += 2
            }
            '!' if next == Some('=') => {
                out.push(CondTok::Cmp("!=".into()));
                i += 2
            }
            '!' => {
                out.push(CondTok::Not);
                i += 1
            }
            '>' | '<' | '=' => {
                let mut op = c.to_string();
                if next == Some('=') {
                    op.push('=');
                    i += 1;
                }
                out.push(CondTok::Cmp(op));
                i += 1
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                out.push(CondTok::Num(
                    s.parse().map_err(|_| format!("bad number `{s}`"))?,
                ));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&'(') && matches!(word.as_str(), "plugin" | "can" | "has") {
                    let close = chars[j..]
                        .iter()
                        .position(|&c| c == ')')
                        .ok_or("unclosed `(`")?;
                    let arg: String = chars[j + 1..j + close].iter().collect();
                    out.push(CondTok::Call(word, arg.trim().to_string()));
                    i = j + close + 1;
                } else {
                    match word.as_str() {
                        "and" => out.push(CondTok::And),
                        "or" => out.push(CondTok::Or),
                        "not" => out.push(CondTok::Not),
                        _ => out.push(CondTok::Word(word)),
                    }
                }
            }
            other => return Err(format!("unexpected `{other}`")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum CondVal {
    Bool(bool),
    Num(f64),
    Unknown(String),
}

impl CondVal {
    fn truth(&self) -> Option<bool> {
        match self {
            CondVal::Bool(b) => Some(*b),
            CondVal::Num(n) => Some(*n != 0.0),
            CondVal::Unknown(_) => None,
        }
    }
}

struct CondParser {
    tokens: Vec<CondTok>,
    pos: usize,
}

impl CondParser {
    fn peek(&self) -> Option<&CondTok> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<CondVal, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&CondTok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = match (left.truth(), right.truth()) {
                (Some(a), Some(b)) => CondVal::Bool(a || b),
                _ => unknown_of(&left, &right),
            };
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<CondVal, String> {
        let mut left = self.cmp()?;
        while self.peek() == Some(&CondTok::And) {
            self.pos += 1;
            let right = self.cmp()?;
            left = match (left.truth(), right.truth()) {
                (Some(a), Some(b)) => CondVal::Bool(a && b),
                _ => unknown_of(&left, &right),
            };
        }
        Ok(left)
    }

    fn cmp(&mut self) -> Result<CondVal, String> {
        let left = self.unary()?;
        if let Some(CondTok::Cmp(op)) = self.peek().cloned() {
            self.pos += 1;
            let right = self.unary()?;
            let (a, b) = match (&left, &right) {
                (CondVal::Num(a), CondVal::Num(b)) => (*a, *b),
                _ => return Ok(unknown_of(&left, &right)),
            };
            let v = match op.as_str() {
                ">=" => a >= b,
                ">" => a > b,
                "<=" => a <= b,
                "<" => a < b,
                "==" | "=" => a == b,
                "!=" => a != b,
                _ => return Err(format!("unknown operator `{op}`")),
            };
            return Ok(CondVal::Bool(v));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<CondVal, String> {
        match self.peek().cloned() {
            Some(CondTok::Not) => {
                self.pos += 1;
                let v = self.unary()?;
                Ok(match v.truth() {
                    Some(b) => CondVal::Bool(!b),
                    None => v,
                })
            }
            Some(CondTok::LParen) => {
                self.pos += 1;
                let v = self.or()?;
                if self.peek() != Some(&CondTok::RParen) {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(CondTok::Num(n)) => {
                self.pos += 1;
                Ok(CondVal::Num(n))
            }
            Some(CondTok::Word(w)) => {
                self.pos += 1;
                Ok(match w.as_str() {
                    // Newer than anything a rules file asks for.
                    "version" | "perl_version" => CondVal::Num(f64::INFINITY),
                    other => CondVal::Unknown(format!("unknown word `{other}`")),
                })
            }
            Some(CondTok::Call(f, arg)) => {
                self.pos += 1;
                Ok(match f.as_str() {
                    "plugin" => CondVal::Bool(plugin_implemented(&arg)),
                    _ => feature(&arg),
                })
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn unknown_of(a: &CondVal, b: &CondVal) -> CondVal {
    match (a, b) {
        (CondVal::Unknown(w), _) | (_, CondVal::Unknown(w)) => CondVal::Unknown(w.clone()),
        _ => CondVal::Unknown("type mismatch".into()),
    }
}

/// Answers `can(X)`: known features, and plugin methods (false: the plugin is not loaded).
fn feature(name: &str) -> CondVal {
    if let Some((_, v)) = KNOWN_FEATURES.iter().find(|(n, _)| *n == name) {
        return CondVal::Bool(*v);
    }
    if let Some(rest) = name.strip_prefix("Mail::SpamAssassin::Plugin::") {
        let plugin = rest.rsplit_once("::").map(|(p, _)| p).unwrap_or(rest);
        let full = format!("Mail::SpamAssassin::Plugin::{plugin}");
        if !plugin_implemented(&full) {
            return CondVal::Bool(false);
        }
    }
    CondVal::Unknown(format!("unknown feature `{name}`"))
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

fn check_name(name: &str) -> Result<(), LineError> {
    if name.is_empty() {
        return Err(LineError::Error("missing rule name".into()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(LineError::Error(format!(
            "`{name}` is not a valid rule name"
        )));
    }
    Ok(())
}

/// Parses the part after `KIND NAME`.
fn parse_definition(directive: &str, def: &str) -> Result<(RuleKind, Test), LineError> {
    if let Some(rest) = def
        .strip_prefix("eval:")
        .or_else(|| def.strip_prefix("rbleval:"))
    {
        let func = rest.split('(').next().unwrap_or(rest).trim();
        return Err(LineError::Skipped(format!(
            "eval rule `{func}` needs SpamAssassin plugin code"
        )));
    }
    let kind = match directive {
        "header" => return parse_header(def).map(|t| (RuleKind::Header, t)),
        "meta" => {
            let expr = MetaExpr::parse(def).map_err(|e| match e {
                super::meta::MetaError::Unsupported(m) => LineError::Skipped(m),
                super::meta::MetaError::Syntax(m) => LineError::Error(m),
            })?;
            return Ok((RuleKind::Meta, Test::Meta(expr)));
        }
        "body" => RuleKind::Body,
        "rawbody" => RuleKind::Rawbody,
        "uri" => RuleKind::Uri,
        _ => RuleKind::Full,
    };
    let (pattern, rest) = split_regex(def).map_err(LineError::Error)?;
    if !rest.trim().is_empty() {
        return Err(LineError::Error(format!(
            "unexpected text after the regex: `{}`",
            rest.trim()
        )));
    }
    Ok((kind, Test::Pattern(pattern)))
}

/// Pseudo-headers that need SpamAssassin's relay trust path.
fn is_trust_pseudo_header(name: &str) -> bool {
    let lc = name.to_ascii_lowercase();
    lc.starts_with("x-spam-relays-")
        || lc == "all-trusted"
        || lc == "all-untrusted"
        || lc == "all-internal"
        || lc == "all-external"
        || lc == "x-spam-untrusted"
}

fn parse_header(def: &str) -> Result<Test, LineError> {
    if let Some(name) = def.strip_prefix("exists:") {
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(LineError::Error(format!("bad `exists:{name}`")));
        }
        if is_trust_pseudo_header(name) {
            return Err(LineError::Skipped(format!(
                "pseudo-header `{name}` needs SpamAssassin's relay trust path"
            )));
        }
        let target = HeaderTarget {
            source: HeaderSource::Named(name.to_ascii_lowercase()),
            raw: false,
            part: AddrPart::Whole,
            instance: Instance::All,
            if_unset: None,
        };
        return Ok(Test::Header {
            target,
            op: HeaderOp::Exists,
            pattern: None,
        });
    }
    // TARGET OP /re/flags [if-unset: X]
    let op_at = def
        .find("=~")
        .into_iter()
        .chain(def.find("!~"))
        .min()
        .ok_or_else(|| LineError::Error("expected `Header =~ /regex/` or `!~`".into()))?;
    let target_text = def[..op_at].trim();
    let op = if &def[op_at..op_at + 2] == "=~" {
        HeaderOp::Matches
    } else {
        HeaderOp::NotMatches
    };
    if target_text.is_empty() || target_text.contains(char::is_whitespace) {
        return Err(LineError::Error(format!("bad header name `{target_text}`")));
    }
    let mut parts = target_text.split(':');
    let name = parts.next().unwrap_or_default();
    if name.is_empty() {
        return Err(LineError::Error(format!("bad header name `{target_text}`")));
    }
    if is_trust_pseudo_header(name) {
        return Err(LineError::Skipped(format!(
            "pseudo-header `{name}` needs SpamAssassin's relay trust path"
        )));
    }
    let source = match name {
        "ALL" => HeaderSource::All,
        "ToCc" => HeaderSource::ToCc,
        "MESSAGEID" => HeaderSource::MessageId,
        "EnvelopeFrom" => HeaderSource::EnvelopeFrom,
        other => HeaderSource::Named(other.to_ascii_lowercase()),
    };
    let mut target = HeaderTarget {
        source,
        raw: false,
        part: AddrPart::Whole,
        instance: Instance::All,
        if_unset: None,
    };
    for modifier in parts {
        match modifier.to_ascii_lowercase().as_str() {
            "raw" => target.raw = true,
            "addr" => target.part = AddrPart::Addr,
            "name" => target.part = AddrPart::Name,
            "first" => target.instance = Instance::First,
            "last" => target.instance = Instance::Last,
            "" => {
                return Err(LineError::Error(format!(
                    "empty modifier in `{target_text}`"
                )))
            }
            other => {
                return Err(LineError::Skipped(format!(
                    "header modifier `:{other}` is not supported"
                )))
            }
        }
    }
    let (pattern, rest) = split_regex(def[op_at + 2..].trim_start()).map_err(LineError::Error)?;
    let rest = rest.trim();
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|r| r.trim_start().strip_prefix("if-unset:"))
            .ok_or_else(|| {
                LineError::Error(format!("unexpected text after the regex: `{rest}`"))
            })?;
        target.if_unset = Some(inner.trim().to_string());
    }
    Ok(Test::Header {
        target,
        op,
        pattern: Some(pattern),
    })
}

/// Splits `/re/flags rest` or `m{re}flags rest` into the pattern and what follows.
pub(crate) fn split_regex(s: &str) -> Result<(Pattern, &str), String> {
    let s = s.trim_start();
    let mut chars = s.char_indices();
    let (open, body_start) = match chars.next() {
        Some((_, '/')) => ('/', 1),
        Some((_, 'm')) => match chars.next() {
            Some((i, c)) if !c.is_alphanumeric() && !c.is_whitespace() && c != '_' => {
                (c, i + c.len_utf8())
            }
            _ => return Err("expected a regex: `/.../` or `m{...}`".into()),
        },
        _ => return Err("expected a regex: `/.../` or `m{...}`".into()),
    };
    let close = match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        c => c,
    };
    let mut depth = 0usize;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in s[body_start..].char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == close && depth == 0 {
            end = Some(body_start + i);
            break;
        } else if c == close {
            depth -= 1;
        } else if c == open && open != close {
            depth += 1;
        }
    }
    let end = end.ok_or_else(|| format!("unterminated regex (no closing `{close}`)"))?;
    let source = &s[body_start..end];
    if source.is_empty() {
        return Err("empty regex".into());
    }
    let after = &s[end + close.len_utf8()..];
    let flag_len = after
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(after.len());
    let mut flags: Vec<char> = Vec::new();
    for f in after[..flag_len].chars() {
        match f {
            'i' | 'm' | 's' | 'x' => flags.push(f),
            'g' | 'o' => {}
            other => return Err(format!("unsupported regex flag `{other}`")),
        }
    }
    flags.sort_unstable();
    flags.dedup();
    Ok((
        Pattern {
            source: source.to_string(),
            flags: flags.into_iter().collect(),
        },
        &after[flag_len..],
    ))
}
