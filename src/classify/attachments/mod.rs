//! The attachment policy: blocked extensions and types, deceptive names, content that
//! contradicts its name, and archives (zip, gzip, tar) opened (nested, encrypted, bombs)
//! within limits.
//!
//! Every finding is a symbol the rules files score. Attachments are hostile input: nothing
//! here panics on them, nothing is written to disk, and an archive is read as a stream whose
//! expanded bytes and entries are counted against per-message limits, so a bomb costs at
//! most `max_expanded_bytes` of decompression and yields `ARCHIVE_BOMB`.

mod archive;
mod locations;
mod magic;
mod names;
mod office;
mod shortcut;
mod smuggling;
mod svg;
#[cfg(test)]
mod tests;

use crate::config::AttachmentsConfig;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// What the policy can find; each is one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Symbol {
    /// An attachment's extension is blocked.
    BlockedExt,
    /// An attachment's declared type is blocked.
    BlockedType,
    /// A document extension in front of a blocked one (`invoice.pdf.exe`).
    DoubleExt,
    /// Direction overrides in a file name.
    BidiName,
    /// Content contradicts the attachment's name or declared type.
    TypeMismatch,
    /// A file with a blocked extension inside an archive.
    ArchiveBlockedExt,
    /// A deceptive double extension inside an archive.
    ArchiveDoubleExt,
    /// Direction overrides in a name inside an archive.
    ArchiveBidiName,
    /// A file inside an archive whose content contradicts its name.
    ArchiveTypeMismatch,
    /// An archive holds encrypted entries (their content cannot be inspected).
    ArchiveEncrypted,
    /// The expanded-size limit was reached by data that expands far more than any
    /// ordinary file: a decompression bomb.
    ArchiveBomb,
    /// The expanded-size limit was reached by ordinary data: inspection stopped early.
    ArchiveTooLarge,
    /// An archive nested deeper than `max_archive_depth`.
    ArchiveTooDeep,
    /// More archive entries than `max_archive_entries`.
    ArchiveTooManyEntries,
    /// Something that claims to be an archive (zip, gzip, tar, RAR, 7-Zip) cannot be read as one.
    ArchiveUnreadable,
    /// Part of an archive went unjudged where a program could hide: an archive inside one
    /// left unopened (too deep, past the entry or byte limits, a method or format the
    /// policy cannot read), or names past the bounds on reading them.
    ArchiveUninspected,
    /// An archive inside an archive was not opened because the message's entry or byte
    /// limits were spent, or it is a compressed RAR entry: scored, not refused, since big
    /// legitimate bundles reach the limits too.
    ArchiveNestedSkipped,
    /// A part holds more files than are decoded from it (TNEF, uuencode): the later ones
    /// are judged by name only.
    AttachTooManyFiles,
    /// An SVG file that acts when opened (script, event handlers, `javascript:` links,
    /// embedded HTML): a phishing page sent as an image.
    SvgActive,
    /// An HTML page that rebuilds a file from data it carries and has the browser save it
    /// (HTML smuggling): the program inside never crosses the gateway as a file.
    HtmlSmuggling,
    /// An Internet shortcut (`.url`, `.website`) that opens a local or network file or a
    /// Windows handler rather than a web page, or shows an icon from a network share.
    ShortcutToFile,
    /// The same inside an archive.
    ArchiveShortcutToFile,
    /// An Office document carries VBA or Excel 4 macros.
    OfficeMacro,
    /// A macro runs by itself when the document opens (or closes) and reaches outside
    /// Office: a shell, a COM object, a download, the Windows API.
    OfficeMacroAutorun,
    /// A document packages a program (an OLE package named with a blocked extension, or
    /// holding one): one double click runs it.
    OfficeEmbeddedProgram,
    /// A document loads a template, an OLE object or a frame from the network when it
    /// opens (template injection, CVE-2022-30190).
    OfficeRemoteObject,
    /// A DDE field or link: opening the document offers to start a program.
    OfficeDde,
    /// A document embeds an Equation Editor object, the component behind CVE-2017-11882
    /// and CVE-2018-0802, removed from Office in 2018.
    OfficeEquationEditor,
    /// An Office document encrypted with a password: its content cannot be judged.
    OfficeEncrypted,
    /// Part of an Office document went unread where a macro or an object could be: a
    /// compound file that does not open, a stream that does not read, a bound reached.
    OfficeUninspected,
}

