//! Protocol behaviour the session observed, turned into symbols: `EARLY_TALKER` (talked
//! before the banner) and `PIPELINING_ABUSE` (sent commands ahead of replies it must wait
//! for). Scores come from the rules files; unscored, they count 0.

use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// Emits the client-behaviour symbols once per message.
#[derive(Debug)]
pub struct ClientBehaviour;

#[async_trait]
impl Check for ClientBehaviour {
    fn name(&self) -> &'static str {
        "client_behaviour"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        if ctx.client.early_talker {
            ctx.hit("EARLY_TALKER", 0.0);
        }
        if ctx.client.pipelining_abuse {
            ctx.hit("PIPELINING_ABUSE", 0.0);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    #[tokio::test]
    async fn observed_behaviour_becomes_symbols() {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ClientBehaviour.run(&mut ctx).await;
        assert!(ctx.symbols.is_empty());
        ctx.client.early_talker = true;
        ctx.client.pipelining_abuse = true;
        ClientBehaviour.run(&mut ctx).await;
        let names: Vec<&str> = ctx.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["EARLY_TALKER", "PIPELINING_ABUSE"]);
    }
}
