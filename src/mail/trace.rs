//! What a message's trace fields (RFC 5322 §3.6.7) say about its journey: which `Received`
//! hops the recipient's own tools added after delivery, when the message arrived, and how
//! far its `Date` is from then.

use mail_parser::{DateTime, HeaderName, HeaderValue, Message, Protocol};

/// True for a `Received` hop that fetched the message from a mailbox (IMAP, POP3). It and
/// every hop above it were added after delivery by the recipient's own tools: a gateway at
/// the MX never sees them, and in collected mail they describe the collector, not the sender.
pub fn is_mailbox_fetch(hv: &HeaderValue<'_>) -> bool {
    matches!(hv, HeaderValue::Received(r) if matches!(r.with, Some(Protocol::IMAP | Protocol::POP3)))
}

/// How many `Received` hops, from the top, were added after delivery (see
/// [`is_mailbox_fetch`]); the hops below them are the delivery's.
pub fn hops_after_delivery(msg: &Message<'_>) -> usize {
    msg.header_values(HeaderName::Received)
        .enumerate()
        .filter(|(_, hv)| is_mailbox_fetch(hv))
        .last()
        .map_or(0, |(i, _)| i + 1)
}

/// When the message arrived, as its newest delivery hop dated it (Unix seconds): the date
/// of the topmost `Received` hop below any added after delivery. At the MX that is the
/// client's own hop, minutes old; in a mailbox, the MX's. `None` if no such hop is dated.
pub fn arrival(msg: &Message<'_>) -> Option<i64> {
    msg.header_values(HeaderName::Received)
        .skip(hops_after_delivery(msg))
        .find_map(|hv| match hv {
            HeaderValue::Received(r) => r.date.filter(DateTime::is_valid),
            _ => None,
        })
        .map(|d| d.to_timestamp())
}

/// The message's `Date`. One without a zone (`Mon, 28 Jul 1980 14:01:35`, a ratware
/// habit) is read as UTC, as SpamAssassin and Python's `email` read it, rather than not at
/// all; any year is taken (ratware with a `tm_year` bug writes 0102 for 2002: far in the
/// past, as it should read).
pub fn date(msg: &Message<'_>) -> Option<DateTime> {
    msg.date()
        .copied()
        .or_else(|| DateTime::parse_rfc822(&format!("{} +0000", msg.header_raw("Date")?.trim())))
        .filter(|d| DateTime { year: 2000, ..*d }.is_valid())
}

/// Seconds from the message's arrival to its `Date` (positive: the Date is later, in the
/// future of its own delivery). `None` without a valid Date or a dated delivery hop.
pub fn date_shift(msg: &Message<'_>) -> Option<i64> {
    Some(date(msg)?.to_timestamp() - arrival(msg)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn shift(raw: &str) -> Option<i64> {
        let msg = MessageParser::new().parse_headers(raw.as_bytes())?;
        date_shift(&msg)
    }

    #[test]
    fn the_date_is_measured_from_the_newest_delivery_hop_not_the_mailbox_fetch() {
        // Top to bottom: the recipient's fetch (a day later), the MX, the sender's server.
        let raw = "Received: from imap.example.net [10.0.0.2] by localhost with IMAP\r\n \
                   (fetchmail-5.9.0) for user@localhost; Tue, 3 Dec 2002 12:00:00 +0000\r\n\
                   Received: from mail.sender.example (mail.sender.example [192.0.2.1])\r\n \
                   by mx.example.net with ESMTP id 1; Mon, 2 Dec 2002 12:00:00 +0000\r\n\
                   Received: from pc.sender.example by mail.sender.example with SMTP id 2;\r\n \
                   Mon, 2 Dec 2002 11:59:00 +0000\r\n\
                   Date: Mon, 2 Dec 2002 15:00:00 +0100\r\nSubject: x\r\n\r\nbody\r\n";
        // 15:00 +0100 is 14:00 UTC: two hours after the MX's hop, not a day before the fetch.
        assert_eq!(shift(raw), Some(2 * 3600));
    }

    #[test]
    fn no_valid_date_or_no_dated_hop_gives_no_shift() {
        let hop = "Received: from a.example (a.example [192.0.2.1]) by b.example with SMTP;\r\n \
                   Mon, 2 Dec 2002 12:00:00 +0000\r\n";
        assert_eq!(shift(&format!("{hop}Subject: x\r\n\r\nb\r\n")), None);
        assert_eq!(
            shift("Date: Mon, 2 Dec 2002 12:00:00 +0000\r\nSubject: x\r\n\r\nb\r\n"),
            None
        );
        assert_eq!(
            shift(&format!("{hop}Date: someday soon\r\n\r\nb\r\n")),
            None
        );
        assert_eq!(
            shift(&format!(
                "{hop}Date: Mon, 9 Dec 2002 12:00:00 +0000\r\n\r\nb\r\n"
            )),
            Some(7 * 86400)
        );
        // The year 0102 of a tm_year bug is long ago.
        assert!(shift(&format!(
            "{hop}Date: Sat, 02 Feb 0102 11:39:51 +0200\r\n\r\nb\r\n"
        ))
        .is_some_and(|s| s < -1_000 * 365 * 86400));
        // No zone: read as UTC.
        assert_eq!(
            shift(&format!("{hop}Date: Mon, 2 Dec 2002 10:00:00\r\n\r\nb\r\n")),
            Some(-2 * 3600)
        );
    }
}
