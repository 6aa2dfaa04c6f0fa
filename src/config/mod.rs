//! Configuration: the raw TOML file becomes one validated, immutable [`Config`].
//!
//! Validation reports every bad key at once (not just the first), each named by
//! its TOML path, so an operator fixes a file in one pass.

mod raw;
mod recipients;
pub mod watch;

pub use recipients::RecipientList;

use raw::RawConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors from loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or has a key of the wrong type or an unknown key.
    #[error("{path}: {message}")]
    Syntax {
        /// File that failed.
        path: PathBuf,
        /// Parser message, with line and column.
        message: String,
    },
    /// One or more keys have values that are not acceptable.
    #[error("{path}: invalid configuration:\n{}", problems.join("\n"))]
    Invalid {
        /// File that failed.
        path: PathBuf,
        /// One line per problem: `key: what is wrong`.
        problems: Vec<String>,
    },
}

/// What to do with a bare CR or bare LF inside message data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEnding {
    /// Reject the message at end of data (550 5.6.0); the default.
    Reject,
    /// Rewrite each bare CR or LF to CRLF before the message is spooled.
    Normalize,
}

/// TLS towards the internal servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// Never use STARTTLS.
    Off,
    /// Use STARTTLS when offered; plaintext otherwise. Certificates are not verified.
    Opportunistic,
    /// Refuse to deliver unless STARTTLS succeeds.
    Required,
}

/// Every limit that protects a session or the gateway (`[server.limits]`; every key
/// optional, defaults below).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest command line, CRLF included (RFC 5321 says 512).
    pub command_line_bytes: usize,
    /// Longest text line inside DATA, CRLF included (RFC 5321 says 1000).
    pub text_line_bytes: usize,
    /// Recipients accepted per transaction.
    pub recipients_per_message: usize,
    /// Transactions per session.
    pub messages_per_session: usize,
    /// Largest message, advertised with SIZE and enforced while streaming.
    pub message_size_bytes: usize,
    /// Client errors after which the session is closed with 421.
    pub errors_before_disconnect: u32,
    /// Client errors after which every further error reply is delayed.
    pub errors_before_tarpit: u32,
    /// Delay added to each error reply past `errors_before_tarpit`.
    #[serde(with = "humantime_serde")]
    pub tarpit_delay: Duration,
    /// Longest wait for one command line (or one DATA read).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Longest whole session.
    #[serde(with = "humantime_serde")]
    pub session_duration: Duration,
    /// Slowest acceptable DATA/BDAT transfer after the grace period; 0 disables.
    pub min_data_rate_bytes_per_second: u64,
    /// Time a transfer may run before the minimum rate applies.
    #[serde(with = "humantime_serde")]
    pub data_rate_grace: Duration,
    /// Concurrent sessions in total.
    pub max_sessions: usize,
    /// Concurrent sessions from one client address.
    pub max_sessions_per_ip: usize,
    /// How long running sessions may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            command_line_bytes: 512,
            text_line_bytes: 1000,
            recipients_per_message: 100,
            messages_per_session: 100,
            message_size_bytes: 25 * 1024 * 1024,
            errors_before_disconnect: 20,
            errors_before_tarpit: 5,
            tarpit_delay: Duration::from_secs(1),
            command_timeout: Duration::from_secs(300),
            session_duration: Duration::from_secs(1800),
            min_data_rate_bytes_per_second: 256,
            data_rate_grace: Duration::from_secs(30),
            max_sessions: 500,
            max_sessions_per_ip: 50,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Certificate and key for inbound STARTTLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The inbound SMTP listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Our name in the banner, EHLO reply and `Received:` header.
    pub hostname: String,
    /// Text after the hostname in the 220 banner.
    pub banner: String,
    /// Treatment of bare CR/LF in message data.
    pub bare_line_ending: BareLineEnding,
    /// Pre-greet test: how long to wait before the banner, watching for clients that
    /// talk first (`EARLY_TALKER`); zero disables it.
    pub greet_delay: Duration,
    /// Session and gateway limits.
    pub limits: Limits,
    /// STARTTLS material; STARTTLS is not offered without it.
    pub tls: Option<TlsFiles>,
}

/// Recipient verification settings.
#[derive(Debug, Clone)]
pub struct RecipientsConfig {
    /// Static lists by lower-case domain.
    pub lists: BTreeMap<String, Arc<RecipientList>>,
    /// Probe the internal server with RCPT for recipients not settled by a list.
    pub callout: bool,
    /// Deadline for one callout.
    pub callout_timeout: Duration,
    /// How long a recipient the internal server accepted stays known.
    pub positive_ttl: Duration,
    /// How long a recipient the internal server refused stays unknown.
    pub negative_ttl: Duration,
    /// Most cached callout answers.
    pub cache_size: usize,
}

