//! Refuses a transaction at MAIL when the client declares a size over the limit.
//!
//! The limit is also enforced while data streams in (the session stops buffering), so a
//! client that lies about SIZE gains nothing.

use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// Compares `SIZE=` with the configured maximum.
#[derive(Debug)]
pub struct DeclaredSize {
    limit: usize,
}

impl DeclaredSize {
    /// A check for messages of at most `limit` bytes.
    pub fn new(limit: usize) -> DeclaredSize {
        DeclaredSize { limit }
    }
}

#[async_trait]
impl Check for DeclaredSize {
    fn name(&self) -> &'static str {
        "declared_size"
    }

    fn stage(&self) -> Stage {
        Stage::Mail
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        match ctx.declared_size {
            Some(size) if size > self.limit => {
                ctx.hit("SIZE_OVER_LIMIT", 0.0);
                Decision::Reject(Reply::new(
                    552,
                    "5.3.4",
                    format!("Message size exceeds fixed limit of {} bytes", self.limit),
                ))
            }
            _ => Decision::Continue,
        }
    }
}
