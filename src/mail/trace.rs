//! What a message's trace fields (RFC 5322 §3.6.7) say about its journey: which `Received`
//! hops the recipient's own tools added after delivery, when the message arrived, and how
//! far its `Date` is from then. Works on the fields' text, top hop first, so a check can
//! use the headers it already has without parsing every hop's structure.

use super::date::parse_date;

/// Where a message is read, which decides what its trace fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reading {
    /// As the gateway judges it at the end of DATA (or a copy it stored, read as judged):
    /// the gateway is the MX, and the topmost hop is the client's.
    AtTheGateway,
    /// A message collected elsewhere (a mailbox, a corpus, a file to `learn`): the topmost
    /// delivery hop is the MX that took it in, whose additions the gateway never sees.
    #[default]
    Collected,
}

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
pub fn hops_after_delivery(hops: &[&str]) -> usize {
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

/// The hop of the MX that took the message in, in collected mail (`scan` or `learn` of a
/// mailbox): the topmost delivery hop (see [`hops_after_delivery`]) that received it from
/// another host, past the MX's own hand-offs over loopback (a content filter's). `None`
/// when an mxguard gateway took it in (the MX was this gateway, which writes no
/// Message-ID), when the message began on the MX (a local submission: `(from user@localhost)`,
/// `by host (Postfix, from userid 500)`), or when no hop says where it came from.
pub fn receiving_mx_hop<'a>(received: &[&'a str]) -> Option<&'a str> {
    if received.iter().any(|hop| is_gateway_hop(hop)) {
        return None;
    }
    let delivery = received.get(hops_after_delivery(received)..)?;
    for hop in delivery {
        let from = from_clause(hop)?;
        if !is_loopback_clause(from) {
            return Some(hop);
        }
    }
    None
}

/// True when the MX that received collected mail made its `Message-ID` from its own queue
/// id (`<20020725.g6P3TX57026200@mx.example>` under a hop `by mx.example ... id
/// g6P3TX57026200`): the sender's software sent none, and MTAs such as sendmail and Postfix
/// fill the gap. At the gateway the same message has no Message-ID at all; this reads
/// collected mail as the gateway would have seen it. Never [`Reading::AtTheGateway`]: the
/// MX was the gateway, and the hops are the sender's side.
pub fn message_id_made_at_mx(message_id: &str, received: &[&str], reading: Reading) -> bool {
    if reading == Reading::AtTheGateway {
        return false;
    }
    let Some(local) = message_id_local_part(message_id) else {
        return false;
    };
    receiving_mx_hop(received).is_some_and(|hop| queue_ids(hop).iter().any(|id| local.contains(id)))
}

/// The local part of `<local@domain>`, if the value has that shape.
fn message_id_local_part(message_id: &str) -> Option<&str> {
    let inner = message_id.trim().strip_prefix('<')?;
    let (local, rest) = inner.split_once('@')?;
    rest.contains('>').then_some(local)
}

/// The text of a hop's `from` clause (up to the word `by`), if the hop starts with one.
fn from_clause(hop: &str) -> Option<&str> {
    let hop = hop.trim_start();
    if !hop
        .get(..5)
        .is_some_and(|w| w.eq_ignore_ascii_case("from "))
    {
        return None;
    }
    let mut word_start = None;
    for (at, c) in hop.char_indices().chain([(hop.len(), ' ')]) {
        match (c.is_ascii_whitespace(), word_start) {
            (false, None) => word_start = Some(at),
            (true, Some(start)) => {
                if hop[start..at].eq_ignore_ascii_case("by") {
                    return Some(&hop[..start]);
                }
                word_start = None;
            }
            _ => {}
        }
    }
    Some(hop)
}

