//! `[tier]` and `[[tier.peers]]`: this gateway's place in an MX tier (its name and role,
//! the other members, the tier's HMAC key) and the bypass defences' settings.

use super::problems::{domain_key, time_limit, Problems};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A member's role: primaries are the equal-preference front MXes, backups the higher
/// preference numbers. Written in heartbeats by its configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A front MX.
    Primary,
    /// A backup MX.
    Backup,
}

impl Role {
    /// Name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
        }
    }

    fn parse(text: &str, key: &str, problems: &mut Problems) -> Role {
        match text {
            "primary" => Role::Primary,
            "backup" => Role::Backup,
            _ => {
                problems.bad(key, "must be \"primary\" or \"backup\"");
                Role::Primary
            }
        }
    }
}

/// What a backup does with a client while a primary is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassAction {
    /// Add `MX_BYPASS_BACKUP` (scored in the rules files).
    Score,
    /// Refuse every recipient with `451 4.7.1`: a real MTA retries, at a primary.
    Tempfail,
}

/// The tier's HMAC key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TierSecret(Arc<[u8]>);

impl TierSecret {
    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key from bytes (tests and tools that hold the key already).
    pub fn from_bytes(bytes: &[u8]) -> TierSecret {
        TierSecret(Arc::from(bytes))
    }

    /// Reads the key file: it must exist, hold something, and not be readable by others.
    pub fn load(path: &Path) -> Result<TierSecret, String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if meta.permissions().mode() & 0o004 != 0 {
                return Err(format!(
                    "{} is world-readable; chmod o-r it (it signs the tier's verdicts)",
                    path.display()
                ));
            }
        }
        let bytes = super::read_plain_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let key = bytes.trim_ascii();
        if key.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        // Stamps travel with the mail, so a short key can be guessed offline from one.
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "{} holds {} bytes, fewer than {MIN_KEY_BYTES}; make a key with \
                 `head -c 32 /dev/urandom | base64`",
                path.display(),
                key.len()
            ));
        }
        Ok(TierSecret(Arc::from(key)))
    }
}

/// The shortest tier key taken, in bytes.
const MIN_KEY_BYTES: usize = 16;

impl std::fmt::Debug for TierSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TierSecret({} bytes)", self.0.len())
    }
}

/// Another member of the tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its name (its `tier.name`).
    pub name: String,
    /// Its SMTP address (mail from it is mail from the tier).
    pub smtp: SocketAddr,
    /// Its admin listener (`/healthz`, `/policy`).
    pub admin: Option<SocketAddr>,
    /// Its role.
    pub role: Role,
}

/// What a member's name may not be: the refusal's text.
const MEMBER_NAME: &str = "must be a name without spaces, ';', '=' or ','";

/// Whether `name` can name a tier member: not empty, and none of the separators the
/// shared state's keys and values put between names.
fn is_member_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || matches!(c, ';' | '=' | ','))
}

/// The validated `[tier]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    /// This gateway's name in the tier (default: `server.hostname`).
    pub name: String,
    /// This gateway's role.
    pub role: Role,
    /// The key verdict stamps are signed with.
    pub secret: TierSecret,
    /// Where the key was read from.
    pub secret_file: PathBuf,
    /// The key `secret` replaced, still accepted on stamps (never used to sign), so mail
    /// stamped before a rotation and waiting in a queue or quarantine still verifies.
    pub previous_secret: Option<TierSecret>,
    /// Where that key was read from.
    pub previous_secret_file: Option<PathBuf>,
    /// What a backup does while a primary is up.
    pub bypass_action: BypassAction,
    /// How long the tier remembers a client's contacts (first-contact scoring).
    pub connection_memory: Duration,
    /// Contacts with three or more members within this window score `MX_FANOUT`.
    pub fanout_window: Duration,
    /// How often heartbeats are published and peers looked at.
    pub heartbeat_interval: Duration,
    /// How old a peer's verdict stamp may be to be trusted without filtering again.
    pub stamp_max_age: Duration,
    /// The other members.
    pub peers: Vec<PeerConfig>,
}

/// Why a member name that is not a host name is warned of (see
/// [`TierConfig::names_not_host_names`]).
pub const NOT_A_HOST_NAME: &str = "not a host name: Authentication-Results a sender forges for that member's host name are not removed; name each member by its host name";

