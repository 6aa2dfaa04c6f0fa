//! The seam every filter plugs into: a [`Check`] runs at one stage, reads the context,
//! adds symbols and may demand an action.

use crate::policy::{Context, Decision, Stage};
use async_trait::async_trait;

/// One check: runs at one stage, reads the context, adds symbols, may demand an action.
#[async_trait]
pub trait Check: Send + Sync + std::fmt::Debug {
    /// Short name for logs and timing metrics.
    fn name(&self) -> &'static str;
    /// The stage it runs at.
    fn stage(&self) -> Stage;
    /// Runs the check. `Decision::Continue` lets the next check run.
    async fn run(&self, ctx: &mut Context) -> Decision;
}
