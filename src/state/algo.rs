//! The two algorithms every backend implements, as pure functions over stored values:
//! GCRA for rate limits and the greylisting state machine. The embedded store runs them
//! directly; the Redis scripts are the same steps in Lua.

use super::{ContactAnswer, GreylistAnswer, RateAnswer};
use std::time::Duration;

/// Microseconds: an emission interval in milliseconds rounded `limit = 600, per = "1s"`
/// down to 1 ms, a thousand a second; in microseconds the rounding stays under 0.1 % for
/// any limit the configuration takes (at most one per millisecond).
fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The GCRA emission interval and burst tolerance of `limit` events per `per` with
/// `burst` at once, in microseconds (the Redis script gets the same numbers).
pub fn gcra_interval(limit: u64, per: Duration, burst: u64) -> (u64, u64) {
    let interval = (us(per) / limit.max(1)).max(1);
    (interval, interval.saturating_mul(burst.max(1) - 1))
}

/// One GCRA decision. `tat` is the stored theoretical arrival time (µs), `now` the clock
/// (µs). `limit` events per `per` on average, `burst` of them at once. Returns the answer
/// and, when the event is counted, the new TAT and how long to keep it.
pub fn gcra(
    now: u64,
    tat: Option<u64>,
    limit: u64,
    per: Duration,
    burst: u64,
) -> (RateAnswer, Option<(u64, Duration)>) {
    let (interval, tolerance) = gcra_interval(limit, per, burst);
    // A counted event leaves the TAT at most `tolerance + interval` ahead of the clock;
    // further ahead, the clock stepped back since, and the bucket starts afresh instead
    // of refusing the client for as long as the step.
    let tat = tat
        .filter(|&t| t.saturating_sub(now) <= tolerance.saturating_add(interval))
        .unwrap_or(now)
        .max(now);
    let ahead = tat - now;
    if ahead > tolerance {
        let answer = RateAnswer {
            allowed: false,
            retry_after: Duration::from_micros(ahead - tolerance),
        };
        return (answer, None);
    }
    let new_tat = tat.saturating_add(interval);
    let keep = Duration::from_micros(new_tat - now);
    let answer = RateAnswer {
        allowed: true,
        retry_after: Duration::ZERO,
    };
    (answer, Some((new_tat, keep)))
}

/// A stored greylisting triplet: when it was first seen, or when it passed (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triplet {
    /// First attempt at this time.
    Seen(u64),
    /// Passed at this time.
    Passed(u64),
}

impl Triplet {
    /// Stored form: `f:SECONDS` or `p:SECONDS` (the Redis script uses the same).
    pub fn encode(self) -> Vec<u8> {
        match self {
            Triplet::Seen(t) => format!("f:{t}").into_bytes(),
            Triplet::Passed(t) => format!("p:{t}").into_bytes(),
        }
    }

    /// Parses the stored form; anything else reads as absent.
    pub fn decode(raw: &[u8]) -> Option<Triplet> {
        let text = std::str::from_utf8(raw).ok()?;
        let (kind, secs) = text.split_once(':')?;
        let secs = secs.parse().ok()?;
        match kind {
            "f" => Some(Triplet::Seen(secs)),
            "p" => Some(Triplet::Passed(secs)),
            _ => None,
        }
    }
}

/// The whole seconds between a triplet's first attempt and a retry, as both are stored
/// (truncated to the second), that guarantee `delay` really passed: one more than `delay`
/// rounded up. Compared as `delay`'s own whole seconds, a first attempt at 1000.999 and a
/// retry at 1300.000 passed a 300 s delay 299.001 s after, and a sub-second delay passed
/// at once (review).
pub fn greylist_wait_secs(delay: Duration) -> u64 {
    let rounded_up = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    rounded_up.saturating_add(1)
}

/// One greylisting step at `now` (seconds): the answer and what to store, for how long.
pub fn greylist(
    now: u64,
    stored: Option<Triplet>,
    delay: Duration,
    window: Duration,
    pass_ttl: Duration,
) -> (GreylistAnswer, Triplet, Duration) {
    let delay_s = greylist_wait_secs(delay);
    match stored {
        // The wait told is the one that passes (review of the change: told the delay, an
        // MTA retrying on the second was deferred once more).
        None => (
            GreylistAnswer::New {
                retry_after: Duration::from_secs(delay_s),
            },
            Triplet::Seen(now),
            window,
        ),
        Some(Triplet::Passed(_)) => (GreylistAnswer::Known, Triplet::Passed(now), pass_ttl),
        Some(Triplet::Seen(first)) => {
            let waited = now.saturating_sub(first);
            if waited < delay_s {
                let keep = window.saturating_sub(Duration::from_secs(waited));
                let left = Duration::from_secs(delay_s - waited);
                (
                    GreylistAnswer::Early { retry_after: left },
                    Triplet::Seen(first),
                    keep,
                )
            } else {
                (GreylistAnswer::Passed, Triplet::Passed(now), pass_ttl)
            }
        }
    }
}

