//! The audit's result: everything seen plus the findings, rendered as a table for people or
//! as one JSON document for scripts, and the exit code it calls for.

use super::dns::{AddressLookup, MxKind, MxSet};
use super::findings::{self, Finding, FrontTier, Severity};
use super::fingerprint::AdminFingerprint;
use super::probe::{HostProbe, Session, StepResult};
use serde::Serialize;
use std::fmt::Write as _;

/// Exit code when no finding is serious.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code when at least one finding is serious.
pub const EXIT_SERIOUS: u8 = 1;
/// Exit code when the audit could not run.
pub const EXIT_COULD_NOT_RUN: u8 = 2;

/// Everything the audit saw and concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The audited domain (lower case).
    pub domain: String,
    /// The DNS server asked (`IP:PORT`, or `system`).
    pub resolver: String,
    /// The SMTP port probed.
    pub port: u16,
    /// Recipient of the GTUBE probe.
    pub rcpt: String,
    /// The random recipient of the unknown-recipient probe.
    pub unknown_rcpt: String,
    /// The MX set with every target resolved.
    pub mx: MxSet,
    /// The shape of the most preferred MX hosts.
    pub front_tier: FrontTier,
    /// One entry per probed address.
    pub hosts: Vec<HostProbe>,
    /// One entry per address of the domain itself that is no MX address (probed only when
    /// MX records are published).
    pub apex: Vec<HostProbe>,
    /// One entry per `--admin`.
    pub fingerprints: Vec<AdminFingerprint>,
    /// The findings, serious first.
    pub findings: Vec<Finding>,
}

/// How many findings of each severity, and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Serious findings.
    pub serious: usize,
    /// Warnings.
    pub warning: usize,
    /// Informational findings.
    pub info: usize,
    /// The process exit code (0 or 1).
    pub exit_code: u8,
}

/// The JSON document: the report with its summary.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    report: &'a Report,
    summary: Summary,
}

impl Report {
    /// Counts per severity and the exit code.
    pub fn summary(&self) -> Summary {
        let count = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        let serious = count(Severity::Serious);
        Summary {
            serious,
            warning: count(Severity::Warning),
            info: count(Severity::Info),
            exit_code: if serious > 0 {
                EXIT_SERIOUS
            } else {
                EXIT_CLEAN
            },
        }
    }

