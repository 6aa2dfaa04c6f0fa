//! Judging message files without SMTP or network, as `scan`, `check` and the tuning tools
//! do: the same policy as the gateway's end-of-data stage, minus what needs a session.

use super::{ClientInfo, Context, Policy, PolicyError, Services, Stage, Verdict};
use crate::config::{Config, ConfigError};
use std::path::Path;
use std::sync::Arc;

/// Why an offline policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rules are broken.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// One judged message.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Verdict.
    pub verdict: Verdict,
    /// Total score.
    pub score: f64,
    /// Symbols hit with their scores.
    pub hits: Vec<(String, f64)>,
}

/// Builds the offline policy of a configuration file: recipient verification and DNS do
/// not apply to message files.
pub fn load(path: &Path) -> Result<Policy, OfflineError> {
    build(Config::load(path)?)
}

/// Builds the offline policy of a loaded configuration.
pub fn build(config: Config) -> Result<Policy, OfflineError> {
    Ok(Policy::build(Arc::new(config), &Services::default())?)
}

/// Judges raw message bytes exactly as the end-of-data stage would.
pub fn judge(policy: &Policy, raw: &[u8]) -> Judgement {
    let mut ctx = Context::new(ClientInfo::new(std::net::IpAddr::from([127, 0, 0, 1])));
    ctx.message = to_crlf(raw).into();
    let decision = futures::executor::block_on(policy.evaluate(Stage::Data, &mut ctx));
    let (verdict, _) = policy.conclude(decision, &ctx);
    Judgement {
        verdict,
        score: ctx.score(),
        hits: ctx
            .symbols
            .iter()
            .map(|s| (s.name.clone(), s.score))
            .collect(),
    }
}

/// Files on disk often have LF endings; the gateway always sees CRLF.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_files_become_crlf_and_crlf_stays() {
        assert_eq!(to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
    }
}
