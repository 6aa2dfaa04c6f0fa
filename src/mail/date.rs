//! RFC 5322 dates (`Tue, 01 Jul 2025 10:00:00 +0000`) for trace headers and DSNs.

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