/// A client's contacts with the tier: gateway name → last contact (seconds). Stored as
/// `name=secs` pairs joined by `,` (the Redis script keeps a hash instead).
pub fn decode_contacts(raw: &[u8]) -> Vec<(String, u64)> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|pair| {
            let (name, secs) = pair.split_once('=')?;
            Some((name.to_owned(), secs.parse().ok()?))
        })
        .collect()
}

/// Stored form of [`decode_contacts`].
pub fn encode_contacts(contacts: &[(String, u64)]) -> Vec<u8> {
    let pairs: Vec<String> = contacts.iter().map(|(n, t)| format!("{n}={t}")).collect();
    pairs.join(",").into_bytes()
}

/// Records a contact of `member` at `now` among `stored` contacts: what the tier knew
/// before it, and what to store (contacts older than `memory` are forgotten).
pub fn contact(
    now: u64,
    stored: Vec<(String, u64)>,
    member: &str,
    memory: Duration,
    fanout_window: Duration,
    first_by: &[String],
) -> (ContactAnswer, Vec<(String, u64)>) {
    let memory_start = now.saturating_sub(memory.as_secs());
    let fanout_start = now.saturating_sub(fanout_window.as_secs());
    let mut kept: Vec<(String, u64)> = stored
        .into_iter()
        .filter(|(name, at)| *at >= memory_start && name != member)
        .collect();
    // A first contact is one with no other member (of `first_by`) within the memory: a
    // client that only ever talks to this member stays a first contact of it.
    let seen_before = kept
        .iter()
        .any(|(name, _)| first_by.is_empty() || first_by.contains(name));
    let answer_first = !seen_before;
    let recent_others = kept.iter().filter(|(_, at)| *at >= fanout_start).count();
    kept.push((member.to_owned(), now));
    (
        ContactAnswer {
            first_contact: answer_first,
            members_recently: recent_others + 1,
        },
        kept,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval() {
        let per = Duration::from_secs(60);
        let mut tat = None;
        let mut allowed = 0;
        for _ in 0..15 {
            let (a, next) = gcra(1_000_000_000, tat, 10, per, 10);
            if let Some((t, _)) = next {
                tat = Some(t);
                allowed += 1;
            } else {
                assert!(!a.allowed);
                assert!(a.retry_after > Duration::ZERO && a.retry_after <= Duration::from_secs(6));
            }
        }
        assert_eq!(allowed, 10, "burst of 10");
        // Six seconds later exactly one more.
        let (a, _) = gcra(1_006_000_000, tat, 10, per, 10);
        assert!(a.allowed);
    }

    /// Regression (review): the emission interval was whole milliseconds, rounded down:
    /// `limit = 600, per = "1s"` allowed 1,000 a second, `40000` a minute 60,000.
    #[test]
    fn a_fine_limit_is_kept_to_a_tenth_of_a_percent() {
        for (limit, per) in [(600, 1), (300, 1), (40_000, 60), (1000, 1)] {
            let per = Duration::from_secs(per);
            // Over ten periods, a sender that sends each time it is let.
            let (mut tat, mut allowed, mut now) = (None, 0u64, 0u64);
            while now < 10 * us(per) {
                let (a, next) = gcra(now, tat, limit, per, 1);
                assert!(a.allowed);
                allowed += 1;
                tat = next.map(|(t, _)| t);
                now = tat.unwrap_or(now);
            }
            let wanted = 10 * limit;
            assert!(
                allowed.abs_diff(wanted) * 1000 <= wanted,
                "{limit} per {per:?}: {allowed} in ten periods"
            );
        }
    }

    /// Regression (review): a clock stepped back by an hour refused every limited client
    /// for an hour, the stored TAT looking that far ahead.
    #[test]
    fn gcra_forgets_a_bucket_the_clock_stepped_back_under() {
        let per = Duration::from_secs(60);
        let now = 10_000_000_000;
        let (_, next) = gcra(now, None, 10, per, 2);
        let (tat, _) = next.unwrap();
        let (_, next) = gcra(now, Some(tat), 10, per, 2);
        let (tat, _) = next.unwrap();
        assert!(
            !gcra(now, Some(tat), 10, per, 2).0.allowed,
            "burst of 2 spent"
        );
        let stepped_back = now - 3_600_000_000;
        assert!(gcra(stepped_back, Some(tat), 10, per, 2).0.allowed);
    }

    #[test]
    fn gcra_without_burst_is_one_per_interval() {
        let per = Duration::from_secs(10);
        let (a, next) = gcra(0, None, 1, per, 1);
        assert!(a.allowed);
        let tat = next.map(|(t, _)| t);
        assert!(!gcra(5_000_000, tat, 1, per, 1).0.allowed);
        assert!(gcra(10_000_000, tat, 1, per, 1).0.allowed);
    }

    #[test]
    fn greylist_new_early_passed_known() {
        let (d, w, p) = (
            Duration::from_secs(300),
            Duration::from_secs(14_400),
            Duration::from_secs(86_400),
        );
        let (a, t, keep) = greylist(1000, None, d, w, p);
        assert_eq!(
            a,
            GreylistAnswer::New {
                retry_after: Duration::from_secs(301)
            }
        );
        assert_eq!((t, keep), (Triplet::Seen(1000), w));
        let (a, t, _) = greylist(1100, Some(t), d, w, p);
        assert_eq!(
            a,
            GreylistAnswer::Early {
                retry_after: Duration::from_secs(201)
            }
        );
        assert_eq!(
            t,
            Triplet::Seen(1000),
            "an early retry does not restart the delay"
        );
        // Regression (review): stored in whole seconds, the first attempt may have been at
        // 1000.999: at 1300 the delay may not have passed yet.
        let (a, _, _) = greylist(1300, Some(t), d, w, p);
        assert!(matches!(a, GreylistAnswer::Early { .. }), "{a:?}");
        let (a, t, keep) = greylist(1301, Some(t), d, w, p);
        assert_eq!((a, keep), (GreylistAnswer::Passed, p));
        let (a, _, _) = greylist(5000, Some(t), d, w, p);
        assert_eq!(a, GreylistAnswer::Known);
    }

    #[test]
    fn a_sub_second_delay_still_waits_a_second() {
        let d = Duration::from_millis(500);
        let w = Duration::from_secs(60);
        assert_eq!(greylist_wait_secs(d), 2);
        let (_, t, _) = greylist(1000, None, d, w, w);
        let (a, _, _) = greylist(1000, Some(t), d, w, w);
        assert!(matches!(a, GreylistAnswer::Early { .. }), "{a:?}");
    }

    #[test]
    fn triplets_round_trip_and_garbage_reads_as_absent() {
        for t in [Triplet::Seen(5), Triplet::Passed(7)] {
            assert_eq!(Triplet::decode(&t.encode()), Some(t));
        }
        assert_eq!(Triplet::decode(b"x:1"), None);
        assert_eq!(Triplet::decode(b"f:nope"), None);
    }

    #[test]
    fn contacts_tell_first_contact_and_fanout() {
        let (memory, fanout) = (Duration::from_secs(600), Duration::from_secs(30));
        let (a, stored) = contact(1000, Vec::new(), "bk1", memory, fanout, &[]);
        assert_eq!(
            a,
            ContactAnswer {
                first_contact: true,
                members_recently: 1
            }
        );
        let (a, stored) = contact(1010, stored, "gw1", memory, fanout, &[]);
        assert!(!a.first_contact);
        assert_eq!(a.members_recently, 2);
        let (a, stored) = contact(1020, stored, "gw2", memory, fanout, &[]);
        assert_eq!(a.members_recently, 3);
        // Much later: the old contacts fall out of the fanout window, then out of memory.
        let (a, stored) = contact(1100, stored, "gw1", memory, fanout, &[]);
        assert_eq!((a.first_contact, a.members_recently), (false, 1));
        let (a, _) = contact(2000, stored, "bk1", memory, fanout, &[]);
        assert!(a.first_contact);
        assert_eq!(
            decode_contacts(&encode_contacts(&[("a".into(), 1), ("b".into(), 2)])),
            vec![("a".into(), 1), ("b".into(), 2)]
        );
    }
}
