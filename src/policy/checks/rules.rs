//! The rules-file check: runs last at end of data, sees every symbol the built-in checks
//! emitted (so `meta` rules can combine them), and leaves the message's full symbol list
//! with the scores from the rules files.

use crate::policy::{Check, Context, Decision, Stage, SymbolHit};
use crate::rules::CompiledRules;
use async_trait::async_trait;
use std::sync::Arc;

/// Evaluates the compiled rules against the parsed message.
#[derive(Debug)]
pub struct RulesCheck {
    rules: Arc<CompiledRules>,
}

impl RulesCheck {
    /// Wraps a compiled rule set.
    pub fn new(rules: Arc<CompiledRules>) -> RulesCheck {
        RulesCheck { rules }
    }
}

#[async_trait]
impl Check for RulesCheck {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        // One parse per message, shared by every rule kind.
        let view = ctx.view();
        let external: Vec<(&str, f64)> = ctx
            .symbols
            .iter()
            .map(|s| (s.name.as_str(), s.score))
            .collect();
        let hits = crate::runtime::off_the_session_threads(ctx.message.len(), || {
            self.rules.evaluate(&view, &external)
        });
        ctx.symbols = hits
            .into_iter()
            .map(|h| SymbolHit {
                name: h.name,
                score: h.score,
            })
            .collect();
        Decision::Continue
    }
}
