//! DATA and BDAT: reading the content into the decoder under the minimum-rate guard.

use super::{End, Session};
use crate::mail::Reply;
use crate::policy::Stage;
use crate::smtp::conn::ReadError;
use crate::smtp::content::{ContentDecoder, ContentProblem};
use tokio::time::{Duration, Instant};

impl Session {
    pub(super) async fn data(&mut self) -> Option<End> {
        if self.mail.is_none() {
            return self
                .bad_sequence(Stage::Data, "Need MAIL before DATA")
                .await;
        }
        if self.bdat.is_some() {
            return self
                .bad_sequence(Stage::Data, "DATA not allowed after BDAT")
                .await;
        }
        if self.ctx.recipients.is_empty() {
            return self.bad_sequence(Stage::Data, "No valid recipients").await;
        }
        self.send(
            Stage::Data,
            Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
        )
        .await;
        let limits = self.limits().clone();
        let mut decoder = ContentDecoder::data(
            limits.message_size_bytes,
            limits.text_line_bytes,
            self.policy.config().server.bare_line_ending,
        );
        let rate = RateGuard::new(&limits);
        let mut received = 0;
        loop {
            let used = decoder.feed(self.conn.buffered());
            self.conn.consume(used);
            received += used;
            if decoder.is_done() {
                break;
            }
            let deadline = rate.deadline(received, self.command_deadline());
            if let Err(e) = self.conn.fill(deadline).await {
                return Some(self.transfer_failed(e, &rate, received).await);
            }
        }
        self.finish_message(decoder).await
    }

    pub(super) async fn bdat(&mut self, size: usize, last: bool) -> Option<End> {
        // The chunk follows the command whatever we think of it: read it to stay in sync.
        let limits = self.limits().clone();
        let usable = self.mail.is_some() && !self.ctx.recipients.is_empty();
        if usable && self.bdat.is_none() {
            self.bdat = Some(ContentDecoder::bdat(
                limits.message_size_bytes,
                limits.text_line_bytes,
                self.policy.config().server.bare_line_ending,
            ));
        }
        let rate = RateGuard::new(&limits);
        let mut remaining = size;
        let mut received = 0;
        while remaining > 0 {
            if !self.conn.has_buffered_input() {
                let deadline = rate.deadline(received, self.command_deadline());
                if let Err(e) = self.conn.fill(deadline).await {
                    return Some(self.transfer_failed(e, &rate, received).await);
                }
            }
            let take = self.conn.buffered().len().min(remaining);
            if let Some(decoder) = self.bdat.as_mut().filter(|_| usable) {
                decoder.feed(&self.conn.buffered()[..take]);
            }
            self.conn.consume(take);
            remaining -= take;
            received += take;
        }
        if !usable {
            let why = if self.mail.is_none() {
                "Need MAIL before BDAT"
            } else {
                "No valid recipients"
            };
            return self.bad_sequence(Stage::Data, why).await;
        }
        let too_big = self
            .bdat
            .as_ref()
            .is_some_and(|d| d.problem() == Some(ContentProblem::TooBig));
        if too_big {
            // Refuse now (RFC 3030 allows it) rather than after more chunks.
            if let Some(decoder) = self.bdat.take() {
                return self.finish_message(decoder).await;
            }
        }
        if !last {
            return self.ok(
                Stage::Data,
                Reply::new(250, "2.0.0", format!("{size} octets received")),
            );
        }
        let Some(mut decoder) = self.bdat.take() else {
            return self.bad_sequence(Stage::Data, "No BDAT transaction").await;
        };
        decoder.finish_bdat();
        self.finish_message(decoder).await
    }

    async fn transfer_failed(&mut self, e: ReadError, rate: &RateGuard, bytes: usize) -> End {
        if matches!(e, ReadError::Timeout)
            && rate.too_slow(bytes)
            && Instant::now() < self.command_deadline()
        {
            self.limit_hit("min_data_rate");
            self.close(Reply::new(
                421,
                "4.4.2",
                "Data transfer too slow, closing connection",
            ))
            .await;
            return End::Closed("min_data_rate");
        }
        self.read_failed(e).await
    }
}

/// Enforces the minimum transfer rate of DATA and BDAT after a grace period.
struct RateGuard {
    start: Instant,
    grace: Duration,
    bytes_per_second: u64,
}

impl RateGuard {
    fn new(limits: &crate::config::Limits) -> RateGuard {
        RateGuard {
            start: Instant::now(),
            grace: limits.data_rate_grace,
            bytes_per_second: limits.min_data_rate_bytes_per_second,
        }
    }

    /// The moment by which more than `bytes` must have arrived to keep the minimum rate.
    fn deadline(&self, bytes: usize, other: Instant) -> Instant {
        if self.bytes_per_second == 0 {
            return other;
        }
        let needed = Duration::from_secs_f64((bytes as f64 + 1.0) / self.bytes_per_second as f64);
        (self.start + self.grace.max(needed)).min(other)
    }

    fn too_slow(&self, bytes: usize) -> bool {
        self.bytes_per_second > 0
            && Instant::now() >= self.deadline(bytes, Instant::now() + Duration::from_secs(86400))
    }
}
