//! `[antivirus]`: where clamd listens and what a message gets when it cannot be scanned.

use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix:/path/to/clamd.ctl`.
    Unix(PathBuf),
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Tcp(a) => write!(f, "tcp://{a}"),
            ClamdAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What a message gets when clamd is down, slow or answers an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvFailure {
    /// Judge it without the scan and add `ANTIVIRUS_UNAVAILABLE`.
    Open,
    /// Answer `451 4.3.0` so the sender retries later.
    Tempfail,
}

/// What is sent to clamd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvScope {
    /// Each attached file, decoded; mail without attachments is not sent at all.
    Attachments,
    /// The whole message as received (clamd decodes the MIME itself).
    Message,
}

/// The validated `[antivirus]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntivirusConfig {
    /// clamd's address; `None` turns the scan off.
    pub clamd: Option<ClamdAddress>,
    /// Bound on scanning one message (connecting, sending, clamd's answer).
    pub timeout: Duration,
    /// Behaviour when the scan fails.
    pub on_failure: AvFailure,
    /// Most bytes sent per stream: clamd's `StreamMaxLength` (longer data is cut there).
    pub max_stream_bytes: usize,
    /// What is scanned.
    pub scan: AvScope,
}

impl Default for AntivirusConfig {
    fn default() -> Self {
        RawAntivirus::default().validate(&mut Problems::default())
    }
}

/// `[antivirus]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAntivirus {
    clamd: Option<String>,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    on_failure: String,
    max_stream_bytes: usize,
    scan: String,
}

impl Default for RawAntivirus {
    fn default() -> Self {
        Self {
            clamd: None,
            timeout: Duration::from_secs(30),
            on_failure: "tempfail".into(),
            // clamd's own default StreamMaxLength.
            max_stream_bytes: 25 * 1024 * 1024,
            scan: "attachments".into(),
        }
    }
}

/// Parses `tcp://host:port` or `unix:/path` (also `unix:///path`).
fn parse_address(text: &str) -> Result<ClamdAddress, String> {
    if let Some(rest) = text.strip_prefix("tcp://") {
        let rest = rest.trim_end_matches('/');
        let port = rest
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        return match port {
            Some((host, Ok(p))) if !host.is_empty() && p != 0 => {
                Ok(ClamdAddress::Tcp(rest.to_string()))
            }
            _ => Err(format!("{text:?}: expected tcp://HOST:PORT")),
        };
    }
    if let Some(rest) = text.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.starts_with('/') {
            return Ok(ClamdAddress::Unix(PathBuf::from(path)));
        }
        return Err(format!("{text:?}: expected unix:/absolute/path"));
    }
    Err(format!(
        "{text:?}: expected tcp://HOST:PORT or unix:/absolute/path"
    ))
}

impl RawAntivirus {
    pub(super) fn validate(self, problems: &mut Problems) -> AntivirusConfig {
        let clamd = self.clamd.as_deref().and_then(|c| {
            parse_address(c)
                .map_err(|e| problems.bad("antivirus.clamd", &e))
                .ok()
        });
        let on_failure = match self.on_failure.as_str() {
            "open" => AvFailure::Open,
            "tempfail" => AvFailure::Tempfail,
            _ => {
                problems.bad("antivirus.on_failure", "must be \"open\" or \"tempfail\"");
                AvFailure::Tempfail
            }
        };
        let scan = match self.scan.as_str() {
            "attachments" => AvScope::Attachments,
            "message" => AvScope::Message,
            _ => {
                problems.bad("antivirus.scan", "must be \"attachments\" or \"message\"");
                AvScope::Attachments
            }
        };
        time_limit(problems, "antivirus.timeout", self.timeout, true);
        if self.max_stream_bytes == 0 {
            problems.bad("antivirus.max_stream_bytes", "must be at least 1");
        }
        AntivirusConfig {
            clamd,
            timeout: self.timeout,
            on_failure,
            max_stream_bytes: self.max_stream_bytes.max(1),
            scan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (AntivirusConfig, Vec<String>) {
        let raw: RawAntivirus = toml::from_str(text).unwrap();
        let mut problems = Problems::default();
        let c = raw.validate(&mut problems);
        (c, problems.into_lines())
    }

    #[test]
    fn off_by_default_with_tempfail_and_clamd_stream_limit() {
        let (c, problems) = parse("");
        assert!(problems.is_empty());
        assert_eq!(c.clamd, None);
        assert_eq!(c.on_failure, AvFailure::Tempfail);
        assert_eq!(c.max_stream_bytes, 25 << 20);
        assert_eq!(c.scan, AvScope::Attachments);
        assert_eq!(c, AntivirusConfig::default());
    }

    #[test]
    fn tcp_and_unix_addresses() {
        let (c, _) = parse(r#"clamd = "tcp://127.0.0.1:3310""#);
        assert_eq!(c.clamd, Some(ClamdAddress::Tcp("127.0.0.1:3310".into())));
        let (c, _) = parse(r#"clamd = "tcp://[::1]:3310""#);
        assert_eq!(c.clamd, Some(ClamdAddress::Tcp("[::1]:3310".into())));
        for text in [
            r#"clamd = "unix:/run/clamav/clamd.ctl""#,
            r#"clamd = "unix:///run/clamav/clamd.ctl""#,
        ] {
            let (c, problems) = parse(text);
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(
                c.clamd,
                Some(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()))
            );
        }
    }

    #[test]
    fn every_bad_key_is_named() {
        let (_, problems) = parse(
            r#"clamd = "127.0.0.1:3310"
               on_failure = "closed"
               scan = "everything"
               timeout = "0s"
               max_stream_bytes = 0"#,
        );
        let all = problems.join("\n");
        for key in [
            "antivirus.clamd",
            "antivirus.on_failure",
            "antivirus.scan",
            "antivirus.timeout",
            "antivirus.max_stream_bytes",
        ] {
            assert!(all.contains(key), "{key} missing from {all}");
        }
        for bad in ["tcp://host", "tcp://:3310", "unix:relative/path"] {
            let (_, problems) = parse(&format!("clamd = {bad:?}"));
            assert_eq!(problems.len(), 1, "{bad}");
        }
    }
}
