//! What a message's trace fields (RFC 5322 §3.6.7) say about its journey: which `Received`
//! hops the recipient's own tools added after delivery, when the message arrived, and how
//! far its `Date` is from then. Works on the fields' text, top hop first, so a check can
//! use the headers it already has without parsing every hop's structure.

use super::date::parse_date;

/// True for a `Received` hop that fetched the message from a mailbox (`with IMAP`, `with
/// POP3`). It and every hop above it were added after delivery by the recipient's own
/// tools: a gateway at the MX never sees them, and in collected mail they describe the
/// collector, not the sender.
pub fn is_mailbox_fetch(received: &str) -> bool {
    let mut words = received.split_ascii_whitespace();
    while let Some(word) = words.next() {
        if word.eq_ignore_ascii_case("with") {
            let protocol = words.next().unwrap_or("").trim_end_matches([';', ',']);
            if protocol.eq_ignore_ascii_case("IMAP") || protocol.eq_ignore_ascii_case("POP3") {
                return true;
            }
        }
    }
    false
}

/// True for the hop an mxguard gateway adds when it accepts a message (`by HOST (mxguard)
/// with ...`, see `smtp::received`). The gateway judged the message before adding it, so
/// it and every hop above it (the internal servers', the mailbox's) were never part of
/// what was judged.
pub fn is_gateway_hop(received: &str) -> bool {
    let words: Vec<&str> = received.split_ascii_whitespace().collect();
    words
        .windows(3)
        .any(|w| w[0].eq_ignore_ascii_case("by") && w[2] == "(mxguard)")
}

/// How many `Received` hops, from the top, were added after delivery (see
/// [`is_mailbox_fetch`]) or from the gateway's own hop upward (see [`is_gateway_hop`]); the
/// hops below them are the delivery's, as the gateway saw them when it judged the message.
/// So a message learned from a mailbox reads as it read at the gateway.
pub fn hops_after_delivery<'a>(received: impl IntoIterator<Item = &'a str>) -> usize {
    let hops: Vec<&str> = received.into_iter().collect();
    let fetched = hops
        .iter()
        .rposition(|hop| is_mailbox_fetch(hop))
        .map_or(0, |i| i + 1);
    // The topmost: a hop in our name further down is the sender's, and was judged.
    let judged = hops
        .iter()
        .position(|hop| is_gateway_hop(hop))
        .map_or(0, |i| i + 1);
    fetched.max(judged)
}

/// When the message arrived (Unix seconds): the date of the gateway's own hop when it has
/// one (a stored or quarantined copy: its clock, as the session read it), else of the
/// topmost `Received` hop below any added after delivery (at the MX, the client's own hop,
/// minutes old; in a mailbox, the MX's). Review: with the gateway's hop there, the hop
/// below it, which the client wrote, dated the arrival, and `scan` of a stored copy missed
/// the shifted Date the session had scored. `None` if no such hop is dated.
pub fn arrival(received: &[&str]) -> Option<i64> {
    let date_of = |hop: &&str| parse_date(hop.rsplit_once(';')?.1);
    let ours = received.iter().find(|hop| is_gateway_hop(hop));
    ours.and_then(date_of).or_else(|| {
        received
            .iter()
            .skip(hops_after_delivery(received.iter().copied()))
            .find_map(date_of)
    })
}

/// Seconds from the message's arrival to its `Date` (positive: the Date is later, in the
/// future of its own delivery). `None` without a readable Date or a dated delivery hop.
pub fn date_shift(date: &str, received: &[&str]) -> Option<i64> {
    date_shift_at(date, arrival(received)?)
}

