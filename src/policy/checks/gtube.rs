//! The GTUBE test string: a message carrying it scores `GTUBE` (1000 unless rescored in the
//! rules files), so operators (and `mxguard audit`) can prove that a gateway filters.

use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// The Generic Test for Unsolicited Bulk Email.
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Scores messages containing [`GTUBE`].
#[derive(Debug)]
pub struct Gtube;

#[async_trait]
impl Check for Gtube {
    fn name(&self) -> &'static str {
        "gtube"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        if ctx.message.contains(GTUBE).await {
            ctx.hit("GTUBE", 1000.0);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    #[tokio::test]
    async fn gtube_in_body_scores_and_clean_mail_does_not() {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = b"Subject: t\r\n\r\nclean\r\n".to_vec().into();
        assert_eq!(Gtube.run(&mut ctx).await, Decision::Continue);
        assert!(ctx.symbols.is_empty());
        ctx.message = [b"Subject: t\r\n\r\n".as_slice(), GTUBE, b"\r\n"]
            .concat()
            .into();
        assert_eq!(Gtube.run(&mut ctx).await, Decision::Continue);
        assert_eq!(ctx.symbols[0].name, "GTUBE");
    }
}