/// Relay control and delivery to the internal servers.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Accepted recipient domains, lower case; `.example.com` also accepts subdomains.
    pub domains: Vec<String>,
    /// Internal servers, tried in order.
    pub internal: Vec<SocketAddr>,
    /// Where delivery status notifications are handed for delivery (default: `internal`).
    pub dsn_via: Vec<SocketAddr>,
    /// STARTTLS towards the internal servers.
    pub tls: RelayTls,
    /// Name sent in EHLO to the internal servers.
    pub helo_name: String,
    /// Concurrent delivery workers.
    pub workers: usize,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Deadline for each reply other than after DATA.
    pub command_timeout: Duration,
    /// Deadline for the reply to the end of data.
    pub data_timeout: Duration,
    /// How long an unused connection to an internal server stays open.
    pub idle_timeout: Duration,
    /// First retry delay after a temporary failure.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Growth of the delay per attempt.
    pub retry_factor: f64,
    /// Age after which a message that still fails temporarily is bounced.
    pub max_queue_lifetime: Duration,
    /// Recipient verification.
    pub recipients: RecipientsConfig,
}

/// Spool location.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory holding `tmp/`, `queue/` and friends.
    pub dir: PathBuf,
}

/// Score thresholds: `accept` < `tag` ≤ `quarantine` ≤ `reject`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// From this score on, mail is tagged.
    pub tag: f64,
    /// From this score on, mail is quarantined.
    pub quarantine: f64,
    /// From this score on, mail is rejected in-session.
    pub reject: f64,
}

/// An action a rule demands whatever the total score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// 550 5.7.1 at end of data.
    Reject,
    /// 451 4.7.1 at end of data.
    Tempfail,
    /// Accept and drop.
    Discard,
    /// Accept into the quarantine.
    Quarantine,
}

impl RuleAction {
    /// Name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Reject => "reject",
            RuleAction::Tempfail => "tempfail",
            RuleAction::Discard => "discard",
            RuleAction::Quarantine => "quarantine",
        }
    }
}

/// One DNS list (DNSBL, or DNSWL with a negative weight) queried at connect.
#[derive(Debug, Clone)]
pub struct DnsListConfig {
    /// Zone queried as `reversed-ip.zone`.
    pub zone: String,
    /// Contribution to the weighted total (negative: allowlist).
    pub weight: f64,
    /// Symbol for a listing no code map entry names.
    pub symbol: String,
    /// Return codes → symbols (`"127.0.0.2"`, `"127.0.0.[2..11]"`, `"&4"`, `"*"`).
    pub codes: Vec<(crate::dns::dnsbl::CodeMatch, String)>,
}

/// Policy settings: rules, thresholds, rule actions.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Score the GTUBE test string (symbol `GTUBE`, 1000 unless rescored).
    pub gtube: bool,
    /// Directory of `*.cf` rules files; `None` runs without rules.
    pub rules_dir: Option<PathBuf>,
    /// Default thresholds.
    pub thresholds: Thresholds,
    /// Per-domain thresholds (lower-case domain).
    pub domain_thresholds: BTreeMap<String, Thresholds>,
    /// Rule name → action when it hits.
    pub actions: BTreeMap<String, RuleAction>,
    /// DNS lists queried at connect.
    pub dnsbl: Vec<DnsListConfig>,
    /// Weighted DNS-list total from which recipients are refused (554 5.7.1).
    pub dnsbl_threshold: Option<f64>,
    /// Domain block lists for the domains of URLs in messages.
    pub uribl: Vec<DnsListConfig>,
    /// Most domains looked up per message.
    pub uribl_max_domains: usize,
    /// Forward-confirmed reverse DNS of the client.
    pub fcrdns: bool,
    /// SPF, DKIM, DMARC and ARC.
    pub auth: bool,
    /// Refuse (550 5.7.1) DMARC failures of domains publishing `p=reject`.
    pub dmarc_reject: bool,
    /// HELO syntax and plausibility.
    pub helo_checks: bool,
    /// The sender domain must resolve (MX or A/AAAA).
    pub sender_domain_check: bool,
    /// Checks (`dnsbl`, `fcrdns`, `helo`, `sender_domain`) whose lookup failures tempfail.
    pub dns_tempfail: Vec<String>,
}

