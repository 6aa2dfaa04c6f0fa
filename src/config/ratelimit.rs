//! `[[ratelimit]]`: limits counted tier-wide in the state backend (GCRA), each on one key
//! of the session at one stage.

use super::problems::{is_symbol, time_limit, Problems};
use serde::Deserialize;
use std::time::Duration;

/// What a limit counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    /// The client address.
    ClientIp,
    /// The client network (`greylist.ipv4_prefix` / `ipv6_prefix`).
    ClientNet,
    /// The envelope sender.
    Sender,
    /// The envelope sender's domain.
    SenderDomain,
    /// Each recipient.
    Recipient,
    /// The HELO name.
    Helo,
}

impl RateKey {
    /// Whether it counts the client (its address, network or HELO name) rather than the
    /// envelope (sender, sender domain, recipient).
    pub fn is_of_the_client(self) -> bool {
        matches!(self, RateKey::ClientIp | RateKey::ClientNet | RateKey::Helo)
    }

    /// Name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RateKey::ClientIp => "client_ip",
            RateKey::ClientNet => "client_net",
            RateKey::Sender => "sender",
            RateKey::SenderDomain => "sender_domain",
            RateKey::Recipient => "recipient",
            RateKey::Helo => "helo",
        }
    }
}

/// At which stage a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateStage {
    /// Each connection.
    Connect,
    /// Each MAIL FROM.
    Mail,
    /// Each RCPT TO.
    Rcpt,
    /// Each message at end of data.
    Data,
}

/// What happens over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateAction {
    /// `450 4.7.1` (`421 4.7.0` at connect).
    Tempfail,
    /// Add the limit's symbol (scored in the rules files).
    Score,
}

/// One validated `[[ratelimit]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Name in logs and metrics.
    pub name: String,
    /// What it counts per.
    pub key: RateKey,
    /// Events allowed per `per` on average.
    pub limit: u64,
    /// The period of `limit`.
    pub per: Duration,
    /// Events allowed at once (default: `limit`).
    pub burst: u64,
    /// Where it counts.
    pub stage: RateStage,
    /// What happens over the limit.
    pub action: RateAction,
    /// The symbol added over the limit (both actions add it).
    pub symbol: String,
}

impl RateLimitConfig {
    /// Whether it counts recipients and refuses over its limit. Only such a limit leaves
    /// the null sender to the end of data (where greylisting takes it): one that scores
    /// must run before the rules, which read its symbol, and that greylisting runs after
    /// them.
    pub fn refuses_recipients(&self) -> bool {
        self.key == RateKey::Recipient && self.action == RateAction::Tempfail
    }
}

/// One `[[ratelimit]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    name: String,
    key: String,
    limit: u64,
    #[serde(with = "humantime_serde")]
    per: Duration,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
}

/// Validates every `[[ratelimit]]`.
pub(super) fn validate(raw: Vec<RawRateLimit>, problems: &mut Problems) -> Vec<RateLimitConfig> {
    let mut out: Vec<RateLimitConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("ratelimit[{i}]");
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problems.bad(&format!("{at}.name"), "letters, digits, '_' and '-' only");
        }
        if out.iter().any(|o| o.name == r.name) {
            problems.bad(
                &format!("{at}.name"),
                &format!("{:?} is used twice", r.name),
            );
        }
        let key = match r.key.as_str() {
            "client_ip" => RateKey::ClientIp,
            "client_net" => RateKey::ClientNet,
            "sender" => RateKey::Sender,
            "sender_domain" => RateKey::SenderDomain,
            "recipient" => RateKey::Recipient,
            "helo" => RateKey::Helo,
            _ => {
                problems.bad(
                    &format!("{at}.key"),
                    "must be client_ip, client_net, sender, sender_domain, recipient or helo",
                );
                RateKey::ClientIp
            }
        };
        let stage = match r.stage.as_deref() {
            Some("connect") => RateStage::Connect,
            Some("mail") => RateStage::Mail,
            Some("rcpt") => RateStage::Rcpt,
            Some("data") => RateStage::Data,
            None => default_stage(key),
            Some(_) => {
                problems.bad(
                    &format!("{at}.stage"),
                    "must be connect, mail, rcpt or data",
                );
                RateStage::Mail
            }
        };
        let known_at_stage = match key {
            RateKey::ClientIp | RateKey::ClientNet => true,
            RateKey::Helo => stage != RateStage::Connect,
            RateKey::Sender | RateKey::SenderDomain => {
                matches!(stage, RateStage::Mail | RateStage::Rcpt | RateStage::Data)
            }
            RateKey::Recipient => stage == RateStage::Rcpt,
        };
        if !known_at_stage {
            problems.bad(
                &format!("{at}.stage"),
                &format!("key {} is not known at that stage", key.as_str()),
            );
        }
        let action = match r.action.as_deref() {
            None | Some("tempfail") => RateAction::Tempfail,
            Some("score") => RateAction::Score,
            Some(_) => {
                problems.bad(&format!("{at}.action"), "must be \"tempfail\" or \"score\"");
                RateAction::Tempfail
            }
        };
        if r.limit == 0 {
            problems.bad(&format!("{at}.limit"), "must be greater than 0");
        }
        time_limit(problems, &format!("{at}.per"), r.per, true);
        // The counter keeps whole milliseconds between events: more than one a millisecond
        // was silently enforced as one (`limit = 5000, per = "1s"` allowed 1000).
        if r.limit > 0 && u128::from(r.limit) > r.per.as_millis() {
            problems.bad(
                &format!("{at}.limit"),
                "more than one event per millisecond of `per` cannot be counted; lengthen `per`",
            );
        }
        let burst = r.burst.unwrap_or(r.limit);
        if burst == 0 {
            problems.bad(&format!("{at}.burst"), "must be greater than 0");
        }
        let symbol = r.symbol.unwrap_or_else(|| {
            format!(
                "RATELIMIT_{}",
                r.name.to_ascii_uppercase().replace('-', "_")
            )
        });
        if !is_symbol(&symbol) {
            problems.bad(&format!("{at}.symbol"), "must be an upper-case symbol name");
        }
        out.push(RateLimitConfig {
            name: r.name,
            key,
            limit: r.limit,
            per: r.per,
            burst,
            stage,
            action,
            symbol,
        });
    }
    out
}

/// The first stage at which the key is known.
fn default_stage(key: RateKey) -> RateStage {
    match key {
        RateKey::ClientIp | RateKey::ClientNet => RateStage::Connect,
        RateKey::Helo | RateKey::Sender | RateKey::SenderDomain => RateStage::Mail,
        RateKey::Recipient => RateStage::Rcpt,
    }
}
