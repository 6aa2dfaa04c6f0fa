//! Configuration: the raw TOML file becomes one validated, immutable [`Config`].
//!
//! One file per section, each owning its raw (serde) type, its validated type and its
//! validation. Validation reports every bad key at once (not just the first), each named
//! by its TOML path, so an operator fixes a file in one pass.

mod admin;
mod antivirus;
mod attachments;
mod classifier;
mod dns;
mod dns_lists;
mod greylist;
mod networks;
mod policy;
mod problems;
mod ratelimit;
#[cfg(test)]
mod readme_tests;
mod recipients;
mod relay;
mod server;
mod source;
mod state;
mod tier;
pub mod watch;

pub use admin::{
    LogConfig, LogFormat, MetricsConfig, SpoolConfig, ADMIN_CONNECTION_LIFETIME,
    DEFAULT_RECYCLE_FILES,
};
pub use antivirus::{AntivirusConfig, AvFailure, AvScope, ClamdAddress};
pub use attachments::{AttachmentsConfig, DEFAULT_BLOCKED_EXTENSIONS, DEFAULT_BLOCKED_TYPES};
pub use classifier::ClassifierConfig;
pub use dns::DnsConfig;
pub use dns_lists::{
    is_return_code, query_name_for_logs, CodeEntry, CodeMatch, DnsListConfig, UriLookup,
};
pub use greylist::{GreylistConfig, GreylistStage};
pub use networks::{network_of, parse_network, NetworkList};
pub use policy::{PolicyConfig, RuleAction, SkippedRuleMetas, Thresholds};
pub use problems::{is_plausible_hostname, is_symbol};
pub use ratelimit::{RateAction, RateKey, RateLimitConfig, RateStage};
pub use recipients::RecipientList;
pub use relay::{relays_domain, RecipientsConfig, RelayConfig, RelayTls};
pub use server::{BareLineEnding, Limits, ServerConfig, TlsFiles};
pub use state::{OnFailure, StateBackendConfig, StateConfig};
pub use tier::{BypassAction, PeerConfig, Role, TierConfig, TierSecret, NOT_A_HOST_NAME};

use problems::Problems;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// One or more keys are unknown, of the wrong type or have values that are not
    /// acceptable.
    #[error("{path}: invalid configuration:\n{}", problems.join("\n"))]
    Invalid {
        /// File that failed.
        path: PathBuf,
        /// One line per problem: `FILE:LINE: key: what is wrong`.
        problems: Vec<String>,
    },
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
    /// Shared state (embedded store or Redis).
    pub state: StateConfig,
    /// Greylisting.
    pub greylist: GreylistConfig,
    /// Rate limits (`[[ratelimit]]`), in file order.
    pub ratelimits: Vec<RateLimitConfig>,
    /// The learning classifier.
    pub classifier: ClassifierConfig,
    /// This gateway's MX tier, when it is part of one.
    pub tier: Option<TierConfig>,
    /// Admin listener.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Attachment policy.
    pub attachments: AttachmentsConfig,
    /// Virus scanning through clamd.
    pub antivirus: AntivirusConfig,
}

/// The configuration in force right now. Delivery and the classifier's upkeep read it
/// for every message or round, so a reload reaches them without a restart (a session's
/// checks, callouts included, keep the snapshot it started with); the gateway's
/// reloadable snapshot implements it.
pub trait CurrentConfig: Send + Sync + std::fmt::Debug {
    /// The configuration to use for the next piece of work.
    fn current(&self) -> Arc<Config>;
}

/// A configuration that never changes (tests, one-shot tools).
#[derive(Debug, Clone)]
pub struct FixedConfig(pub Arc<Config>);

impl CurrentConfig for FixedConfig {
    fn current(&self) -> Arc<Config> {
        self.0.clone()
    }
}

/// Top level of `mxguard.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: server::RawServer,
    relay: relay::RawRelay,
    spool: admin::RawSpool,
    policy: policy::RawPolicy,
    dns: DnsConfig,
    state: state::RawState,
    greylist: greylist::RawGreylist,
    ratelimit: Vec<ratelimit::RawRateLimit>,
    classifier: classifier::RawClassifier,
    tier: Option<tier::RawTier>,
    metrics: admin::RawMetrics,
    log: admin::RawLog,
    attachments: attachments::RawAttachments,
    antivirus: antivirus::RawAntivirus,
}

