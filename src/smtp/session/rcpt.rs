//! RCPT TO: sequence and recipient limits, then the policy's RCPT stage.

use super::{End, Session};
use crate::mail::{Address, Reply};
use crate::policy::{Decision, Stage};

impl Session {
    pub(super) async fn rcpt_to(&mut self, to: Address) -> Option<End> {
        let Some(mail) = &self.mail else {
            return self
                .out_of_sequence(Stage::Rcpt, "Need MAIL before RCPT")
                .await;
        };
        if self.bdat.is_some() {
            return self
                .bad_sequence(Stage::Rcpt, "RCPT not allowed during BDAT")
                .await;
        }
        if to.is_utf8() && !mail.smtputf8 {
            let reply = Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
            // A `refused` line as for the policy's refusals (review: none).
            self.log_refusal(Stage::Rcpt, None, Some(&to), &reply, &[]);
            return self.error(Stage::Rcpt, reply).await;
        }
        // Once is enough (as Postfix delivers it): a second copy to one mailbox is not
        // sent, and a repeated RCPT is no progress that keeps a session under stress.
        if self
            .accepted_paths
            .contains(&self.policy.recipient_as_judged(&to).to_path())
        {
            return self.junk_reply(Stage::Rcpt, duplicate()).await;
        }
        if self.ctx.recipients.len() >= self.limits().recipients_per_message {
            if self.overshoot == 0 {
                // Once per transaction: the client may send a thousand more.
                self.limit_hit("recipients_per_message");
            }
            let reply = Reply::new(452, "4.5.3", "Too many recipients");
            // RFC 5321 §4.5.3.1.8: a client sending more recipients than we take gets
            // 452 and sends the rest in another transaction. That is no client error,
            // up to a generous overshoot (Postfix: 1000).
            self.overshoot += 1;
            if self.overshoot <= self.limits().recipient_overshoot_limit {
                return self.ok(Stage::Rcpt, reply);
            }
            return self.error(Stage::Rcpt, reply).await;
        }
        self.ctx.rcpt = Some(to);
        let decision = self.evaluate(Stage::Rcpt).await;
        let rcpt = self.ctx.rcpt.take();
        match (decision, rcpt) {
            (Decision::Continue | Decision::Discard, Some(rcpt)) => {
                self.accepted_paths.insert(rcpt.to_path());
                self.ctx.recipients.push(rcpt);
                self.ok(Stage::Rcpt, Reply::new(250, "2.1.5", "Ok"))
            }
            // A recipient deferred by the policy (greylisting a new correspondent, a rate
            // limit, a callout it could not make) is no client error: counted as one, a
            // first message to twenty recipients met the tarpit and the error limit's 421
            // before DATA, and went through in rounds, hours late. Past a message's worth
            // since the last accepted message (not per transaction: RSET would renew it)
            // they count again.
            (Decision::Tempfail(r), _)
                if self.deferred_rcpts < self.limits().recipients_per_message =>
            {
                self.deferred_rcpts += 1;
                self.after_deferral.get_or_insert(0);
                self.ok(Stage::Rcpt, r)
            }
            (Decision::Reject(r) | Decision::Tempfail(r), _) => self.error(Stage::Rcpt, r).await,
            (_, None) => {
                self.error(Stage::Rcpt, Reply::new(451, "4.3.0", "Internal error"))
                    .await
            }
        }
    }
}

/// The answer to a recipient the transaction has already (in the form the checks judge,
/// [`crate::policy::Policy::recipient_as_judged`]): taken once, and counted as a command
/// that moved no mail (review: `RCPT TO:<postmaster>` a hundred thousand times, each
/// running the RCPT policy and its state calls, was free).
fn duplicate() -> Reply {
    Reply::new(250, "2.1.5", "Ok (duplicate recipient)")
}
