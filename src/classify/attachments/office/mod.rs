//! Office documents that run or fetch something when opened: VBA and Excel 4 macros set to
//! run on opening, programs packaged inside a document, templates and objects loaded from
//! the network, and DDE fields that start a program.
//!
//! Three readers: [`probe_compound`] for the 97–2003 formats' compound files (`.doc`,
//! `.xls`, `.ppt` with the storages PowerPoint compresses inside, and the `vbaProject.bin`
//! and `oleObject*.bin` inside the newer formats), [`probe_document`] for those and RTF's
//! objects, and [`probe_part`] for the XML parts of a `.docx`/`.xlsx`/`.pptx`, which the
//! archive reader hands over entry by entry (such a document is a zip). All read hostile input:
//! every read is bounded by the document's own size, and a fault in the compound-file
//! reader costs the document's judgement, never the session.

mod biff;
mod package;
mod parts;
mod ppt;
mod rtf;
mod vba;
mod word_fields;

use std::io::{Cursor, Read};
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
}

impl Facts {
    /// Whether the macros found run by themselves and call outside Office: the pattern of
    /// macro malware, which a business's own macro documents rarely share (theirs are run
    /// by a button, or only compute).
    pub fn autorun_macro(&self) -> bool {
        self.macros && self.runs_on_open && self.reaches_out
    }

    fn merge(&mut self, other: Facts) {
        self.macros |= other.macros;
        self.runs_on_open |= other.runs_on_open;
        self.reaches_out |= other.reaches_out;
        self.remote_object |= other.remote_object;
        self.dde |= other.dde;
        self.equation_editor |= other.equation_editor;
        let room = MAX_PACKAGES.saturating_sub(self.packages.len());
        self.packages.extend(other.packages.into_iter().take(room));
    }
}

/// Packages kept per document: their names are judged, a few are enough to find a program.
const MAX_PACKAGES: usize = 16;
/// Directory entries of a compound file walked at most: Office's own have dozens.
const MAX_ENTRIES: usize = 4096;