/// True for a `from` clause naming the MX itself: every address literal is a loopback
/// one, or there is none and the host is `localhost`.
fn is_loopback_clause(from: &str) -> bool {
    let literals: Vec<&str> = from
        .split(['[', ']', '(', ')', ' ', '\t', '\r', '\n'])
        .map(|w| w.strip_prefix("IPv6:").unwrap_or(w))
        .filter(|w| w.parse::<std::net::IpAddr>().is_ok())
        .collect();
    if literals.is_empty() {
        return from
            .split_ascii_whitespace()
            .nth(1)
            .is_some_and(|host| host.eq_ignore_ascii_case("localhost"));
    }
    literals.iter().all(|ip| {
        ip.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    })
}

/// The queue ids a hop records (`id g6P3TX57026200;`, `id 17hrT0-0004gj-00`): the word
/// after each `id`, of six characters or more with a digit and a letter, so a short, wordy
/// or all-digit one (`id 1`, `id unknown`, `id 021542`) never matches a sender's own
/// Message-ID (often a timestamp) by chance.
fn queue_ids(hop: &str) -> Vec<&str> {
    let words: Vec<&str> = hop.split_ascii_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0].eq_ignore_ascii_case("id"))
        .map(|w| w[1].trim_matches(|c: char| matches!(c, ';' | ',' | '<' | '>' | '(' | ')')))
        .filter(|id| {
            id.len() >= 6
                && id.bytes().any(|b| b.is_ascii_digit())
                && id.bytes().any(|b| b.is_ascii_alphabetic())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        })
        .collect()
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
            .skip(hops_after_delivery(received))
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
        assert_eq!(hops_after_delivery(&[sender]), 0, "as judged at DATA");
        assert_eq!(
            hops_after_delivery(&[internal, ours, sender]),
            2,
            "as learned"
        );
        // Only the topmost hop in our name counts. One the sender wrote sits below ours
        // once delivered; at DATA it is the topmost and is skipped, which hides nothing the
        // sender could not have left out.
        let forged = ours.replace("mail.sender.example", "forged.example");
        assert_eq!(hops_after_delivery(&[ours, forged.as_str(), sender]), 1);
        assert_eq!(hops_after_delivery(&[forged.as_str(), sender]), 1);
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
        assert_eq!(hops_after_delivery(&received), 1);
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

    /// Whether the MX of collected mail made the Message-ID.
    fn made(message_id: &str, received: &[&str]) -> bool {
        message_id_made_at_mx(message_id, received, Reading::Collected)
    }

    const FETCH: &str =
        "from imap.example.net [10.0.0.2] by localhost with IMAP (fetchmail-5.9.0)\n\t\
                         for user@localhost; Tue, 3 Dec 2002 12:00:00 +0000";

    #[test]
    fn a_message_id_the_receiving_mx_made_from_its_queue_id_is_told() {
        // Shapes from the training corpus: sendmail, Postfix and Exim at the MX.
        let cases = [
            (
                "from allexecs.org ([211.167.175.16]) by dogma.slashnull.org\n    \
                 (8.11.6/8.11.6) with ESMTP id g6P3UK427948 for <jm@jmason.org>;",
                "<200207250330.g6P3UK427948@dogma.slashnull.org>",
            ),
            (
                "from mail.example.com (mail.example.com [192.0.2.7])\n\tby mx.example.org \
                 (Postfix) with ESMTP id D7039C44E; Thu, 22 Aug 2002 22:58:34 +0200",
                "<20020822205834.D7039C44E@mx.example.org>",
            ),
            (
                "from [192.0.2.9] (helo=pc) by mx.example.org with smtp (Exim 3.35 #1)\n\t\
                 id 17hrT0-0004gj-00; Thu, 22 Aug 2002 12:00:00 +0100",
                "<E17hrT0-0004gj-00@mx.example.org>",
            ),
        ];
        for (mx, id) in cases {
            assert!(made(id, &[FETCH, mx]), "{mx}");
            // At the gateway the MX was the gateway: these hops are the sender's side.
            assert!(!message_id_made_at_mx(
                id,
                &[FETCH, mx],
                Reading::AtTheGateway
            ));
            assert!(!made("<3D48C4C1.CE967A1E@pc.example>", &[FETCH, mx]));
        }
    }

    #[test]
    fn only_the_receiving_mx_hop_counts_past_its_loopback_hand_offs() {
        let filter = "from localhost (localhost [127.0.0.1]) by mx.example.org (Postfix)\n\t\
                      with ESMTP id 6221BF7A7; Tue,  3 Sep 2002 14:38:29 +0100";
        let mx = "from relay.example.com (relay.example.com [192.0.2.7]) by mx.example.org\n\t\
                  (Postfix) with ESMTP id 5EA4843F99; Tue,  3 Sep 2002 14:38:28 +0100";
        let list = "from pc.example.com ([192.0.2.9]) by relay.example.com with esmtp\n\t\
                    (Exim 3.31) id 17VbMB-0001C4-00; Tue,  3 Sep 2002 14:38:20 +0100";
        assert_eq!(receiving_mx_hop(&[FETCH, filter, mx, list]), Some(mx));
        assert!(made(
            "<20020903.5EA4843F99@mx.example.org>",
            &[filter, mx, list]
        ));
        // A relay before the MX (a mailing list, the sender's own server) filled the gap:
        // the sender's side gave the message its ID, as the gateway would see it.
        assert!(!made(
            "<E17VbMB-0001C4-00@relay.example.com>",
            &[filter, mx, list]
        ));
        // The loopback hand-off's own id is not the MX's.
        assert!(!made(
            "<20020903.6221BF7A7@mx.example.org>",
            &[filter, mx, list]
        ));
    }

    #[test]
    fn mail_that_began_on_the_mx_or_passed_this_gateway_has_no_receiving_mx_hop() {
        let local = [
            "(from mail@localhost) by dogma.slashnull.org (8.11.6/8.11.6) id\n    \
             g7NB9oq21542; Fri, 23 Aug 2002 12:09:50 +0100",
            "by spamassassin.taint.org (Postfix, from userid 500)\n\tid 6798116F23; \
             Tue,  3 Sep 2002 14:38:29 +0100 (IST)",
            "from localhost by mx.example.org with SMTP id g7NB9oq21542; Fri, 23 Aug 2002",
        ];
        for hop in local {
            assert_eq!(receiving_mx_hop(&[FETCH, hop]), None, "{hop}");
            assert!(!made("<200208231109.g7NB9oq21542@x>", &[hop]));
        }
        let ours = "from mail.sender.example ([192.0.2.1])\r\n\tby mx.example.test (mxguard) \
                    with ESMTP id ABC1234; Mon, 2 Dec 2002 12:00:00 +0000";
        assert_eq!(receiving_mx_hop(&[ours]), None);
        assert!(!made("<x.ABC1234@mx.example.test>", &[ours]));
    }

    #[test]
    fn short_or_wordy_queue_ids_and_odd_message_ids_never_match() {
        let hop = "from a.example ([192.0.2.1]) by b.example with SMTP id 12345; Mon";
        assert!(!made("<12345678@b.example>", &[hop]));
        let hop = "from a.example ([192.0.2.1]) by b.example with SMTP id unknownid; Mon";
        assert!(!made("<unknownid@b.example>", &[hop]));
        // A sender's timestamp holds the digits of an all-digit queue id by chance.
        let hop = "from a.example ([192.0.2.1]) by b.example with SMTP id 0725161; Mon";
        assert!(!made("<20020725161111.A1@a.example>", &[hop]));
        let hop = "from a.example ([192.0.2.1]) by b.example with SMTP id g7NB9oq21542; Mon";
        assert!(!made("g7NB9oq21542", &[hop]));
        assert!(!made("<x@b.example.g7NB9oq21542>", &[hop]));
        assert!(made("<x.g7NB9oq21542@b.example>", &[hop]));
        assert!(!made("<x.g7NB9oq21542@b.example>", &[]));
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
