//! TNEF (`winmail.dat`, `application/ms-tnef`, [MS-OXTNEF]): Outlook and Exchange wrap a
//! message's attachments in it, and Outlook shows the files inside as attachments while a
//! reader of MIME structure sees one opaque part. Only what names and carries files is
//! read: each attachment's title (`attAttachTitle`), its long file name from the MAPI
//! properties (`PR_ATTACH_LONG_FILENAME`), its data (`attAttachData`), and the files of a
//! message attached to it (a TNEF stream of its own in `PR_ATTACH_DATA_OBJ`).

/// The stream's first four bytes.
const SIGNATURE: u32 = 0x223E_9F78;
/// Attribute level of attachment attributes.
const LEVEL_ATTACHMENT: u8 = 0x02;
/// Starts a new attachment.
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
/// The 8.3 (or longer) name, NUL-terminated.
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
/// The file's bytes.
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
/// The attachment's MAPI properties.
const ATT_ATTACHMENT: u32 = 0x0006_9005;
/// `PR_ATTACH_LONG_FILENAME`'s property id.
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
/// `PR_ATTACH_FILENAME`'s property id.
const PR_ATTACH_FILENAME: u16 = 0x3704;
/// `PR_ATTACH_DATA_OBJ`'s property id: an attached message or OLE object.
const PR_ATTACH_DATA_OBJ: u16 = 0x3701;
/// Bytes of the interface id in front of an object value.
const INTERFACE_ID_LEN: usize = 16;
/// Messages attached in messages whose files are read (each level a TNEF stream inside
/// its attachment's properties).
pub const MAX_EMBEDDED_DEPTH: usize = 3;
/// Files whose bytes are copied out of one stream at most; past them only names are taken.
pub const MAX_FILES: usize = 256;
/// Files taken from one stream at most, by name: the bound on the work of judging them
/// (a stream of a million empty attachments is a few megabytes).
pub const MAX_NAMED_FILES: usize = 10_000;

/// One file Outlook shows inside what a MIME reader sees as one part: a TNEF stream, or
/// an Outlook item saved as a file (`mail::outlook_item`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutlookFile {
    /// The names it goes by (title, long file name, display name), distinct, in order.
    pub names: Vec<String>,
    /// Its bytes; empty past [`MAX_FILES`] files.
    pub data: Vec<u8>,
    /// Its bytes were not copied (it comes after [`MAX_FILES`] others): only its names
    /// tell what it is.
    pub data_left_out: bool,
}

