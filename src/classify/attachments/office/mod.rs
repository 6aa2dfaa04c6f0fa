//! Office documents that run or fetch something when opened: VBA and Excel 4 macros set to
//! run on opening, programs packaged inside a document, templates and objects loaded from
//! the network, and DDE fields that start a program.
//!
//! Four readers: [`probe_compound`] for the 97–2003 formats' compound files (`.doc`,
//! `.xls`, `.ppt` with the storages PowerPoint compresses inside, and the `vbaProject.bin`
//! and `oleObject*.bin` inside the newer formats), [`probe_document`] for those and RTF's
//! objects, and [`probe_part`] for the XML parts of a `.docx`/`.xlsx`/`.pptx`, which the
//! archive reader hands over entry by entry (such a document is a zip), and [`flat`] for
//! the text files Office opens as documents (SYLK, CSV, 2003 XML). All read hostile input:
//! every read is bounded by the document's own size, and a fault in the compound-file
//! reader costs the document's judgement, never the session.

mod biff;
mod biff12;
mod flat;
mod package;
mod parts;
mod ppt;
mod rtf;
mod vba;
mod vba_dir;
mod vba_source;
mod word_fields;

use crate::mail::compound_file::{self, starts_as_compound_file, CompoundFile};
use std::collections::HashSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// What a document holds; merged over the parts and streams read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Facts {
    /// A VBA project or an Excel 4 macro sheet.
    pub macros: bool,
    /// A macro that runs by itself when the document opens or closes (`AutoOpen`,
    /// `Document_Open`, `Workbook_Open`, an Excel 4 `Auto_Open` name, ActiveX events).
    pub runs_on_open: bool,
    /// Macro source that reaches outside Office: a shell, a COM object, a download, the
    /// Windows API.
    pub reaches_out: bool,
    /// Files packaged inside the document (OLE `Package` objects), at most
    /// [`MAX_PACKAGES`].
    pub packages: Vec<package::Package>,
    /// A template, OLE object or frame the document loads from the network when opened.
    pub remote_object: bool,
    /// A DDE field or link: opening the document offers to start a program.
    pub dde: bool,
    /// An Equation Editor object (CVE-2017-11882, CVE-2018-0802): the component was
    /// removed from Office in 2018, and documents still carrying one are exploits.
    pub equation_editor: bool,
    /// Encrypted with a password: its content cannot be judged (the malware's way past
    /// filters, with the password in the mail, as for encrypted archives).
    pub encrypted: bool,
    /// Part of the document went unread where a macro or an object could be: it starts as
    /// a compound file that does not open (Office opens files this reader refuses, and
    /// malformed headers are how exploits get past parsers), a stream it lists does not
    /// read or is longer than the file could hold, or a bound was reached (the message's
    /// source or inflation allowance, projects, storages, objects, nesting).
    pub uninspected: bool,
}

impl Facts {
    /// Nothing found, and not all of the document read.
    fn uninspected() -> Facts {
        Facts {
            uninspected: true,
            ..Facts::default()
        }
    }

    /// Whether the macros found run by themselves and call outside Office: the pattern of
    /// macro malware, which a business's own macro documents rarely share (theirs are run
    /// by a button, or only compute).
    pub fn autorun_macro(&self) -> bool {
        self.macros && self.runs_on_open && self.reaches_out
    }

    /// An Excel 4 `Auto_Open` name runs macro formulas when the workbook opens: they call
    /// what they like (`EXEC`, `CALL`, `REGISTER`), with no source to read, so running on
    /// opening is the sign.
    fn excel_4_runs_on_open(&mut self) {
        self.macros = true;
        self.runs_on_open = true;
        self.reaches_out = true;
    }

    /// Keeps a package found, while fewer than [`MAX_PACKAGES`] are kept.
    fn add_package(&mut self, found: package::Package) {
        if self.packages.len() < MAX_PACKAGES {
            self.packages.push(found);
        }
    }

