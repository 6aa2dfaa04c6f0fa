//! Objects embedded in RTF documents (`{\object … {\*\objdata <hex>}}`): the hex is an
//! OLE 1 object whose class says what opens it. RTF is how most document exploits are
//! mailed: Word opens it under any extension (`.doc` too), and the object needs no macro.

use super::{DocumentBudget, Facts};

/// Objects read per document at most.
pub(super) const MAX_OBJECTS: usize = 1024;

/// Whether `data` is RTF as Word takes it (`{\rt`, whatever follows).
pub(super) fn is_rtf(data: &[u8]) -> bool {
    data.starts_with(b"{\\rt")
}

/// Reads the objects of an RTF document.
pub(super) fn read(data: &[u8], budget: &mut DocumentBudget) -> Facts {
    let mut facts = Facts::default();
    let mut read_up_to = 0;
    let mut objects = 0;
    for at in memchr::memmem::find_iter(data, b"\\objdata") {
        // An object's data is read once: `\objdata` repeated in front of one blob made
        // its compound file read 64 times (review).
        if at < read_up_to {
            continue;
        }
        let rest = data.get(at + 8..).unwrap_or_default();
        let (object, used) = object_bytes(rest);
        read_up_to = at + 8 + used;
        // Empty groups in front cannot use up the count (review).
        if object.len() < 8 {
            continue;
        }
        facts.merge(read_object(&object, budget));
        objects += 1;
        if objects == MAX_OBJECTS {
            let rest = data.get(read_up_to..).unwrap_or_default();
            facts.uninspected |= memchr::memmem::find(rest, b"\\objdata").is_some();
            break;
        }
    }
    facts
}

/// The bytes of an object's data: the hex digits up to the end of its group, with what
/// RTF readers skip in between (white space, control words, nested groups' braces, the
/// raw bytes of a `\binN`) left out, as Word reads them.
/// Returns the bytes and how much of `rest` the group took.
fn object_bytes(rest: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut high: Option<u8> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = rest.get(i) {
        i += 1;
        match c {
            b'{' => depth += 1,
            b'}' => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => break,
            },
            b'\\' => {
                let word_start = i;
                while rest.get(i).is_some_and(u8::is_ascii_alphabetic) {
                    i += 1;
                }
                let word = rest.get(word_start..i).unwrap_or_default();
                let digits_start = i;
                if rest.get(i) == Some(&b'-') {
                    i += 1;
                }
                while rest.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let parameter = std::str::from_utf8(rest.get(digits_start..i).unwrap_or_default())
                    .ok()
                    .and_then(|p| p.parse::<usize>().ok());
                if rest.get(i) == Some(&b' ') {
                    i += 1;
                }
                if word == b"bin" {
                    i = i.saturating_add(parameter.unwrap_or(0));
                } else if word.is_empty() {
                    // A control symbol (`\'hh`, `\*`, `\\`): one character, read as such.
                    i += 1;
                }
            }
            _ => {
                let Some(nibble) = (c as char).to_digit(16) else {
                    continue;
                };
                let nibble = nibble as u8;
                match high.take() {
                    Some(h) => out.push(h << 4 | nibble),
                    None => high = Some(nibble),
                }
            }
        }
    }
    (out, i.min(rest.len()))
}

/// Reads an OLE 1 object: version, format, class name; for an embedded object its topic,
/// item and native data.
fn read_object(object: &[u8], budget: &mut DocumentBudget) -> Facts {
    let mut facts = Facts::default();
    let mut at = 8;
    let Some(class) = length_prefixed(object, &mut at) else {
        return facts;
    };
    let class = class.to_ascii_lowercase();
    let class = class.strip_suffix(b"\0").unwrap_or(&class);
    if class.starts_with(b"equation.") {
        facts.equation_editor = true;
    }
    if class == b"ole2link" {
        facts.remote_object = true;
    }
    let format = object
        .get(4..8)
        .map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
    if format != Some(2) {
        return facts;
    }
    let topic = length_prefixed(object, &mut at);
    let item = length_prefixed(object, &mut at);
    if topic.is_none() || item.is_none() {
        return facts;
    }
    let native = object.get(at + 4..).unwrap_or_default();
    if class == b"package" {
        if let Some(found) = super::package::read_native(native) {
            facts.add_package(found);
        }
    } else {
        facts.merge(super::probe_compound(native, budget));
    }
    facts
}

