//! Verdict headers: incoming `X-Spam-*` headers are removed (a spammer's forged
//! `X-Spam-Status: No` must not reach the internal server), and our own are added.

use super::{Context, Verdict};
use crate::config::Thresholds;

/// The prefix of the header names we own. Every incoming field with it goes, not only the
/// ones we write: a forged `X-Spam-Report` or `X-Spam-Checker-Version` reached the internal
/// server beside our verdict (review), and a filter there cannot tell whose it is.
const OWN_PREFIX: &[u8] = b"x-spam-";

/// Removes every field named with our prefix from the header section of `message`, folded
/// continuation lines included. The body is never touched.
pub fn strip_own_headers(message: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    crate::mail::header_fields::remove_fields(message, |name, _| {
        name.get(..OWN_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(OWN_PREFIX))
    })
}

/// The headers we prepend to relayed mail, CRLF-terminated.
pub fn verdict_headers(ctx: &Context, verdict: Verdict, t: &Thresholds) -> String {
    let score = ctx.score();
    let spam = matches!(verdict, Verdict::Tag | Verdict::Quarantine);
    // Zero-scored symbols are facts for metrics and metas, not verdict reasons.
    let mut rules: Vec<String> = ctx
        .symbols
        .iter()
        .filter(|s| s.score != 0.0)
        .map(|s| format!("{}={:.2}", s.name, s.score))
        .collect();
    rules.sort();
    let score = crate::mail::score::hundredths_down(score);
    let mut h = format!("X-Spam-Score: {score}\r\n");
    h.push_str(&format!(
        "X-Spam-Status: {}, score={score} tag={} quarantine={} reject={}\r\n",
        if spam { "Yes" } else { "No" },
        threshold_text(t.tag),
        threshold_text(t.quarantine),
        threshold_text(t.reject)
    ));
    // Always present, as on every relayed message: `none` says no rule scored (a header
    // left out would read as a gateway that never judged the message).
    if rules.is_empty() {
        h.push_str("X-Spam-Rules: none\r\n");
    } else {
        h.push_str(&fold("X-Spam-Rules:", &rules));
    }
    h
}

/// A threshold as configured (`5.0`, `4.96`): rounded to one decimal, 4.96 read `5.0`, and
/// a message scoring 4.97 was marked `Yes` below its own `tag` (review).
fn threshold_text(value: f64) -> String {
    let text = value.to_string();
    if text.contains(['.', 'e', 'i', 'N']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// Folds a comma-separated list so no header line exceeds ~78 characters.
fn fold(name: &str, items: &[String]) -> String {
    let mut out = String::from(name);
    let mut line_len = name.len();
    for (i, item) in items.iter().enumerate() {
        let sep = if i + 1 < items.len() { "," } else { "" };
        if line_len + item.len() + 2 > 78 && line_len > name.len() {
            out.push_str("\r\n\t");
            line_len = 1;
        } else {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(item);
        out.push_str(sep);
        line_len += item.len() + sep.len();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientInfo;

    #[test]
    fn forged_verdict_headers_are_removed_with_their_continuations() {
        let m = b"From: a@b.example\r\nX-Spam-Status: No,\r\n\tscore=-100\r\nx-spam-score: -100\r\nSubject: hi\r\n\r\nX-Spam-Status: body stays\r\n";
        assert_eq!(
            &*strip_own_headers(m),
            b"From: a@b.example\r\nSubject: hi\r\n\r\nX-Spam-Status: body stays\r\n"
        );
        // Regression (review): only the five names we write went.
        let m =
            b"X-Spam-Report: all clear\r\nX-Spam-Checker-Version: x\r\nX-Spammy: kept\r\n\r\nb\r\n";
        assert_eq!(&*strip_own_headers(m), b"X-Spammy: kept\r\n\r\nb\r\n");
    }

    #[test]
    fn clean_message_is_untouched() {
        let m = b"Subject: hi\r\n\r\nbody\r\n";
        assert!(matches!(
            strip_own_headers(m),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn tag_headers_carry_score_status_and_rules() {
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.hit("B_RULE", 3.0);
        ctx.hit("A_RULE", 2.5);
        let t = Thresholds {
            tag: 5.0,
            quarantine: 10.0,
            reject: 15.0,
        };
        let h = verdict_headers(&ctx, Verdict::Tag, &t);
        assert!(
            h.starts_with("X-Spam-Score: 5.50\r\nX-Spam-Status: Yes, score=5.50"),
            "{h}"
        );
        assert!(
            h.contains("X-Spam-Rules: A_RULE=2.50, B_RULE=3.00\r\n"),
            "{h}"
        );
        // Regression (review): 4.996 under a tag of 5 read 5.00 on a message judged clean.
        let mut close = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        close.hit("A_RULE", 2.499);
        close.hit("B_RULE", 2.497);
        let h = verdict_headers(&close, Verdict::Accept, &t);
        assert!(h.starts_with("X-Spam-Score: 4.99\r\n"), "{h}");
        assert!(h.contains("tag=5.0 quarantine=10.0 reject=15.0\r\n"), "{h}");
        // Regression (review): thresholds were rounded to one decimal, so 4.97 over a tag
        // of 4.96 read `Yes, score=4.97 tag=5.0`.
        let near = Thresholds {
            tag: 4.96,
            quarantine: 9.96,
            reject: 14.955,
        };
        let mut over = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        over.hit("A_RULE", 4.97);
        let h = verdict_headers(&over, Verdict::Tag, &near);
        assert!(
            h.contains("Yes, score=4.97 tag=4.96 quarantine=9.96 reject=14.955\r\n"),
            "{h}"
        );
        // Regression (review against GUIDE): with no rule scored the header was left out.
        let clean = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        let h = verdict_headers(&clean, Verdict::Accept, &t);
        assert!(h.ends_with("X-Spam-Rules: none\r\n"), "{h}");
        let long: Vec<String> = (0..30).map(|i| format!("RULE_NUMBER_{i}=1.00")).collect();
        assert!(fold("X-Spam-Rules:", &long)
            .split("\r\n")
            .all(|l| l.len() <= 80));
    }
}
