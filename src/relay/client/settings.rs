//! What a connection needs to know from `[relay]`, and a cache of it per configuration
//! snapshot.

use super::tls;
use crate::config::{Config, RelayConfig, RelayTls, TierSecret};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// Everything a connection needs to know, taken once from [`RelayConfig`].
#[derive(Clone)]
pub struct ClientSettings {
    /// Name sent in EHLO/HELO.
    pub helo_name: String,
    /// STARTTLS policy.
    pub tls: RelayTls,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Deadline for each reply other than to DATA and after the message body.
    pub command_timeout: Duration,
    /// Deadline for the reply to DATA.
    pub data_init_timeout: Duration,
    /// Deadline for writing the body and for the reply after it.
    pub data_timeout: Duration,
    pub(super) tls_connector: TlsConnector,
    /// One 7-bit conversion at a time (see `Connection::seven_bit_copy`), shared by the
    /// settings of every configuration snapshot so that a reload does not add one.
    pub(super) conversions: Arc<Semaphore>,
    /// The tier's keys (the signing one first), to sign again the stamp of a copy
    /// converted to 7-bit MIME (whose body and MIME fields the stamp made at acceptance no
    /// longer matches).
    pub(super) stamp_keys: Vec<TierSecret>,
    /// Cancelled when the gateway stops: no transaction sends its end of data after that
    /// (see [`super::ClientError::Stopping`]).
    pub(super) stopping: CancellationToken,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("helo_name", &self.helo_name)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("data_init_timeout", &self.data_init_timeout)
            .field("data_timeout", &self.data_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientSettings {
    /// Settings for delivery connections, from the relay configuration.
    pub fn from_config(relay: &RelayConfig) -> ClientSettings {
        ClientSettings::with_shared(
            relay,
            tls::tls_connector(),
            one_conversion(),
            CancellationToken::new(),
        )
    }

    /// Settings for a one-off probe of someone else's MX (`mxguard audit`): one deadline
    /// for every step, since a probe sends a tiny message and has no relay configuration.
    pub fn for_probe(helo_name: &str, tls: RelayTls, timeout: Duration) -> ClientSettings {
        ClientSettings {
            helo_name: helo_name.to_owned(),
            tls,
            connect_timeout: timeout,
            command_timeout: timeout,
            data_init_timeout: timeout,
            data_timeout: timeout,
            tls_connector: tls::tls_connector(),
            conversions: one_conversion(),
            stamp_keys: Vec::new(),
            stopping: CancellationToken::new(),
        }
    }

    /// Whether the gateway is stopping (see [`super::ClientError::Stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Ends when the gateway begins to stop.
    pub async fn stopped(&self) {
        self.stopping.cancelled().await
    }

    /// Whether a session opened under `self` is one `other` would open: same name, TLS
    /// policy and deadlines. A kept connection that is not must not carry on after a
    /// reload (`tls = "required"` would not apply to it).
    pub fn same_terms(&self, other: &ClientSettings) -> bool {
        self.helo_name == other.helo_name
            && self.tls == other.tls
            && self.connect_timeout == other.connect_timeout
            && self.command_timeout == other.command_timeout
            && self.data_init_timeout == other.data_init_timeout
            && self.data_timeout == other.data_timeout
    }

    /// The same, sharing an existing TLS connector (building one is costly), the
    /// conversion turn and the stop signal.
    fn with_shared(
        relay: &RelayConfig,
        tls_connector: TlsConnector,
        conversions: Arc<Semaphore>,
        stopping: CancellationToken,
    ) -> ClientSettings {
        ClientSettings {
            helo_name: relay.helo_name.clone(),
            tls: relay.tls,
            connect_timeout: relay.connect_timeout,
            command_timeout: relay.command_timeout,
            data_init_timeout: relay.data_init_timeout,
            data_timeout: relay.data_timeout,
            tls_connector,
            conversions,
            stamp_keys: Vec::new(),
            stopping,
        }
    }
}

/// Client settings per configuration snapshot: rebuilt only when a reload replaced the
/// configuration, all sharing one TLS connector (building one is costly).
pub struct SettingsCache {
    connector: TlsConnector,
    conversions: Arc<Semaphore>,
    stopping: CancellationToken,
    cached: Mutex<Option<(Arc<Config>, ClientSettings)>>,
}

impl fmt::Debug for SettingsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SettingsCache")
    }
}

impl Default for SettingsCache {
    fn default() -> Self {
        SettingsCache::stopped_by(CancellationToken::new())
    }
}

impl SettingsCache {
    /// A cache whose settings give up transactions before their end of data once
    /// `stopping` is cancelled.
    pub fn stopped_by(stopping: CancellationToken) -> SettingsCache {
        SettingsCache {
            connector: tls::tls_connector(),
            conversions: one_conversion(),
            stopping,
            cached: Mutex::new(None),
        }
    }

    /// The client settings of `config`, and whether `config` is another snapshot than
    /// the one asked for before (a reload replaced it).
    pub fn get(&self, config: &Arc<Config>) -> (ClientSettings, bool) {
        // A poisoned lock only means a panic elsewhere; the cache is still valid.
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, settings)) = cached.as_ref() {
            if Arc::ptr_eq(seen, config) {
                return (settings.clone(), false);
            }
        }
        let settings = ClientSettings {
            stamp_keys: config
                .tier
                .iter()
                .flat_map(|t| t.stamp_secrets())
                .cloned()
                .collect(),
            ..ClientSettings::with_shared(
                &config.relay,
                self.connector.clone(),
                self.conversions.clone(),
                self.stopping.clone(),
            )
        };
        *cached = Some((config.clone(), settings.clone()));
        (settings, true)
    }
}

/// The turn of 7-bit conversions: one at a time.
fn one_conversion() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(1))
}
