//! `[relay]` and `[relay.recipients]`: relay control, delivery to the internal servers and
//! recipient verification.

use super::problems::{is_plausible_hostname, time_limit, Problems};
use super::recipients::RecipientList;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// TLS towards the internal servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// Never use STARTTLS.
    Off,
    /// Use STARTTLS when offered; plaintext otherwise. Certificates are not verified.
    Opportunistic,
    /// Refuse to deliver unless STARTTLS succeeds. The certificate is not verified either:
    /// the session is encrypted, but who holds the key is not checked.
    Required,
}

/// Recipient verification settings.
#[derive(Debug, Clone)]
pub struct RecipientsConfig {
    /// Static lists by lower-case domain.
    pub lists: BTreeMap<String, Arc<RecipientList>>,
    /// The files the lists were read from (watched for changes, like the configuration).
    pub list_files: Vec<PathBuf>,
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
    /// Most callout probes open at once: a dictionary attack over many sessions must not
    /// open as many connections to the internal server.
    pub callout_concurrency: usize,
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
    /// Deadline for each reply other than to DATA and after the data.
    pub command_timeout: Duration,
    /// Deadline for the reply to DATA (RFC 5321 §4.5.3.2.4: 2 minutes).
    pub data_init_timeout: Duration,
    /// Deadline for the reply to the end of data.
    pub data_timeout: Duration,
    /// How long an unused connection to an internal server stays open.
    pub idle_timeout: Duration,
    /// How long a connection to an internal server is reused at most.
    pub connection_reuse_time: Duration,
    /// Most recipients sent in one transaction; the rest go in the next at once.
    pub recipients_per_transaction: usize,
    /// How long an internal server that failed to connect is skipped (at most `retry_max`).
    pub unreachable_hold: Duration,
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

/// `[relay]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRelay {
    domains: Vec<String>,
    internal: Vec<SocketAddr>,
    dsn_via: Vec<SocketAddr>,
    tls: String,
    helo_name: String,
    workers: usize,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    command_timeout: Duration,
    #[serde(with = "humantime_serde")]
    data_init_timeout: Duration,
    #[serde(with = "humantime_serde")]
    data_timeout: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    connection_reuse_time: Duration,
    recipients_per_transaction: usize,
    #[serde(with = "humantime_serde")]
    unreachable_hold: Duration,
    #[serde(with = "humantime_serde")]
    retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    retry_max: Duration,
    retry_factor: f64,
    #[serde(with = "humantime_serde")]
    max_queue_lifetime: Duration,
    recipients: RawRecipients,
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
            // RFC 5321 §4.5.3.2: a server may take 5 minutes to answer the greeting,
            // MAIL or RCPT (a recipient lookup in a slow directory), and 2 to answer
            // DATA; shorter deadlines defer mail a busy server would have taken.
            command_timeout: Duration::from_secs(300),
            data_init_timeout: Duration::from_secs(120),
            data_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
            connection_reuse_time: Duration::from_secs(300),
            recipients_per_transaction: 100,
            unreachable_hold: Duration::from_secs(60),
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            retry_factor: 2.0,
            max_queue_lifetime: Duration::from_secs(5 * 24 * 3600),
            recipients: RawRecipients::default(),
        }
    }
}

/// `[relay.recipients]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRecipients {
    /// Domain → path of a file listing its valid recipients.
    lists: BTreeMap<String, PathBuf>,
    callout: bool,
    #[serde(with = "humantime_serde")]
    callout_timeout: Duration,
    #[serde(with = "humantime_serde")]
    positive_ttl: Duration,
    #[serde(with = "humantime_serde")]
    negative_ttl: Duration,
    cache_size: usize,
    callout_concurrency: usize,
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
            callout_concurrency: 20,
        }
    }
}