impl TierConfig {
    /// The keys a stamp may be signed with: the tier's key (first: what signs), then the
    /// one it replaced.
    pub fn stamp_secrets(&self) -> impl Iterator<Item = &TierSecret> {
        std::iter::once(&self.secret).chain(&self.previous_secret)
    }

    /// [`Self::stamp_secrets`] as key bytes.
    pub fn stamp_keys(&self) -> Vec<&[u8]> {
        self.stamp_secrets().map(TierSecret::bytes).collect()
    }

    /// The members named otherwise than by a host name, with their keys. A member's
    /// `Authentication-Results` carry its host name, and a sender's forged ones are removed
    /// by the members' names: a short name (`gw1`) leaves results forged for that member's
    /// host name in place, and the internal server trusts them.
    pub fn names_not_host_names(&self) -> Vec<(String, &str)> {
        let own = std::iter::once(("tier.name".to_string(), self.name.as_str()));
        let peers = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("tier.peers[{i}].name"), p.name.as_str()));
        own.chain(peers)
            .filter(|(_, name)| !super::problems::is_plausible_hostname(name))
            .collect()
    }

    /// Whether any primary is configured besides this gateway.
    pub fn has_primaries(&self) -> bool {
        self.primary_peers().next().is_some()
    }

    /// The names of the peers that are primaries.
    pub fn primary_peers(&self) -> impl Iterator<Item = &str> {
        self.peers
            .iter()
            .filter(|p| p.role == Role::Primary)
            .map(|p| p.name.as_str())
    }

    /// How many primaries the tier has, this gateway included.
    pub fn primaries(&self) -> usize {
        self.primary_peers().count() + usize::from(self.role == Role::Primary)
    }
}

/// `[tier]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    previous_secret_file: Option<PathBuf>,
    #[serde(default)]
    bypass_action: Option<String>,
    #[serde(default, with = "humantime_serde")]
    connection_memory: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    fanout_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stamp_max_age: Option<Duration>,
    #[serde(default)]
    peers: Vec<RawPeer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    smtp: SocketAddr,
    #[serde(default)]
    admin: Option<SocketAddr>,
    role: String,
}