impl Symbol {
    /// The symbol name the rules files score.
    pub fn name(self) -> &'static str {
        match self {
            Symbol::BlockedExt => "ATTACH_BLOCKED_EXT",
            Symbol::BlockedType => "ATTACH_BLOCKED_TYPE",
            Symbol::DoubleExt => "ATTACH_DOUBLE_EXT",
            Symbol::BidiName => "ATTACH_BIDI_NAME",
            Symbol::TypeMismatch => "ATTACH_TYPE_MISMATCH",
            Symbol::ArchiveBlockedExt => "ARCHIVE_BLOCKED_EXT",
            Symbol::ArchiveDoubleExt => "ARCHIVE_DOUBLE_EXT",
            Symbol::ArchiveBidiName => "ARCHIVE_BIDI_NAME",
            Symbol::ArchiveTypeMismatch => "ARCHIVE_TYPE_MISMATCH",
            Symbol::ArchiveEncrypted => "ARCHIVE_ENCRYPTED",
            Symbol::ArchiveBomb => "ARCHIVE_BOMB",
            Symbol::ArchiveTooLarge => "ARCHIVE_TOO_LARGE",
            Symbol::ArchiveTooDeep => "ARCHIVE_TOO_DEEP",
            Symbol::ArchiveTooManyEntries => "ARCHIVE_TOO_MANY_ENTRIES",
            Symbol::ArchiveUnreadable => "ARCHIVE_UNREADABLE",
            Symbol::ArchiveUninspected => "ARCHIVE_UNINSPECTED",
            Symbol::ArchiveNestedSkipped => "ARCHIVE_NESTED_SKIPPED",
            Symbol::AttachTooManyFiles => "ATTACH_TOO_MANY_FILES",
            Symbol::SvgActive => "ATTACH_SVG_ACTIVE",
            Symbol::HtmlSmuggling => "ATTACH_HTML_SMUGGLING",
            Symbol::ShortcutToFile => "ATTACH_SHORTCUT_TO_FILE",
            Symbol::ArchiveShortcutToFile => "ARCHIVE_SHORTCUT_TO_FILE",
            Symbol::OfficeMacro => "OFFICE_MACRO",
            Symbol::OfficeMacroAutorun => "OFFICE_MACRO_AUTORUN",
            Symbol::OfficeEmbeddedProgram => "OFFICE_EMBEDDED_PROGRAM",
            Symbol::OfficeRemoteObject => "OFFICE_REMOTE_OBJECT",
            Symbol::OfficeDde => "OFFICE_DDE",
            Symbol::OfficeEquationEditor => "OFFICE_EQUATION_EDITOR",
            Symbol::OfficeEncrypted => "OFFICE_ENCRYPTED",
            Symbol::OfficeUninspected => "OFFICE_UNINSPECTED",
        }
    }

    /// The score used when no rules file scores the symbol (`rules/19-attachments.cf` does).
    pub fn default_score(self) -> f64 {
        match self {
            Symbol::BlockedExt | Symbol::BlockedType => 8.0,
            Symbol::DoubleExt | Symbol::BidiName | Symbol::TypeMismatch => 6.0,
            Symbol::SvgActive | Symbol::HtmlSmuggling | Symbol::ShortcutToFile => 6.0,
            Symbol::ArchiveShortcutToFile => 5.0,
            Symbol::ArchiveBlockedExt => 6.0,
            Symbol::ArchiveDoubleExt | Symbol::ArchiveBidiName | Symbol::ArchiveTypeMismatch => 5.0,
            Symbol::ArchiveBomb | Symbol::ArchiveUninspected => 6.0,
            Symbol::ArchiveTooDeep | Symbol::ArchiveNestedSkipped => 3.0,
            Symbol::OfficeUninspected => 2.0,
            Symbol::ArchiveEncrypted | Symbol::OfficeEncrypted => 2.0,
            Symbol::ArchiveUnreadable => 2.0,
            Symbol::ArchiveTooManyEntries | Symbol::AttachTooManyFiles => 1.0,
            Symbol::ArchiveTooLarge => 0.5,
            Symbol::OfficeMacro => 1.0,
            Symbol::OfficeMacroAutorun | Symbol::OfficeEmbeddedProgram => 6.0,
            Symbol::OfficeRemoteObject | Symbol::OfficeDde => 5.0,
            Symbol::OfficeEquationEditor => 6.0,
        }
    }

    /// The symbol for the same finding inside an archive.
    fn inside_archive(self) -> Symbol {
        match self {
            Symbol::BlockedExt => Symbol::ArchiveBlockedExt,
            Symbol::DoubleExt => Symbol::ArchiveDoubleExt,
            Symbol::BidiName => Symbol::ArchiveBidiName,
            Symbol::TypeMismatch => Symbol::ArchiveTypeMismatch,
            Symbol::ShortcutToFile => Symbol::ArchiveShortcutToFile,
            other => other,
        }
    }
}

