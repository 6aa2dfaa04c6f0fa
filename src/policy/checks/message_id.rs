//! Whether the sender's software gave the message its `Message-ID` (`mail::trace`): mail
//! programs always do, ratware often does not, and the MX's sendmail or Postfix then makes
//! one from its queue id. At the gateway such a message simply has no Message-ID
//! (`MISSING_MSGID`); in collected mail (`scan`, `learn` of a mailbox) the MX's ID stands
//! in its place, so without this check the training corpus held one spam with no
//! Message-ID where 114 spam (and 1 ham) had one their MX made.

use crate::mail::trace::{message_id_made_at_mx, Reading};
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// The sub-symbol `MISSING_MSGID` reads (`rules/10-headers.cf`); never scored alone.
pub const MADE_AT_MX: &str = "__MSGID_FROM_MX";

/// Tells a Message-ID made by the receiving MX in collected mail.
#[derive(Debug)]
pub struct MessageIdOrigin;

#[async_trait]
impl Check for MessageIdOrigin {
    fn name(&self) -> &'static str {
        "message_id"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        // Judged as at the gateway (a session, or a copy this gateway stored), the MX was
        // the gateway, which makes no Message-ID: a missing one shows as missing, and the
        // hops are not read.
        let reading = ctx.reading();
        if reading == Reading::AtTheGateway {
            return Decision::Continue;
        }
        let view = ctx.view();
        let made_at_mx = view.fields("Message-ID").next().is_some_and(|id| {
            let received: Vec<&str> = view.fields("Received").map(|h| h.raw.as_str()).collect();
            message_id_made_at_mx(&id.raw, &received, reading)
        });
        if made_at_mx {
            ctx.hit(MADE_AT_MX, 0.0);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    const COLLECTED: &str =
        "Received: from phobos [127.0.0.1] by localhost with IMAP (fetchmail-5.9.0)\r\n\
        \tfor jm@localhost; Thu, 25 Jul 2002 11:05:36 +0100\r\n\
        Received: from allexecs.org ([211.167.175.16]) by dogma.slashnull.org\r\n    \
        (8.11.6/8.11.6) with ESMTP id g6P3UK427948 for <jm@jmason.org>;\r\n    \
        Thu, 25 Jul 2002 04:30:22 +0100\r\n\
        Message-Id: <200207250330.g6P3UK427948@dogma.slashnull.org>\r\n\
        Subject: t\r\n\r\nbody\r\n";

    async fn names(raw: &str, arrival: Option<i64>) -> Vec<String> {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.arrival = arrival;
        ctx.message = raw.as_bytes().to_vec().into();
        MessageIdOrigin.run(&mut ctx).await;
        ctx.symbols.iter().map(|s| s.name.clone()).collect()
    }

    #[tokio::test]
    async fn collected_mail_whose_mx_made_its_message_id_is_told() {
        assert_eq!(names(COLLECTED, None).await, [MADE_AT_MX]);
        let own = COLLECTED.replace("200207250330.g6P3UK427948@dogma", "3D48C4C1.CE967A1E@pc");
        assert!(names(&own, None).await.is_empty());
    }

    /// As judged at the gateway, the MX is the gateway: the hops are the sender's side,
    /// whose IDs say nothing of the sender's software the gateway did not see itself.
    #[tokio::test]
    async fn as_judged_at_the_gateway_the_hops_are_not_read() {
        assert!(names(COLLECTED, Some(1_027_567_822)).await.is_empty());
    }
}
