//! `[spool]`, `[metrics]` and `[log]`: where the gateway keeps mail, who may read its admin
//! listener, and how it logs.

use super::networks::NetworkList;
use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// An admin connection lives at most this long (a keep-alive scraper reconnects), so a
/// longer `metrics.header_timeout` could never be waited out.
pub const ADMIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Default `spool.min_free_bytes`: four messages of the default maximum size.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;

/// Default `spool.recycle_files`: files for a second of a busy gateway.
pub const DEFAULT_RECYCLE_FILES: usize = 4096;

/// Most `spool.recycle_files`: the pool is topped up to half while the spool is idle, so a
/// huge value would fill the file system's inodes with empty files.
pub const MAX_RECYCLE_FILES: usize = 100_000;

/// Spool location.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory holding `tmp/`, `queue/` and friends.
    pub dir: PathBuf,
    /// Free space under which `/healthz` fails, so load balancers move away before
    /// every message gets 452 (0: only a failing write fails it).
    pub min_free_bytes: u64,
    /// Files of delivered messages kept to be written over by new ones (0: every message
    /// gets a new file and every delivery deletes one).
    pub recycle_files: usize,
    /// How long a quarantined message is kept before it is deleted (zero: for ever).
    pub quarantine_lifetime: Duration,
}

/// Admin/metrics listener.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; `None` disables the listener.
    pub listen: Option<SocketAddr>,
    /// Client networks that may read any admin path; others get 403.
    pub allow: NetworkList,
    /// Of those, the networks that may also read the console (`/`, `/message/ID`: senders,
    /// recipients, subjects), which tier peers and probes never need; `None`: all of
    /// `allow`.
    pub console_allow: Option<NetworkList>,
    /// Admin connections kept open at once; a new one evicts the oldest.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Host names the admin endpoints answer to besides IP addresses, `localhost` and
    /// `server.hostname` (lower case): a request naming any other host is a browser led
    /// there by DNS rebinding, and is refused.
    pub hostnames: Vec<String>,
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
    min_free_bytes: u64,
    recycle_files: usize,
    #[serde(with = "humantime_serde")]
    quarantine_lifetime: Duration,
}

impl Default for RawSpool {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/spool"),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            recycle_files: DEFAULT_RECYCLE_FILES,
            quarantine_lifetime: Duration::from_secs(30 * 86_400),
        }
    }
}

impl RawSpool {
    pub(super) fn validate(self, problems: &mut Problems) -> SpoolConfig {
        time_limit(
            problems,
            "spool.quarantine_lifetime",
            self.quarantine_lifetime,
            false,
        );
        if self.recycle_files > MAX_RECYCLE_FILES {
            problems.bad(
                "spool.recycle_files",
                &format!("must be at most {MAX_RECYCLE_FILES}"),
            );
        }
        SpoolConfig {
            dir: self.dir,
            min_free_bytes: self.min_free_bytes,
            recycle_files: self.recycle_files,
            quarantine_lifetime: self.quarantine_lifetime,
        }
    }
}

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    /// `IP:PORT`, or `"off"` (TOML has no null to write `None` with).
    listen: String,
    allow: Vec<String>,
    console_allow: Option<Vec<String>>,
    max_connections: usize,
    #[serde(with = "humantime_serde")]
    header_timeout: Duration,
    hostnames: Vec<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9425".into(),
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            console_allow: None,
            // Scrapers and probes need a handful; a flood of idle connections only ever
            // pushes out the oldest of these.
            max_connections: 64,
            // Prometheus and load balancers send a request in one segment at once.
            header_timeout: Duration::from_secs(5),
            hostnames: Vec::new(),
        }
    }
}

