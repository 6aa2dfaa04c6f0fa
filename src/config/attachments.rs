//! `[attachments]`: the attachment policy (blocked names and types, archives opened with
//! limits). Every limit has a default that keeps a hostile archive cheap to judge.

use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::time::Duration;

/// Extensions refused by default: programs, scripts, shortcuts, installers, disk images
/// and the archive formats malware favours that cannot be opened here. Close to the
/// lists Gmail and Microsoft 365 block, without the Office macro formats that businesses
/// exchange every day, nor `.url` and `.website` (Outlook Express sent links as such
/// shortcuts, and the training corpus holds one in ham) and `.py` (source code).
pub const DEFAULT_BLOCKED_EXTENSIONS: &[&str] = &[
    "ace",
    "ade",
    "adp",
    "apk",
    "application",
    "appref-ms",
    "appx",
    "appxbundle",
    "arj",
    "bat",
    "cab",
    "chm",
    "cmd",
    "com",
    "cpl",
    "diagcab",
    "diagcfg",
    "diagpkg",
    "dll",
    "dmg",
    "ex_",
    "exe",
    "gadget",
    "hlp",
    "hpj",
    "hta",
    "img",
    "inf",
    "ins",
    "iso",
    "isp",
    "jar",
    "jnlp",
    "js",
    "jse",
    "lib",
    "library-ms",
    "lnk",
    "mde",
    "mjs",
    "msc",
    "msh",
    "msi",
    "msix",
    "msixbundle",
    "msp",
    "mst",
    "msu",
    "nsh",
    "pif",
    "ps1",
    "ps1xml",
    "ps2",
    "psc1",
    "psd1",
    "psm1",
    "pyc",
    "pyo",
    "pyw",
    "pyz",
    "pyzw",
    "reg",
    "scf",
    "scr",
    "sct",
    "searchconnector-ms",
    "settingcontent-ms",
    "shb",
    "shs",
    "sys",
    "vb",
    "vbe",
    "vbs",
    "vhd",
    "vhdx",
    "vxd",
    "wsb",
    "wsc",
    "wsf",
    "wsh",
    "xbap",
    "xll",
    "xnk",
];

/// Declared types refused by default: the MIME names of the same programs.
pub const DEFAULT_BLOCKED_TYPES: &[&str] = &[
    "application/hta",
    "application/java-archive",
    "application/vnd.microsoft.portable-executable",
    "application/x-dosexec",
    "application/x-executable",
    "application/x-iso9660-image",
    "application/x-java-jnlp-file",
    "application/x-ms-application",
    "application/x-ms-dos-executable",
    "application/x-ms-installer",
    "application/x-ms-shortcut",
    "application/x-msdos-program",
    "application/x-msdownload",
    "application/x-msi",
];

/// The validated `[attachments]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentsConfig {
    /// The attachment policy runs at end of data.
    pub enabled: bool,
    /// Lower-case extensions without the dot.
    pub blocked_extensions: Vec<String>,
    /// Lower-case `type/subtype` names.
    pub blocked_types: Vec<String>,
    /// Archive levels opened (an attached zip, gzip or tar is level 1, an archive inside it
    /// level 2; a `.tar.gz` is one level); 0 opens none.
    pub max_archive_depth: usize,
    /// Archive entries looked at per message, over every archive and level.
    pub max_archive_entries: usize,
    /// Bytes decompressed per message, over every archive and level (and as many again
    /// for reading a `.tar.gz` on for its names once they are spent).
    pub max_expanded_bytes: u64,
    /// Messages kept on disk (bigger than `server.limits.message_memory_bytes`) whose
    /// attachments are decoded at the same time: each takes memory of about its size, so
    /// this bounds that memory whatever the number of sessions.
    pub disk_inspections: usize,
    /// How long a message waits for its inspection turn before it is answered `451`.
    pub inspection_wait: Duration,
}

/// `[attachments]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAttachments {
    enabled: bool,
    blocked_extensions: Vec<String>,
    blocked_types: Vec<String>,
    max_archive_depth: usize,
    max_archive_entries: usize,
    max_expanded_bytes: u64,
    disk_inspections: usize,
    #[serde(with = "humantime_serde")]
    inspection_wait: Duration,
}

/// Most archive entries one message may open.
const MAX_ENTRIES: usize = 1_000_000;
/// Most bytes one message's archives may expand to.
const MAX_EXPANDED: u64 = 4 << 30;

impl Default for RawAttachments {
    fn default() -> Self {
        Self {
            enabled: true,
            blocked_extensions: to_strings(DEFAULT_BLOCKED_EXTENSIONS),
            blocked_types: to_strings(DEFAULT_BLOCKED_TYPES),
            max_archive_depth: 3,
            max_archive_entries: 1000,
            max_expanded_bytes: 64 * 1024 * 1024,
            disk_inspections: 2,
            inspection_wait: Duration::from_secs(60),
        }
    }
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        RawAttachments::default().validate(&mut Problems::default())
    }
}