    fn merge(&mut self, other: Facts) {
        self.macros |= other.macros;
        self.runs_on_open |= other.runs_on_open;
        self.reaches_out |= other.reaches_out;
        self.remote_object |= other.remote_object;
        self.dde |= other.dde;
        self.equation_editor |= other.equation_editor;
        self.encrypted |= other.encrypted;
        self.uninspected |= other.uninspected;
        let room = MAX_PACKAGES.saturating_sub(self.packages.len());
        self.packages.extend(other.packages.into_iter().take(room));
    }
}

/// Packages kept per document: their names are judged, a few are enough to find a program.
const MAX_PACKAGES: usize = 16;
/// Directory entries of a compound file walked at most. Office's have dozens; the bound is
/// high because the walk goes shortest name first, so 4,096 junk streams in a storage `A`
/// hid `Macros` behind a lower one (review). A directory entry takes 128 bytes of the file.
const MAX_ENTRIES: usize = 100_000;
/// Decompressed `dir` stream read per project at most (Office's are a few kilobytes).
const MAX_DIR_BYTES: usize = 64 * 1024;
/// VBA projects read per compound file at most (Office writes one).
const MAX_PROJECTS: usize = 16;
/// Compound files inside compound files read at most (a presentation's storages): Office
/// writes one level.
const MAX_NESTING: usize = 2;

/// What reading one message's documents may still cost, whatever number of documents it
/// holds (990 copies of one small macro project in a zip must not cost 990 times the
/// decompression; review).
#[derive(Debug)]
pub(in crate::classify::attachments) struct DocumentBudget {
    /// Decompressed macro source (and `dir` streams) still to be read.
    source: usize,
    /// Bytes still to be inflated: PowerPoint's storages, Word 2003 XML's ActiveMime
    /// projects.
    inflated: u64,
}

impl Default for DocumentBudget {
    fn default() -> Self {
        DocumentBudget {
            source: vba::MAX_SOURCE_BYTES,
            inflated: ppt::MAX_INFLATED,
        }
    }
}

/// Reads `data` as a compound file: its VBA projects (module sources decompressed and
/// read where the project's `dir` says), Excel 4 macro sheets and `Auto_Open` names in an
/// Excel workbook stream, DDE fields of a Word document, the storages of a PowerPoint
/// presentation, Equation Editor objects and OLE packages. Anything that is no compound
/// file: nothing found; one that starts as one and does not read: uninspected.
pub(super) fn probe_compound(data: &[u8], budget: &mut DocumentBudget) -> Facts {
    probe_compound_at(data, 0, budget)
}

/// [`probe_compound`] of a compound file `depth` storages inside another (PowerPoint's).
fn probe_compound_at(data: &[u8], depth: usize, budget: &mut DocumentBudget) -> Facts {
    if !starts_as_compound_file(data) {
        return Facts::default();
    }
    // The reader walks a directory tree and sector chains the sender wrote.
    let read = std::panic::AssertUnwindSafe(|| read_compound(data, depth, budget));
    std::panic::catch_unwind(read).unwrap_or_else(|_| Facts::uninspected())
}

/// Reads one entry of a zip (a part of an Office Open XML document, or anything else
/// named so): documents inside (`vbaProject.bin`, `oleObject1.bin`, a `.doc` or an RTF)
/// as [`probe_document`] does, the XML parts that can load, run or start something as
/// [`parts`] reads them.
pub(super) fn probe_part(name: &str, data: &[u8], budget: &mut DocumentBudget) -> Facts {
    if is_document(data) {
        return probe_document(data, budget);
    }
    let ext = super::names::analyse(name).ext;
    // A part is read as one whatever it says of itself (review: a comment naming
    // `mso-application` in front of a part skipped the part's checks).
    let mut facts = parts::read(name, data);
    facts.merge(flat::read(&[ext], "", data, budget));
    facts
}

