//! The test gateway's configuration: a builder with test-friendly defaults (short
//! timeouts and retries, no real DNS) rendered into the `mxguard.toml` a run starts with.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::dns_stub::nxdomain_dns_port;
use super::internal_server::InternalServer;
use super::{DOMAIN, HOSTNAME};

/// What to put in the test gateway's configuration file.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `relay.internal` ports on 127.0.0.1, in order.
    pub internal: Vec<u16>,
    /// `relay.domains`.
    pub domains: Vec<String>,
    /// `server.bare_line_ending`.
    pub bare_line_ending: String,
    /// `[server.limits]` keys with raw TOML values (e.g. `("command_timeout", "\"1s\"")`).
    pub limits: BTreeMap<String, String>,
    /// Extra `[server]` keys with raw TOML values.
    pub server: BTreeMap<String, String>,
    /// Extra `[relay]` keys with raw TOML values.
    pub relay: BTreeMap<String, String>,
    /// Domain → recipient local parts, written to list files.
    pub recipient_lists: BTreeMap<String, Vec<String>>,
    /// `relay.recipients.callout`.
    pub callout: bool,
    /// Extra `[metrics]` keys with raw TOML values (`listen` is set by the harness).
    pub metrics: BTreeMap<String, String>,
    /// `[spool]` keys with raw TOML values; `dir` defaults to `"spool"` in the working
    /// directory (a test may point it at a file system of its own).
    pub spool: BTreeMap<String, String>,
    /// `[server.tls]` certificate and key PEM contents.
    pub tls: Option<(String, String)>,
    /// Extra arguments after `serve --config PATH`.
    pub serve_args: Vec<String>,
    /// Raw TOML appended at the end of the configuration (e.g. a `[policy]` section).
    pub extra_toml: String,
    /// Files (path relative to the working directory, contents) written before each start.
    pub files: Vec<(String, String)>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let mut limits = BTreeMap::new();
        limits.insert("command_timeout".into(), "\"20s\"".into());
        limits.insert("data_rate_grace".into(), "\"20s\"".into());
        limits.insert("shutdown_grace".into(), "\"2s\"".into());
        limits.insert("errors_before_tarpit".into(), "1000".into());
        limits.insert("errors_before_disconnect".into(), "1000".into());
        let mut relay = BTreeMap::new();
        relay.insert("retry_initial".into(), "\"200ms\"".into());
        relay.insert("retry_max".into(), "\"1s\"".into());
        relay.insert("retry_factor".into(), "2.0".into());
        relay.insert("connect_timeout".into(), "\"2s\"".into());
        relay.insert("command_timeout".into(), "\"10s\"".into());
        relay.insert("data_init_timeout".into(), "\"10s\"".into());
        relay.insert("data_timeout".into(), "\"10s\"".into());
        relay.insert("idle_timeout".into(), "\"1s\"".into());
        GatewayConfig {
            internal: Vec::new(),
            domains: vec![DOMAIN.into()],
            bare_line_ending: "reject".into(),
            limits,
            server: BTreeMap::new(),
            relay,
            recipient_lists: BTreeMap::new(),
            callout: false,
            metrics: BTreeMap::new(),
            spool: BTreeMap::new(),
            tls: None,
            serve_args: Vec::new(),
            extra_toml: String::new(),
            files: Vec::new(),
        }
    }
}

impl GatewayConfig {
    /// Default test config relaying to `internal`.
    pub fn new(internal: &InternalServer) -> GatewayConfig {
        GatewayConfig {
            internal: vec![internal.port],
            ..Default::default()
        }
    }

    /// Sets a `[server.limits]` key (raw TOML value).
    pub fn limit(mut self, key: &str, value: &str) -> Self {
        self.limits.insert(key.into(), value.into());
        self
    }

    /// Sets a `[server]` key (raw TOML value).
    pub fn server_key(mut self, key: &str, value: &str) -> Self {
        self.server.insert(key.into(), value.into());
        self
    }

    /// Sets a `[relay]` key (raw TOML value).
    pub fn relay_key(mut self, key: &str, value: &str) -> Self {
        self.relay.insert(key.into(), value.into());
        self
    }