fn to_strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Deepest archive nesting that may be configured: each level buffers one entry.
const MAX_DEPTH: usize = 16;

impl RawAttachments {
    pub(super) fn validate(self, problems: &mut Problems) -> AttachmentsConfig {
        let mut blocked_extensions = Vec::new();
        for ext in &self.blocked_extensions {
            let e = ext.trim().trim_start_matches('.').to_ascii_lowercase();
            if e.is_empty() || e.contains(['.', '/', '\\']) || e.contains(char::is_whitespace) {
                problems.bad(
                    "attachments.blocked_extensions",
                    &format!("{ext:?} is not a file extension (write \"exe\" or \".exe\")"),
                );
            } else {
                blocked_extensions.push(e);
            }
        }
        let mut blocked_types = Vec::new();
        for t in &self.blocked_types {
            let lower = t.trim().to_ascii_lowercase();
            match lower.split_once('/') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains('/') => {
                    blocked_types.push(lower)
                }
                _ => problems.bad(
                    "attachments.blocked_types",
                    &format!("{t:?} is not a MIME type (type/subtype)"),
                ),
            }
        }
        blocked_extensions.sort();
        blocked_extensions.dedup();
        blocked_types.sort();
        blocked_types.dedup();
        if self.max_archive_depth > MAX_DEPTH {
            problems.bad(
                "attachments.max_archive_depth",
                &format!("must be at most {MAX_DEPTH}"),
            );
        }
        // Bounds of the work and memory one message may cost: "unlimited" would let a
        // nested bomb be decompressed, and held whole, without end.
        if !(1..=MAX_ENTRIES).contains(&self.max_archive_entries) {
            problems.bad(
                "attachments.max_archive_entries",
                &format!("must be between 1 and {MAX_ENTRIES}"),
            );
        }
        if !(1..=MAX_EXPANDED).contains(&self.max_expanded_bytes) {
            problems.bad(
                "attachments.max_expanded_bytes",
                &format!("must be between 1 and {MAX_EXPANDED} (4 GiB)"),
            );
        }
        // A semaphore's permits: a huge number panicked the policy build.
        if !(1..=1024).contains(&self.disk_inspections) {
            problems.bad("attachments.disk_inspections", "must be between 1 and 1024");
        }
        time_limit(
            problems,
            "attachments.inspection_wait",
            self.inspection_wait,
            true,
        );
        AttachmentsConfig {
            enabled: self.enabled,
            blocked_extensions,
            blocked_types,
            max_archive_depth: self.max_archive_depth.min(MAX_DEPTH),
            max_archive_entries: self.max_archive_entries.max(1),
            max_expanded_bytes: self.max_expanded_bytes.max(1),
            disk_inspections: self.disk_inspections.max(1),
            inspection_wait: self.inspection_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (AttachmentsConfig, Vec<String>) {
        let raw: RawAttachments = toml::from_str(text).unwrap();
        let mut problems = Problems::default();
        let c = raw.validate(&mut problems);
        (c, problems.into_lines())
    }

    #[test]
    fn defaults_block_programs_and_bound_archives() {
        let (c, problems) = parse("");
        assert!(problems.is_empty());
        assert!(c.enabled);
        for ext in ["exe", "scr", "js", "lnk", "iso", "hta", "ps1"] {
            assert!(c.blocked_extensions.iter().any(|e| e == ext), "{ext}");
        }
        assert!(!c
            .blocked_extensions
            .iter()
            .any(|e| e == "pdf" || e == "zip"));
        assert_eq!(c.max_archive_depth, 3);
        assert_eq!(c.max_archive_entries, 1000);
        assert_eq!(c.max_expanded_bytes, 64 << 20);
        assert_eq!(c, AttachmentsConfig::default());
    }

    #[test]
    fn extensions_are_normalised_and_bad_values_named() {
        let (c, problems) = parse(
            r#"blocked_extensions = [".EXE", "foo", "a.b", ""]
               blocked_types = ["Application/X-Foo", "nonsense"]
               max_archive_entries = 0
               max_archive_depth = 99"#,
        );
        assert_eq!(c.blocked_extensions, vec!["exe", "foo"]);
        assert_eq!(c.blocked_types, vec!["application/x-foo"]);
        let all = problems.join("\n");
        for key in [
            "\"a.b\"",
            "\"\"",
            "\"nonsense\"",
            "attachments.max_archive_entries",
            "attachments.max_archive_depth",
        ] {
            assert!(all.contains(key), "{key} missing from {all}");
        }
    }
}