/// Reads an attachment as a document: by its content ([`probe_document`]), or as text
/// Office opens (SYLK, 2003 XML, spreadsheet text by `exts` or `content_type`).
pub(super) fn probe_attachment(
    exts: &[Option<String>],
    content_type: &str,
    data: &[u8],
    budget: &mut DocumentBudget,
) -> Facts {
    if is_document(data) {
        return probe_document(data, budget);
    }
    flat::read(exts, content_type, data, budget)
}

/// Whether [`probe_document`] has anything to read in `data`: a compound file or RTF by
/// its first bytes.
pub(super) fn is_document(data: &[u8]) -> bool {
    starts_as_compound_file(data) || rtf::is_rtf(data)
}

/// Reads an attachment (or an archive entry) that is a document by its content: a
/// compound file, or RTF (which Word opens under any name).
pub(super) fn probe_document(data: &[u8], budget: &mut DocumentBudget) -> Facts {
    if rtf::is_rtf(data) {
        rtf::read(data, budget)
    } else {
        probe_compound(data, budget)
    }
}

fn read_compound(data: &[u8], depth: usize, budget: &mut DocumentBudget) -> Facts {
    let Ok(mut file) = cfb::CompoundFile::open(Cursor::new(data)) else {
        return Facts::uninspected();
    };
    let mut facts = Facts::default();
    let mut streams: Vec<PathBuf> = Vec::new();
    for (walked, entry) in file.walk().enumerate() {
        if walked == MAX_ENTRIES {
            facts.uninspected = true;
            break;
        }
        if entry.is_stream() {
            streams.push(entry.path().to_path_buf());
        }
    }
    // Macros first, each kind of stream with its own allowance of the file's size: a
    // directory may name one chain of sectors many times, and streams read for one
    // check must not spend what another needs (review: two `Workbook` entries on one
    // 1 MB chain left the modules unread).
    let mut project_bytes = data.len() as u64;
    let projects = vba_projects(&streams);
    facts.uninspected |= projects.len() > MAX_PROJECTS;
    for project in projects.into_iter().take(MAX_PROJECTS) {
        facts.merge(read_project(
            &mut file,
            &streams,
            project,
            &mut project_bytes,
            budget,
        ));
    }
    let mut bytes_left = data.len() as u64;
    for path in &streams {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // Names are compared as Office compares them: in any case.
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "equation native" => facts.equation_editor = true,
            // Office Open XML encrypted into a compound file; an encrypted presentation.
            "encryptedpackage" | "encryptedsummary" => facts.encrypted = true,
            n if n.eq_ignore_ascii_case(package::STREAM_NAME) => {
                let read = read_stream(&mut file, path, &mut bytes_left, &mut facts);
                if let Some(found) = read.as_deref().and_then(package::read) {
                    facts.add_package(found);
                }
            }
            "powerpoint document" if depth == MAX_NESTING => facts.uninspected = true,
            "powerpoint document" => {
                if let Some(bytes) = read_stream(&mut file, path, &mut bytes_left, &mut facts) {
                    let storages = ppt::storages(&bytes, &mut budget.inflated);
                    facts.uninspected |= storages.cut;
                    for storage in storages.found {
                        facts.merge(probe_compound_at(&storage, depth + 1, budget));
                    }
                }
            }
            "worddocument" => {
                if let Some(bytes) = read_stream(&mut file, path, &mut bytes_left, &mut facts) {
                    facts.dde |= word_fields::has_dde_field(&bytes);
                    facts.encrypted |= word_fields::is_encrypted(&bytes);
                }
            }
            "workbook" | "book" => {
                if let Some(bytes) = read_stream(&mut file, path, &mut bytes_left, &mut facts) {
                    facts.merge(biff::read(&bytes));
                }
            }
            _ => {}
        }
    }
    facts
}

