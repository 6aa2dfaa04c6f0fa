//! Rules engine: SpamAssassin-compatible rules files parsed, compiled to multi-pattern matchers, and evaluated.
//!
//! Operators reuse the common SpamAssassin rule subset: `header` (with `=~`, `!~`, `exists:`,
//! `ALL`, `ToCc`, `MESSAGEID`, `EnvelopeFrom`, `:raw`, `:addr`, `:name`, `:first`, `:last`,
//! `[if-unset: ...]`), `body`, `rawbody`, `uri`, `full`, `meta`, `score`, `describe`, `tflags`
//! (`nice`, `multiple`, `maxhits=N`), `include`, `if`/`ifplugin`/`else`/`endif`. What the engine
//! cannot evaluate is reported with `file:line` and skipped; what is broken (a bad line, a
//! regex no engine compiles) is a [`Severity::Error`], which keeps the old policy on reload.
//!
//! The flow: [`RuleSet::from_dir`] (parse, see [`parse`]; the types are in [`model`]) →
//! [`RuleSet::compile`] ([`CompiledRules`], see [`compile`]) → per message
//! [`MessageView::parse`] once, then [`CompiledRules::evaluate`] → [`Hit`]s.
//! [`CompiledRules::fingerprint`] identifies the effective rule set across an MX tier.
//!
//! ```
//! use mxguard::rules::{MessageView, RuleSet};
//! use std::path::Path;
//!
//! let set = RuleSet::parse_text(Path::new("local.cf"), "body LOTTERY /you have won/i\nscore LOTTERY 2.5\n");
//! let rules = set.compile();
//! let view = MessageView::parse(b"Subject: hi\r\n\r\nYou have WON a prize\r\n");
//! let hits = rules.evaluate(&view, &[]);
//! assert_eq!(hits[0].name, "LOTTERY");
//! assert_eq!(hits[0].score, 2.5);
//! ```

pub mod compile;
pub mod eval;
pub mod fingerprint;
mod html_text;
pub mod message;
pub mod meta;
pub mod model;
pub mod parse;
mod perlre;
pub mod sample;
mod uri_forms;

#[cfg(test)]
mod tests;

pub use compile::{CompileReport, CompiledRules};
pub use eval::{Evaluation, Hit, BACKTRACK_BUDGET_SYMBOL};
pub use html_text::decode_entities;
pub use message::{AttachmentPart, Decoded, HeaderField, MessageView, ScanLimits};
pub use model::{
    AddrPart, Diagnostic, HeaderOp, HeaderSource, HeaderTarget, Instance, Origin, Pattern, Rule,
    RuleKind, Severity, SymbolInfo, TFlags, Test,
};
pub use parse::RuleSet;
pub use sample::{Sample, SampleLimits, Sampler};

use std::path::{Path, PathBuf};

/// Failures that stop rules from being read at all (problems inside files are [`Diagnostic`]s).
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A rules directory or a listed file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A rules directory holds no `*.cf` file: a policy without its rules (a deploy that
    /// emptied the directory before copying) would filter with the built-in checks only.
    #[error("{}: no *.cf rules file (leave policy.rules_dir out to run without rules)", path.display())]
    NoRules {
        /// The directory.
        path: PathBuf,
    },
}

/// Reads and compiles every `*.cf` file of `dir`: the usual way to load the rules.
pub fn load_dir(dir: &Path) -> Result<CompiledRules, RulesError> {
    Ok(RuleSet::from_dir(dir)?.compile())
}
