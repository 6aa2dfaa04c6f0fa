//! The admin listener from a test's side: raw HTTP requests to it, its `/metrics` parsed
//! as Prometheus text, and the observability fixture (a gateway with one rules file and a
//! fixed mix of SMTP traffic) the metrics, admin-endpoint and deploy-file tests share.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::client::SmtpClient;
use super::gateway::{admin_port, Gateway};
use super::gateway_config::GatewayConfig;
use super::internal_server::InternalServer;
use super::message::{dot_stuffed, message};
use super::{wait_until, GTUBE, REPLY_TIMEOUT};

// ---------------------------------------------------------------------------------------
// HTTP and exposition-format helpers
// ---------------------------------------------------------------------------------------

/// One HTTP response: status code, headers (lower-case names), body.
pub struct Http {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Sends `METHOD path` naming `host` over a fresh connection to the admin port (HTTP/1.1,
/// `Connection: close`) and reads until the listener closes it.
fn exchange(port: u16, method: &str, path: &str, host: &str) -> std::io::Result<Vec<u8>> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to admin port {port}: {e}"));
    s.set_read_timeout(Some(REPLY_TIMEOUT))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

/// `METHOD path` over a fresh connection to the admin port (HTTP/1.1, `Connection: close`).
pub fn http(port: u16, method: &str, path: &str) -> Http {
    http_naming(port, method, path, "127.0.0.1")
}

/// [`http`] with `host` in the request's `Host` field.
pub fn http_naming(port: u16, method: &str, path: &str, host: &str) -> Http {
    let raw = exchange(port, method, path, host)
        .unwrap_or_else(|e| panic!("exchange with admin port: {e}"));
    let raw = String::from_utf8(raw).expect("admin response is UTF-8");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Http {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Whether the admin port closes a connection that sends `GET path` without answering (a
/// client outside `metrics.allow`).
pub fn refused(port: u16, path: &str) -> bool {
    // The write may already meet the closed connection.
    match exchange(port, "GET", path, "127.0.0.1") {
        Ok(raw) => raw.is_empty(),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
    }
}

/// `GET path` on the admin port.
pub fn get(port: u16, path: &str) -> Http {
    http(port, "GET", path)
}

/// One sample of the text exposition format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Family name → type from `# TYPE`.
    pub types: BTreeMap<String, String>,
    /// Families with a `# HELP` line.
    pub helps: BTreeSet<String>,
}

impl Scrape {
    /// Parses the Prometheus text format (0.0.4); panics on a line it cannot read.
    pub fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        let mut helps = BTreeSet::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE line has a type");
                types.insert(name.to_string(), ty.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                helps.insert(name.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Scrape {
            samples,
            types,
            helps,
        }
    }

    /// Sum of the samples named `name` whose labels include all of `labels`
    /// (`None` when there is no such sample).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in &self.samples {
            if s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            {
                found = Some(found.unwrap_or(0.0) + s.value);
            }
        }
        found
    }

    /// Like `get` but 0 when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every sample name.
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }

    /// Label values of `label` across the samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// `name{a="x",b="y"} value` (labels optional; escaped quotes and backslashes handled).
fn parse_sample(line: &str) -> Sample {
    let bad = || -> ! { panic!("unparsable sample line {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 2);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => bad(),
                            },
                            Some('"') => break,
                            Some(c) => value.push(c),
                            None => bad(),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
        rest = &rest[end.unwrap_or_else(|| bad())..];
    }
    let value_text = rest.split_whitespace().next().unwrap_or_else(|| bad());
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| bad()),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// `GET /metrics`, checked for status 200 and the 0.0.4 text content type, then parsed.
pub fn scrape(port: u16) -> Scrape {
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.body);
    assert!(
        r.headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "content type: {:?}",
        r.headers.get("content-type")
    );
    Scrape::parse(&r.body)
}

// ---------------------------------------------------------------------------------------
// The gateway under test and its traffic
// ---------------------------------------------------------------------------------------

/// The fixture's rules file: one body rule the clean traffic message hits.
pub const RULES: &str = "body METRICS_TOKEN /zz-metrics-token-zz/\nscore METRICS_TOKEN 1.0\n";
/// The fixture's `[policy]` section: rules from `rules/`, the GTUBE check on.
pub const POLICY: &str = "[policy]\nrules_dir = \"rules\"\ngtube = true\n";

/// An internal server and a gateway running `POLICY` with `RULES` in `rules/local.cf`,
/// with the gateway's admin port.
pub fn start() -> (InternalServer, Gateway, u16) {
    let internal = InternalServer::start();
    let cfg = GatewayConfig::new(&internal)
        .toml(POLICY)
        .file("rules/local.cf", RULES);
    let gw = Gateway::start(cfg);
    let admin = admin_port(&gw);
    (internal, gw, admin)
}

/// A clean message (delivered), a relay-denied RCPT, a GTUBE message (rejected) and an
/// over-long command line (a limit hit). Returns after the clean message was delivered.
pub fn send_traffic(internal: &InternalServer, gw: &Gateway) {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let clean = message(
        "clean@metrics.test",
        "Quarterly report",
        "Hello, the figures are attached.\nzz-metrics-token-zz\n",
    );
    c.send_mail("sender@sender.test", &["user@example.test"], &clean)
        .expect(250, "2.0.0");

    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    let denied = c.cmd("RCPT TO:<victim@elsewhere.test>");
    assert_eq!(denied.code, 550, "relay-denied RCPT: {denied}");
    c.cmd("RSET").expect(250, "");

    let spam = message("gtube@metrics.test", "Test", &format!("{GTUBE}\n"));
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.cmd("DATA").expect(354, "");
    c.send(&dot_stuffed(&spam));
    let r = c.read_reply();
    assert_eq!(r.code, 550, "GTUBE must be rejected: {r}");

    let long = format!("NOOP {}", "x".repeat(700));
    let r = c.cmd(&long);
    assert_eq!(r.code / 100, 5, "over-long command: {r}");
    c.quit();

    internal.expect_message_id("clean@metrics.test");
}

/// Scrapes until `ok` holds for the scrape (the relay counts after the 250 it got).
pub fn scrape_until(port: u16, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    let done = wait_until(Duration::from_secs(15), || {
        let s = scrape(port);
        let good = ok(&s);
        last = Some(s);
        good
    });
    let last = last.expect("at least one scrape");
    assert!(done, "{what}: not seen in time; last scrape: {last:#?}");
    last
}
