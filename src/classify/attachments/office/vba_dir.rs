//! A VBA project's `dir` stream (MS-OVBA 2.3.4.2): after decompression, a list of
//! records (a 16-bit id, a 32-bit size, the data) naming each module's stream and the
//! offset of its source in it. Office reads the sources where `dir` says; so does this.

/// `PROJECTVERSION`: its size field is a constant 4 followed by 6 bytes of data.
const PROJECT_VERSION: u16 = 0x0009;
/// `MODULESTREAMNAME`: the module's stream name in the project's code page.
const MODULE_STREAM_NAME: u16 = 0x001A;
/// `MODULEOFFSET`: where the module's compressed source starts in its stream.
const MODULE_OFFSET: u16 = 0x0031;
/// `MODULE` terminator: the end of one module's records.
const MODULE_END: u16 = 0x002B;
/// Modules read per project at most.
const MAX_MODULES: usize = 1024;

/// A module as `dir` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Module {
    /// Its stream's name (Latin-1 read of the code-page bytes: names are ASCII in practice).
    pub stream: String,
    /// The offset of its compressed source in that stream.
    pub offset: usize,
}

/// The modules of a decompressed `dir` stream, in order; those whose records break off
/// are left out.
pub(super) fn modules(dir: &[u8]) -> Vec<Module> {
    let mut found = Vec::new();
    let mut stream: Option<String> = None;
    let mut offset: Option<usize> = None;
    let mut at = 0;
    while let Some(head) = dir.get(at..at + 6) {
        let id = u16::from_le_bytes([head[0], head[1]]);
        let size = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let size = if id == PROJECT_VERSION { 6 } else { size };
        let Some(data) = dir.get(at + 6..(at + 6).saturating_add(size)) else {
            break;
        };
        at += 6 + size;
        match id {
            MODULE_STREAM_NAME => stream = Some(data.iter().map(|&b| char::from(b)).collect()),
            MODULE_OFFSET if data.len() == 4 => {
                offset = Some(u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize);
            }
            MODULE_END => {
                if let (Some(stream), Some(offset)) = (stream.take(), offset.take()) {
                    found.push(Module { stream, offset });
                }
                if found.len() >= MAX_MODULES {
                    break;
                }
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn record(id: u16, data: &[u8]) -> Vec<u8> {
        let mut r = id.to_le_bytes().to_vec();
        r.extend_from_slice(&(data.len() as u32).to_le_bytes());
        r.extend_from_slice(data);
        r
    }

    /// A decompressed `dir` stream listing these modules (stream name, source offset).
    pub(crate) fn dir_listing(modules: &[(&str, u32)]) -> Vec<u8> {
        let mut dir = record(0x0001, &[1, 0, 0, 0]);
        // PROJECTVERSION: size 4, then 6 bytes.
        dir.extend_from_slice(&[0x09, 0x00, 4, 0, 0, 0, 0x5E, 0x01, 0x00, 0x00, 0x03, 0x00]);
        dir.extend(record(0x000F, &(modules.len() as u16).to_le_bytes()));
        for (name, offset) in modules {
            dir.extend(record(0x0019, name.as_bytes()));
            dir.extend(record(MODULE_STREAM_NAME, name.as_bytes()));
            dir.extend(record(0x0032, &[]));
            dir.extend(record(MODULE_OFFSET, &offset.to_le_bytes()));
            dir.extend(record(0x0021, &[]));
            dir.extend(record(MODULE_END, &[]));
        }
        dir.extend(record(0x0010, &[]));
        dir
    }

    #[test]
    fn module_streams_and_offsets_are_listed() {
        let dir = dir_listing(&[("ThisDocument", 700), ("Module1", 1234)]);
        assert_eq!(
            modules(&dir),
            vec![
                Module {
                    stream: "ThisDocument".into(),
                    offset: 700
                },
                Module {
                    stream: "Module1".into(),
                    offset: 1234
                },
            ]
        );
        assert!(modules(&dir[..dir.len() / 2]).len() <= 1);
        assert!(modules(b"\x2b\x00\xff\xff\xff\xff").is_empty());
    }
}
