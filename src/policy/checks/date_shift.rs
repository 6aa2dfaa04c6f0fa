//! How far a message's `Date` is from its arrival (`mail::trace`): a mail client dates a
//! message minutes before its first hop, ratware stamps a clock of its own, hours ahead or
//! weeks behind. In the training corpus a Date 3 to 12 hours ahead is true of 199 spam and 3
//! ham, more than 12 hours ahead of 105 spam and 3 ham, more than a week behind of 110 spam
//! and 2 ham. The symbols are scored in the rules files.

use crate::mail::trace::{date_shift, date_shift_at};
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

const HOUR: i64 = 3600;

/// The symbol for a Date `shift` seconds after the message's arrival, if any. Within three
/// hours ahead is a clock or time-zone slip of an honest client; a Date up to a week behind
/// is mail that waited in a queue or a digest.
pub fn symbol(shift: i64) -> Option<&'static str> {
    match shift {
        s if s > 12 * HOUR => Some("DATE_IN_FUTURE_12_XX"),
        s if s > 3 * HOUR => Some("DATE_IN_FUTURE_03_12"),
        s if s < -7 * 24 * HOUR => Some("DATE_IN_PAST_07D"),
        _ => None,
    }
}

/// Scores a Date far from the message's arrival.
#[derive(Debug)]
pub struct DateShift;

#[async_trait]
impl Check for DateShift {
    fn name(&self) -> &'static str {
        "date_shift"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let view = ctx.view();
        let shift = view
            .fields("Date")
            .next()
            .and_then(|date| match ctx.arrival {
                Some(arrival) => date_shift_at(&date.raw, arrival),
                None => {
                    let received: Vec<&str> =
                        view.fields("Received").map(|h| h.raw.as_str()).collect();
                    date_shift(&date.raw, &received)
                }
            });
        if let Some(name) = shift.and_then(symbol) {
            ctx.hit(name, 0.0);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    #[test]
    fn shifts_map_to_their_bands_and_small_slips_to_none() {
        assert_eq!(symbol(0), None);
        assert_eq!(symbol(3 * HOUR), None);
        assert_eq!(symbol(3 * HOUR + 1), Some("DATE_IN_FUTURE_03_12"));
        assert_eq!(symbol(12 * HOUR + 1), Some("DATE_IN_FUTURE_12_XX"));
        assert_eq!(symbol(-6 * 24 * HOUR), None);
        assert_eq!(symbol(-8 * 24 * HOUR), Some("DATE_IN_PAST_07D"));
    }

    /// Regression (review): at the MX our own hop is not written yet when the checks run,
    /// so the arrival was read from the client's hop, which the client writes: no
    /// `Received` at all, or one dated like the Date, hid a Date years ahead.
    #[tokio::test]
    async fn in_a_session_the_arrival_is_now_not_what_the_client_wrote() {
        let forged = "Received: from a.example by b.example; Mon, 1 Jan 2035 00:00:00 +0000\r\n";
        for hops in ["", forged] {
            let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
            ctx.arrival = Some(1_764_633_600); // 2025-12-02
            ctx.message = format!("{hops}Date: Mon, 1 Jan 2035 00:00:00 +0000\r\n\r\nb\r\n")
                .into_bytes()
                .into();
            DateShift.run(&mut ctx).await;
            let names: Vec<&str> = ctx.symbols.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["DATE_IN_FUTURE_12_XX"], "{hops:?}");
        }
    }

    #[tokio::test]
    async fn a_date_a_month_before_its_delivery_hop_scores() {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        let hop = "Received: from a.example (a.example [192.0.2.1]) by mx.example with SMTP;\r\n \
                   Mon, 2 Dec 2002 12:00:00 +0000\r\n";
        ctx.message = format!("{hop}Date: Sat, 2 Nov 2002 12:00:00 +0000\r\n\r\nb\r\n")
            .into_bytes()
            .into();
        DateShift.run(&mut ctx).await;
        assert_eq!(ctx.symbols[0].name, "DATE_IN_PAST_07D");
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = format!("{hop}Date: Mon, 2 Dec 2002 11:58:00 +0000\r\n\r\nb\r\n")
            .into_bytes()
            .into();
        DateShift.run(&mut ctx).await;
        assert!(ctx.symbols.is_empty());
    }
}