/// The shared DNS resolver (`[dns]`; every key optional).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `IP:PORT`; empty means the system configuration (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Deadline of one query to one server.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
    /// Cached answers.
    pub cache_size: usize,
    /// All DNS checks of one SMTP stage together never take longer than this.
    #[serde(with = "humantime_serde")]
    pub stage_deadline: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            cache_size: 10_000,
            stage_deadline: Duration::from_secs(5),
        }
    }
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

/// Admin/metrics listener.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; `None` disables the listener.
    pub listen: Option<SocketAddr>,
}

/// The validated configuration. Immutable; a reload builds a new one.
#[derive(Debug, Clone)]
pub struct Config {
    /// File this was loaded from.
    pub path: PathBuf,
    /// Inbound SMTP.
    pub server: ServerConfig,
    /// Relay control and delivery.
    pub relay: RelayConfig,
    /// Spool.
    pub spool: SpoolConfig,
    /// Policy.
    pub policy: PolicyConfig,
    /// DNS resolver.
    pub dns: DnsConfig,
    /// Admin listener.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses and validates configuration text; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        let config = validate(path, raw, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }
}

fn validate(path: &Path, raw: RawConfig, problems: &mut Vec<String>) -> Config {
    let mut bad = |key: &str, msg: &str| problems.push(format!("{key}: {msg}"));

    let s = raw.server;
    if s.listen.is_empty() {
        bad("server.listen", "at least one address is required");
    }
    let hostname = if s.hostname.is_empty() {
        system_hostname()
    } else {
        s.hostname.to_ascii_lowercase()
    };
    if !is_plausible_hostname(&hostname) {
        bad("server.hostname", "must be a fully qualified domain name");
    }
    let bare_line_ending = match s.bare_line_ending.as_str() {
        "reject" => BareLineEnding::Reject,
        "normalize" | "normalise" => BareLineEnding::Normalize,
        _ => {
            bad(
                "server.bare_line_ending",
                "must be \"reject\" or \"normalize\"",
            );
            BareLineEnding::Reject
        }
    };
    let l = s.limits;
    if l.command_line_bytes < 512 {
        bad(
            "server.limits.command_line_bytes",
            "must be at least 512 (RFC 5321)",
        );
    }
    if l.text_line_bytes < 1000 {
        bad(
            "server.limits.text_line_bytes",
            "must be at least 1000 (RFC 5321)",
        );
    }
    for (key, v) in [
        ("recipients_per_message", l.recipients_per_message),
        ("messages_per_session", l.messages_per_session),
        ("message_size_bytes", l.message_size_bytes),
        ("max_sessions", l.max_sessions),
        ("max_sessions_per_ip", l.max_sessions_per_ip),
    ] {
        if v == 0 {
            bad(&format!("server.limits.{key}"), "must be greater than 0");
        }
    }
    if l.errors_before_disconnect == 0 {
        bad(
            "server.limits.errors_before_disconnect",
            "must be greater than 0",
        );
    }
    for (key, v) in [
        ("command_timeout", l.command_timeout),
        ("session_duration", l.session_duration),
    ] {
        if v.is_zero() {
            bad(&format!("server.limits.{key}"), "must be greater than 0");
        }
    }
    let tls = s.tls.map(|t| {
        for (key, p) in [("certificate", &t.certificate), ("key", &t.key)] {
            if !p.is_file() {
                bad(
                    &format!("server.tls.{key}"),
                    &format!("{} is not a readable file", p.display()),
                );
            }
        }
        TlsFiles {
            certificate: t.certificate,
            key: t.key,
        }
    });

    let r = raw.relay;
    let mut domains = Vec::new();
    for d in &r.domains {
        let d = d.trim().to_ascii_lowercase();
        let bare = d.strip_prefix('.').unwrap_or(&d);
        if !is_plausible_hostname(bare) {
            bad("relay.domains", &format!("{d:?} is not a domain name"));
        }
        domains.push(d);
    }
    if domains.is_empty() {
        bad(
            "relay.domains",
            "at least one domain is required (mxguard is not an open relay)",
        );
    }
    if r.internal.is_empty() {
        bad(
            "relay.internal",
            "at least one internal server address is required",
        );
    }
    let tls_mode = match r.tls.as_str() {
        "off" => RelayTls::Off,
        "opportunistic" => RelayTls::Opportunistic,
        "required" => RelayTls::Required,
        _ => {
            bad(
                "relay.tls",
                "must be \"off\", \"opportunistic\" or \"required\"",
            );
            RelayTls::Opportunistic
        }
    };
    if r.workers == 0 {
        bad("relay.workers", "must be greater than 0");
    }
    if r.retry_initial.is_zero() {
        bad("relay.retry_initial", "must be greater than 0");
    }
    if r.retry_max < r.retry_initial {
        bad(
            "relay.retry_max",
            "must not be shorter than relay.retry_initial",
        );
    }
    if !(r.retry_factor >= 1.0 && r.retry_factor <= 100.0) {
        bad("relay.retry_factor", "must be between 1 and 100");
    }
    let rc = r.recipients;
    let mut lists = BTreeMap::new();
    for (domain, file) in rc.lists {
        let domain = domain.to_ascii_lowercase();
        if !domains
            .iter()
            .any(|d| d == &domain || (d.starts_with('.') && domain.ends_with(d.as_str())))
        {
            bad(
                &format!("relay.recipients.lists.{domain}"),
                "domain is not in relay.domains",
            );
        }
        match RecipientList::load(&file) {
            Ok(list) => {
                lists.insert(domain, Arc::new(list));
            }
            Err(e) => bad(&format!("relay.recipients.lists.{domain}"), &e),
        }
    }
    let helo_name = if r.helo_name.is_empty() {
        hostname.clone()
    } else {
        r.helo_name
    };
    let dsn_via = if r.dsn_via.is_empty() {
        r.internal.clone()
    } else {
        r.dsn_via
    };
    let relay = RelayConfig {
        domains,
        internal: r.internal,
        dsn_via,
        tls: tls_mode,
        helo_name,
        workers: r.workers,
        connect_timeout: r.connect_timeout,
        command_timeout: r.command_timeout,
        data_timeout: r.data_timeout,
        idle_timeout: r.idle_timeout,
        retry_initial: r.retry_initial,
        retry_max: r.retry_max,
        retry_factor: r.retry_factor,
        max_queue_lifetime: r.max_queue_lifetime,
        recipients: RecipientsConfig {
            lists,
            callout: rc.callout,
            callout_timeout: rc.callout_timeout,
            positive_ttl: rc.positive_ttl,
            negative_ttl: rc.negative_ttl,
            cache_size: rc.cache_size,
        },
    };

    let p = raw.policy;
    let thresholds = Thresholds {
        tag: p.tag,
        quarantine: p.quarantine,
        reject: p.reject,
    };
    check_thresholds("policy", &thresholds, &mut bad);
    let mut domain_thresholds = BTreeMap::new();
    for (domain, t) in p.domains {
        let domain = domain.to_ascii_lowercase();
        let merged = Thresholds {
            tag: t.tag.unwrap_or(thresholds.tag),
            quarantine: t.quarantine.unwrap_or(thresholds.quarantine),
            reject: t.reject.unwrap_or(thresholds.reject),
        };
        check_thresholds(&format!("policy.domains.{domain}"), &merged, &mut bad);
        domain_thresholds.insert(domain, merged);
    }
    let mut actions = BTreeMap::new();
    for (rule, action) in p.actions {
        let action = match action.as_str() {
            "reject" => RuleAction::Reject,
            "tempfail" => RuleAction::Tempfail,
            "discard" => RuleAction::Discard,
            "quarantine" => RuleAction::Quarantine,
            _ => {
                bad(
                    &format!("policy.actions.{rule}"),
                    "must be \"reject\", \"tempfail\", \"discard\" or \"quarantine\"",
                );
                continue;
            }
        };
        actions.insert(rule, action);
    }
    if let Some(dir) = &p.rules_dir {
        if !dir.is_dir() {
            bad(
                "policy.rules_dir",
                &format!("{} is not a directory", dir.display()),
            );
        }
    }
    let dnsbl = dns_lists("policy.dnsbl", p.dnsbl, &mut bad);
    let uribl = dns_lists("policy.uribl", p.uribl, &mut bad);
    for check in &p.dns_tempfail {
        if !["dnsbl", "fcrdns", "helo", "sender_domain"].contains(&check.as_str()) {
            bad(
                "policy.dns_tempfail",
                &format!("{check:?} is not one of dnsbl, fcrdns, helo, sender_domain"),
            );
        }
    }
    let policy = PolicyConfig {
        dnsbl,
        dnsbl_threshold: p.dnsbl_threshold,
        uribl,
        uribl_max_domains: p.uribl_max_domains,
        fcrdns: p.fcrdns,
        auth: p.auth,
        dmarc_reject: p.dmarc_reject,
        helo_checks: p.helo_checks,
        sender_domain_check: p.sender_domain_check,
        dns_tempfail: p.dns_tempfail,
        gtube: p.gtube,
        rules_dir: p.rules_dir,
        thresholds,
        domain_thresholds,
        actions,
    };

    let d = raw.dns;
    if d.attempts == 0 {
        bad("dns.attempts", "must be greater than 0");
    }
    if d.timeout.is_zero() {
        bad("dns.timeout", "must be greater than 0");
    }
    if d.stage_deadline.is_zero() {
        bad("dns.stage_deadline", "must be greater than 0");
    }

    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        _ => {
            bad("log.format", "must be \"text\" or \"json\"");
            LogFormat::Text
        }
    };

    Config {
        path: path.to_owned(),
        server: ServerConfig {
            listen: s.listen,
            hostname,
            banner: s.banner,
            bare_line_ending,
            greet_delay: s.greet_delay,
            limits: l,
            tls,
        },
        relay,
        spool: SpoolConfig { dir: raw.spool.dir },
        policy,
        dns: d,
        metrics: MetricsConfig {
            listen: raw.metrics.listen,
        },
        log: LogConfig {
            format,
            level: raw.log.level,
        },
    }
}