impl RawMetrics {
    /// The network-list files `allow` and `console_allow` name.
    pub(super) fn named_network_files(&self) -> impl Iterator<Item = std::path::PathBuf> + '_ {
        super::networks::file_entries(&self.allow).chain(
            self.console_allow
                .iter()
                .flat_map(|l| super::networks::file_entries(l)),
        )
    }

    pub(super) fn validate(self, problems: &mut Problems) -> MetricsConfig {
        let listen = match self.listen.trim() {
            "off" => None,
            address => address.parse::<SocketAddr>().map_or_else(
                |_| {
                    problems.bad("metrics.listen", "must be IP:PORT, or \"off\"");
                    None
                },
                Some,
            ),
        };
        let allow = NetworkList::load("metrics.allow", &self.allow, problems);
        let console_allow = self
            .console_allow
            .as_ref()
            .map(|list| NetworkList::load("metrics.console_allow", list, problems));
        problems.at_most("metrics.max_connections", self.max_connections, 100_000);
        if self.max_connections == 0 {
            problems.bad("metrics.max_connections", "must be at least 1");
        }
        time_limit(
            problems,
            "metrics.header_timeout",
            self.header_timeout,
            true,
        );
        let hostnames = self
            .hostnames
            .iter()
            .map(|h| super::problems::domain_key(h.trim()))
            .collect();
        MetricsConfig {
            listen,
            allow,
            console_allow,
            max_connections: self.max_connections.max(1),
            header_timeout: self.header_timeout,
            hostnames,
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
        // The same parser `serve` starts logging with, which falls back to `info` on a
        // level it cannot read: the typo is caught here, by name, and not in silence.
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            problems.bad(
                "log.level",
                &format!("{:?} is not a log filter: {e}", self.level),
            );
        } else if self.level.split(',').all(|d| d.trim().is_empty()) {
            problems.bad(
                "log.level",
                &format!(
                    "{:?} holds no directive, and a filter without one lets no line through: \
                     write a level, e.g. \"info\"",
                    self.level
                ),
            );
        } else if !lets_the_gateways_lines_through(&self.level) {
            problems.bad(
                "log.level",
                &format!(
                    "{:?} lets no line of mxguard's through: a bare word that is no level \
                     (off, error, warn, info, debug, trace) is read as a target; \
                     write a level, e.g. \"warn\" or \"info,hickory_resolver=debug\"",
                    self.level
                ),
            );
        }
        LogConfig {
            format,
            level: self.level,
        }
    }
}

