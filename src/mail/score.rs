//! How a message's score is written where people and filters read it (the `X-Spam-*`
//! headers, the verdict stamp): two decimals, never past a threshold the score is under.

/// `score` (rounded to a thousandth, as verdicts read it) with two decimals, rounded down:
/// rounded to nearest, 4.996 under a `tag` of 5 read `score=5.00` on a message judged
/// clean, and a filter downstream testing the header filed it as spam (review).
pub fn hundredths_down(score: f64) -> String {
    let thousandths = (score * 1000.0).round() as i64;
    let hundredths = thousandths.div_euclid(10);
    let sign = if hundredths < 0 { "-" } else { "" };
    let abs = hundredths.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::hundredths_down;

    #[test]
    fn scores_are_written_rounded_down() {
        assert_eq!(hundredths_down(4.996), "4.99");
        assert_eq!(hundredths_down(-1.005), "-1.01");
        assert_eq!(hundredths_down(0.29), "0.29");
        assert_eq!(hundredths_down(-0.004), "-0.01");
        assert_eq!(hundredths_down(12.0), "12.00");
    }
}
