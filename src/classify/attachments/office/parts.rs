//! The parts of an Office Open XML document (`.docx`, `.xlsx`, `.pptx` and their macro
//! forms) that load, run or start something when it opens: relationships to templates,
//! objects and frames on the network, DDE fields and links, Excel 4 macro sheets and the
//! `Auto_Open` name that runs them.

use super::Facts;

/// Relationship types that Office follows by itself when the document opens (template
/// injection, remote OLE objects as in CVE-2022-30190, frames, sub-documents). Links the
/// reader clicks (`hyperlink`) are not among them.
const LOADED_ON_OPEN: &[&str] = &["/attachedtemplate", "/oleobject", "/frame", "/subdocument"];

/// Reads the part `name` (the entry's path in the zip) of an Office document.
pub(super) fn read(name: &str, data: &[u8]) -> Facts {
    let lower = name.to_ascii_lowercase();
    let mut facts = Facts::default();
    if lower.ends_with(".rels") {
        facts.remote_object = loads_from_network(data);
    } else if lower.contains("macrosheets/") && lower.ends_with(".xml") {
        facts.macros = true;
    } else if lower.ends_with("workbook.xml") {
        // The defined name Excel runs on opening: a macro sheet's formulas call what they
        // like (`EXEC`, `CALL`), with no source to read.
        if memchr::memmem::find(data, b"_xlnm.Auto_Open").is_some()
            || memchr::memmem::find(data, b"_xlnm.auto_open").is_some()
        {
            facts.macros = true;
            facts.runs_on_open = true;
            facts.reaches_out = true;
        }
    } else if lower.contains("externallinks/") && lower.ends_with(".xml") {
        facts.dde = memchr::memmem::find(data, b"ddeLink").is_some();
    } else if lower.starts_with("word/") && lower.ends_with(".xml") {
        facts.dde = has_dde_field(data);
    }
    facts
}

/// Whether a relationships part has Office load something from the network: an external
/// target of a type followed on opening that is no local path.
fn loads_from_network(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let found = elements(&text, "Relationship").any(|tag| {
        let external =
            attribute(tag, "TargetMode").is_some_and(|m| m.eq_ignore_ascii_case("External"));
        let loaded = attribute(tag, "Type").is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            LOADED_ON_OPEN.iter().any(|suffix| t.ends_with(suffix))
        });
        external && loaded && attribute(tag, "Target").is_some_and(|t| !is_local_path(&t))
    });
    found
}

/// Whether a target names a file on this computer (`file:///C:/…`, `C:\…`, a relative
/// path), which Word writes for a document made from a local template.
fn is_local_path(target: &str) -> bool {
    let t = target.trim().replace("&amp;", "&");
    let rest = t
        .strip_prefix("file:///")
        .or_else(|| t.strip_prefix("FILE:///"))
        .unwrap_or(&t);
    let bytes = rest.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    let drive_path = drive && matches!(bytes.get(2), Some(b'\\' | b'/') | None);
    if drive_path {
        return true;
    }
    // Anything with a scheme or a host (`http:`, `mhtml:`, `ms-msdt:`, `\\host`, `//host`)
    // leaves the computer; a relative path stays inside the document's folder.
    let scheme = rest.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let host = rest.starts_with("\\\\")
        || rest.starts_with("//")
        || rest.starts_with("\\/")
        || rest.starts_with("/\\");
    !scheme && !host
}

/// Whether a Word part holds a DDE field: the instruction text of its fields, joined in
/// order (Word splits one instruction over runs, and a sender can split it at will), says
/// `DDE` or `DDEAUTO` as its command.
fn has_dde_field(data: &[u8]) -> bool {
    if memchr::memmem::find(data, b"instr").is_none() {
        return false;
    }
    let text = String::from_utf8_lossy(data);
    let mut instructions = String::new();
    for element in element_texts(&text, "instrText") {
        instructions.push_str(element);
    }
    for tag in elements(&text, "fldSimple") {
        if let Some(instr) = attribute(tag, "instr") {
            instructions.push(' ');
            instructions.push_str(&instr);
        }
    }
    let upper = instructions.to_ascii_uppercase();
    upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == "DDE" || word == "DDEAUTO")
}

/// The start tags `<prefix:local …>` (any namespace prefix) in `text`, without their `<`.
fn elements<'t>(text: &'t str, local: &'t str) -> impl Iterator<Item = &'t str> + 't {
    text.split('<').skip(1).filter_map(move |piece| {
        let tag = piece.split('>').next()?;
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').next()?;
        let bare = name.rsplit(':').next()?;
        (bare == local).then_some(tag)
    })
}

