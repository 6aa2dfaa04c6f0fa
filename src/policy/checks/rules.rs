//! The rules-file check: runs last at end of data, sees every symbol the built-in checks
//! emitted (so `meta` rules can combine them), and leaves the message's full symbol list
//! with the scores from the rules files.

use crate::policy::{Check, Context, Decision, Stage, SymbolHit};
use crate::rules::{CompiledRules, BACKTRACK_BUDGET_SYMBOL};
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
        let judged = crate::runtime::off_the_session_threads(ctx.message.len(), || {
            self.rules.evaluate_counted(&view, &external)
        });
        ctx.symbols = judged
            .hits
            .into_iter()
            .map(|h| SymbolHit {
                name: h.name,
                score: h.score,
            })
            .collect();
        if judged.backtrack_budget_spent {
            tracing::warn!(
                budget = ?self.rules.backtrack_budget(),
                "rules: the backtracking searches of this message ran out of time; the rules left were not decided ({BACKTRACK_BUDGET_SYMBOL})"
            );
            // After the rules, so only its score in the rules files counts, not a meta's.
            let score = self.rules.score_of(BACKTRACK_BUDGET_SYMBOL).unwrap_or(0.0);
            ctx.hit(BACKTRACK_BUDGET_SYMBOL, score);
        }
        Decision::Continue
    }
}