/// Whether `data` starts as a TNEF stream.
pub fn is_tnef(data: &[u8]) -> bool {
    read_u32(data, 0) == Some(SIGNATURE)
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A name as stored: cut at its first NUL, read as UTF-8 or, failing that, Latin-1 (an
/// ANSI code page), or UTF-16LE when `wide`.
pub(crate) fn name_text(raw: &[u8], wide: bool) -> String {
    if wide {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        return String::from_utf16_lossy(&units);
    }
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => raw.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The files of the TNEF stream `data`, as far as it reads (a damaged stream keeps the
/// files before the damage): the first [`MAX_FILES`] with their bytes, the rest (up to
/// [`MAX_NAMED_FILES`]) by name only, since a name is cheap to judge and a cap that drops
/// files whole would hide `invoice.exe` behind 256 text files. Not a TNEF stream: none.
///
/// The files of a message attached to the message (an Outlook item forwarded as an
/// attachment, carried in its attachment's properties as a TNEF stream of its own) follow
/// its attachment, [`MAX_EMBEDDED_DEPTH`] messages deep; the caps count every file.
pub fn files(data: &[u8]) -> Vec<OutlookFile> {
    let mut found = files_at(data, 0);
    found.truncate(MAX_NAMED_FILES);
    for file in found.iter_mut().skip(MAX_FILES) {
        if !file.data.is_empty() {
            file.data = Vec::new();
            file.data_left_out = true;
        }
    }
    found
}

/// The files of the TNEF stream `data` of a message `depth` messages deep.
fn files_at(data: &[u8], depth: usize) -> Vec<OutlookFile> {
    if !is_tnef(data) {
        return Vec::new();
    }
    let mut found: Vec<OutlookFile> = Vec::new();
    let mut current: Option<OutlookFile> = None;
    // Signature and legacy key.
    let mut at = 6;
    while let (Some(&level), Some(id), Some(len)) =
        (data.get(at), read_u32(data, at + 1), read_u32(data, at + 5))
    {
        let start = at + 9;
        let Some(value) = usize::try_from(len)
            .ok()
            .and_then(|len| data.get(start..start.checked_add(len)?))
        else {
            break;
        };
        // Value, then a two-byte checksum (not checked: Outlook does not either).
        at = start + value.len() + 2;
        if level != LEVEL_ATTACHMENT {
            continue;
        }
        match id {
            ATT_ATTACH_REND_DATA => {
                if let Some(done) = current.take() {
                    found.push(done);
                }
                if found.len() >= MAX_NAMED_FILES {
                    break;
                }
                current = Some(OutlookFile::default());
            }
            ATT_ATTACH_TITLE => add_name(&mut current, name_text(value, false)),
            ATT_ATTACH_DATA => {
                let file = current.get_or_insert_with(OutlookFile::default);
                if found.len() < MAX_FILES {
                    file.data = value.to_vec();
                } else {
                    file.data_left_out = true;
                }
            }
            ATT_ATTACHMENT => {
                let properties = attachment_properties(value);
                for name in properties.names {
                    add_name(&mut current, name);
                }
                for message in properties.messages {
                    if found.len() >= MAX_NAMED_FILES {
                        break;
                    }
                    if depth < MAX_EMBEDDED_DEPTH {
                        found.extend(files_at(message, depth + 1));
                    } else {
                        // Files past the depth, unread: judged as files left out.
                        found.push(OutlookFile {
                            data_left_out: true,
                            ..OutlookFile::default()
                        });
                    }
                }
            }
            _ => {}
        }
    }
    found.extend(current);
    found.retain(|f| !f.names.is_empty() || !f.data.is_empty() || f.data_left_out);
    found
}

fn add_name(current: &mut Option<OutlookFile>, name: String) {
    current
        .get_or_insert_with(OutlookFile::default)
        .add_name(name);
}

impl OutlookFile {
    /// Adds a name it goes by, unless empty or already known.
    pub(super) fn add_name(&mut self, name: String) {
        if !name.is_empty() && !self.names.contains(&name) {
            self.names.push(name);
        }
    }
}

/// What an attachment's MAPI properties (`attAttachment`) say about its file.
#[derive(Debug, Default)]
struct AttachmentProperties<'a> {
    /// `PR_ATTACH_LONG_FILENAME` and `PR_ATTACH_FILENAME`, as 8-bit or UTF-16 strings.
    names: Vec<String>,
    /// The TNEF stream of an attached message (`PR_ATTACH_DATA_OBJ`, an object whose
    /// interface id is followed by the message encoded as TNEF).
    messages: Vec<&'a [u8]>,
}

/// Reads a MAPI property list (`attAttachment`) property by property; a type it cannot
/// size ends the walk with what was found so far.
fn attachment_properties(props: &[u8]) -> AttachmentProperties<'_> {
    let mut found = AttachmentProperties::default();
    let Some(count) = read_u32(props, 0) else {
        return found;
    };
    let mut at = 4;
    for _ in 0..count {
        let (Some(ptype), Some(pid)) = (read_u16(props, at), read_u16(props, at + 2)) else {
            break;
        };
        at += 4;
        if pid >= 0x8000 {
            // A named property: its GUID, then an id or a name.
            let Some(kind) = read_u32(props, at + 16) else {
                break;
            };
            at += 20;
            if kind == 0 {
                at += 4;
            } else {
                let Some(len) = read_u32(props, at) else {
                    break;
                };
                at = at.saturating_add(4).saturating_add(padded(len));
            }
        }
        let multi = ptype & 0x1000 != 0;
        let base = ptype & !0x1000;
        let values = if multi || is_variable(base) {
            let Some(n) = read_u32(props, at) else {
                break;
            };
            at += 4;
            n
        } else {
            1
        };
        for _ in 0..values {
            if let Some(size) = fixed_size(base) {
                at = at.saturating_add(size);
                if at > props.len() {
                    // A count no list this long can hold.
                    return found;
                }
                continue;
            }
            if !is_variable(base) {
                return found;
            }
            let Some(len) = read_u32(props, at) else {
                return found;
            };
            let start = at + 4;
            let Some(value) = usize::try_from(len)
                .ok()
                .and_then(|len| props.get(start..start.checked_add(len)?))
            else {
                return found;
            };
            if matches!(pid, PR_ATTACH_LONG_FILENAME | PR_ATTACH_FILENAME)
                && matches!(base, 0x001E | 0x001F)
            {
                found.names.push(name_text(value, base == 0x001F));
            }
            if pid == PR_ATTACH_DATA_OBJ && base == 0x000D {
                if let Some(message) = value.get(INTERFACE_ID_LEN..).filter(|m| is_tnef(m)) {
                    found.messages.push(message);
                }
            }
            at = start.saturating_add(padded(len));
        }
        if at > props.len() {
            break;
        }
    }
    found
}

/// A length rounded up to a multiple of 4, as MAPI values are padded.
fn padded(len: u32) -> usize {
    usize::try_from(len).map_or(usize::MAX, |l| l.saturating_add(3) & !3)
}

/// Whether values of this type are counted and sized (strings, binary, objects).
fn is_variable(base: u16) -> bool {
    matches!(base, 0x001E | 0x001F | 0x0102 | 0x000D)
}

/// Bytes a value of a fixed-size type takes, padded.
fn fixed_size(base: u16) -> Option<usize> {
    match base {
        0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => Some(4),
        0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => Some(8),
        0x0048 => Some(16),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn attribute(out: &mut Vec<u8>, level: u8, id: u32, value: &[u8]) {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        let sum = value
            .iter()
            .fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
        out.extend_from_slice(&sum.to_le_bytes());
    }

    /// A property list's count, then its first property: `PR_ATTACH_METHOD` (`PT_LONG`).
    fn props_starting(count: u32, attach_method: u32) -> Vec<u8> {
        let mut p = count.to_le_bytes().to_vec();
        tag(&mut p, 0x0003, 0x3705);
        p.extend_from_slice(&attach_method.to_le_bytes());
        p
    }

    /// A property's type and id.
    fn tag(p: &mut Vec<u8>, ptype: u16, pid: u16) {
        p.extend_from_slice(&ptype.to_le_bytes());
        p.extend_from_slice(&pid.to_le_bytes());
    }

    /// A MAPI property list holding a long file name (UTF-16) after a few other types.
    fn props_with_long_name(name: &str) -> Vec<u8> {
        // By value.
        let mut p = props_starting(3, 1);
        // PT_BINARY of 5 bytes (padded to 8).
        tag(&mut p, 0x0102, 0x3702);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&5u32.to_le_bytes());
        p.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 0]);
        // PT_UNICODE PR_ATTACH_LONG_FILENAME.
        let wide: Vec<u8> = name
            .encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect();
        tag(&mut p, 0x001F, PR_ATTACH_LONG_FILENAME);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&(wide.len() as u32).to_le_bytes());
        p.extend_from_slice(&wide);
        p.resize(p.len() + (4 - wide.len() % 4) % 4, 0);
        p
    }

    /// A `winmail.dat` holding one file per `(title, long name, data)`.
    pub(crate) fn winmail(files: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let mut out = SIGNATURE.to_le_bytes().to_vec();
        out.extend_from_slice(&0x0001u16.to_le_bytes());
        attribute(&mut out, 0x01, 0x0009_8006, &[0, 0, 0, 0]);
        for (title, long, data) in files {
            attribute(&mut out, LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA, &[0; 14]);
            let mut t = title.as_bytes().to_vec();
            t.push(0);
            attribute(&mut out, LEVEL_ATTACHMENT, ATT_ATTACH_TITLE, &t);
            attribute(&mut out, LEVEL_ATTACHMENT, ATT_ATTACH_DATA, data);
            if !long.is_empty() {
                let props = props_with_long_name(long);
                attribute(&mut out, LEVEL_ATTACHMENT, ATT_ATTACHMENT, &props);
            }
        }
        out
    }

    #[test]
    fn files_are_read_with_their_titles_and_long_names() {
        let stream = winmail(&[
            ("INVOIC~1.EXE", "invoice.exe", b"MZ program"),
            ("notes.txt", "", b"hello"),
        ]);
        let files = files(&stream);
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[0].names, ["INVOIC~1.EXE", "invoice.exe"]);
        assert_eq!(files[0].data, b"MZ program");
        assert_eq!(files[1].names, ["notes.txt"]);
        assert_eq!(files[1].data, b"hello");
    }

    /// An attachment's properties holding an attached message: `PR_ATTACH_METHOD` 5
    /// (embedded message) and `PR_ATTACH_DATA_OBJ`, an interface id then `message`.
    fn props_with_message(message: &[u8]) -> Vec<u8> {
        // An embedded message.
        let mut p = props_starting(2, 5);
        tag(&mut p, 0x000D, PR_ATTACH_DATA_OBJ);
        p.extend_from_slice(&1u32.to_le_bytes());
        let len = INTERFACE_ID_LEN + message.len();
        p.extend_from_slice(&(len as u32).to_le_bytes());
        p.extend_from_slice(&[
            0x07, 0x03, 0x02, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46,
        ]);
        p.extend_from_slice(message);
        p.resize(p.len() + (4 - len % 4) % 4, 0);
        p
    }

    /// A `winmail.dat` whose one attachment is `message` (a TNEF stream) attached.
    pub(crate) fn winmail_forwarding(title: &str, message: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_le_bytes().to_vec();
        out.extend_from_slice(&0x0001u16.to_le_bytes());
        attribute(&mut out, LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA, &[0; 14]);
        let mut t = title.as_bytes().to_vec();
        t.push(0);
        attribute(&mut out, LEVEL_ATTACHMENT, ATT_ATTACH_TITLE, &t);
        attribute(
            &mut out,
            LEVEL_ATTACHMENT,
            ATT_ATTACHMENT,
            &props_with_message(message),
        );
        out
    }

    /// Regression (attachment probe): a message attached in Outlook travels inside its
    /// attachment's properties as a TNEF stream of its own, and the `invoice.exe` attached
    /// to it went unjudged. Its files are read, three messages deep.
    #[test]
    fn the_files_of_an_attached_message_are_read() {
        let inner = winmail(&[("INVOIC~1.EXE", "invoice.exe", b"MZ program")]);
        let outer = winmail_forwarding("Fwd: invoice", &inner);
        let found = files(&outer);
        let exe = found
            .iter()
            .find(|f| f.names.contains(&"invoice.exe".to_string()));
        assert_eq!(exe.map(|f| f.data.as_slice()), Some(&b"MZ program"[..]));
        assert!(found.iter().any(|f| f.names == ["Fwd: invoice"]));
        assert_eq!(found.len(), 2);
        let mut nested = inner;
        for level in 0..MAX_EMBEDDED_DEPTH + 2 {
            nested = winmail_forwarding(&format!("Fwd {level}"), &nested);
        }
        // Past the depth, the message is a file left out (`ATTACH_TOO_MANY_FILES`).
        let deep = files(&nested);
        assert!(deep
            .iter()
            .all(|f| !f.names.contains(&"invoice.exe".to_string())));
        assert_eq!(deep.len(), MAX_EMBEDDED_DEPTH + 2);
        assert_eq!(deep.iter().filter(|f| f.data_left_out).count(), 1);
    }

    /// Regression (review): reading stopped at the 256th file, so `invoice.exe` after 256
    /// text files was dropped, name and all.
    #[test]
    fn files_past_the_cap_keep_their_names_without_their_bytes() {
        let names: Vec<String> = (0..MAX_FILES).map(|i| format!("f{i}.txt")).collect();
        let mut list: Vec<(&str, &str, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), "", b"text".as_slice()))
            .collect();
        list.push(("INVOIC~1.EXE", "invoice.exe", b"MZ program"));
        let found = files(&winmail(&list));
        assert_eq!(found.len(), MAX_FILES + 1);
        assert_eq!(found[MAX_FILES - 1].data, b"text");
        assert!(!found[MAX_FILES - 1].data_left_out);
        let last = &found[MAX_FILES];
        assert_eq!(last.names, ["INVOIC~1.EXE", "invoice.exe"]);
        assert!(last.data.is_empty() && last.data_left_out);
    }

    #[test]
    fn damaged_or_foreign_streams_give_what_they_hold_and_never_panic() {
        assert!(files(b"not tnef at all").is_empty());
        let stream = winmail(&[("a.exe", "long.exe", b"MZ")]);
        for cut in 0..stream.len() {
            let _ = files(&stream[..cut]);
        }
        for i in 0..stream.len() {
            let mut bad = stream.clone();
            bad[i] ^= 0xA5;
            let _ = files(&bad);
        }
        // A property count or value count of four billion ends with the data.
        let mut huge = 0xFFFF_FFFFu32.to_le_bytes().to_vec();
        huge.extend_from_slice(&0x1003u16.to_le_bytes());
        huge.extend_from_slice(&0x3705u16.to_le_bytes());
        huge.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        assert!(attachment_properties(&huge).names.is_empty());
        // A length running past the end stops the walk.
        let mut long = SIGNATURE.to_le_bytes().to_vec();
        long.extend_from_slice(&[1, 0, 2, 0x10, 0x80, 1, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(files(&long).is_empty());
    }
}