/// One finding: what, and in which file (`outer.zip/inner.zip/evil.exe`), for the log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// What was found.
    pub symbol: Symbol,
    /// Where: the attachment's name, then the names of the entries leading to it.
    pub file: String,
}

/// An attachment as the policy reads it.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    /// The file names it gives (may be empty).
    pub names: &'a [String],
    /// Declared `type/subtype`, lower-case (may be empty).
    pub content_type: &'a str,
    /// The decoded content.
    pub data: &'a [u8],
    /// The content was not decoded (a file past the cap of its TNEF or uuencoded part):
    /// `data` is empty and says nothing about it; the names are all there is to judge.
    pub content_left_out: bool,
}

/// The compiled `[attachments]` section.
#[derive(Debug, Clone)]
pub struct AttachmentPolicy {
    blocked_extensions: HashSet<String>,
    blocked_types: HashSet<String>,
    max_depth: usize,
    max_entries: usize,
    max_expanded_bytes: u64,
    /// Held while a 7-Zip archive's header is read: what the reader allocates for the
    /// entries a hostile header declares is bounded per read, and this bounds the reads.
    seven_zip_headers: Arc<Mutex<()>>,
}

/// Findings of one message: each symbol once, with the first file it was found in. A
/// hostile archive can hold thousands of bad entries with long names; what is kept and
/// logged stays small whatever it holds.
#[derive(Debug, Default)]
struct Findings(BTreeMap<Symbol, String>);

impl Findings {
    fn add(&mut self, symbol: Symbol, file: &str) {
        self.0.entry(symbol).or_insert_with(|| file.to_string());
    }
}

/// Longest piece of a name kept in a finding's path.
const SHOWN_NAME_CHARS: usize = 100;

/// A name as shown in findings: bounded, so nested paths stay short.
fn shown_name(name: &str) -> String {
    if name.chars().count() <= SHOWN_NAME_CHARS {
        return name.to_string();
    }
    let mut short: String = name.chars().take(SHOWN_NAME_CHARS).collect();
    short.push('…');
    short
}

impl AttachmentPolicy {
    /// Compiles the configuration.
    pub fn new(config: &AttachmentsConfig) -> AttachmentPolicy {
        AttachmentPolicy {
            blocked_extensions: config.blocked_extensions.iter().cloned().collect(),
            blocked_types: config.blocked_types.iter().cloned().collect(),
            max_depth: config.max_archive_depth,
            max_entries: config.max_archive_entries,
            max_expanded_bytes: config.max_expanded_bytes,
            seven_zip_headers: Arc::new(Mutex::new(())),
        }
    }

    /// What decides this policy's findings, the same text for the same settings (its sets
    /// sorted: `Debug` of a hash set follows each set's random hashing, so two policies of
    /// one configuration differed; review).
    pub fn settings(&self) -> String {
        let sorted = |set: &HashSet<String>| {
            let mut names: Vec<&str> = set.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.join(",")
        };
        format!(
            "extensions={} types={} depth={} entries={} expanded={}",
            sorted(&self.blocked_extensions),
            sorted(&self.blocked_types),
            self.max_depth,
            self.max_entries,
            self.max_expanded_bytes
        )
    }

