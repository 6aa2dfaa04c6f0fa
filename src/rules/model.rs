//! The rule model: what a rules file defines ([`Rule`], [`Test`], [`TFlags`], ...) and the
//! [`Diagnostic`]s reported about it, shared by the parser, the compiler and `mxguard check`.

use super::meta::MetaExpr;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

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