    /// Sets a `[metrics]` key (raw TOML value).
    pub fn metrics_key(mut self, key: &str, value: &str) -> Self {
        self.metrics.insert(key.into(), value.into());
        self
    }

    /// Sets a `[spool]` key (raw TOML value).
    pub fn spool_key(mut self, key: &str, value: &str) -> Self {
        self.spool.insert(key.into(), value.into());
        self
    }

    /// Appends raw TOML (e.g. a `[policy]` section) to the configuration.
    pub fn toml(mut self, text: &str) -> Self {
        self.extra_toml.push_str(text);
        if !self.extra_toml.ends_with('\n') {
            self.extra_toml.push('\n');
        }
        self
    }

    /// Writes `contents` to `path` (relative to the working directory) before the start.
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.files.push((path.into(), contents.into()));
        self
    }

    /// The configuration file text for a gateway listening on `port` (SMTP) and
    /// `metrics_port` (admin); writes the extra files, certificate and recipient lists
    /// into `dir` on the way.
    pub(super) fn render(&self, dir: &Path, port: u16, metrics_port: u16) -> String {
        let q = |s: &str| format!("{s:?}");
        for (rel, contents) in &self.files {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(p, contents).unwrap();
        }
        let mut t = String::new();
        t.push_str("[server]\n");
        t.push_str(&format!("listen = [\"127.0.0.1:{port}\"]\n"));
        t.push_str(&format!("hostname = {}\n", q(HOSTNAME)));
        t.push_str(&format!(
            "bare_line_ending = {}\n",
            q(&self.bare_line_ending)
        ));
        for (k, v) in &self.server {
            t.push_str(&format!("{k} = {v}\n"));
        }
        t.push_str("\n[server.limits]\n");
        for (k, v) in &self.limits {
            t.push_str(&format!("{k} = {v}\n"));
        }
        if let Some((cert, key)) = &self.tls {
            fs::write(dir.join("cert.pem"), cert).unwrap();
            fs::write(dir.join("key.pem"), key).unwrap();
            t.push_str("\n[server.tls]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\n");
        }
        t.push_str("\n[relay]\n");
        let domains: Vec<String> = self.domains.iter().map(|d| q(d)).collect();
        t.push_str(&format!("domains = [{}]\n", domains.join(", ")));
        let internal: Vec<String> = self
            .internal
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        t.push_str(&format!("internal = [{}]\n", internal.join(", ")));
        for (k, v) in &self.relay {
            t.push_str(&format!("{k} = {v}\n"));
        }
        t.push_str("\n[relay.recipients]\n");
        t.push_str(&format!("callout = {}\n", self.callout));
        t.push_str("callout_timeout = \"3s\"\n");
        if !self.recipient_lists.is_empty() {
            fs::create_dir_all(dir.join("lists")).unwrap();
            let mut entries = Vec::new();
            for (domain, locals) in &self.recipient_lists {
                let rel = format!("lists/{domain}");
                fs::write(dir.join(&rel), locals.join("\n") + "\n").unwrap();
                entries.push(format!("{} = {}", q(domain), q(&rel)));
            }
            t.push_str(&format!("lists = {{ {} }}\n", entries.join(", ")));
        }
        t.push_str("\n[spool]\n");
        if !self.spool.contains_key("dir") {
            t.push_str("dir = \"spool\"\n");
        }
        for (k, v) in &self.spool {
            t.push_str(&format!("{k} = {v}\n"));
        }
        t.push_str(&format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ));
        for (k, v) in &self.metrics {
            t.push_str(&format!("{k} = {v}\n"));
        }
        t.push_str("\n[log]\nformat = \"text\"\n");
        // Gateways under test never ask a real resolver: unless a test brings its own DNS
        // server, every name is answered NXDOMAIN at once by a local stub.
        if !self.extra_toml.contains("[dns]") {
            t.push_str(&format!(
                "\n[dns]\nnameservers = [\"127.0.0.1:{}\"]\n",
                nxdomain_dns_port()
            ));
        }
        if !self.extra_toml.is_empty() {
            t.push('\n');
            t.push_str(&self.extra_toml);
        }
        t
    }
}
