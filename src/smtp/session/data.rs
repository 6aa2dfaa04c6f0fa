//! DATA and BDAT: reading the content through the decoder into the message sink (memory,
//! or the spool file for a big message) under the minimum-rate guard.

use super::{wait_client, End, Greeting, Session, Wait};
use crate::mail::Reply;
use crate::policy::{Stage, Verdict};
use crate::smtp::conn::ReadError;
use crate::smtp::content::{ContentDecoder, ContentProblem};
use crate::smtp::sink::{MessageSink, SinkLimits, CHUNK, FEED_MAX};
use tokio::time::{Duration, Instant};

/// A message transfer in progress: the decoder, where its output goes, and its pace.
#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) decoder: ContentDecoder,
    pub(super) sink: MessageSink,
    /// The minimum rate, timed from the start of the transfer (the first BDAT chunk's
    /// command, so a trickle of small chunks is held to it too).
    rate: RateGuard,
    /// Bytes of the client's received so far (BDAT: over every chunk).
    received: usize,
}

/// Why reading a transfer stopped early.
enum Stopped {
    Read(ReadError),
    Shutdown,
    Evicted,
}

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
        let Some(sink) = self.open_sink().await else {
            return self.busy().await;
        };
        self.send(
            Stage::Data,
            Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
        )
        .await;
        let limits = self.limits().clone();
        let mut t = Transfer {
            decoder: ContentDecoder::data(
                limits.message_size_bytes,
                limits.text_line_bytes,
                self.policy.config().server.bare_line_ending,
            ),
            sink,
            rate: RateGuard::new(&limits),
            received: 0,
        };
        loop {
            t.received += self.feed(&mut t, usize::MAX).await;
            if t.decoder.is_done() {
                break;
            }
            if let Err(stopped) = self.read_more(&t.rate, t.received).await {
                return Some(self.transfer_stopped(stopped, &t.rate, t.received).await);
            }
        }
        self.finish_message(t).await
    }

    pub(super) async fn bdat(&mut self, size: usize, last: bool) -> Option<End> {
        let limits = self.limits().clone();
        let so_far = self.bdat.as_ref().map_or(0, |t| t.decoder.len());
        if size > limits.message_size_bytes.saturating_sub(so_far) {
            // Reading a chunk we will refuse anyway could take forever (a size of 2^64);
            // not reading it leaves no way to find the next command: refuse and close.
            self.limit_hit("message_size");
            // Counted and logged as a message refused for size, as one sent with DATA is.
            self.log_message(
                None,
                so_far.saturating_add(size),
                Verdict::Reject,
                "message_size",
            );
            self.reset_transaction();
            let text = format!(
                "Message size exceeds fixed limit of {} bytes",
                limits.message_size_bytes
            );
            self.conn.queue(&Reply::new(552, "5.3.4", text).to_wire());
            self.close(Reply::new(
                421,
                "4.7.0",
                "BDAT chunk refused unread, closing connection",
            ))
            .await;
            return Some(End::Closed("bdat too big"));
        }
        if let Some(t) = &self.bdat {
            // The pause before this chunk counts: chunks of a byte or two, each sent just
            // before the command timeout, would otherwise keep a transfer open for ever.
            if t.rate.too_slow(t.received) {
                return Some(self.too_slow().await);
            }
        }
        // The chunk follows the command whatever we think of it: read it to stay in sync.
        // CHUNKING is offered in the EHLO reply only (RFC 3030).
        let after_ehlo = self.greeting == Some(Greeting::Ehlo);
        let usable = after_ehlo && self.mail.is_some() && !self.ctx.recipients.is_empty();
        let mut busy = false;
        let mut transfer = match self.bdat.take() {
            Some(t) => Some(t),
            None if usable => match self.open_sink().await {
                Some(sink) => Some(Transfer {
                    decoder: ContentDecoder::bdat(
                        limits.message_size_bytes,
                        limits.text_line_bytes,
                        self.policy.config().server.bare_line_ending,
                    ),
                    sink,
                    rate: RateGuard::new(&limits),
                    received: 0,
                }),
                None => {
                    busy = true;
                    None
                }
            },
            None => None,
        };
        let (rate, mut received) = match &transfer {
            Some(t) => (t.rate, t.received),
            None => (RateGuard::new(&limits), 0),
        };
        let mut remaining = size;
        while remaining > 0 {
            if !self.conn.has_buffered_input() {
                if let Err(stopped) = self.read_more(&rate, received).await {
                    return Some(self.transfer_stopped(stopped, &rate, received).await);
                }
            }
            let used = match transfer.as_mut() {
                Some(t) => self.feed(t, remaining).await,
                None => {
                    let take = self.conn.buffered().len().min(remaining);
                    self.conn.consume(take);
                    take
                }
            };
            remaining -= used;
            received += used;
        }
        if let Some(t) = transfer.as_mut() {
            t.received = received;
        }
        if !usable {
            let why = if !after_ehlo {
                "BDAT needs EHLO"
            } else if self.mail.is_none() {
                "Need MAIL before BDAT"
            } else {
                "No valid recipients"
            };
            return self.bad_sequence(Stage::Data, why).await;
        }
        let Some(mut t) = transfer else {
            if busy {
                self.reset_transaction();
                return self.busy().await;
            }
            return self.bad_sequence(Stage::Data, "No BDAT transaction").await;
        };
        if t.decoder.problem() == Some(ContentProblem::TooBig) {
            // Refuse now (RFC 3030 allows it) rather than after more chunks.
            return self.finish_message(t).await;
        }
        if !last {
            self.bdat = Some(t);
            return self.ok(
                Stage::Data,
                Reply::new(250, "2.0.0", format!("{size} octets received")),
            );
        }
        t.sink.make_room(0, &self.server.spool).await;
        let from = t.sink.buffer().len();
        t.decoder.finish_bdat(t.sink.buffer());
        t.sink.settle(from).await;
        self.finish_message(t).await
    }

    /// A sink for a new transfer, once the memory budget has room for its first buffer
    /// (waiting at most `command_timeout`); `None` when it did not.
    async fn open_sink(&mut self) -> Option<MessageSink> {
        let limits = self.limits().clone();
        let budget = &self.server.budget;
        budget.resize(limits.message_memory_total_bytes);
        let reservation =
            match tokio::time::timeout(limits.command_timeout, budget.reserve(CHUNK)).await {
                Ok(r) => r,
                Err(_) => {
                    self.limit_hit("message_memory_total");
                    return None;
                }
            };
        let sink_limits = SinkLimits {
            memory: limits.message_memory_bytes,
            header: limits.message_header_bytes,
        };
        Some(MessageSink::new(sink_limits, reservation))
    }

    pub(super) async fn busy(&mut self) -> Option<End> {
        self.error(
            Stage::Data,
            Reply::new(451, "4.3.2", "Too much mail in transit, try again later"),
        )
        .await
    }

    /// Feeds buffered input (at most `max` bytes) through the decoder into the sink, in
    /// slices the sink has room for. Returns the bytes used; fewer than were buffered
    /// only at the end of DATA.
    async fn feed(&mut self, t: &mut Transfer, mut max: usize) -> usize {
        let mut used_total = 0;
        while max > 0 && !t.decoder.is_done() {
            let avail = self.conn.buffered().len().min(max).min(FEED_MAX);
            if avail == 0 {
                break;
            }
            t.sink.make_room(avail, &self.server.spool).await;
            let from = t.sink.buffer().len();
            let used = t
                .decoder
                .feed(&self.conn.buffered()[..avail], t.sink.buffer());
            self.conn.consume(used);
            t.sink.settle(from).await;
            if t.decoder.problem() == Some(ContentProblem::TooBig) {
                t.sink.discard();
            }
            used_total += used;
            max -= used;
            if used < avail {
                break;
            }
        }
        self.data_received(used_total);
        used_total
    }

    /// Reads more of a transfer: stops at the rate or command deadline, at the end of
    /// the shutdown grace, or when asked to make room while idle.
    async fn read_more(&mut self, rate: &RateGuard, received: usize) -> Result<(), Stopped> {
        let deadline = rate.deadline(received, self.command_deadline());
        let read = self.conn.fill(deadline);
        match wait_client(&self.handle, &self.server, false, read).await {
            Wait::Ready(Ok(_)) => Ok(()),
            Wait::Ready(Err(e)) => Err(Stopped::Read(e)),
            Wait::Shutdown => Err(Stopped::Shutdown),
            Wait::Evicted => Err(Stopped::Evicted),
        }
    }

    async fn transfer_stopped(&mut self, stopped: Stopped, rate: &RateGuard, bytes: usize) -> End {
        let e = match stopped {
            Stopped::Read(e) => e,
            Stopped::Shutdown => return self.shut_down().await,
            Stopped::Evicted => return self.evicted().await,
        };
        if matches!(e, ReadError::Timeout)
            && rate.too_slow(bytes)
            && Instant::now() < self.command_deadline()
        {
            return self.too_slow().await;
        }
        self.read_failed(e).await
    }

    async fn too_slow(&mut self) -> End {
        let text = "Data transfer too slow, closing connection";
        self.close_at_limit("min_data_rate", Reply::new(421, "4.4.2", text))
            .await
    }
}

/// Enforces the minimum transfer rate of DATA and BDAT after a grace period.
#[derive(Debug, Clone, Copy)]
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