impl RawRelay {
    /// The recipient lists it names, whether or not they read.
    pub(super) fn named_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.recipients.lists.values()
    }

    /// Validates the section; `hostname` is the default EHLO name.
    pub(super) fn validate(self, hostname: &str, problems: &mut Problems) -> RelayConfig {
        let mut domains = Vec::new();
        for d in &self.domains {
            // `example.test.` (the DNS spelling) is stored without its dot: recipients'
            // domains are compared as written in addresses, and never end in one.
            let d = super::problems::domain_key(d.trim());
            let bare = d.strip_prefix('.').unwrap_or(&d);
            if !is_plausible_hostname(bare) {
                problems.bad("relay.domains", &format!("{d:?} is not a domain name"));
            }
            domains.push(d);
        }
        if domains.is_empty() {
            problems.bad(
                "relay.domains",
                "at least one domain is required (mxguard is not an open relay)",
            );
        }
        if self.internal.is_empty() {
            problems.bad(
                "relay.internal",
                "at least one internal server address is required",
            );
        }
        let tls = match self.tls.as_str() {
            "off" => RelayTls::Off,
            "opportunistic" => RelayTls::Opportunistic,
            "required" => RelayTls::Required,
            _ => {
                problems.bad(
                    "relay.tls",
                    "must be \"off\", \"opportunistic\" or \"required\"",
                );
                RelayTls::Opportunistic
            }
        };
        // One task and one connection each.
        if !(1..=10_000).contains(&self.recipients_per_transaction) {
            problems.bad(
                "relay.recipients_per_transaction",
                "must be between 1 and 10000",
            );
        }
        if !(1..=1024).contains(&self.workers) {
            problems.bad("relay.workers", "must be between 1 and 1024");
        }
        problems.at_most(
            "relay.recipients.callout_concurrency",
            self.recipients.callout_concurrency,
            10_000,
        );
        problems.at_most(
            "relay.recipients.cache_size",
            self.recipients.cache_size,
            10_000_000,
        );
        if self.recipients.callout_concurrency == 0 {
            problems.bad(
                "relay.recipients.callout_concurrency",
                "must be greater than 0",
            );
        }
        time_limit(problems, "relay.retry_initial", self.retry_initial, true);
        // Zero bounced every message at its first temporary failure (an internal server
        // restarting bounced the whole queue); unlike `quarantine_lifetime` it cannot mean
        // "for ever", and less than the first retry delay bounces before any retry.
        time_limit(
            problems,
            "relay.max_queue_lifetime",
            self.max_queue_lifetime,
            true,
        );
        if self.max_queue_lifetime < self.retry_initial {
            problems.bad(
                "relay.max_queue_lifetime",
                "must be at least relay.retry_initial (mail would bounce before its first retry)",
            );
        }
        // A zero timeout ends every attempt before it starts: nothing would be delivered.
        // One past a year ("never") overflowed the clock and killed the delivery workers.
        for (key, timeout) in [
            ("relay.connect_timeout", self.connect_timeout),
            ("relay.command_timeout", self.command_timeout),
            ("relay.data_init_timeout", self.data_init_timeout),
            ("relay.data_timeout", self.data_timeout),
            (
                "relay.recipients.callout_timeout",
                self.recipients.callout_timeout,
            ),
        ] {
            time_limit(problems, key, timeout, true);
        }
        time_limit(problems, "relay.idle_timeout", self.idle_timeout, false);
        time_limit(
            problems,
            "relay.connection_reuse_time",
            self.connection_reuse_time,
            false,
        );
        time_limit(
            problems,
            "relay.unreachable_hold",
            self.unreachable_hold,
            false,
        );
        if self.retry_max < self.retry_initial {
            problems.bad(
                "relay.retry_max",
                "must not be shorter than relay.retry_initial",
            );
        }
        if !(self.retry_factor >= 1.0 && self.retry_factor <= 100.0) {
            problems.bad("relay.retry_factor", "must be between 1 and 100");
        }
        let recipients = self.recipients.validate(&domains, problems);
        let helo_name = if self.helo_name.is_empty() {
            hostname.to_owned()
        } else {
            // Written into the EHLO line as is: a CR or LF would send commands of its own.
            // A short name (`gw`) is the operator's business with their own server.
            if !self.helo_name.bytes().all(|b| b.is_ascii_graphic()) {
                problems.bad(
                    "relay.helo_name",
                    "must be one word of printable ASCII (a domain name or an address literal)",
                );
            }
            self.helo_name
        };
        // Port 0 connects nowhere: every delivery (or bounce) would fail for ever.
        for (key, addrs) in [
            ("relay.internal", &self.internal),
            ("relay.dsn_via", &self.dsn_via),
        ] {
            if let Some(a) = addrs.iter().find(|a| a.port() == 0) {
                problems.bad(key, &format!("{a}: port 0 is no server's port"));
            }
            // A connection to 0.0.0.0 or [::] reaches this host, maybe this gateway
            // (review: a loop the loopback check did not see).
            if let Some(a) = addrs.iter().find(|a| a.ip().is_unspecified()) {
                problems.bad(
                    key,
                    &format!("{a}: an unspecified address is no server's (it reaches this host)"),
                );
            }
        }
        let dsn_via = if self.dsn_via.is_empty() {
            self.internal.clone()
        } else {
            self.dsn_via
        };
        RelayConfig {
            domains,
            internal: self.internal,
            dsn_via,
            tls,
            helo_name,
            workers: self.workers,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            data_init_timeout: self.data_init_timeout,
            data_timeout: self.data_timeout,
            idle_timeout: self.idle_timeout,
            connection_reuse_time: self.connection_reuse_time,
            recipients_per_transaction: self.recipients_per_transaction,
            // Held longer than the longest retry delay, a server that came back would
            // keep deferred mail waiting past its retry.
            unreachable_hold: self.unreachable_hold.min(self.retry_max),
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            retry_factor: self.retry_factor,
            max_queue_lifetime: self.max_queue_lifetime,
            recipients,
        }
    }
}