/// The compound-file signature.
const SIGNATURE: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Reads `data` as a compound file: its VBA project (module sources decompressed and
/// read), Excel 4 macro sheets and `Auto_Open` names in an Excel workbook stream, and OLE
/// packages. Anything that is no compound file, or does not read as one: nothing found.
pub(super) fn probe_compound(data: &[u8]) -> Facts {
    probe_compound_at(data, 0)
}

/// [`probe_compound`] of a compound file `depth` storages inside another (PowerPoint's).
fn probe_compound_at(data: &[u8], depth: usize) -> Facts {
    if !data.starts_with(&SIGNATURE) {
        return Facts::default();
    }
    // The reader walks a directory tree and sector chains the sender wrote.
    std::panic::catch_unwind(|| read_compound(data, depth)).unwrap_or_default()
}

/// Compound files inside compound files read at most (a presentation's storages): Office
/// writes one level.
const MAX_NESTING: usize = 2;

/// Reads one entry of a zip (a part of an Office Open XML document, or anything else
/// named so): compound files inside (`vbaProject.bin`, `oleObject1.bin`) as
/// [`probe_compound`] does, the XML parts that can load, run or start something as
/// [`parts`] reads them.
pub(super) fn probe_part(name: &str, data: &[u8]) -> Facts {
    if is_compound(data) || rtf::is_rtf(data) {
        return probe_document(data);
    }
    parts::read(name, data)
}

/// Reads an attachment (or an archive entry) that is a document by its content: a
/// compound file, or RTF (which Word opens under any name).
pub(super) fn probe_document(data: &[u8]) -> Facts {
    if rtf::is_rtf(data) {
        rtf::read(data)
    } else {
        probe_compound(data)
    }
}

/// Whether `data` starts as a compound file.
fn is_compound(data: &[u8]) -> bool {
    data.starts_with(&SIGNATURE)
}

type Compound<'d> = cfb::CompoundFile<Cursor<&'d [u8]>>;

fn read_compound(data: &[u8], depth: usize) -> Facts {
    let Ok(mut file) = cfb::CompoundFile::open(Cursor::new(data)) else {
        return Facts::default();
    };
    let streams: Vec<PathBuf> = file
        .walk()
        .take(MAX_ENTRIES)
        .filter(|e| e.is_stream())
        .map(|e| e.path().to_path_buf())
        .collect();
    // Every stream read counts against the file's own size: a directory may name one
    // stream many times, or a chain of sectors loop back.
    let mut budget = Budget {
        bytes: data.len() as u64,
        source: vba::MAX_SOURCE_BYTES,
    };
    let mut facts = Facts::default();
    for path in &streams {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name == "Equation Native" {
            facts.equation_editor = true;
        } else if name.eq_ignore_ascii_case("_VBA_PROJECT") || name.eq_ignore_ascii_case("dir") {
            facts.macros = true;
        } else if name == package::STREAM_NAME {
            if let Some(bytes) = read_stream(&mut file, path, &mut budget) {
                if let Some(found) = package::read(&bytes) {
                    facts.merge(Facts {
                        packages: vec![found],
                        ..Facts::default()
                    });
                }
            }
        } else if name == "PowerPoint Document" && depth < MAX_NESTING {
            if let Some(bytes) = read_stream(&mut file, path, &mut budget) {
                for storage in ppt::storages(&bytes) {
                    facts.merge(probe_compound_at(&storage, depth + 1));
                }
            }
        } else if name == "WordDocument" {
            if let Some(bytes) = read_stream(&mut file, path, &mut budget) {
                facts.dde |= word_fields::has_dde_field(&bytes);
            }
        } else if name == "Workbook" || name == "Book" {
            if let Some(bytes) = read_stream(&mut file, path, &mut budget) {
                facts.merge(biff::read(&bytes));
            }
        }
    }
    for module in module_streams(&streams) {
        if budget.source == 0 {
            break;
        }
        if let Some(bytes) = read_stream(&mut file, module, &mut budget) {
            facts.merge(vba::read_module(&bytes, &mut budget.source));
        }
    }
    facts
}

/// What reading one compound file may still cost.
struct Budget {
    /// Stream bytes still to be read.
    bytes: u64,
    /// Decompressed macro source still to be read.
    source: usize,
}

/// The module streams of every VBA project in the file: the other streams of a storage
/// that holds `dir` and `_VBA_PROJECT` (`Macros/VBA` in Word, `_VBA_PROJECT_CUR/VBA` in
/// Excel, `VBA` in a `vbaProject.bin`), without those two and the `__SRP_` caches.
fn module_streams(streams: &[PathBuf]) -> Vec<&Path> {
    let holds = |dir: &Path, name: &str| {
        streams.iter().any(|s| {
            s.parent() == Some(dir)
                && s.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    streams
        .iter()
        .filter(|s| {
            let Some(dir) = s.parent() else {
                return false;
            };
            let name = s.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let own = name.eq_ignore_ascii_case("dir")
                || name.eq_ignore_ascii_case("_VBA_PROJECT")
                || name.to_ascii_lowercase().starts_with("__srp_");
            !own && holds(dir, "dir") && holds(dir, "_VBA_PROJECT")
        })
        .map(PathBuf::as_path)
        .collect()
}

/// The bytes of a stream within what the budget has left; `None` when it does not read.
fn read_stream(file: &mut Compound<'_>, path: &Path, budget: &mut Budget) -> Option<Vec<u8>> {
    let stream = file.open_stream(path).ok()?;
    let mut bytes = Vec::new();
    stream.take(budget.bytes).read_to_end(&mut bytes).ok()?;
    budget.bytes -= bytes.len() as u64;
    Some(bytes)
}

#[cfg(test)]
pub(super) mod tests;