    /// Whether judging these attachments means decompressing: opening archives, or reading
    /// an Office document's macros and objects (the costly part, which a caller may want off
    /// the async threads).
    pub fn opens_containers(&self, attachments: &[Attachment<'_>]) -> bool {
        attachments.iter().any(|a| {
            (self.max_depth > 0 && read_as_archive(a))
                || (!a.content_left_out && office::is_document(a.data))
        })
    }

    /// Judges the attachments of one message: each symbol found once, sorted, with the
    /// first file it was found in.
    pub fn inspect(&self, attachments: &[Attachment<'_>]) -> Vec<Finding> {
        let mut findings = Findings::default();
        let mut budget = archive::Budget::new(self.max_entries, self.max_expanded_bytes);
        for a in attachments {
            let shown = a
                .names
                .first()
                .map_or_else(|| "(unnamed)".to_string(), |n| shown_name(n));
            let shown = shown.as_str();
            let mut exts = Vec::new();
            for name in a.names {
                exts.push(self.check_name(name, false, &mut findings, shown));
            }
            if !a.content_type.is_empty() && self.blocked_types.contains(a.content_type) {
                findings.add(Symbol::BlockedType, shown);
            }
            if a.content_left_out {
                findings.add(Symbol::AttachTooManyFiles, shown);
                // Known by its name only: an archive there is one this policy cannot open
                // (review: a delimiter walk given up, or 32 uuencoded files before it, hid
                // `evil.exe` in `invoice.zip`).
                if names_claim_archive(a.names) {
                    findings.add(Symbol::ArchiveUninspected, shown);
                }
                continue;
            }
            let head = a.data.get(..magic::SNIFF_LEN).unwrap_or(a.data);
            let content = magic::sniff(head);
            // Any of the names (or, without one, the type) promising something harmless
            // is a lie when the content says otherwise.
            let promises: Vec<magic::Promise> = if exts.is_empty() {
                vec![magic::promise(None, a.content_type)]
            } else {
                exts.iter()
                    .map(|e| magic::promise(e.as_deref(), a.content_type))
                    .collect()
            };
            if promises.iter().any(|&p| magic::contradicts(content, p)) {
                findings.add(Symbol::TypeMismatch, shown);
            }
            if svg::is_svg(&exts, a.content_type, a.data) && svg::is_active(a.data) {
                findings.add(Symbol::SvgActive, shown);
            }
            let named = !a.names.is_empty();
            if smuggling::is_html_file(&exts, a.content_type, named)
                && smuggling::smuggles_a_file(a.data)
            {
                findings.add(Symbol::HtmlSmuggling, shown);
            }
            check_shortcut(&exts, a.content_type, a.data, false, &mut findings, shown);
            let facts =
                office::probe_attachment(&exts, a.content_type, a.data, &mut budget.documents);
            self.check_office(facts, &mut findings, shown);
            if self.max_depth > 0 && read_as_archive(a) {
                let place = archive::Place {
                    depth: 1,
                    shown,
                    names: a.names,
                };
                archive::inspect(self, a.data, place, &mut budget, &mut findings);
            }
        }
        if budget.exhausted() {
            let symbol = if budget.looks_like_bomb() {
                Symbol::ArchiveBomb
            } else {
                Symbol::ArchiveTooLarge
            };
            findings.add(symbol, "(message)");
        }
        findings
            .0
            .into_iter()
            .map(|(symbol, file)| Finding { symbol, file })
            .collect()
    }

    /// Whether an extension is blocked: listed, or a COM class id, which is blocked
    /// whatever the list says (no list can name them all, and the file opens with whatever
    /// handler the class names; review: `invoice.pdf.{3050F4D8-…}`, an HTML application,
    /// passed every name check).
    fn is_blocked(&self, ext: Option<&str>) -> bool {
        ext.is_some_and(|e| self.blocked_extensions.contains(e) || names::is_class_id(e))
    }

    /// Name checks shared by attachments and archive entries; returns the extension.
    fn check_name(
        &self,
        name: &str,
        in_archive: bool,
        findings: &mut Findings,
        shown: &str,
    ) -> Option<String> {
        let facts = names::analyse(name);
        let mut add = |s: Symbol| {
            let s = if in_archive { s.inside_archive() } else { s };
            findings.add(s, shown);
        };
        let blocked = self.is_blocked(facts.ext.as_deref());
        if blocked {
            add(Symbol::BlockedExt);
            if facts.decoy.is_some() {
                add(Symbol::DoubleExt);
            }
        }
        if facts.bidi {
            add(Symbol::BidiName);
        }
        facts.ext
    }
}

impl AttachmentPolicy {
    /// Office documents that run or fetch something on opening; shared by attachments and
    /// archive entries (the parts of a `.docx` are a zip's entries). A package is a program
    /// when a name it gives is blocked (or a class id), or its bytes are one.
    fn check_office(&self, facts: office::Facts, findings: &mut Findings, shown: &str) {
        if facts.macros {
            findings.add(Symbol::OfficeMacro, shown);
        }
        if facts.autorun_macro() {
            findings.add(Symbol::OfficeMacroAutorun, shown);
        }
        let program = facts.packages.iter().any(|p| {
            magic::sniff(&p.head) == magic::Content::Program
                || p.names
                    .iter()
                    .any(|n| self.is_blocked(names::analyse(n).ext.as_deref()))
        });
        if program {
            findings.add(Symbol::OfficeEmbeddedProgram, shown);
        }
        if facts.remote_object {
            findings.add(Symbol::OfficeRemoteObject, shown);
        }
        if facts.dde {
            findings.add(Symbol::OfficeDde, shown);
        }
        if facts.equation_editor {
            findings.add(Symbol::OfficeEquationEditor, shown);
        }
        if facts.encrypted {
            findings.add(Symbol::OfficeEncrypted, shown);
        }
        if facts.uninspected {
            findings.add(Symbol::OfficeUninspected, shown);
        }
    }

    /// [`AttachmentPolicy::check_office`] of an archive entry's whole content.
    fn check_office_entry(
        &self,
        name: &str,
        data: &[u8],
        budget: &mut archive::Budget,
        findings: &mut Findings,
        shown: &str,
    ) {
        let facts = office::probe_part(name, data, &mut budget.documents);
        self.check_office(facts, findings, shown);
    }
}

/// Flags an Internet shortcut that opens a file or a Windows handler, not a web page;
/// shared by attachments and archive entries (`data` may be an entry's first bytes, which
/// hold any shortcut whole).
fn check_shortcut(
    exts: &[Option<String>],
    content_type: &str,
    data: &[u8],
    in_archive: bool,
    findings: &mut Findings,
    shown: &str,
) {
    if shortcut::is_shortcut(exts, content_type, data) && shortcut::opens_a_file(data) {
        let symbol = Symbol::ShortcutToFile;
        let symbol = if in_archive {
            symbol.inside_archive()
        } else {
            symbol
        };
        findings.add(symbol, shown);
    }
}

/// Whether `a` is opened as an archive: its content starts like one; or a name or the
/// declared type says zip, gzip or tar (then it is flagged when it is not one); or it ends
/// with a zip's end record, where zip readers (`unzip`, 7-Zip) look whatever comes before
/// it and whatever the part is called (a zip behind `%PDF-1.4` named `docs.pdf`).
fn read_as_archive(a: &Attachment<'_>) -> bool {
    if a.content_left_out {
        return false;
    }
    let head = a.data.get(..magic::SNIFF_LEN).unwrap_or(a.data);
    magic::sniff(head).opens() || claims_archive(a) || archive::ends_like_zip(a.data)
}

/// Whether a name or the declared type says zip, gzip, tar, RAR or 7-Zip.
fn claims_archive(a: &Attachment<'_>) -> bool {
    names_claim_archive(a.names)
        || matches!(
            a.content_type,
            "application/zip"
                | "application/x-zip-compressed"
                | "application/x-zip"
                | "application/gzip"
                | "application/x-gzip"
                | "application/x-tar"
                | "application/x-gtar"
                | "application/x-compressed-tar"
                | "application/vnd.rar"
                | "application/x-rar-compressed"
                | "application/x-7z-compressed"
        )
}

/// Whether one of these names says archive or compressed file.
fn names_claim_archive(names: &[String]) -> bool {
    names.iter().any(|n| name_claims_archive(n))
}

/// Whether `name` says archive or compressed file (zip, gzip, tar, RAR, 7-Zip, bzip2, xz,
/// lzma, lzip, zstd). CAB is not among them: it is blocked by name, and found by content.
fn name_claims_archive(name: &str) -> bool {
    matches!(
        names::analyse(name).ext.as_deref(),
        Some(
            "zip"
                | "gz"
                | "tgz"
                | "tar"
                | "rar"
                | "7z"
                | "bz2"
                | "tbz"
                | "tbz2"
                | "xz"
                | "txz"
                | "lzma"
                | "tlz"
                | "lz"
                | "zst"
                | "tzst"
        )
    )
}
