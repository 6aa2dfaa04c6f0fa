//! `mxguard stamp verify FILE`: for the internal server's side (a Sieve or milter hook), is
//! this message's verdict stamp one of our tier's, made for this message, and fresh?

use mxguard::config::Config;
use mxguard::tier::Stamp;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// Exit 0 with the stamp's fields when valid; 1 with the reason otherwise; 2 when it could
/// not look (configuration, no `[tier]`, a file it cannot read or bigger than the gateway
/// could have delivered, an answer it cannot write), so a hook can tell "forged" from
/// "could not check". A stamp older
/// than `max_age` is refused; by default, older than any mail the tier can still deliver:
/// a message keeps the stamp of its acceptance while it waits in the queue (an internal
/// server down for hours) or in quarantine, and `tier.stamp_max_age` (the trust a peer
/// gives a fresh stamp) refused all of it after an hour.
pub fn verify(
    config_path: &Path,
    file: &Path,
    max_age: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    let could_not_check = ExitCode::from(2);
    let config = match Config::load_elsewhere(config_path) {
        Ok(c) => c,
        Err(e) => {
            super::report(&anyhow::Error::new(e));
            return Ok(could_not_check);
        }
    };
    let Some(tier) = &config.tier else {
        eprintln!(
            "{}: no [tier] section: no key to verify stamps with",
            config_path.display()
        );
        return Ok(could_not_check);
    };
    // The gateway takes up to `message_size_bytes`, then adds its trace and stamp fields,
    // may convert 8-bit text to quoted-printable for a server without 8BITMIME (each 8-bit
    // byte `=XX`, plus soft breaks: up to about 3.2 times as long) and signs that copy, and
    // the internal server adds its own fields: room for all of that.
    let limit = config
        .server
        .limits
        .message_size_bytes
        .saturating_mul(4)
        .saturating_add(1 << 20);
    let raw = match read_bounded(file, limit) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(could_not_check);
        }
    };
    // A message a delivery agent wrote as an mbox file (its `From ` line first, `>From `
    // in the body) is read as the message it holds, as `learn` and `scan` read one.
    let messages = mxguard::mail::mbox::messages(&raw);
    let message = match messages.as_slice() {
        [one] => one,
        more => {
            eprintln!(
                "{}: an mbox folder of {} messages: give one message",
                file.display(),
                more.len()
            );
            return Ok(could_not_check);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let max_age = max_age.unwrap_or_else(|| deliverable_age(&config));
    let (line, code) = match Stamp::verify(&tier.stamp_keys(), message, now, max_age) {
        Ok(stamp) => (
            format!(
                "valid: gateway {} verdict {} score {} at {} (policy {})",
                stamp.gateway, stamp.verdict, stamp.score, stamp.time, stamp.fingerprint
            ),
            ExitCode::SUCCESS,
        ),
        Err(e) => (format!("invalid: {e}"), ExitCode::FAILURE),
    };
    // An answer that cannot be written is no answer: not 1, which says "forged".
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        return Ok(could_not_check);
    }
    Ok(code)
}

/// Reads the message, at most `limit` bytes: a hook may hand a pipe (`/dev/stdin`), so
/// any file kind is read, but never without end (`/dev/zero`).
fn read_bounded(file: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    if !super::files::read_at_most(std::fs::File::open(file)?, limit, &mut message)? {
        return Err(std::io::Error::other(format!(
            "bigger than {limit} bytes (4 times server.limits.message_size_bytes, and 1 MiB)"
        )));
    }
    Ok(message)
}

/// The oldest stamp mail the tier still delivers can carry: queued for
/// `max_queue_lifetime`, then quarantined for `quarantine_lifetime`, which 0 makes for ever.
fn deliverable_age(config: &Config) -> std::time::Duration {
    let quarantine = config.spool.quarantine_lifetime;
    if quarantine.is_zero() {
        return std::time::Duration::MAX;
    }
    config.relay.max_queue_lifetime.saturating_add(quarantine)
}

/// `--max-age`: seconds or a humantime duration (`7d`, `36h`), more than zero. Only
/// compared with a stamp's age, never added to the clock, so no upper bound (the audit's
/// timeout parser, a day at most, refused a week).
pub fn parse_max_age(s: &str) -> Result<std::time::Duration, String> {
    super::positive_duration(s, "the age")
}

#[cfg(test)]
mod tests {
    use super::{deliverable_age, parse_max_age};
    use mxguard::config::Config;
    use std::path::Path;
    use std::time::Duration;

    /// Regression (review): `quarantine_lifetime = "0s"` keeps quarantined mail for ever,
    /// but was added as zero: a message released from quarantine after
    /// `max_queue_lifetime` had a stamp `stamp verify` called too old (forged, to a hook).
    #[test]
    fn mail_kept_in_quarantine_for_ever_has_no_stamp_age_limit() {
        let relay = "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n";
        let config = |quarantine: &str| {
            let text = format!("{relay}[spool]\nquarantine_lifetime = \"{quarantine}\"\n");
            Config::from_toml(Path::new("t.toml"), &text).unwrap()
        };
        assert_eq!(deliverable_age(&config("0s")), Duration::MAX);
        let month = config("30d");
        assert_eq!(
            deliverable_age(&month),
            month.relay.max_queue_lifetime + Duration::from_secs(30 * 86_400)
        );
    }

    #[test]
    fn max_ages_of_days_and_weeks_are_taken() {
        assert_eq!(parse_max_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_max_age("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            parse_max_age("35days"),
            Ok(Duration::from_secs(35 * 86_400))
        );
        assert!(parse_max_age("0").is_err());
        assert!(parse_max_age("soon").is_err());
    }
}
