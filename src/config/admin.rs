//! `[spool]`, `[metrics]` and `[log]`: where the gateway keeps mail, who may read its admin
//! listener, and how it logs.

use super::networks::NetworkList;
use super::problems::Problems;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Spool location.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory holding `tmp/`, `queue/` and friends.
    pub dir: PathBuf,
}

/// Admin/metrics listener.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; `None` disables the listener.
    pub listen: Option<SocketAddr>,
    /// Client networks that may read any admin path; others get 403.
    pub allow: NetworkList,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format (overridden by `--log-format`).
    pub format: LogFormat,
    /// Default filter directive (overridden by `RUST_LOG`).
    pub level: String,
}

/// `[spool]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSpool {
    dir: PathBuf,
}

impl Default for RawSpool {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/spool"),
        }
    }
}

impl RawSpool {
    pub(super) fn validate(self) -> SpoolConfig {
        SpoolConfig { dir: self.dir }
    }
}

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    listen: Option<SocketAddr>,
    allow: Vec<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9425))),
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

impl RawMetrics {
    pub(super) fn validate(self, problems: &mut Problems) -> MetricsConfig {
        let allow = NetworkList::load("metrics.allow", &self.allow, problems);
        MetricsConfig {
            listen: self.listen,
            allow,
        }
    }
}

/// `[log]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    format: String,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl RawLog {
    pub(super) fn validate(self, problems: &mut Problems) -> LogConfig {
        let format = match self.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                problems.bad("log.format", "must be \"text\" or \"json\"");
                LogFormat::Text
            }
        };
        LogConfig {
            format,
            level: self.level,
        }
    }
}