/// Whether the log filter `filter` enables any line of the gateway's own: one of its
/// directives is a bare level (the default for every target), has no target
/// (`[span]=debug`), or names `mxguard` or a module below it. tracing reads a bare word
/// that is no level as a target at every level, so `level = "warning"` (or `"verbose"`)
/// passed as a filter and the gateway logged nothing at all, its errors included (review).
/// A filter of no directive at all enables nothing (`EnvFilter::try_new("")` has no
/// default directive).
fn lets_the_gateways_lines_through(filter: &str) -> bool {
    // Split as `EnvFilter` splits, on every comma (it takes no comma inside a directive).
    let mut directives = filter.split(',').map(str::trim).filter(|d| !d.is_empty());
    directives.any(|d| {
        let target = d.split(['[', '=']).next().unwrap_or_default().trim();
        let bare = !d.contains(['[', '=']);
        target.is_empty()
            || (bare
                && target
                    .parse::<tracing_subscriber::filter::LevelFilter>()
                    .is_ok())
            || target == "mxguard"
            || target.starts_with("mxguard::")
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;
    use std::time::Duration;

    /// Regression (review): `log.level = "warning"` loaded (tracing reads the word as a
    /// target) and the gateway logged nothing, not even its errors.
    #[test]
    fn a_log_level_that_silences_the_gateway_is_refused() {
        for level in ["warning", "verbose", "notice", "hickory_resolver=debug"] {
            let text = format!("{RELAY}[log]\nlevel = \"{level}\"\n");
            let err = Config::from_toml(Path::new("t.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("log.level"), "{level}: {err}");
            assert!(
                err.contains("lets no line of mxguard's through"),
                "{level}: {err}"
            );
        }
        for level in [
            "info",
            "WARN",
            "off",
            "mxguard=debug",
            "mxguard::relay=trace",
            "info,hickory_resolver=debug",
            "warning,error",
            "[session]=debug",
            "mxguard[session{client=1}]=debug",
        ] {
            let text = format!("{RELAY}[log]\nlevel = \"{level}\"\n");
            let c = Config::from_toml(Path::new("t.toml"), &text);
            assert!(c.is_ok(), "{level}: {:?}", c.err().map(|e| e.to_string()));
        }
    }

    /// Regression (review of this stop's diff): a filter of no directive (`level = ""`,
    /// or only commas) passed as "tracing's default", but the filter `serve` builds from
    /// it enables nothing: the gateway logged nothing at all, its errors included.
    #[test]
    fn an_empty_log_filter_is_refused() {
        use tracing_subscriber::filter::LevelFilter;
        let silent = tracing_subscriber::EnvFilter::try_new("").unwrap();
        assert_eq!(silent.max_level_hint(), Some(LevelFilter::OFF));
        for level in ["", ",", ",,"] {
            let text = format!("{RELAY}[log]\nlevel = \"{level}\"\n");
            let err = Config::from_toml(Path::new("t.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("log.level"), "{level:?}: {err}");
            assert!(err.contains("holds no directive"), "{level:?}: {err}");
        }
    }

    const RELAY: &str = "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n";

    #[test]
    fn admin_limits_and_spool_threshold_have_safe_defaults() {
        let c = Config::from_toml(Path::new("t.toml"), RELAY).unwrap();
        assert_eq!(c.metrics.max_connections, 64);
        assert_eq!(c.metrics.header_timeout, Duration::from_secs(5));
        assert_eq!(c.spool.min_free_bytes, super::DEFAULT_MIN_FREE_BYTES);
        assert_eq!(c.spool.recycle_files, super::DEFAULT_RECYCLE_FILES);
        let text = format!("{RELAY}[spool]\nrecycle_files = 0\n");
        let off = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        assert_eq!(off.spool.recycle_files, 0, "0 turns recycling off");
    }

    /// Regression (review): `recycle_files = 100000000` was taken, and the idle spool
    /// made empty files (24,000 a second) until the file system ran out of inodes.
    #[test]
    fn a_recycle_pool_that_would_eat_the_inodes_is_refused() {
        let text = format!("{RELAY}[spool]\nrecycle_files = 100000000\n");
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spool.recycle_files"), "{err}");
        let text = format!(
            "{RELAY}[spool]\nrecycle_files = {}\n",
            super::MAX_RECYCLE_FILES
        );
        assert!(Config::from_toml(Path::new("t.toml"), &text).is_ok());
    }

    #[test]
    fn the_admin_listener_can_be_switched_off() {
        let c = Config::from_toml(Path::new("t.toml"), RELAY).unwrap();
        assert_eq!(c.metrics.listen, Some(([127, 0, 0, 1], 9425).into()));
        let text = format!("{RELAY}[metrics]\nlisten = \"off\"\n");
        let off = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        assert_eq!(off.metrics.listen, None);
        let text = format!("{RELAY}[metrics]\nlisten = \"localhost:9425\"\n");
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.listen"), "{err}");
    }

    /// Regression (review): a header wait past the connection's five-minute life was
    /// taken and silently cut to five minutes. It is warned of (refused, it would have
    /// stopped a configuration that started before from loading).
    #[test]
    fn a_header_wait_longer_than_an_admin_connection_lives_is_warned_of() {
        let text = format!("{RELAY}[metrics]\nheader_timeout = \"6m\"\n");
        let config = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        let doubts = config.doubtful_settings();
        assert!(
            doubts
                .iter()
                .any(|(key, _)| *key == "metrics.header_timeout"),
            "{doubts:?}"
        );
        let text = format!("{RELAY}[metrics]\nheader_timeout = \"5m\"\n");
        let config = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        assert!(config
            .doubtful_settings()
            .iter()
            .all(|(key, _)| *key != "metrics.header_timeout"));
    }

    #[test]
    fn zero_admin_limits_are_refused_by_name() {
        let text = format!(
            "{RELAY}[metrics]\nmax_connections = 0\nheader_timeout = \"0s\"\n\
             [spool]\nmin_free_bytes = 0\n"
        );
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.max_connections"), "{err}");
        assert!(err.contains("metrics.header_timeout"), "{err}");
        assert!(
            !err.contains("min_free_bytes"),
            "0 turns the threshold off: {err}"
        );
    }

    /// Regression (review): a `log.level` that is no filter passed `check`, and `serve`
    /// then logged at `info` without a word.
    #[test]
    fn a_log_level_that_is_no_filter_is_refused() {
        let text = format!("{RELAY}[log]\nlevel = \"mxguard=loud\"\n");
        let err = Config::from_toml(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.level"), "{err}");
        let fine = format!("{RELAY}[log]\nlevel = \"info,mxguard::relay=debug\"\n");
        assert!(Config::from_toml(Path::new("t.toml"), &fine).is_ok());
    }
}