fn dns_lists(
    section: &str,
    raw: Vec<raw::RawDnsList>,
    bad: &mut impl FnMut(&str, &str),
) -> Vec<DnsListConfig> {
    let mut lists = Vec::new();
    for (i, list) in raw.into_iter().enumerate() {
        let key = format!("{section}[{i}]");
        let zone = list.zone.trim_end_matches('.').to_ascii_lowercase();
        if !is_plausible_hostname(&zone) {
            bad(&format!("{key}.zone"), "must be a domain name");
        }
        if !list.weight.is_finite() {
            bad(&format!("{key}.weight"), "must be a number");
        }
        if !is_symbol(&list.symbol) {
            bad(
                &format!("{key}.symbol"),
                "must be an upper-case symbol name like RCVD_IN_EXAMPLE",
            );
        }
        let mut codes = Vec::new();
        for (code, symbol) in list.codes {
            match code.parse::<crate::dns::dnsbl::CodeMatch>() {
                Ok(m) if is_symbol(&symbol) => codes.push((m, symbol)),
                Ok(_) => bad(
                    &format!("{key}.codes.{code}"),
                    "symbol must be an upper-case name",
                ),
                Err(e) => bad(&format!("{key}.codes.{code}"), &e.to_string()),
            }
        }
        lists.push(DnsListConfig {
            zone,
            weight: list.weight,
            symbol: list.symbol,
            codes,
        });
    }
    lists
}

