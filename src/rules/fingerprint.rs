//! Rules fingerprint: a SHA-256 over the canonical form of the effective rule set, so MX tier
//! members can tell whether they run the same rules.
//!
//! The canonical form is one line per active rule (kind, name, score, sorted tflags, header
//! target and operator, the translated pattern or the normalised meta expression) plus one line
//! per scored built-in symbol, sorted. File names, file order, comments, descriptions,
//! whitespace and skipped or disabled rules do not change it; any score or pattern change does.

use super::compile::CompiledRules;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

impl CompiledRules {
    /// The SHA-256 of the canonical rule set, as 64 lowercase hex digits.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for line in &self.canonical {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        let digest = hasher.finalize();
        let mut out = String::with_capacity(64);
        for byte in digest.iter() {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }

    /// The canonical text the fingerprint is computed over (for `mxguard check --verbose`).
    pub fn canonical_text(&self) -> String {
        let mut out = String::new();
        for line in &self.canonical {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}
