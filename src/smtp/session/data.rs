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

/// Why a transfer got no sink.
enum NoSink {
    /// The memory budget had no room within `message_memory_wait`.
    Busy,
    /// The session ended while it waited (shutdown, eviction): how.
    Ended(End),
}

impl Session {
    pub(super) async fn data(&mut self) -> Option<End> {
        if self.mail.is_none() {
            return self
                .out_of_sequence(Stage::Data, "Need MAIL before DATA")
                .await;
        }
        if self.bdat.is_some() {
            return self
                .bad_sequence(Stage::Data, "DATA not allowed after BDAT")
                .await;
        }
        if self.ctx.recipients.is_empty() {
            return self
                .out_of_sequence(Stage::Data, "No valid recipients")
                .await;
        }
        let sink = match self.open_sink().await {
            Ok(sink) => sink,
            Err(NoSink::Busy) => return self.busy().await,
            Err(NoSink::Ended(end)) => return Some(end),
        };
        let go_ahead = Reply::new(354, "", "End data with <CR><LF>.<CR><LF>");
        if let Some(end) = self.send(Stage::Data, go_ahead).await {
            return Some(end);
        }
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
            if let Err(stopped) = self
                .read_more(&mut t.rate, t.received, Some(&mut t.sink))
                .await
            {
                return Some(
                    self.transfer_stopped(stopped, &mut t.rate, t.received)
                        .await,
                );
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
            let _ = self.ok(Stage::Data, Reply::new(552, "5.3.4", text));
            self.close(Reply::new(
                421,
                "4.7.0",
                "BDAT chunk refused unread, closing connection",
            ))
            .await;
            return Some(End::Closed("bdat too big"));
        }
        if let Some(t) = &mut self.bdat {
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
                Ok(sink) => Some(Transfer {
                    decoder: ContentDecoder::bdat(
                        limits.message_size_bytes,
                        limits.text_line_bytes,
                        self.policy.config().server.bare_line_ending,
                    ),
                    sink,
                    rate: RateGuard::new(&limits),
                    received: 0,
                }),
                Err(NoSink::Busy) => {
                    busy = true;
                    None
                }
                Err(NoSink::Ended(end)) => return Some(end),
            },
            None => None,
        };
        let (mut rate, mut received) = match &transfer {
            Some(t) => (t.rate, t.received),
            None => (RateGuard::new(&limits), 0),
        };
        let mut remaining = size;
        while remaining > 0 {
            if !self.conn.has_buffered_input() {
                let sink = transfer.as_mut().map(|t| &mut t.sink);
                if let Err(stopped) = self.read_more(&mut rate, received, sink).await {
                    return Some(self.transfer_stopped(stopped, &mut rate, received).await);
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
            t.rate = rate;
        }
        if !usable && self.bdat_failed {
            // A chunk pipelined behind a failed one: expected, not the client's error. Its
            // transaction ended with the failure (every failure resets it).
            self.bdat_failed = !last;
            return self.ok(
                Stage::Data,
                Reply::new(503, "5.5.1", "Transaction failed earlier, chunk discarded"),
            );
        }
        if !usable {
            let why = if !after_ehlo {
                "BDAT needs EHLO"
            } else if self.mail.is_none() {
                "Need MAIL before BDAT"
            } else {
                "No valid recipients"
            };
            // The chunks pipelined behind this one are discarded uncounted (RFC 3030 §2;
            // review: each counted as an error, to the tarpit and 421).
            self.bdat_failed = after_ehlo && !last;
            if !after_ehlo {
                return self.bad_sequence(Stage::Data, why).await;
            }
            // A refused chunk ends the transaction (RFC 3030 §2: the client must send no
            // more chunks of it, and a DATA after BDAT gets 503): a next transaction it
            // pipelines without RSET must not be queued under this one's sender (review:
            // Bob's MAIL got 503 behind Alice's open transaction, and his message went out
            // as hers), and a RCPT, DATA or `BDAT LAST` after a refused first chunk must
            // not queue the message without it (review: RCPT and DATA were taken, and a
            // later chunk was queued as the whole message).
            self.reset_transaction();
            return self.out_of_sequence(Stage::Data, why).await;
        }
        let Some(mut t) = transfer else {
            if busy {
                // Logged before the envelope is reset (review: `from="" to=""`).
                self.log_message(None, 0, Verdict::Tempfail, "no memory to receive");
                self.reset_transaction();
                self.bdat_failed = !last;
                return self.busy_reply().await;
            }
            return self.bad_sequence(Stage::Data, "No BDAT transaction").await;
        };
        if t.decoder.problem() == Some(ContentProblem::TooBig) {
            // Refuse now (RFC 3030 allows it) rather than after more chunks.
            self.bdat_failed = !last;
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
    /// (waiting at most `message_memory_wait`, as a session the stress reaper may evict and
    /// shutdown ends): [`NoSink::Busy`] when it had none in time.
    async fn open_sink(&mut self) -> Result<MessageSink, NoSink> {
        let limits = self.limits().clone();
        let server = self.server.clone();
        // The shared budget follows the policy in force, not this session's snapshot: a
        // session opened before a reload would size it back (review: two old sessions
        // held twice the new total).
        {
            // A short-lived guard: not held across the wait below.
            let policy = server.policy.peek();
            let in_force = &policy.config().server.limits;
            server.budget.resize(in_force.message_memory_total_bytes);
            server
                .budget
                .set_network_share(in_force.network_memory_share());
        }
        let network = self.client_network();
        let wanted = server.budget.reserve_for(network, CHUNK);
        let wait = tokio::time::timeout(limits.message_memory_wait, wanted);
        let reservation = match wait_client(&self.handle, &self.server, true, wait).await {
            Wait::Ready(Ok(r)) => r,
            Wait::Ready(Err(_)) => {
                self.memory_limit_hit(network, CHUNK);
                return Err(NoSink::Busy);
            }
            Wait::Shutdown => return Err(NoSink::Ended(self.shut_down().await)),
            Wait::Evicted => return Err(NoSink::Ended(self.evicted().await)),
        };
        let sink_limits = SinkLimits {
            memory: limits.message_memory_bytes,
            header: limits.message_header_bytes,
            header_fields: limits.message_header_fields,
            received_fields: limits.received_fields,
            memory_hold: limits.message_memory_hold,
        };
        Ok(MessageSink::new(sink_limits, reservation))
    }

    /// The client network the session counts against (its /24 or /64 by default), as
    /// admission counts it: the message memory budget's shares are per network.
    pub(super) fn client_network(&self) -> std::net::IpAddr {
        super::super::admission::network_of(self.peer.ip(), self.limits())
    }

    /// Counts a wait for message memory given up, under the limit that held it: the
    /// client network's share when that has no room, else the whole budget.
    pub(super) fn memory_limit_hit(&mut self, network: std::net::IpAddr, bytes: usize) {
        if self.server.budget.network_has_room(network, bytes) {
            self.limit_hit("message_memory_total");
        } else {
            self.limit_hit("message_memory_network");
        }
    }

    pub(super) async fn busy(&mut self) -> Option<End> {
        // A message refused for want of memory has its summary line and count like any
        // other tempfailed one (review: only a `limit hit` line, without its envelope).
        self.log_message(None, 0, Verdict::Tempfail, "no memory to receive");
        self.busy_reply().await
    }

    /// [`Self::busy`]'s reply alone, for a refusal already logged.
    pub(super) async fn busy_reply(&mut self) -> Option<End> {
        self.answer_data(Reply::new(
            451,
            "4.3.2",
            "Too much mail in transit, try again later",
        ))
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
    /// the shutdown grace, or on eviction. A sink holding memory past its hold deadline
    /// moves to disk while the sender is silent, not only when its next bytes come: a
    /// sender stopped mid-message kept its share of the budget until the rate guard
    /// closed it.
    async fn read_more(
        &mut self,
        rate: &mut RateGuard,
        received: usize,
        mut sink: Option<&mut MessageSink>,
    ) -> Result<(), Stopped> {
        if let Some(sink) = sink.as_mut() {
            sink.flush().await;
        }
        let deadline = rate.deadline(received, self.command_deadline());
        let hold = sink
            .as_ref()
            .and_then(|s| s.hold_deadline())
            .map(Instant::from_std)
            .filter(|hold| *hold < deadline);
        let read = self.conn.fill(hold.unwrap_or(deadline));
        match wait_client(&self.handle, &self.server, false, read).await {
            Wait::Ready(Ok(_)) => Ok(()),
            Wait::Ready(Err(ReadError::Timeout)) if hold.is_some() => {
                if let Some(sink) = sink {
                    sink.release_if_held(&self.server.spool).await;
                }
                Ok(())
            }
            Wait::Ready(Err(e)) => Err(Stopped::Read(e)),
            Wait::Shutdown => Err(Stopped::Shutdown),
            Wait::Evicted => Err(Stopped::Evicted),
        }
    }

    async fn transfer_stopped(
        &mut self,
        stopped: Stopped,
        rate: &mut RateGuard,
        bytes: usize,
    ) -> End {
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

    /// When the next command must have come: within `command_timeout`, and while a BDAT
    /// transfer is open, in time to keep its minimum rate. Between chunks the transfer
    /// holds its message memory (and spill file), so a client that sent one chunk and
    /// then only NOOPs must not keep them for the whole session.
    /// Its memory is given back before, at the hold deadline
    /// ([`Self::release_held_transfer_memory`]).
    pub(super) fn next_command_deadline(&mut self) -> Instant {
        let other = self.command_deadline();
        match self.bdat.as_mut() {
            Some(t) => {
                let rate = t.rate.deadline(t.received, other);
                match t.sink.hold_deadline().map(Instant::from_std) {
                    Some(hold) => hold.min(rate),
                    None => rate,
                }
            }
            None => other,
        }
    }

    /// Before the session may wait for its client (no next command is buffered whole), an
    /// open BDAT transfer on disk writes out what it holds, as a transfer does before it
    /// waits for data ([`MessageSink::flush`]): a sender that pipelines a `NOOP` behind a
    /// chunk and then waits holds no buffer outside the budget (review).
    pub(super) async fn flush_open_transfer(&mut self) {
        let Some(t) = self.bdat.as_mut() else {
            return;
        };
        if memchr::memchr(b'\n', self.conn.buffered()).is_none() {
            t.sink.flush().await;
        }
    }

    /// Moves an open BDAT transfer to disk if it has held memory past its hold deadline
    /// while its client sent no next chunk: whether it did (the wait for the command goes
    /// on).
    pub(super) async fn release_held_transfer_memory(&mut self) -> bool {
        match self.bdat.as_mut() {
            Some(t) => t.sink.release_if_held(&self.server.spool).await,
            None => false,
        }
    }

    /// A command line could not be read: a BDAT transfer paused past its minimum rate
    /// is too slow (`421 4.4.2`); anything else as for any read.
    pub(super) async fn command_not_read(&mut self, e: ReadError) -> End {
        let paused_too_long = match self.bdat.as_mut() {
            Some(t) => matches!(e, ReadError::Timeout) && t.rate.too_slow(t.received),
            None => false,
        };
        if paused_too_long && Instant::now() < self.command_deadline() {
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

/// Enforces the minimum transfer rate of DATA and BDAT: every `data_rate_grace` window of
/// the transfer must bring `min_data_rate_bytes_per_second` times its length in bytes.
/// Per window, not on average since the start: a burst at the start bought a pause as
/// long as the burst was big (480 KB at 256 B/s, half an hour), during which the session
/// kept its whole message-memory reservation; a few hundred such sessions held the
/// gateway's budget and every other message waited for room.
#[derive(Debug, Clone, Copy)]
struct RateGuard {
    window_start: Instant,
    /// Bytes received when the current window began.
    window_bytes: usize,
    grace: Duration,
    bytes_per_second: u64,
}

impl RateGuard {
    fn new(limits: &crate::config::Limits) -> RateGuard {
        RateGuard {
            window_start: Instant::now(),
            window_bytes: 0,
            grace: limits.data_rate_grace,
            bytes_per_second: limits.min_data_rate_bytes_per_second,
        }
    }

    /// The length of a window: `data_rate_grace`, at least a second (a zero grace, which
    /// the configuration takes, would make windows that never end).
    fn window(&self) -> Duration {
        self.grace.max(Duration::from_secs(1))
    }

    /// The bytes each window must bring (at least one).
    fn quota(&self) -> usize {
        let quota = self.bytes_per_second as f64 * self.window().as_secs_f64();
        (quota.min(usize::MAX as f64) as usize).max(1)
    }

    /// The moment by which more than `bytes` (received so far) must have arrived to keep
    /// the minimum rate, at the latest `other`. Windows that ended with their quota met
    /// are left behind first.
    fn deadline(&mut self, bytes: usize, other: Instant) -> Instant {
        self.deadline_at(Instant::now(), bytes, other)
    }

    /// [`RateGuard::deadline`] as seen at `now`.
    fn deadline_at(&mut self, now: Instant, bytes: usize, other: Instant) -> Instant {
        if self.bytes_per_second == 0 {
            return other;
        }
        let (quota, window) = (self.quota(), self.window());
        loop {
            let end = self.window_start + window;
            let met = bytes.saturating_sub(self.window_bytes) >= quota;
            match (met, now >= end) {
                // Bytes that came in since the window ended count for it: a window starts
                // with nothing to its credit, which may ask a little more than the rate.
                (true, true) => {
                    self.window_start = end;
                    self.window_bytes = bytes;
                }
                (true, false) => return (end + window).min(other),
                (false, _) => return end.min(other),
            }
        }
    }

    fn too_slow(&mut self, bytes: usize) -> bool {
        self.bytes_per_second > 0
            && Instant::now() >= self.deadline(bytes, Instant::now() + Duration::from_secs(86400))
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    fn guard(start: Instant) -> RateGuard {
        RateGuard {
            window_start: start,
            window_bytes: 0,
            grace: Duration::from_secs(30),
            bytes_per_second: 256,
        }
    }

    /// Regression (review): the rate was an average since the start, so 480 KB at once
    /// bought half an hour of silence (480,000 / 256 s) with the message's memory held.
    #[test]
    fn a_burst_buys_no_more_than_the_next_window() {
        let start = Instant::now();
        let far = start + Duration::from_secs(86_400);
        let mut g = guard(start);
        let s = Duration::from_secs;
        assert_eq!(g.deadline_at(start, 0, far), start + s(30));
        // 480 KB in the first second: the first window is met, the second must bring
        // its own 7,680 bytes.
        assert_eq!(g.deadline_at(start + s(1), 480_000, far), start + s(60));
        // Nothing more: at the end of the second window the transfer is too slow.
        assert_eq!(g.deadline_at(start + s(45), 480_000, far), start + s(60));
        assert!(g.deadline_at(start + s(61), 480_000, far) <= start + s(61));
    }

    /// A zero `data_rate_grace` (the configuration takes it) made windows that never end:
    /// the deadline looped for ever. A window lasts at least a second.
    #[test]
    fn a_zero_grace_makes_one_second_windows() {
        let start = Instant::now();
        let far = start + Duration::from_secs(86_400);
        let mut g = RateGuard {
            grace: Duration::ZERO,
            ..guard(start)
        };
        let s = Duration::from_secs;
        assert_eq!(g.deadline_at(start + s(2), 0, far), start + s(1));
        assert_eq!(g.deadline_at(start, 1_000, far), start + s(2));
    }

    #[test]
    fn a_steady_sender_at_the_rate_is_never_late() {
        let start = Instant::now();
        let far = start + Duration::from_secs(86_400);
        let mut g = guard(start);
        for second in 1..600u64 {
            let now = start + Duration::from_secs(second);
            let bytes = (second * 300) as usize;
            assert!(g.deadline_at(now, bytes, far) > now, "late at {second} s");
        }
        let mut off = RateGuard {
            bytes_per_second: 0,
            ..guard(start)
        };
        assert_eq!(off.deadline_at(start, 0, far), far);
    }
}