/// The storages that hold a VBA project: a `dir` and a `_VBA_PROJECT` stream
/// (`Macros/VBA` in Word, `_VBA_PROJECT_CUR/VBA` in Excel, `VBA` in a `vbaProject.bin`).
fn vba_projects(streams: &[PathBuf]) -> Vec<&Path> {
    let mut dirs: HashSet<&Path> = HashSet::new();
    let mut projects: HashSet<&Path> = HashSet::new();
    for s in streams {
        let (Some(parent), Some(name)) = (s.parent(), s.file_name().and_then(|n| n.to_str()))
        else {
            continue;
        };
        if name.eq_ignore_ascii_case("dir") {
            dirs.insert(parent);
        } else if name.eq_ignore_ascii_case("_VBA_PROJECT") {
            projects.insert(parent);
        }
    }
    let mut found: Vec<&Path> = dirs.intersection(&projects).copied().collect();
    found.sort_unstable();
    found
}

/// Reads one VBA project: the modules its `dir` lists, at their offsets; when `dir` does
/// not read, every source found in the storage's other streams.
fn read_project(
    file: &mut CompoundFile<'_>,
    streams: &[PathBuf],
    project: &Path,
    bytes_left: &mut u64,
    budget: &mut DocumentBudget,
) -> Facts {
    let mut facts = Facts {
        macros: true,
        ..Facts::default()
    };
    let in_project = |name: &str| {
        streams.iter().find(|s| {
            s.parent() == Some(project)
                && s.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    let modules = in_project("dir")
        .and_then(|path| read_stream(file, path, bytes_left, &mut facts))
        .map(|dir| {
            let listing = vba::decompress(&dir, MAX_DIR_BYTES.min(budget.source));
            budget.source = budget.source.saturating_sub(listing.len());
            vba_dir::modules(&listing)
        })
        .unwrap_or_default();
    let mut listed: Vec<&Path> = Vec::new();
    for module in &modules {
        let Some(path) = in_project(&module.stream) else {
            continue;
        };
        listed.push(path);
        // A module left unread for want of allowance hides whatever it runs (review: a
        // padding project in front spent it).
        facts.uninspected |= budget.source == 0;
        if let Some(bytes) = read_stream(file, path, bytes_left, &mut facts) {
            facts.merge(vba::read_module_at(
                &bytes,
                module.offset,
                &mut budget.source,
            ));
        }
    }
    if !modules.is_empty() && listed.len() == modules.len() {
        return facts;
    }
    // `dir` does not read, or names a module no stream is found for (its name in another
    // code page than the stream's, `ЭтаКнига`; review): every other stream of the project
    // has each source in it read.
    let others = streams.iter().filter(|s| {
        let name = s.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        s.parent() == Some(project)
            && !listed.contains(&s.as_path())
            && !name.eq_ignore_ascii_case("dir")
            && !name.eq_ignore_ascii_case("_VBA_PROJECT")
            && !name.to_ascii_lowercase().starts_with("__srp_")
    });
    for path in others {
        if budget.source == 0 {
            facts.uninspected = true;
            break;
        }
        if let Some(bytes) = read_stream(file, path, bytes_left, &mut facts) {
            facts.merge(vba::read_module_anywhere(&bytes, &mut budget.source));
        }
    }
    facts
}

/// The bytes of a stream within `bytes_left` (lowered by what was read); `None` when it
/// does not read. A stream that does not read, or is cut at `bytes_left` (streams can
/// only hold more than the file when the directory names one chain of sectors many
/// times), leaves the document `uninspected`.
fn read_stream(
    file: &mut CompoundFile<'_>,
    path: &Path,
    bytes_left: &mut u64,
    facts: &mut Facts,
) -> Option<Vec<u8>> {
    let Some(read) = compound_file::read_stream(file, path, *bytes_left) else {
        facts.uninspected = true;
        return None;
    };
    *bytes_left -= read.bytes.len() as u64;
    facts.uninspected |= !read.whole;
    Some(read.bytes)
}

#[cfg(test)]
pub(super) mod tests;
