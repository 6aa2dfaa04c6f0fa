//! `[state]`: where the tier's shared memory lives (greylisting, rate limits, connection
//! memory, the classifier): an embedded store on disk for one gateway, Redis for a tier.

use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Which store holds the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackendConfig {
    /// A durable file under the spool directory (one gateway).
    Embedded {
        /// The database file.
        path: PathBuf,
    },
    /// One Redis server (or several seed nodes of a Redis Cluster).
    Redis {
        /// `redis://host:port/` URLs; one for a single server, the seeds of a cluster.
        urls: Vec<String>,
        /// Use the cluster client.
        cluster: bool,
    },
}

/// What a check does when the state it needs cannot be reached in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Skip the check and add the symbol `STATE_UNAVAILABLE`.
    Open,
    /// Answer `451 4.3.0` at the stage that needed state.
    Closed,
}

/// The validated `[state]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// The store.
    pub backend: StateBackendConfig,
    /// Bound on every state call.
    pub timeout: Duration,
    /// Behaviour when the store is unreachable.
    pub on_failure: OnFailure,
    /// Prefix of every key (several deployments can share one Redis).
    pub key_prefix: String,
}

/// `redis = "url"` or `redis = ["url", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `[state]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawState {
    backend: String,
    path: Option<PathBuf>,
    redis: Option<OneOrMany>,
    cluster: bool,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    on_failure: String,
    key_prefix: String,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: "embedded".into(),
            path: None,
            redis: None,
            cluster: false,
            timeout: Duration::from_millis(200),
            on_failure: "open".into(),
            key_prefix: "mxguard:".into(),
        }
    }
}

impl RawState {
    /// Validates the section; the embedded store defaults to `SPOOL/state.redb`.
    pub(super) fn validate(
        self,
        spool_dir: &std::path::Path,
        problems: &mut Problems,
    ) -> StateConfig {
        let urls = match self.redis {
            Some(OneOrMany::One(url)) => vec![url],
            Some(OneOrMany::Many(urls)) => urls,
            None => Vec::new(),
        };
        let backend = match self.backend.as_str() {
            "embedded" => {
                if !urls.is_empty() {
                    problems.bad("state.redis", "only used with backend = \"redis\"");
                }
                // Said, not ignored: an operator who meant a Redis cluster gets one store
                // per gateway instead, and a tier that shares nothing (review).
                if self.cluster {
                    problems.bad("state.cluster", "only used with backend = \"redis\"");
                }
                StateBackendConfig::Embedded {
                    path: self.path.unwrap_or_else(|| spool_dir.join("state.redb")),
                }
            }
            "redis" => {
                if urls.is_empty() {
                    problems.bad("state.redis", "a redis://host:port/ URL is required");
                }
                for url in &urls {
                    // Never the password in a message that goes to the journal.
                    let shown = redacted(url);
                    if url.starts_with("rediss://") {
                        // The client is built without TLS: `check` took the URL and
                        // `serve` then refused to start.
                        problems.bad(
                            "state.redis",
                            &format!("{shown:?}: TLS to Redis (rediss://) is not built in; use redis:// over a private network or a TLS tunnel (stunnel, spiped)"),
                        );
                    } else if !url.starts_with("redis://") {
                        problems.bad("state.redis", &format!("{shown:?} is not a redis:// URL"));
                    }
                }
                if urls.len() > 1 && !self.cluster {
                    problems.bad(
                        "state.redis",
                        "several URLs are the seeds of a cluster: set cluster = true",
                    );
                }
                if self.path.is_some() {
                    problems.bad("state.path", "only used with backend = \"embedded\"");
                }
                StateBackendConfig::Redis {
                    urls,
                    cluster: self.cluster,
                }
            }
            _ => {
                problems.bad("state.backend", "must be \"embedded\" or \"redis\"");
                StateBackendConfig::Embedded {
                    path: spool_dir.join("state.redb"),
                }
            }
        };
        time_limit(problems, "state.timeout", self.timeout, true);
        let on_failure = match self.on_failure.as_str() {
            "open" => OnFailure::Open,
            "closed" => OnFailure::Closed,
            _ => {
                problems.bad("state.on_failure", "must be \"open\" or \"closed\"");
                OnFailure::Open
            }
        };
        StateConfig {
            backend,
            timeout: self.timeout,
            on_failure,
            key_prefix: self.key_prefix,
        }
    }
}

/// A Redis URL without its password (`redis://:secret@host/` → `redis://:***@host/`).
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;
    use crate::config::Config;
    use std::path::Path;

    /// Regression (review): `cluster = true` with the embedded store was taken without a
    /// word, so a tier meant to share a Redis cluster ran on one store per gateway.
    #[test]
    fn cluster_without_redis_is_refused() {
        let text = "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n\
                    [state]\ncluster = true\n";
        let err = Config::from_toml(Path::new("t.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("state.cluster"), "{err}");
    }

    /// Regression (review): a refused Redis URL was printed whole, its password with it,
    /// to `check`'s output and the journal.
    #[test]
    fn a_redis_url_is_shown_without_its_password() {
        assert_eq!(
            redacted("rediss://:s3cret@10.0.0.30/"),
            "rediss://:***@10.0.0.30/"
        );
        assert_eq!(
            redacted("redis://app:s3cret@10.0.0.30:6379/0"),
            "redis://app:***@10.0.0.30:6379/0"
        );
        assert_eq!(redacted("redis://10.0.0.30/"), "redis://10.0.0.30/");
        assert_eq!(redacted("nonsense"), "nonsense");
    }
}