/// Seconds from `arrival` (Unix seconds) to the message's `Date`; `None` without a
/// readable Date.
pub fn date_shift_at(date: &str, arrival: i64) -> Option<i64> {
    Some(parse_date(date)? - arrival)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): the classifier tokenised a message at DATA without the
    /// gateway's own `Received` hop, and `mxguard learn` read delivered or quarantined
    /// copies with it and the internal servers' hops above: the hop count and the hop
    /// shapes the classifier learned were never those it saw when classifying.
    #[test]
    fn the_gateways_own_hop_and_those_above_it_were_added_after_judging() {
        let sender = "from pc.sender.example by mail.sender.example with SMTP id 2;\n\t\
                      Mon, 2 Dec 2002 11:59:00 +0000";
        let ours = "from mail.sender.example ([192.0.2.1])\r\n\tby mx.example.test (mxguard) \
                    with ESMTPS id ABC123\r\n\tfor <u@example.test>; Mon, 2 Dec 2002 12:00:00 +0000";
        let internal = "from mx.example.test by mbox.example.test with LMTP id 3;\n\t\
                        Mon, 2 Dec 2002 12:00:01 +0000";
        assert_eq!(hops_after_delivery([sender]), 0, "as judged at DATA");
        assert_eq!(
            hops_after_delivery([internal, ours, sender]),
            2,
            "as learned"
        );
        // Only the topmost hop in our name counts. One the sender wrote sits below ours
        // once delivered; at DATA it is the topmost and is skipped, which hides nothing the
        // sender could not have left out.
        let forged = ours.replace("mail.sender.example", "forged.example");
        assert_eq!(hops_after_delivery([ours, forged.as_str(), sender]), 1);
        assert_eq!(hops_after_delivery([forged.as_str(), sender]), 1);
    }

    const HOP: &str = "from a.example (a.example [192.0.2.1]) by b.example with SMTP;\n\t\
                       Mon, 2 Dec 2002 12:00:00 +0000";

    #[test]
    fn the_date_is_measured_from_the_newest_delivery_hop_not_the_mailbox_fetch() {
        // Top to bottom: the recipient's fetch (a day later), the MX, the sender's server.
        let received = [
            "from imap.example.net [10.0.0.2] by localhost with IMAP (fetchmail-5.9.0)\n\t\
             for user@localhost; Tue, 3 Dec 2002 12:00:00 +0000",
            "from mail.sender.example (mail.sender.example [192.0.2.1]) by mx.example.net\n\t\
             with ESMTP id 1; Mon, 2 Dec 2002 12:00:00 +0000 (GMT)",
            "from pc.sender.example by mail.sender.example with SMTP id 2;\n\t\
             Mon, 2 Dec 2002 11:59:00 +0000",
        ];
        assert_eq!(hops_after_delivery(received), 1);
        // 15:00 +0100 is 14:00 UTC: two hours after the MX's hop, not a day before the fetch.
        assert_eq!(
            date_shift("Mon, 2 Dec 2002 15:00:00 +0100", &received),
            Some(2 * 3600)
        );
    }

    /// Regression (review): in a stored copy the hop below the gateway's (the client's
    /// own, which it may date as it likes) dated the arrival: `scan` missed the shifted
    /// Date the session had scored against its own clock.
    #[test]
    fn a_stored_copy_arrived_when_the_gateways_hop_says() {
        let ours = "from mail.sender.example ([192.0.2.1])\r\n\tby mx.example.test (mxguard) \
                    with ESMTP id ABC123; Mon, 2 Dec 2002 12:00:00 +0000";
        let client = "from pc by mail.sender.example with SMTP; Mon, 1 Jan 2035 00:00:00 +0000";
        let internal = "from mx.example.test by mbox.example.test with LMTP id 3;\n\t\
                        Mon, 2 Dec 2002 12:00:01 +0000";
        let future = "Mon, 1 Jan 2035 00:00:00 +0000";
        let shift = date_shift(future, &[internal, ours, client]).unwrap();
        assert!(shift > 30 * 365 * 86400, "{shift}");
        // Without the gateway's hop, the delivery's topmost dated hop, as before.
        assert_eq!(date_shift(future, &[client]), Some(0));
    }

    #[test]
    fn mailbox_fetches_are_told_by_their_protocol_word() {
        assert!(is_mailbox_fetch(
            "from x [10.0.0.2] by localhost with POP3; Mon"
        ));
        assert!(is_mailbox_fetch(
            "from x by localhost with imap (fetchmail)"
        ));
        assert!(!is_mailbox_fetch("from x by y with ESMTP id IMAP; Mon"));
        assert!(!is_mailbox_fetch("from imap.example by y with SMTP"));
    }

    #[test]
    fn dates_are_read_as_spamassassin_reads_them() {
        let hops = [HOP];
        assert_eq!(
            date_shift("Mon, 9 Dec 2002 12:00:00 +0000", &hops),
            Some(7 * 86400)
        );
        // No zone: read as UTC.
        assert_eq!(
            date_shift("Mon, 2 Dec 2002 10:00:00", &hops),
            Some(-2 * 3600)
        );
        // The year 0102 of a tm_year bug is long ago.
        assert!(date_shift("Sat, 02 Feb 0102 11:39:51 +0200", &hops)
            .is_some_and(|s| s < -1_000 * 365 * 86400));
        assert_eq!(date_shift("someday soon", &hops), None);
        assert_eq!(date_shift("Mon, 2 Dec 2002 12:00:00 +0000", &[]), None);
        assert_eq!(
            date_shift("Mon, 2 Dec 2002 12:00:00 +0000", &["from a by b with SMTP"]),
            None
        );
    }
}