/// Opens `path` for reading, and its metadata, without waiting: opening a FIFO for
/// reading waits for a writer, but not with O_NONBLOCK. Callers refuse what is not a
/// plain file before they read.
pub fn open_without_waiting(
    path: &std::path::Path,
) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Largest file the configuration reads whole (itself, a rules file, a key, a list): far
/// past any real one, short of what a mistake such as a log named as a list would cost.
const MAX_PLAIN_FILE: u64 = 256 * 1024 * 1024;

/// The bytes of a file the configuration names (the configuration itself, a rules file,
/// a key, a recipient or network list), refused unless it is a plain file of at most
/// 256 MiB: a FIFO named by mistake blocked `check`, or the reload task, which then
/// ignored every later reload, and `/dev/zero` read until memory ran out (review).
pub(crate) fn read_plain_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let (file, meta) = open_without_waiting(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a plain file",
        ));
    }
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "larger than 256 MiB");
    if meta.len() > MAX_PLAIN_FILE {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&file, MAX_PLAIN_FILE + 1),
        &mut bytes,
    )?;
    if bytes.len() as u64 > MAX_PLAIN_FILE {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The text of a file the configuration names, read as [`read_plain_file`] reads it.
pub(crate) fn read_plain_text(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_plain_file(path)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// Where `relay` would hand mail to one of the `listen` addresses (itself, or the
/// loopback address a wildcard listener covers), by key: an internal server there relays
/// every message to itself until its hop count runs out, and bounces handed there are
/// refused (a null-sender DSN to a non-relay domain) and dropped, every one of them.
pub fn relay_loops(
    listen: &[std::net::SocketAddr],
    relay: &RelayConfig,
) -> Vec<(&'static str, std::net::SocketAddr)> {
    [
        ("relay.internal", &relay.internal),
        ("relay.dsn_via", &relay.dsn_via),
    ]
    .into_iter()
    .flat_map(|(key, to)| {
        to.iter()
            .filter(|to| is_own_address(listen, to))
            .map(move |to| (key, *to))
    })
    .collect()
}

fn is_own_address(listen: &[std::net::SocketAddr], to: &std::net::SocketAddr) -> bool {
    // `[::ffff:127.0.0.1]` is 127.0.0.1 to a dual-stack socket (review: it looped).
    let to = &canonical(*to);
    listen.iter().copied().map(canonical).any(|l| {
        l.port() == to.port()
            && (l.ip() == to.ip() || (to.ip().is_loopback() && wildcard_covers(&l, to)))
    })
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is: an IPv4 client reaching a
/// dual-stack listener (`[::]:25`) as `::ffff:a.b.c.d` is the IPv4 client `a.b.c.d` to
/// every check, and `[::ffff:127.0.0.1]` in the configuration is 127.0.0.1.
pub fn canonical(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    std::net::SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether `wide` is a wildcard address that takes `other`'s: its family's, and for `[::]`
/// IPv4's too (the listeners are Linux's default dual-stack sockets).
fn wildcard_covers(wide: &std::net::SocketAddr, other: &std::net::SocketAddr) -> bool {
    wide.ip().is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
}

/// The admin listener on an address `server.listen` binds: `check` said ok and `serve`
/// could not start. A wildcard and a specific address of one family on the same port
/// collide too.
fn admin_shares_an_smtp_address(
    admin: std::net::SocketAddr,
    listen: &[std::net::SocketAddr],
    problems: &mut Problems,
) {
    if let Some(l) = listen.iter().find(|l| binds_collide(l, &admin)) {
        problems.bad(
            "metrics.listen",
            &format!("{admin} is taken by server.listen {l}"),
        );
    }
}

/// Whether listeners on `a` and `b` cannot both be bound: the same port (not 0, which
/// asks the system for a free one each time) on the same address, or on a wildcard that
/// takes the other's.
fn binds_collide(a: &std::net::SocketAddr, b: &std::net::SocketAddr) -> bool {
    let (a, b) = (&canonical(*a), &canonical(*b));
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || wildcard_covers(a, b) || wildcard_covers(b, a))
}

/// `server.listen` entries that take each other's port: `check` said ok and `serve`
/// could not start (review: `["0.0.0.0:25", "[::]:25"]`, the usual way to write "every
/// address", fails on Linux's dual-stack `[::]`).
fn listen_entries_collide(listen: &[std::net::SocketAddr], problems: &mut Problems) {
    for (i, a) in listen.iter().enumerate() {
        if let Some(b) = listen[i + 1..].iter().find(|b| binds_collide(a, b)) {
            problems.bad(
                "server.listen",
                &format!("{a} and {b} take the same port (`[::]` takes IPv4's too)"),
            );
            return;
        }
    }
}

impl Config {
    /// Settings that load but defeat their purpose, each with its key and why (`check`
    /// prints them; `serve` logs them at start and at every reload). Not refused: each
    /// can be meant, for a while.
    pub fn doubtful_settings(&self) -> Vec<(&'static str, String)> {
        let mut doubts = Vec::new();
        let tag = self.policy.thresholds.tag;
        let reject = self.policy.thresholds.reject;
        let c = &self.classifier;
        if c.enabled && c.autolearn && c.autolearn_ham >= tag {
            doubts.push((
                "classifier.autolearn_ham",
                format!(
                    "{} is at or above policy.tag ({tag}): mail tagged as spam is learned as ham",
                    c.autolearn_ham
                ),
            ));
        }
        // The mirror case (review): mail delivered untagged learned as spam.
        let g = &self.greylist;
        if g.enabled && g.pass_ttl < g.window {
            doubts.push((
                "greylist.pass_ttl",
                format!(
                    "{:?} is shorter than greylist.window ({:?}): a sender that passed is forgotten before its next message and greylisted again unless it sends within pass_ttl",
                    g.pass_ttl, g.window
                ),
            ));
        }
        if self.metrics.header_timeout > ADMIN_CONNECTION_LIFETIME {
            doubts.push((
                "metrics.header_timeout",
                format!(
                    "{:?} is longer than an admin connection lives ({:?}): the wait ends then",
                    self.metrics.header_timeout, ADMIN_CONNECTION_LIFETIME
                ),
            ));
        }
        if c.enabled && c.autolearn && c.autolearn_spam < tag {
            doubts.push((
                "classifier.autolearn_spam",
                format!(
                    "{} is below policy.tag ({tag}): mail delivered untagged is learned as spam",
                    c.autolearn_spam
                ),
            ));
        }
        let g = &self.greylist;
        if g.enabled && g.stage == GreylistStage::Data && g.min_score >= reject {
            doubts.push((
                "greylist.min_score",
                format!(
                    "{} is at or above policy.reject ({reject}): such mail is refused, so no \
                     message is ever greylisted",
                    g.min_score
                ),
            ));
        }
        let server = &self.server;
        // RFC 5321 §4.5.3.2.1: a client waits 5 minutes for the banner.
        let banner_wait = std::time::Duration::from_secs(300);
        if server.greet_delay >= banner_wait.min(server.limits.session_duration) {
            doubts.push((
                "server.greet_delay",
                format!(
                    "{} is at least what a client waits for the banner (5 min) or the \
                     session's own limit: no client ever gets it",
                    humantime::format_duration(server.greet_delay)
                ),
            ));
        }
        doubts
    }

    /// What a reload of the configuration at `path` reads besides the file itself (a
    /// change to any of it is a change of the policy in force, so it is watched too),
    /// from its keys alone, not validated: a reload that fails because a file it names is
    /// missing must still watch that file, so that creating it reloads (left alone in an
    /// earlier stop: the watch kept the files of the last configuration that loaded).
    pub fn named_inputs(path: &Path) -> Result<watch::ReloadInputs, ConfigError> {
        let raw = Config::read_keys(path)?;
        let mut files: Vec<PathBuf> = raw.relay.named_files().cloned().collect();
        files.extend(raw.policy.named_shadow().cloned());
        files.extend(raw.tier.iter().flat_map(|t| t.named_files()).cloned());
        files.extend(raw.server.named_files().cloned());
        // Network lists read from files are read again on every reload: an edit of one
        // must start one (review: a /24 added to `./deny.txt` waited for a SIGHUP).
        files.extend(raw.policy.named_network_files());
        files.extend(raw.greylist.named_network_files());
        files.extend(raw.metrics.named_network_files());
        files.extend(raw.server.named_network_files());
        let shadow_rules_dir = raw
            .policy
            .named_shadow()
            .and_then(|shadow| Config::read_keys(shadow).ok())
            .and_then(|shadow| shadow.policy.named_rules_dir().cloned());
        Ok(watch::ReloadInputs {
            rules_dir: raw.policy.named_rules_dir().cloned(),
            shadow_rules_dir,
            files,
        })
    }

    /// The keys of the configuration file at `path`, those of the wrong type left out.
    fn read_keys(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = read_plain_text(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (raw, _, _) = read_every_key(path, &text)?;
        Ok(raw)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_plain_text(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Reads a gateway's configuration file copied to another host (the internal server's
    /// `stamp verify` hook): validated as [`Config::load`] does, except that the files only
    /// the gateway reads (TLS certificate and key, rules directory, shadow rules,
    /// classifier seed) are not looked for. The tier key is: stamps are checked with it.
    /// With `load`, the hook needed the gateway's TLS private key to run at all (review).
    pub fn load_elsewhere(path: &Path) -> Result<Config, ConfigError> {
        let text = read_plain_text(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, Problems::away_from_the_gateway())
    }

    /// Parses and validates configuration text; `path` names it in errors. Every problem
    /// is reported at once, each with the line of its key: unknown keys and values of the
    /// wrong type, then the values the rest of the file gives that are not acceptable.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::parse(path, text, Problems::default())
    }

    fn parse(path: &Path, text: &str, problems: Problems) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let (raw, refused, read) = read_every_key(path, text)?;
        match Self::validate(path, raw, problems) {
            Ok(config) if refused.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: refused,
            }),
            // Located in the text as read, refused entries blanked: an array of tables lost
            // an element there, and the problems' indices count the elements read.
            Err(problems) => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: refused
                    .into_iter()
                    .chain(problems.into_located_lines(&file, &source::Source::new(&read)))
                    .collect(),
            }),
        }
    }

    fn validate(path: &Path, raw: RawConfig, mut problems: Problems) -> Result<Config, Problems> {
        let server = raw.server.validate(&mut problems);
        let relay = raw.relay.validate(&server.hostname, &mut problems);
        raw.dns.validate(&mut problems);
        let policy = raw.policy.validate(&relay.domains, &mut problems);
        let spool = raw.spool.validate(&mut problems);
        let tier = raw
            .tier
            .and_then(|t| t.validate(&server.hostname, &mut problems));
        for (key, to) in relay_loops(&server.listen, &relay) {
            problems.bad(
                key,
                &format!("{to} is this gateway's own server.listen: mail would loop"),
            );
        }
        listen_entries_collide(&server.listen, &mut problems);
        let metrics = raw.metrics.validate(&mut problems);
        if let Some(admin) = metrics.listen {
            admin_shares_an_smtp_address(admin, &server.listen, &mut problems);
        }
        let config = Config {
            path: path.to_owned(),
            server,
            relay,
            state: raw.state.validate(&spool.dir, &mut problems),
            spool,
            policy,
            greylist: raw.greylist.validate(&mut problems),
            ratelimits: ratelimit::validate(raw.ratelimit, &mut problems),
            classifier: raw.classifier.validate(&mut problems),
            tier,
            dns: raw.dns,
            metrics,
            log: raw.log.validate(&mut problems),
            attachments: raw.attachments.validate(&mut problems),
            antivirus: raw.antivirus.validate(&mut problems),
        };
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

/// The most keys refused in one file before the rest is left unread: far more than any
/// edit gets wrong at once.
const MOST_REFUSED_KEYS: usize = 100;

/// Reads `text` as the configuration, with every key serde refuses (unknown, or of the
/// wrong type) set aside and reported as `FILE:LINE: key: why`: serde stops at the first,
/// so each refused entry is blanked out and the reading repeated. Returns the text as
/// finally read, too. Text that is not TOML, and a refusal that names no key, end the
/// reading there.
fn read_every_key(
    path: &Path,
    text: &str,
) -> Result<(RawConfig, Vec<String>, String), ConfigError> {
    let file = path.display().to_string();
    let mut text = text.to_owned();
    let mut refused = Vec::new();
    loop {
        let error = match toml::from_str::<RawConfig>(&text) {
            Ok(raw) => return Ok((raw, refused, text)),
            Err(error) => error,
        };
        let source = source::Source::new(&text);
        let blanked = error.span().and_then(|span| {
            Some((
                source.line_at(span.start),
                source.without_entry_at(span.start)?,
            ))
        });
        let Some((line, (rest, key))) = blanked.filter(|_| refused.len() < MOST_REFUSED_KEYS)
        else {
            let message = if refused.is_empty() {
                error.to_string()
            } else {
                format!("{}\n{}", refused.join("\n"), error)
            };
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                message,
            });
        };
        refused.push(problems::located(&file, Some(line), &key, error.message()));
        text = rest;
    }
}

#[cfg(test)]
mod tests;