/// Whether mail for `domain` (lower case, A-labels) is relayed under `relay.domains`: a
/// domain listed as it is, or one below a domain listed with a leading dot.
pub fn relays_domain(domains: &[String], domain: &str) -> bool {
    domains
        .iter()
        .any(|d| d == domain || (d.starts_with('.') && domain.ends_with(d.as_str())))
}

impl RawRecipients {
    fn validate(self, domains: &[String], problems: &mut Problems) -> RecipientsConfig {
        time_limit(
            problems,
            "relay.recipients.positive_ttl",
            self.positive_ttl,
            false,
        );
        time_limit(
            problems,
            "relay.recipients.negative_ttl",
            self.negative_ttl,
            false,
        );
        let mut lists = BTreeMap::new();
        let list_files = self.lists.values().cloned().collect();
        for (domain, file) in self.lists {
            // Written as `relay.domains` are (a DNS dot, any case).
            let domain = super::problems::domain_key(&domain);
            if lists.contains_key(&domain) {
                problems.domain_named_twice(&format!("relay.recipients.lists.{domain}"));
                continue;
            }
            if domain.starts_with('.') {
                // A list is looked up by the recipient's exact domain: `.example.test`
                // would be in force for no recipient, and every subdomain unverified.
                problems.bad(
                    &format!("relay.recipients.lists.{domain}"),
                    "must name one domain (a list applies to that domain only)",
                );
            } else if !relays_domain(domains, &domain) {
                problems.bad(
                    &format!("relay.recipients.lists.{domain}"),
                    "domain is not in relay.domains",
                );
            }
            match RecipientList::load(&file) {
                Ok(list) => {
                    lists.insert(domain, Arc::new(list));
                }
                Err(e) => problems.bad(&format!("relay.recipients.lists.{domain}"), &e),
            }
        }
        RecipientsConfig {
            lists,
            list_files,
            callout: self.callout,
            callout_timeout: self.callout_timeout,
            positive_ttl: self.positive_ttl,
            negative_ttl: self.negative_ttl,
            cache_size: self.cache_size,
            callout_concurrency: self.callout_concurrency,
        }
    }
}
