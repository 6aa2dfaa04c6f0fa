//! RFC 5322 dates (`Tue, 01 Jul 2025 10:00:00 +0000`): written for trace headers and DSNs,
//! read from the messages the policy judges.

use mail_parser::DateTime;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

/// What a date that cannot be formatted falls back to (never happens for real clocks).
const EPOCH: &str = "Thu, 01 Jan 1970 00:00:00 +0000";

/// The current time as an RFC 5322 date in UTC.
pub fn rfc5322_now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Unix seconds as an RFC 5322 date in UTC.
pub fn rfc5322_date(unix: u64) -> String {
    let at = i64::try_from(unix)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format(at)
}

fn format(at: OffsetDateTime) -> String {
    at.format(&Rfc2822).unwrap_or_else(|_| EPOCH.to_owned())
}

/// An RFC 5322 date as Unix seconds. One without a zone (`Mon, 28 Jul 1980 14:01:35`, a
/// ratware habit) is read as UTC, as SpamAssassin and Python's `email` read it, rather than
/// not at all; any year is taken (ratware with a `tm_year` bug writes 0102 for 2002: far in
/// the past, as it should read).
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    DateTime::parse_rfc822(text)
        .or_else(|| DateTime::parse_rfc822(&format!("{text} +0000")))
        .filter(|d| DateTime { year: 2000, ..*d }.is_valid())
        .map(|d| d.to_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_formatted_in_utc() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn now_is_a_plausible_date() {
        let now = rfc5322_now();
        assert!(now.ends_with("+0000"), "{now}");
        assert_ne!(now, EPOCH);
    }
}