fn is_symbol(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn check_thresholds(key: &str, t: &Thresholds, bad: &mut impl FnMut(&str, &str)) {
    if !(t.tag.is_finite() && t.quarantine.is_finite() && t.reject.is_finite()) {
        bad(key, "thresholds must be numbers");
    } else if !(t.tag <= t.quarantine && t.quarantine <= t.reject) {
        bad(key, "thresholds must satisfy tag <= quarantine <= reject");
    }
}

/// A name with at least two labels of letters, digits and hyphens.
pub fn is_plausible_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && name.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn system_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if is_plausible_hostname(&name) {
        name
    } else {
        format!(
            "{}.localdomain",
            if name.is_empty() { "mxguard" } else { &name }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [relay]
        domains = ["example.test"]
        internal = ["127.0.0.1:2526"]
        "#;

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = Config::from_toml(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(c.server.limits.command_line_bytes, 512);
        assert_eq!(c.server.limits.text_line_bytes, 1000);
        assert_eq!(c.server.bare_line_ending, BareLineEnding::Reject);
        assert_eq!(c.relay.max_queue_lifetime, Duration::from_secs(5 * 86400));
        assert_eq!(c.relay.dsn_via, c.relay.internal);
    }

    #[test]
    fn every_bad_key_is_reported_by_name() {
        let text = r#"
            [server]
            bare_line_ending = "maybe"
            [server.limits]
            command_line_bytes = 100
            [relay]
            domains = []
            internal = []
            tls = "sometimes"
            "#;
        let err = Config::from_toml(Path::new("t.toml"), text).unwrap_err();
        let msg = err.to_string();
        for key in [
            "server.bare_line_ending",
            "server.limits.command_line_bytes",
            "relay.domains",
            "relay.internal",
            "relay.tls",
        ] {
            assert!(msg.contains(key), "{key} missing from {msg}");
        }
    }

    #[test]
    fn unknown_key_is_a_syntax_error_naming_it() {
        let text = format!("{MINIMAL}\nbogus_key = 1\n");
        let err = Config::from_toml(Path::new("t.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("bogus_key"), "{err}");
    }

    #[test]
    fn shipped_default_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mxguard.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:2525");
        assert_eq!(c.relay.internal[0].to_string(), "127.0.0.1:2526");
        assert_eq!(c.relay.domains, vec!["example.test".to_string()]);
    }
}
