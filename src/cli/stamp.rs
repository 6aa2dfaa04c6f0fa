//! `mxguard stamp verify FILE`: for the internal server's side (a Sieve or milter hook), is
//! this message's verdict stamp one of our tier's, made for this message, and fresh?

use mxguard::config::Config;
use mxguard::tier::Stamp;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// Exit 0 with the stamp's fields when valid; 1 with the reason otherwise.
pub fn verify(config_path: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let Some(tier) = &config.tier else {
        eprintln!(
            "{}: no [tier] section: no key to verify stamps with",
            config_path.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let message = match std::fs::read(file) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match Stamp::verify(&tier.secret, &message, now, tier.stamp_max_age) {
        Ok(stamp) => {
            println!(
                "valid: gateway {} verdict {} score {} at {} (policy {})",
                stamp.gateway, stamp.verdict, stamp.score, stamp.time, stamp.fingerprint
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("invalid: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