    /// 0 when nothing is serious, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        self.summary().exit_code
    }

    /// The one JSON document `--json` prints, fields in declaration order.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let document = Document {
            report: self,
            summary: self.summary(),
        };
        let mut text = serde_json::to_string_pretty(&document)?;
        text.push('\n');
        Ok(text)
    }

    /// The human-readable report.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "mxguard audit {}: resolver {}, SMTP port {}, GTUBE to {}\n",
            self.domain, self.resolver, self.port, self.rcpt
        );
        self.mx_section(&mut out);
        if !self.hosts.is_empty() || !self.apex.is_empty() {
            out.push_str("\nSMTP probes\n");
            let apex_rows = self.apex.iter().map(host_row).map(|mut row| {
                row[0].push_str(" (apex)");
                row
            });
            let rows: Vec<Vec<String>> = self.hosts.iter().map(host_row).chain(apex_rows).collect();
            table(
                &mut out,
                &[
                    "HOST",
                    "ADDRESS",
                    "SESSION",
                    "TLS",
                    "UNKNOWN RCPT",
                    "RELAY",
                    "GTUBE",
                ],
                &rows,
            );
        }
        if !self.fingerprints.is_empty() {
            out.push_str("\nPolicy fingerprints\n");
            let rows: Vec<Vec<String>> = self
                .fingerprints
                .iter()
                .map(|f| {
                    vec![
                        f.name.clone(),
                        f.address.to_string(),
                        match (&f.fingerprint, &f.error) {
                            (Some(fp), _) => findings::short(fp).to_owned(),
                            (None, e) => format!("- ({})", e.as_deref().unwrap_or("none")),
                        },
                    ]
                })
                .collect();
            table(&mut out, &["NAME", "ADMIN", "FINGERPRINT"], &rows);
        }
        out.push_str("\nFindings\n");
        if self.findings.is_empty() {
            out.push_str("  none\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .findings
                .iter()
                .map(|f| {
                    vec![
                        f.severity.name().to_owned(),
                        f.kind.name().to_owned(),
                        f.subject.clone(),
                        f.detail.clone(),
                    ]
                })
                .collect();
            table(&mut out, &["SEVERITY", "KIND", "SUBJECT", "DETAIL"], &rows);
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "\n{} serious, {} warning(s), {} info: exit {}",
            s.serious, s.warning, s.info, s.exit_code
        );
        out
    }

    fn mx_section(&self, out: &mut String) {
        match self.mx.kind {
            MxKind::Null => {
                out.push_str("MX records: null MX (the domain accepts no mail)\n");
                return;
            }
            MxKind::Implicit => out.push_str("MX records: none (A/AAAA fallback)\n"),
            MxKind::Published => out.push_str("MX records\n"),
        }
        let rows: Vec<Vec<String>> = self
            .mx
            .targets
            .iter()
            .map(|t| {
                let addresses = match &t.lookup {
                    AddressLookup::Found | AddressLookup::Partial(_) => t
                        .addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    AddressLookup::NoAddress => "-".to_owned(),
                    AddressLookup::Failed(_) => "? (lookup failed)".to_owned(),
                };
                let mut notes = Vec::new();
                if let Some(alias) = &t.cname {
                    notes.push(format!("CNAME for {alias}"));
                }
                if t.ip_literal {
                    notes.push("IP literal".to_owned());
                }
                if let AddressLookup::Partial(_) = &t.lookup {
                    notes.push("a lookup failed: more addresses may be unprobed".to_owned());
                }
                vec![
                    t.preference.to_string(),
                    t.host.clone(),
                    addresses,
                    notes.join(", "),
                ]
            })
            .collect();
        table(out, &["PREF", "HOST", "ADDRESSES", "NOTES"], &rows);
        let front = match &self.front_tier {
            FrontTier::None => return,
            FrontTier::Single { preference } => {
                format!("a single MX host (preference {preference})")
            }
            FrontTier::Equal { preference, hosts } => {
                format!("{hosts} hosts at preference {preference} (equal)")
            }
            FrontTier::Unequal { preferences } => {
                let list: Vec<String> = preferences.iter().map(ToString::to_string).collect();
                format!("unequal preferences {}", list.join(", "))
            }
        };
        let _ = writeln!(out, "  front tier: {front}");
    }
}

fn host_row(host: &HostProbe) -> Vec<String> {
    let (session, tls) = match &host.session {
        Session::Open {
            banner,
            esmtp,
            starttls_offered,
            tls,
        } => {
            let code = banner.split(' ').next().unwrap_or("");
            let hello = if *esmtp { "EHLO" } else { "HELO" };
            let tls = match (starttls_offered, tls) {
                (true, true) => "yes",
                (true, false) => "failed",
                (false, _) => "no",
            };
            (format!("{code} {hello}"), tls.to_owned())
        }
        Session::Refused { reply } => (format!("refused {}", first_word(reply)), "-".into()),
        Session::Unreachable { .. } => ("unreachable".to_owned(), "-".into()),
    };
    vec![
        host.target.clone(),
        host.address.to_string(),
        session,
        tls,
        cell(&host.unknown_recipient),
        cell(&host.relay),
        cell(&host.gtube),
    ]
}

/// `refused 550 at RCPT`, `ACCEPTED 250 at end of data`: the outcome of one probe.
fn cell(result: &Option<StepResult>) -> String {
    use super::probe::Outcome;
    let Some(r) = result else {
        return "-".to_owned();
    };
    let outcome = match r.outcome {
        // Capitals where a reader must look: an accepted probe is the bad news.
        Outcome::Accepted => "ACCEPTED",
        Outcome::Refused => "refused",
        Outcome::Deferred => "deferred",
        Outcome::Error => "failed",
    };
    match r.reply.as_deref() {
        Some(reply) => format!("{outcome} {} at {}", first_word(reply), r.stage.describe()),
        None => format!("{outcome} at {}", r.stage.describe()),
    }
}

fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or("")
}

/// Appends a table with two-space indentation and columns padded to their widest cell.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::from(" ");
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            text.push(' ');
            text.push_str(c);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(w - c.chars().count() + 1));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
