//! The TOML file as written by the operator: every key optional, defaults applied here.

use super::{DnsConfig, Limits};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Top level of `mxguard.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub relay: RawRelay,
    pub spool: RawSpool,
    pub policy: RawPolicy,
    pub dns: DnsConfig,
    pub metrics: RawMetrics,
    pub log: RawLog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    pub banner: String,
    pub bare_line_ending: String,
    #[serde(with = "humantime_serde")]
    pub greet_delay: Duration,
    pub limits: Limits,
    pub tls: Option<RawTls>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            hostname: String::new(),
            banner: "ESMTP mxguard".into(),
            bare_line_ending: "reject".into(),
            greet_delay: Duration::ZERO,
            limits: Limits::default(),
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRelay {
    pub domains: Vec<String>,
    pub internal: Vec<SocketAddr>,
    pub dsn_via: Vec<SocketAddr>,
    pub tls: String,
    pub helo_name: String,
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    pub retry_factor: f64,
    #[serde(with = "humantime_serde")]
    pub max_queue_lifetime: Duration,
    pub recipients: RawRecipients,
}

impl Default for RawRelay {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            internal: Vec::new(),
            dsn_via: Vec::new(),
            tls: "opportunistic".into(),
            helo_name: String::new(),
            workers: 4,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            retry_factor: 2.0,
            max_queue_lifetime: Duration::from_secs(5 * 24 * 3600),
            recipients: RawRecipients::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecipients {
    /// Domain → path of a file listing its valid recipients.
    pub lists: BTreeMap<String, PathBuf>,
    pub callout: bool,
    #[serde(with = "humantime_serde")]
    pub callout_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub positive_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    pub cache_size: usize,
}

impl Default for RawRecipients {
    fn default() -> Self {
        Self {
            lists: BTreeMap::new(),
            callout: false,
            callout_timeout: Duration::from_secs(20),
            positive_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(600),
            cache_size: 100_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpool {
    pub dir: PathBuf,
}

impl Default for RawSpool {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/spool"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    pub gtube: bool,
    pub rules_dir: Option<PathBuf>,
    pub tag: f64,
    pub quarantine: f64,
    pub reject: f64,
    /// Rule name → action demanded when it hits (`reject`, `tempfail`, `discard`, `quarantine`).
    pub actions: BTreeMap<String, String>,
    /// Domain → threshold overrides.
    pub domains: BTreeMap<String, RawThresholds>,
    pub dnsbl: Vec<RawDnsList>,
    pub dnsbl_threshold: Option<f64>,
    pub uribl: Vec<RawDnsList>,
    pub uribl_max_domains: usize,
    pub fcrdns: bool,
    pub auth: bool,
    pub dmarc_reject: bool,
    pub helo_checks: bool,
    pub sender_domain_check: bool,
    /// Checks whose DNS lookup failures (timeout, SERVFAIL) tempfail instead of scoring nothing.
    pub dns_tempfail: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsList {
    pub zone: String,
    #[serde(default)]
    pub weight: f64,
    pub symbol: String,
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            gtube: true,
            rules_dir: None,
            tag: 5.0,
            quarantine: 10.0,
            reject: 15.0,
            actions: BTreeMap::new(),
            domains: BTreeMap::new(),
            dnsbl: Vec::new(),
            dnsbl_threshold: None,
            uribl: Vec::new(),
            uribl_max_domains: 20,
            fcrdns: true,
            auth: true,
            dmarc_reject: true,
            helo_checks: true,
            sender_domain_check: true,
            dns_tempfail: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawThresholds {
    pub tag: Option<f64>,
    pub quarantine: Option<f64>,
    pub reject: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub listen: Option<SocketAddr>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9425))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}
