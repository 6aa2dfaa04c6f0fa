//! HELO/EHLO (the greeting and the extensions we announce) and STARTTLS.

use super::{wait_client, End, Greeting, Session, Wait};
use crate::mail::Reply;
use crate::policy::{Decision, Stage};

impl Session {
    pub(super) async fn hello(&mut self, name: String, greeting: Greeting) -> Option<End> {
        // RFC 5321 §4.1.4: a refused EHLO leaves the session as it was (the earlier
        // greeting and any open transaction stand; the policy keeps the refused name's
        // symbols out, as a refused recipient's).
        let earlier_name = self.ctx.client.helo.replace(name);
        match self.evaluate(Stage::Helo).await {
            Decision::Continue | Decision::Discard => {}
            // A greeting deferred for our sake (its name's lookup failed under
            // `dns_tempfail`) is no client error, as a deferred sender is not (review: it
            // pushed the client towards the tarpit and the error limit's 421). A repeated
            // greeting was counted as a junk command already.
            Decision::Tempfail(r) => {
                self.ctx.client.helo = earlier_name;
                return self.ok(Stage::Helo, r);
            }
            Decision::Reject(r) => {
                self.ctx.client.helo = earlier_name;
                // Counted as the error it is, not also as a junk command; past the junk
                // limit `count_junk` has counted that error already.
                if self.greeting.is_some() {
                    if self.junk > self.limits().junk_commands {
                        return self.ok(Stage::Helo, r);
                    }
                    self.junk = self.junk.saturating_sub(1);
                }
                return self.error(Stage::Helo, r).await;
            }
        }
        self.reset_transaction();
        self.greeting = Some(greeting);
        let host = self.hostname().to_owned();
        let reply = match greeting {
            Greeting::Helo => Reply::new(250, "", host),
            Greeting::Ehlo => {
                let mut lines = vec![
                    host,
                    "PIPELINING".to_owned(),
                    format!("SIZE {}", self.limits().message_size_bytes),
                    "8BITMIME".to_owned(),
                    "SMTPUTF8".to_owned(),
                    "ENHANCEDSTATUSCODES".to_owned(),
                    "CHUNKING".to_owned(),
                ];
                if self.server.tls.is_on() && !self.conn.is_tls() {
                    lines.push("STARTTLS".to_owned());
                }
                Reply::new(250, "", lines.join("\n"))
            }
        };
        self.ok(Stage::Helo, reply)
    }

    pub(super) async fn start_tls(&mut self) -> Option<End> {
        let Some(acceptor) = self.server.tls.get() else {
            return self
                .error(
                    Stage::Helo,
                    Reply::new(502, "5.5.1", "STARTTLS not available"),
                )
                .await;
        };
        if self.conn.is_tls() {
            return self.bad_sequence(Stage::Helo, "TLS already active").await;
        }
        // As Postfix: TLS would throw the transaction away anyway (RFC 3207 §4.2), and a
        // BDAT transfer left open would keep its message memory through a handshake wait,
        // where neither the memory hold nor the minimum rate reaches it (review: two
        // sessions holding the whole budget for 300 s each, every other sender 451).
        if self.ctx.mail_from.is_some() || self.bdat.is_some() {
            return self
                .bad_sequence(Stage::Helo, "MAIL transaction in progress")
                .await;
        }
        let ready = Reply::new(220, "2.0.0", "Ready to start TLS");
        if let Some(end) = self.send(Stage::Helo, ready).await {
            return Some(end);
        }
        let dropped = self.conn.buffered().len();
        if dropped > 0 {
            tracing::info!(client = %self.peer, bytes = dropped, "discarded plaintext pipelined after STARTTLS");
            self.limit_hit("starttls_injection");
        }
        // A wait for the client like any other: a handshake that stalls can be evicted
        // under stress and ends at shutdown. Mid-handshake there is no way to say 421:
        // the connection just closes.
        let deadline = self.command_deadline();
        let handshake = self.conn.start_tls(&acceptor, deadline);
        let done = match wait_client(&self.handle, &self.server, true, handshake).await {
            Wait::Ready(done) => done,
            Wait::Evicted => {
                self.limit_hit("stress_idle");
                return Some(End::Closed("evicted in the TLS handshake"));
            }
            Wait::Shutdown => return Some(End::Closed("shutdown")),
        };
        match done {
            Ok(version) => {
                self.server
                    .metrics
                    .tls_sessions_total
                    .with_label_values(&[version])
                    .inc();
                // RFC 3207 §4.2: forget everything learned before TLS, the commands sent
                // ahead of replies too (review: plaintext an attacker on the path added
                // to the EHLO scored every message of the TLS session 3 points). Talking
                // before the banner is kept: a judgement of the connection before any
                // command, as postscreen's, and no part of the protocol.
                self.reset_transaction();
                self.greeting = None;
                self.ctx.client.helo = None;
                self.ctx.client.pipelining_abuse = false;
                self.ctx.client.tls = true;
                None
            }
            Err(e) => {
                let reason = handshake_failure(&e);
                tracing::info!(client = %self.peer, error = %e, reason, "TLS handshake failed");
                self.server
                    .metrics
                    .tls_handshake_failures_total
                    .with_label_values(&[reason])
                    .inc();
                Some(End::Closed("tls handshake failed"))
            }
        }
    }
}

/// Why a STARTTLS handshake failed, as the metric names it: `alert` when the client sent
/// one (it refused our certificate: expired, incomplete chain, wrong name), which is
/// what an operator must see before verifying senders defer all their mail (review: only
/// successes were counted).
fn handshake_failure(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::TimedOut => return "timeout",
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => return "closed",
        _ => {}
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(_)) => "alert",
        Some(_) => "protocol",
        None => "io",
    }
}

#[cfg(test)]
mod handshake_tests {
    use super::handshake_failure;
    use std::io::{Error, ErrorKind};

    #[test]
    fn handshake_failures_are_told_apart() {
        let alert = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        assert_eq!(handshake_failure(&alert), "alert");
        let garbage = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(handshake_failure(&garbage), "protocol");
        assert_eq!(
            handshake_failure(&Error::from(ErrorKind::UnexpectedEof)),
            "closed"
        );
        assert_eq!(
            handshake_failure(&Error::from(ErrorKind::TimedOut)),
            "timeout"
        );
        assert_eq!(handshake_failure(&Error::from(ErrorKind::Other)), "io");
    }
}
