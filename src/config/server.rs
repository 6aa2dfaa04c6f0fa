//! `[server]`, `[server.limits]` and `[server.tls]`: the inbound SMTP listener.

use super::networks::NetworkList;
use super::problems::{is_plausible_hostname, time_limit, Problems};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What to do with a bare CR or bare LF inside message data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEnding {
    /// Reject the message at end of data (550 5.6.0); the default.
    Reject,
    /// Rewrite each bare CR or LF to CRLF before the message is spooled.
    Normalize,
}

/// Every limit that protects a session or the gateway (`[server.limits]`; every key
/// optional, defaults below).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest command line, CRLF included (RFC 5321 says 512).
    pub command_line_bytes: usize,
    /// Longest text line inside DATA, CRLF included (RFC 5321 says 1000).
    pub text_line_bytes: usize,
    /// Recipients accepted per transaction.
    pub recipients_per_message: usize,
    /// RCPTs past `recipients_per_message` answered 452 without counting as client
    /// errors (RFC 5321 §4.5.3.1.8: the client just continues in a new transaction).
    pub recipient_overshoot_limit: usize,
    /// Transactions per session.
    pub messages_per_session: usize,
    /// Largest message, advertised with SIZE and enforced while streaming.
    pub message_size_bytes: usize,
    /// A message up to this size is held in memory; a bigger one goes to its spool file
    /// as it arrives, and the content checks parse a sample of at most this size.
    pub message_memory_bytes: usize,
    /// Memory all sessions together may hold for messages being received; past it,
    /// messages go to disk at once and new transfers wait.
    pub message_memory_total_bytes: usize,
    /// Memory the sessions of one client network (`network_ipv4_prefix`,
    /// `network_ipv6_prefix`) may hold of `message_memory_total_bytes`: past it that
    /// network's messages go to disk and its new transfers wait, so one network sending
    /// slowly cannot spend the budget every other sender needs. Unset: a quarter of the
    /// total, and never less than `message_memory_bytes` (see [`Limits::network_memory_share`]).
    pub message_memory_network_bytes: Option<usize>,
    /// A message still arriving after this long goes to disk and gives back all it held
    /// of the memory budget, so slow senders cannot hold the budget every other transfer
    /// waits for.
    #[serde(with = "humantime_serde")]
    pub message_memory_hold: Duration,
    /// Longest wait for room in `message_memory_total_bytes` before DATA is answered (or a
    /// first BDAT chunk read); then `451 4.3.2`. Nothing is sent meanwhile, and RFC 5321
    /// §4.5.3.2 has a client give up on DATA after two minutes.
    #[serde(with = "humantime_serde")]
    pub message_memory_wait: Duration,
    /// Longest header section of a message (refused with 552 past it).
    pub message_header_bytes: usize,
    /// Most fields in a header section (refused with 552 past it): each field costs the
    /// parser and the header rules far more than its few bytes.
    pub message_header_fields: usize,
    /// Most `Received` fields (refused with 554 5.4.6 past it): the message is looping.
    pub received_fields: usize,
    /// Rendered text scanned at the head and again at the tail of each text part.
    pub scan_part_bytes: usize,
    /// Decoded text (HTML markup kept) scanned at the head and tail of each part.
    pub scan_raw_part_bytes: usize,
    /// Deepest `message/rfc822` nesting that is scanned.
    pub scan_nesting_depth: usize,
    /// Most MIME parts parsed of one message (the parser's memory grows with each).
    pub scan_mime_parts: usize,
    /// Client errors after which the session is closed with 421.
    pub errors_before_disconnect: u32,
    /// Commands that move no mail (NOOP, RSET, VRFY, HELP, a repeated greeting) taken
    /// per session before each further one counts as a client error.
    pub junk_commands: usize,
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
    /// Concurrent sessions from one client network (see `network_ipv4_prefix`).
    pub max_sessions_per_network: usize,
    /// Prefix length that makes an IPv4 client network.
    pub network_ipv4_prefix: u8,
    /// Prefix length that makes an IPv6 client network.
    pub network_ipv6_prefix: u8,
    /// Concurrent sessions from one IPv6 site (see `ipv6_site_prefix`): an end site's
    /// allocation holds 256 to 65,536 networks of `network_ipv6_prefix`, each under its own
    /// limit, enough to take every slot.
    pub max_sessions_per_ipv6_site: usize,
    /// Prefix length that makes an IPv6 site (at most `network_ipv6_prefix`).
    pub ipv6_site_prefix: u8,
    /// Share of `max_sessions` in use (percent) from which the gateway is under stress:
    /// idle sessions get `stress_idle_timeout`, and the longest idle one makes room for a
    /// new client when every slot is taken.
    pub stress_threshold_percent: u8,
    /// Under stress, how long a session may go without progress (NOOP, RSET and
    /// trickled bytes are not progress) before it is closed with 421.
    #[serde(with = "humantime_serde")]
    pub stress_idle_timeout: Duration,
    /// How long a client refused at connect (`554` instead of the banner) is given to
    /// send QUIT, as RFC 5321 §3.1 asks; 0 closes at once.
    #[serde(with = "humantime_serde")]
    pub refused_quit_wait: Duration,
    /// How long running sessions may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The memory one client network may hold (`message_memory_network_bytes`, or a quarter
    /// of the total but at least one message's worth).
    pub fn network_memory_share(&self) -> usize {
        self.message_memory_network_bytes.unwrap_or_else(|| {
            (self.message_memory_total_bytes / 4)
                .max(self.message_memory_bytes)
                .min(self.message_memory_total_bytes)
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            command_line_bytes: 512,
            text_line_bytes: 1000,
            recipients_per_message: 100,
            recipient_overshoot_limit: 1000,
            messages_per_session: 100,
            message_size_bytes: 25 * 1024 * 1024,
            message_memory_bytes: 1024 * 1024,
            message_memory_total_bytes: 256 * 1024 * 1024,
            message_memory_network_bytes: None,
            message_memory_hold: Duration::from_secs(10),
            message_memory_wait: Duration::from_secs(60),
            message_header_bytes: 1024 * 1024,
            message_header_fields: 1000,
            received_fields: 50,
            scan_part_bytes: 50_000,
            scan_raw_part_bytes: 500_000,
            scan_nesting_depth: 8,
            scan_mime_parts: crate::mail::mime::DEFAULT_MAX_PARTS,
            errors_before_disconnect: 20,
            junk_commands: 100,
            errors_before_tarpit: 5,
            tarpit_delay: Duration::from_secs(1),
            command_timeout: Duration::from_secs(300),
            session_duration: Duration::from_secs(1800),
            min_data_rate_bytes_per_second: 256,
            data_rate_grace: Duration::from_secs(30),
            max_sessions: 10_000,
            max_sessions_per_ip: 50,
            max_sessions_per_network: 200,
            network_ipv4_prefix: 24,
            network_ipv6_prefix: 64,
            max_sessions_per_ipv6_site: 800,
            ipv6_site_prefix: 48,
            stress_threshold_percent: 80,
            stress_idle_timeout: Duration::from_secs(10),
            refused_quit_wait: Duration::from_secs(10),
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
    /// Load balancers that send a PROXY protocol header; when not empty, every
    /// connection must come from one of them and start with a header.
    pub proxy_protocol_from: NetworkList,
    /// Longest wait for a PROXY protocol header.
    pub proxy_protocol_timeout: Duration,
}

/// `[server]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    listen: Vec<SocketAddr>,
    hostname: String,
    banner: String,
    bare_line_ending: String,
    #[serde(with = "humantime_serde")]
    greet_delay: Duration,
    limits: Limits,
    tls: Option<RawTls>,
    proxy_protocol_from: Vec<String>,
    #[serde(with = "humantime_serde")]
    proxy_protocol_timeout: Duration,
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
            proxy_protocol_from: Vec::new(),
            proxy_protocol_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: PathBuf,
    key: PathBuf,
}

/// Longest `server.banner`: the 220 line with the host name stays within the 512 octets
/// of a reply line (RFC 5321 §4.5.3.1.5).
const MAX_BANNER_BYTES: usize = 200;

impl RawServer {
    /// The certificate and key it names, whether or not they read.
    pub(super) fn named_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.tls.iter().flat_map(|t| [&t.certificate, &t.key])
    }

    /// The network-list files `proxy_protocol_from` names.
    pub(super) fn named_network_files(&self) -> impl Iterator<Item = PathBuf> + '_ {
        super::networks::file_entries(&self.proxy_protocol_from)
    }

    pub(super) fn validate(self, problems: &mut Problems) -> ServerConfig {
        if self.listen.is_empty() {
            problems.bad("server.listen", "at least one address is required");
        }
        // Without a trailing dot, as every name it is compared with (a client's HELO,
        // a peer's tier name, the heartbeat keys) is taken (review: `mx.example.test.`
        // never matched `HELO mx.example.test`).
        let hostname = if self.hostname.is_empty() {
            system_hostname()
        } else {
            super::problems::domain_key(&self.hostname)
        };
        if !is_plausible_hostname(&hostname) {
            problems.bad("server.hostname", "must be a fully qualified domain name");
        }
        // One line of the 220 reply: a CR or LF would write lines of its own.
        if self.banner.len() > MAX_BANNER_BYTES
            || !self.banner.bytes().all(|b| (b' '..=b'~').contains(&b))
        {
            problems.bad(
                "server.banner",
                &format!("must be printable ASCII on one line, at most {MAX_BANNER_BYTES} bytes"),
            );
        }
        let bare_line_ending = match self.bare_line_ending.as_str() {
            "reject" => BareLineEnding::Reject,
            "normalize" | "normalise" => BareLineEnding::Normalize,
            _ => {
                problems.bad(
                    "server.bare_line_ending",
                    "must be \"reject\" or \"normalize\"",
                );
                BareLineEnding::Reject
            }
        };
        validate_limits(&self.limits, problems);
        let tls = self.tls.map(|t| {
            for (key, p) in [("certificate", &t.certificate), ("key", &t.key)] {
                if !p.is_file() {
                    problems.gateway_file(
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
        time_limit(problems, "server.greet_delay", self.greet_delay, false);
        time_limit(
            problems,
            "server.proxy_protocol_timeout",
            self.proxy_protocol_timeout,
            true,
        );
        let proxy_protocol_from = NetworkList::load(
            "server.proxy_protocol_from",
            &self.proxy_protocol_from,
            problems,
        );
        ServerConfig {
            listen: self.listen,
            hostname,
            banner: self.banner,
            bare_line_ending,
            greet_delay: self.greet_delay,
            limits: self.limits,
            tls,
            proxy_protocol_from,
            proxy_protocol_timeout: self.proxy_protocol_timeout,
        }
    }
}

/// Longest command line that can be configured (RFC 5321's is 512; extensions add some).
const MAX_COMMAND_LINE: usize = 65_536;

/// Most concurrent sessions a gateway can be configured for.
const MAX_SESSIONS: usize = 1_000_000;

fn validate_limits(l: &Limits, problems: &mut Problems) {
    // A line is buffered whole until its end: "unlimited" let one client with no line
    // feed grow the gateway by hundreds of megabytes.
    if !(512..=MAX_COMMAND_LINE).contains(&l.command_line_bytes) {
        problems.bad(
            "server.limits.command_line_bytes",
            &format!("must be between 512 (RFC 5321) and {MAX_COMMAND_LINE}"),
        );
    }
    if l.text_line_bytes < 1000 {
        problems.bad(
            "server.limits.text_line_bytes",
            "must be at least 1000 (RFC 5321)",
        );
    }
    // Sessions are semaphore permits (tokio panics past about 2.3e18) and each costs
    // memory: "unlimited" written as a huge number must be refused, not panic the listener.
    if l.max_sessions > MAX_SESSIONS {
        problems.bad(
            "server.limits.max_sessions",
            &format!("must be at most {MAX_SESSIONS}"),
        );
    }
    for (key, v) in [
        ("recipients_per_message", l.recipients_per_message),
        ("messages_per_session", l.messages_per_session),
        ("message_size_bytes", l.message_size_bytes),
        ("max_sessions", l.max_sessions),
        ("max_sessions_per_ip", l.max_sessions_per_ip),
        ("max_sessions_per_network", l.max_sessions_per_network),
        ("max_sessions_per_ipv6_site", l.max_sessions_per_ipv6_site),
        ("scan_part_bytes", l.scan_part_bytes),
        ("scan_raw_part_bytes", l.scan_raw_part_bytes),
        ("scan_mime_parts", l.scan_mime_parts),
    ] {
        if v == 0 {
            problems.bad(&format!("server.limits.{key}"), "must be greater than 0");
        }
    }
    if l.errors_before_disconnect == 0 {
        problems.bad(
            "server.limits.errors_before_disconnect",
            "must be greater than 0",
        );
    }
    for (key, value, max) in [
        ("text_line_bytes", l.text_line_bytes, 1 << 20),
        ("recipients_per_message", l.recipients_per_message, 100_000),
        ("message_size_bytes", l.message_size_bytes, 4 << 30),
        ("message_memory_bytes", l.message_memory_bytes, 4 << 30),
        (
            "message_memory_total_bytes",
            l.message_memory_total_bytes,
            64 << 30,
        ),
        (
            "message_memory_network_bytes",
            l.message_memory_network_bytes.unwrap_or(0),
            64 << 30,
        ),
        ("scan_part_bytes", l.scan_part_bytes, 64 << 20),
        ("scan_raw_part_bytes", l.scan_raw_part_bytes, 64 << 20),
        // Attached messages count as parts, and the parser walks them by recursion.
        ("scan_mime_parts", l.scan_mime_parts, 10_000),
    ] {
        problems.at_most(&format!("server.limits.{key}"), value, max);
    }
    validate_memory(l, problems);
    validate_admission(l, problems);
    // (key, value, whether zero is refused)
    for (key, v, positive) in [
        ("command_timeout", l.command_timeout, true),
        ("message_memory_hold", l.message_memory_hold, true),
        ("message_memory_wait", l.message_memory_wait, true),
        ("session_duration", l.session_duration, true),
        ("stress_idle_timeout", l.stress_idle_timeout, true),
        ("data_rate_grace", l.data_rate_grace, false),
        ("tarpit_delay", l.tarpit_delay, false),
        ("refused_quit_wait", l.refused_quit_wait, false),
        ("shutdown_grace", l.shutdown_grace, false),
    ] {
        time_limit(problems, &format!("server.limits.{key}"), v, positive);
    }
}

/// Message memory: a sample needs room, the budget must fit one message, the header
/// section must fit in memory.
fn validate_memory(l: &Limits, problems: &mut Problems) {
    const MIN_MEMORY: usize = 64 * 1024;
    if l.message_memory_bytes < MIN_MEMORY {
        problems.bad(
            "server.limits.message_memory_bytes",
            &format!("must be at least {MIN_MEMORY}"),
        );
    }
    if l.message_memory_total_bytes < l.message_memory_bytes {
        problems.bad(
            "server.limits.message_memory_total_bytes",
            "must be at least message_memory_bytes",
        );
    }
    if let Some(share) = l.message_memory_network_bytes {
        if share < l.message_memory_bytes || share > l.message_memory_total_bytes {
            problems.bad(
                "server.limits.message_memory_network_bytes",
                "must be between message_memory_bytes and message_memory_total_bytes",
            );
        }
    }
    if l.message_header_bytes < 1000 || l.message_header_bytes > l.message_memory_bytes {
        problems.bad(
            "server.limits.message_header_bytes",
            "must be between 1000 and message_memory_bytes",
        );
    }
    if !(50..=100_000).contains(&l.message_header_fields) {
        problems.bad(
            "server.limits.message_header_fields",
            "must be between 50 and 100000",
        );
    }
    if !(10..=l.message_header_fields).contains(&l.received_fields) {
        problems.bad(
            "server.limits.received_fields",
            "must be between 10 and message_header_fields",
        );
    }
    if l.scan_nesting_depth > 100 {
        problems.bad("server.limits.scan_nesting_depth", "must be at most 100");
    }
}

fn validate_admission(l: &Limits, problems: &mut Problems) {
    if !(1..=32).contains(&l.network_ipv4_prefix) {
        problems.bad(
            "server.limits.network_ipv4_prefix",
            "must be between 1 and 32",
        );
    }
    if !(1..=128).contains(&l.network_ipv6_prefix) {
        problems.bad(
            "server.limits.network_ipv6_prefix",
            "must be between 1 and 128",
        );
    }
    if !(1..=l.network_ipv6_prefix.min(128)).contains(&l.ipv6_site_prefix) {
        problems.bad(
            "server.limits.ipv6_site_prefix",
            "must be between 1 and server.limits.network_ipv6_prefix",
        );
    }
    if !(1..=100).contains(&l.stress_threshold_percent) {
        problems.bad(
            "server.limits.stress_threshold_percent",
            "must be between 1 and 100",
        );
    }
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