/// The text content of the elements `<prefix:local>…</prefix:local>` in `text`.
fn element_texts<'t>(text: &'t str, local: &'t str) -> impl Iterator<Item = &'t str> + 't {
    text.split('<').skip(1).filter_map(move |piece| {
        let (tag, content) = piece.split_once('>')?;
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').next()?;
        let bare = name.rsplit(':').next()?;
        (bare == local && !tag.ends_with('/')).then_some(content)
    })
}

/// The value of attribute `name` (any prefix) in a start tag, with `&amp;`, `&quot;`,
/// `&apos;`, `&lt;` and `&gt;` read.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_end();
        let key = key
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or(key);
        let bare = key.rsplit(':').next().unwrap_or(key);
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let value_end = after[1..].find(quote)? + 1;
        let value = &after[1..value_end];
        if bare == name {
            let value = value
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            return Some(value);
        }
        rest = &after[value_end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

    fn rels(kind: &str, target: &str, mode: &str) -> Vec<u8> {
        format!(
            "<?xml version=\"1.0\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
             <Relationship Id=\"rId1\" Type=\"{REL}/{kind}\" Target=\"{target}\" {mode}/></Relationships>"
        )
        .into_bytes()
    }

    #[test]
    fn templates_and_objects_on_the_network_are_found_local_ones_are_not() {
        let external = "TargetMode=\"External\"";
        let part = "word/_rels/settings.xml.rels";
        for target in [
            "http://198.51.100.7/t.dotm",
            "\\\\198.51.100.7\\share\\t.dotm",
            "mhtml:http://x.example/a.html!x-usc:http://x.example/a.html",
            "ms-msdt:/id PCWDiagnostic",
            "file://host.example/share/t.dotm",
        ] {
            assert!(
                read(part, &rels("attachedTemplate", target, external)).remote_object,
                "{target}"
            );
        }
        assert!(
            read(
                "word/_rels/document.xml.rels",
                &rels("oleObject", "https://x.example/o.html!", external)
            )
            .remote_object
        );
        for target in [
            "file:///C:\\Users\\ann\\AppData\\Roaming\\Microsoft\\Templates\\Letter.dotx",
            "C:\\Templates\\Letter.dotx",
            "Letter.dotx",
        ] {
            assert!(
                !read(part, &rels("attachedTemplate", target, external)).remote_object,
                "{target}"
            );
        }
        // Links the reader clicks, and targets inside the package, are not loaded on opening.
        assert!(!read(part, &rels("hyperlink", "http://x.example/", external)).remote_object);
        assert!(
            !read(
                part,
                &rels("attachedTemplate", "http://x.example/t.dotm", "")
            )
            .remote_object
        );
    }

    #[test]
    fn dde_fields_are_found_even_split_over_runs() {
        let split = "<w:document><w:body><w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r>\
                     <w:r><w:instrText xml:space=\"preserve\"> DD</w:instrText></w:r>\
                     <w:r><w:instrText>EAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc\"</w:instrText></w:r>\
                     </w:p></w:body></w:document>";
        assert!(read("word/document.xml", split.as_bytes()).dde);
        let simple = "<w:fldSimple w:instr=\" DDE &quot;c:\\\\x.exe&quot; \"/>";
        assert!(read("word/footer1.xml", simple.as_bytes()).dde);
        let page = "<w:instrText> PAGE </w:instrText><w:t>DDE is a protocol</w:t>";
        assert!(!read("word/document.xml", page.as_bytes()).dde);
        assert!(
            read(
                "xl/externalLinks/externalLink1.xml",
                b"<externalLink><ddeLink ddeService=\"cmd\"/></externalLink>"
            )
            .dde
        );
    }

    #[test]
    fn excel_4_macro_sheets_and_auto_open_are_found() {
        assert!(read("xl/macrosheets/sheet1.xml", b"<xm:macrosheet/>").macros);
        let wb = b"<workbook><definedNames><definedName name=\"_xlnm.Auto_Open\">Macro1!$A$1</definedName></definedNames></workbook>";
        assert!(read("xl/workbook.xml", wb).autorun_macro());
        assert_eq!(read("xl/workbook.xml", b"<workbook/>"), Facts::default());
    }
}