impl RawTier {
    /// The secret files it names, whether or not they read.
    pub(super) fn named_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.secret_file.iter().chain(&self.previous_secret_file)
    }

    /// Validates the section; `hostname` is the default member name.
    pub(super) fn validate(self, hostname: &str, problems: &mut Problems) -> Option<TierConfig> {
        // Read as `server.hostname` is (lower case, no trailing dot): the heartbeat key is
        // the name, and a peer written `GW1.Example.Test` must find gw1's.
        let name = self
            .name
            .map(|n| domain_key(&n))
            .unwrap_or_else(|| hostname.to_owned());
        if !is_member_name(&name) {
            problems.bad("tier.name", MEMBER_NAME);
        }
        let role = Role::parse(
            self.role.as_deref().unwrap_or("primary"),
            "tier.role",
            problems,
        );
        let bypass_action = match self.bypass_action.as_deref() {
            None | Some("score") => BypassAction::Score,
            Some("tempfail") => BypassAction::Tempfail,
            Some(_) => {
                problems.bad("tier.bypass_action", "must be \"score\" or \"tempfail\"");
                BypassAction::Score
            }
        };
        let Some(secret_file) = self.secret_file else {
            problems.bad(
                "tier.secret_file",
                "required: the tier's HMAC key (e.g. 32 random bytes, mode 0600)",
            );
            return None;
        };
        let secret = match TierSecret::load(&secret_file) {
            Ok(s) => s,
            Err(e) => {
                problems.bad("tier.secret_file", &e);
                return None;
            }
        };
        let previous_secret = match self.previous_secret_file.as_deref().map(TierSecret::load) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                problems.bad("tier.previous_secret_file", &e);
                return None;
            }
        };
        let mut peers: Vec<PeerConfig> = Vec::new();
        for (i, mut p) in self.peers.into_iter().enumerate() {
            let key = format!("tier.peers[{i}]");
            p.name = domain_key(&p.name);
            if p.name == name {
                problems.bad(&format!("{key}.name"), "is this gateway's own tier.name");
            }
            if peers.iter().any(|q| q.name == p.name) {
                problems.bad(
                    &format!("{key}.name"),
                    &format!("{:?} is listed twice", p.name),
                );
            }
            // The state keys and the embedded store's contact lists hold members' names
            // between these separators (review: a peer's name was never checked).
            if !is_member_name(&p.name) {
                problems.bad(&format!("{key}.name"), MEMBER_NAME);
            }
            // Mail is told a peer's by the client's address alone (`Tier::peer_at`).
            let ip = p.smtp.ip().to_canonical();
            if peers.iter().any(|q| q.smtp.ip().to_canonical() == ip) {
                problems.bad(
                    &format!("{key}.smtp"),
                    &format!("{ip} is another peer's address"),
                );
            }
            let role = Role::parse(&p.role, &format!("{key}.role"), problems);
            peers.push(PeerConfig {
                name: p.name,
                smtp: p.smtp,
                admin: p.admin,
                role,
            });
        }
        let connection_memory = self.connection_memory.unwrap_or(Duration::from_secs(600));
        let fanout_window = self.fanout_window.unwrap_or(Duration::from_secs(30));
        let heartbeat_interval = self.heartbeat_interval.unwrap_or(Duration::from_secs(5));
        for (key, d) in [
            ("tier.connection_memory", connection_memory),
            ("tier.fanout_window", fanout_window),
            ("tier.heartbeat_interval", heartbeat_interval),
        ] {
            if d.as_secs() == 0 {
                problems.bad(key, "must be at least 1s");
            }
            time_limit(problems, key, d, false);
        }
        // Contacts are forgotten after `connection_memory`: a longer window was silently
        // cut to it.
        if fanout_window > connection_memory {
            problems.bad(
                "tier.fanout_window",
                &format!(
                    "{}s (30s unless set) must not be longer than tier.connection_memory, {}s (contacts are kept that long)",
                    fanout_window.as_secs(),
                    connection_memory.as_secs()
                ),
            );
        }
        if let Some(age) = self.stamp_max_age {
            time_limit(problems, "tier.stamp_max_age", age, false);
        }
        Some(TierConfig {
            name,
            role,
            secret,
            secret_file,
            previous_secret,
            previous_secret_file: self.previous_secret_file,
            bypass_action,
            connection_memory,
            fanout_window,
            heartbeat_interval,
            stamp_max_age: self.stamp_max_age.unwrap_or(Duration::from_secs(3600)),
            peers,
        })
    }
}
/// A member named `name` with `role`, the default settings and `peers` (name and role; SMTP
/// addresses 198.51.100.N:25, no admin listener), for tests of the tier's logic.
#[cfg(test)]
impl TierConfig {
    pub(crate) fn for_test(name: &str, role: Role, peers: &[(&str, Role)]) -> TierConfig {
        TierConfig {
            name: name.into(),
            role,
            secret: TierSecret::from_bytes(b"k"),
            secret_file: "tier.key".into(),
            previous_secret: None,
            previous_secret_file: None,
            bypass_action: BypassAction::Score,
            connection_memory: Duration::from_secs(600),
            fanout_window: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            stamp_max_age: Duration::from_secs(3600),
            peers: peers
                .iter()
                .enumerate()
                .map(|(i, (name, role))| PeerConfig {
                    name: (*name).into(),
                    smtp: SocketAddr::from(([198, 51, 100, (i + 1) as u8], 25)),
                    admin: None,
                    role: *role,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_named_by_short_names_are_found() {
        let tier = TierConfig::for_test(
            "gw1",
            Role::Primary,
            &[("gw2.example.test", Role::Primary), ("bk1", Role::Backup)],
        );
        assert_eq!(
            tier.names_not_host_names(),
            [
                ("tier.name".to_string(), "gw1"),
                ("tier.peers[1].name".to_string(), "bk1"),
            ]
        );
        let tier = TierConfig::for_test(
            "gw1.example.test",
            Role::Primary,
            &[("bk1.example.test.", Role::Backup)],
        );
        assert!(tier.names_not_host_names().is_empty());
    }
}