/// A string with a 32-bit length in front, at `*at`; moves `*at` past it.
fn length_prefixed<'d>(data: &'d [u8], at: &mut usize) -> Option<&'d [u8]> {
    let len = data.get(*at..*at + 4)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let text = data.get(*at + 4..(*at + 4).checked_add(len)?)?;
    *at += 4 + len;
    Some(text)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An OLE 1 embedded object of `class` with `native` data, as hex in an RTF document,
    /// the hex broken by `junk` every 16 digits (as exploit kits break it).
    pub(crate) fn rtf_with_object(class: &str, native: &[u8], junk: &str) -> Vec<u8> {
        let mut object = vec![1, 5, 0, 0, 2, 0, 0, 0];
        let mut class_z = class.as_bytes().to_vec();
        class_z.push(0);
        object.extend_from_slice(&(class_z.len() as u32).to_le_bytes());
        object.extend_from_slice(&class_z);
        object.extend_from_slice(&[0; 8]);
        object.extend_from_slice(&(native.len() as u32).to_le_bytes());
        object.extend_from_slice(native);
        let hex: String = object.iter().map(|b| format!("{b:02x}")).collect();
        let broken: Vec<String> = hex
            .as_bytes()
            .chunks(16)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "{{\\rtf1\\ansi{{\\object\\objemb\\objupdate{{\\*\\objclass {class}}}{{\\*\\objdata {}}}}}}}",
            broken.join(junk)
        )
        .into_bytes()
    }

    #[test]
    fn equation_editor_objects_and_links_are_found() {
        let rtf = rtf_with_object("Equation.3", &[0x1C, 0, 0, 0, 2, 0], "\r\n");
        assert!(read(&rtf, &mut DocumentBudget::default()).equation_editor);
        let rtf = rtf_with_object(
            "Equation.3",
            &[0x1C, 0, 0, 0, 2, 0],
            "{\\*\\datastore }\\bin0 ",
        );
        assert!(
            read(&rtf, &mut DocumentBudget::default()).equation_editor,
            "{}",
            String::from_utf8_lossy(&rtf)
        );
        let rtf = rtf_with_object("OLE2Link", &[0; 16], " ");
        assert!(read(&rtf, &mut DocumentBudget::default()).remote_object);
        let rtf = rtf_with_object("Word.Document.8", &[0; 16], "");
        assert_eq!(read(&rtf, &mut DocumentBudget::default()), Facts::default());
    }

    #[test]
    fn a_package_in_an_rtf_object_is_read() {
        let native = super::super::package::tests::package_stream("a.js", "C:\\a.js", b"x");
        // OLE 1 packages carry no size in front.
        let rtf = rtf_with_object("Package", &native[4..], "\n");
        let facts = read(&rtf, &mut DocumentBudget::default());
        assert_eq!(facts.packages.len(), 1);
        assert_eq!(facts.packages[0].names[0], "a.js");
    }

    #[test]
    fn broken_objects_give_nothing_and_stay_bounded() {
        assert_eq!(
            read(b"{\\rtf1{\\*\\objdata 0105", &mut DocumentBudget::default()),
            Facts::default()
        );
        assert_eq!(
            read(
                b"{\\rtf1{\\*\\objdata \\bin99999999999999999999 }}",
                &mut DocumentBudget::default()
            ),
            Facts::default()
        );
        let many = "{\\*\\objdata 01}".repeat(10_000);
        assert_eq!(
            read(many.as_bytes(), &mut DocumentBudget::default()),
            Facts::default()
        );
    }
}
