//! MAIL FROM: sequence, SMTPUTF8 and size checks, then the policy's MAIL stage.

use super::{End, Greeting, Session};
use crate::mail::{Address, Reply};
use crate::policy::{Decision, Stage};
use crate::smtp::command::MailParams;

impl Session {
    pub(super) async fn mail_from(&mut self, from: Address, params: MailParams) -> Option<End> {
        if self.greeting.is_none() {
            return self.bad_sequence(Stage::Mail, "Send HELO/EHLO first").await;
        }
        if self.ctx.mail_from.is_some() {
            return self
                .bad_sequence(Stage::Mail, "Sender already specified")
                .await;
        }
        // Transactions, not only messages: MAIL/RSET cycles must not run without end.
        if self.transactions >= self.limits().messages_per_session {
            let text = "Too many messages in one session, closing connection";
            let reply = Reply::new(421, "4.7.0", text);
            return Some(self.close_at_limit("messages_per_session", reply).await);
        }
        // Refusals before the policy's get a `refused` line as the policy's do.
        if from.is_utf8() && !params.smtputf8 {
            let reply = Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
            self.log_refusal(Stage::Mail, Some(&from), None, &reply, &[]);
            return self.error(Stage::Mail, reply).await;
        }
        if params.given && self.greeting != Some(Greeting::Ehlo) {
            // After HELO no extension was offered, so none of its parameters is known
            // (RFC 5321 §4.1.1.11): an 8-bit body would be relayed as if it were allowed.
            // `BODY=7BIT` too (review: taken, as it changes nothing, against RFC 6152).
            let reply = Reply::new(555, "5.5.4", "MAIL parameters need EHLO");
            self.log_refusal(Stage::Mail, Some(&from), None, &reply, &[]);
            return self.error(Stage::Mail, reply).await;
        }
        // RFC 1870 §6.1: too little room in the spool for this message (or for mail at
        // all, under `spool.min_free_bytes`) is a 452 now, not after the whole transfer.
        // A size over the fixed limit is left to the policy, which refuses it for good;
        // `min_free_bytes = 0` turns the check off.
        let declared = params.size.unwrap_or(0);
        let min_free = self.policy.config().spool.min_free_bytes;
        if declared <= self.limits().message_size_bytes
            && self.server.spool.short_of_space(min_free, declared as u64)
        {
            self.limit_hit("spool_space");
            let text = "Insufficient system storage, try again later";
            let reply = Reply::new(452, "4.3.1", text);
            self.log_refusal(Stage::Mail, Some(&from), None, &reply, &[]);
            self.after_deferral.get_or_insert(0);
            return self.junk_reply(Stage::Mail, reply).await;
        }
        self.ctx.declared_size = params.size;
        self.ctx.mail_from = Some(from);
        match self.evaluate(Stage::Mail).await {
            Decision::Continue | Decision::Discard => {
                self.transactions += 1;
                self.mail = Some(params);
                self.ok(Stage::Mail, Reply::new(250, "2.1.0", "Ok"))
            }
            // A sender deferred for our sake (the spool short of room, the state backend
            // down) or by a limit is no client error, as a deferred recipient is not:
            // counted as one, it pushed a client towards the tarpit and the error limit's
            // 421. A MAIL that moved no mail is still a junk command.
            Decision::Tempfail(r) => {
                self.reset_transaction();
                self.after_deferral.get_or_insert(0);
                self.junk_reply(Stage::Mail, r).await
            }
            Decision::Reject(r) => {
                self.reset_transaction();
                self.error(Stage::Mail, r).await
            }
        }
    }
}
