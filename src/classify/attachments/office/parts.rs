//! The parts of an Office Open XML document (`.docx`, `.xlsx`, `.pptx` and their macro
//! forms) that load, run or start something when it opens: relationships to templates,
//! objects and frames on the network, DDE fields and links, Excel 4 macro sheets and the
//! `Auto_Open` name that runs them.

use super::super::locations;
use super::Facts;

/// Template file names Word loads a document's template from: a document made from a
/// company template on a share or SharePoint names one of these, an injected "template"
/// is often a page or a script.
const TEMPLATE_EXTENSIONS: &[&str] =
    &[".dotx", ".dotm", ".dot", ".xltx", ".xltm", ".potx", ".potm"];

/// Reads the part `name` (the entry's path in the zip) of an Office document.
pub(super) fn read(name: &str, data: &[u8]) -> Facts {
    let lower = name.to_ascii_lowercase();
    let mut facts = Facts::default();
    if lower.ends_with(".rels") {
        facts.remote_object = loads_from_network(data);
        return facts;
    }
    if lower.contains("macrosheets/") {
        // `.xml` in `.xlsm`, `.bin` in `.xlsb`.
        facts.macros = true;
        return facts;
    }
    // An `.xlsb`'s workbook (its names, `Auto_Open` among them) and external links, in
    // binary records: known by their first record, since Office finds parts through
    // relationships and any name will do (review: `xl/book1.bin`).
    if super::biff12::is_workbook(data) {
        return super::biff12::read_workbook(data);
    }
    if super::biff12::is_external_link(data) {
        return super::biff12::read_external_link(data);
    }
    if !lower.ends_with(".xml") {
        return facts;
    }
    read_xml(data)
}

/// Reads an XML part, or a document saved whole as XML (Word and Excel 2003 XML, whose
/// fields and names are written as in the parts): the `Auto_Open` name and DDE.
pub(super) fn read_xml(data: &[u8]) -> Facts {
    let mut facts = Facts::default();
    let text = readable_xml(data);
    let folded = text.to_ascii_lowercase();
    // The defined name Excel runs on opening (built in, or a plain `Auto_Open` name on a
    // macro sheet): its formulas call what they like (`EXEC`, `CALL`), with no source to
    // read.
    let auto_open = elements(&text, "definedName")
        .any(|tag| attribute(tag, "name").is_some_and(|n| super::biff::is_auto_open_name(&n)));
    if auto_open {
        facts.excel_4_runs_on_open();
    }
    facts.dde = folded.contains("ddelink") || has_dde_field(&text);
    facts
}

/// A part's text as an XML reader sees it: comments dropped, CDATA sections opened (their
/// `<` and `>` blanked so they start no tag), character references read.
pub(super) fn readable_xml(data: &[u8]) -> String {
    let raw = String::from_utf8_lossy(data);
    let mut text = String::with_capacity(raw.len());
    let mut rest = raw.as_ref();
    // One pass over the `<`s, each checked for a comment or a CDATA section where it
    // stands (searching ahead for both again after each one was quadratic; review).
    while let Some(at) = rest.find('<') {
        text.push_str(&rest[..at]);
        let here = &rest[at..];
        if let Some(after) = here.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
        } else if let Some(after) = here.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            text.extend(
                after[..end]
                    .chars()
                    .map(|c| if c == '<' || c == '>' { ' ' } else { c }),
            );
            rest = after.get(end + 3..).unwrap_or("");
        } else {
            text.push('<');
            rest = &here[1..];
        }
    }
    text.push_str(rest);
    text
}

/// Whether a relationships part has Office load something from the network when the
/// document opens (see [`loaded_from_network`]).
pub(super) fn loads_from_network(data: &[u8]) -> bool {
    let text = readable_xml(data);
    let found = elements(&text, "Relationship").any(|tag| {
        let external =
            attribute(tag, "TargetMode").is_some_and(|m| m.eq_ignore_ascii_case("External"));
        let kind = attribute(tag, "Type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let target = attribute(tag, "Target").unwrap_or_default();
        external && loaded_from_network(&kind, &target)
    });
    found
}

/// Whether a relationship of type `kind` (lower-case) to the external `target` loads
/// something from the network on opening: an OLE object, a frame or a sub-document at any
/// non-local target (CVE-2017-0199, CVE-2022-30190); a template at a URL whose host is an
/// address, through a handler (`mhtml:`, `ms-…:`), or that names no template file
/// (template injection). A template file on a share or SharePoint is what a document made
/// from a company template names, and is not flagged.
fn loaded_from_network(kind: &str, target: &str) -> bool {
    let Some(place) = network_place(target) else {
        return false;
    };
    let by_address = locations::is_address(&place.host);
    if ["/oleobject", "/frame", "/subdocument"]
        .iter()
        .any(|s| kind.ends_with(s))
    {
        // A workbook on the company's file server linked into a report is ordinary; a
        // share at an address or over WebDAV (`\\host@SSL\`) is an attacker's.
        return !place.share || by_address || place.host.contains('@');
    }
    if !kind.ends_with("/attachedtemplate") {
        return false;
    }
    let path = place
        .path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let names_a_template = TEMPLATE_EXTENSIONS.iter().any(|e| path.ends_with(e));
    place.handler || by_address || !names_a_template
}

/// Where a non-local target points.
struct NetworkPlace<'t> {
    /// The host (empty for a handler).
    host: String,
    /// The rest after the host.
    path: &'t str,
    /// Reached through a handler other than `http`, `https` or `file` (`mhtml:`, `ms-msdt:`).
    handler: bool,
    /// A file share (UNC or `file://host/`), not a web server.
    share: bool,
}

/// A target outside the computer: a share (see [`locations::share`]), a URL with a host,
/// or another scheme; `None` for a file on the computer (`file:///C:/…`, `C:\…`) or a
/// path inside the document's folder.
fn network_place(target: &str) -> Option<NetworkPlace<'_>> {
    let t = target.trim();
    if let Some(share) = locations::share(t) {
        return (!share.host.is_empty()).then(|| NetworkPlace {
            host: share.host.to_ascii_lowercase(),
            path: share.rest,
            handler: false,
            share: true,
        });
    }
    // One letter is a drive (`C:\…`); `file:` that names no share is local.
    let scheme = locations::scheme_of(t).filter(|s| s.len() >= 2 && s != "file")?;
    let rest = &t[scheme.len() + 1..];
    if scheme != "http" && scheme != "https" {
        return Some(NetworkPlace {
            host: String::new(),
            path: rest,
            handler: true,
            share: false,
        });
    }
    let rest = rest.trim_start_matches(['/', '\\']);
    let end = rest.find(['/', '\\']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().unwrap_or_default();
    // `[2001:db8::1]:443`: the address is inside the brackets.
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    (!host.is_empty()).then(|| NetworkPlace {
        host: host.to_ascii_lowercase(),
        path: &rest[end..],
        handler: false,
        share: false,
    })
}

/// Whether a Word part holds a DDE field: the instruction of each field (its pieces joined
/// in order, as Word joins runs, and a sender can split it at will) starts with `DDE` or
/// `DDEAUTO`.
fn has_dde_field(text: &str) -> bool {
    if !text.contains("instr") {
        return false;
    }
    let mut instructions: Vec<String> = vec![String::new()];
    for Tag {
        local,
        tag,
        content,
    } in tags(text)
    {
        match local {
            // A field begins: its instruction is a new one.
            "fldChar" if attribute(tag, "fldCharType").is_some_and(|t| t == "begin") => {
                instructions.push(String::new());
            }
            "instrText" if !tag.ends_with('/') => {
                if let Some(last) = instructions.last_mut() {
                    last.push_str(&decode_references(content));
                }
            }
            "fldSimple" => instructions.extend(attribute(tag, "instr")),
            _ => {}
        }
    }
    instructions.iter().any(|i| {
        let command = i
            .trim_start()
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        command.eq_ignore_ascii_case("DDE") || command.eq_ignore_ascii_case("DDEAUTO")
    })
}

/// One tag of a part's text.
pub(super) struct Tag<'t> {
    /// The element's name without its namespace prefix (`instrText` of `w:instrText`).
    pub local: &'t str,
    /// The tag without its `<` and `>`: name and attributes (`/` last when self-closing).
    pub tag: &'t str,
    /// The text after it, up to the next tag.
    pub content: &'t str,
}

/// The tags of `text` in order (text as [`readable_xml`] gives it).
pub(super) fn tags(text: &str) -> impl Iterator<Item = Tag<'_>> {
    text.split('<').skip(1).map(|piece| {
        let (tag, content) = split_tag(piece);
        let local = tag_name(tag).rsplit(':').next().unwrap_or_default();
        Tag {
            local,
            tag,
            content,
        }
    })
}

/// The element's name as written (`w:fldSimple`), first in a tag.
fn tag_name(tag: &str) -> &str {
    tag.split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or_default()
}

/// A piece of text after a `<`: the tag up to its `>` (one inside a quoted attribute value
/// does not end it; review) and what follows.
fn split_tag(piece: &str) -> (&str, &str) {
    let mut quote = None;
    for (i, c) in piece.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return (&piece[..i], &piece[i + 1..]),
            _ => {}
        }
    }
    (piece, "")
}

/// The start tags `<prefix:local …>` (any namespace prefix) in `text`, without their `<`.
pub(super) fn elements<'t>(text: &'t str, local: &'t str) -> impl Iterator<Item = &'t str> + 't {
    tags(text).filter(move |t| t.local == local).map(|t| t.tag)
}

/// The attributes of a start tag in order, each as its name (with any prefix) and its
/// value as written between its quotes, read whole (a value that says `x="` is no
/// attribute); they end at the first value without quotes.
pub(super) fn attributes(tag: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = tag;
    std::iter::from_fn(move || {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim_end();
        let key = key
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or(key);
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|&q| q == '"' || q == '\'')?;
        let value_end = after[1..].find(quote)? + 1;
        rest = &after[value_end + 1..];
        Some((key, &after[1..value_end]))
    })
}

/// The value of attribute `name` in a start tag, its character references read. A name
/// with a prefix in the document (`w:instr`) is found by its local part; a name without
/// one (`Target`) only as itself, so `x:Target` in front of `Target` changes nothing.
fn attribute(tag: &str, name: &str) -> Option<String> {
    // The element's own name has a prefix (`w:fldSimple`): its attributes then do too.
    let prefixed = tag_name(tag).contains(':');
    let (_, value) = attributes(tag).find(|(key, _)| match key.split_once(':') {
        Some((prefix, local)) => local == name && prefix != "xmlns" && prefixed,
        None => *key == name,
    })?;
    Some(decode_references(value))
}

/// Bytes a character reference may take between `&` and `;` (leading zeros included).
const MAX_REFERENCE: usize = 32;

/// `text` with XML's predefined entities and numeric character references read.
pub(super) fn decode_references(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        // A reference is short: its `;` is looked for only that far (a search to the end
        // of the text for every `&` made a part of ampersands cost quadratic time; review).
        let Some(end) = after.bytes().take(MAX_REFERENCE).position(|b| b == b';') else {
            out.push('&');
            rest = after;
            continue;
        };
        let entity = &after[..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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

    const EXTERNAL: &str = "TargetMode=\"External\"";
    const SETTINGS: &str = "word/_rels/settings.xml.rels";

    #[test]
    fn injected_templates_and_remote_objects_are_found() {
        for target in [
            "http://198.51.100.7/t.dotm",
            "\\\\198.51.100.7\\share\\t.dotm",
            "file:////198.51.100.7/share/t.dotm",
            // The same address as one number, in hex, in octal parts.
            "http://3325256711/t.dotm",
            "http://0xC6336407/t.dotm",
            "\\\\0306.0063.0144.07\\share\\t.dotm",
            "mhtml:http://x.example/a.html!x-usc:http://x.example/a.html",
            "ms-msdt:/id PCWDiagnostic",
            "https://x.example/download?id=7",
            "&#104;ttp://x.example/page",
            "https://user@[2001:db8::1]:443/t.dotm",
        ] {
            let part = rels("attachedTemplate", target, EXTERNAL);
            assert!(read(SETTINGS, &part).remote_object, "{target}");
        }
        let object = rels("oleObject", "https://x.example/o.html!", EXTERNAL);
        assert!(read("word/_rels/document.xml.rels", &object).remote_object);
        let object = rels("oleObject", "file://198.51.100.7/share/o.doc", EXTERNAL);
        assert!(read("word/_rels/document.xml.rels", &object).remote_object);
        let object = rels("oleObject", "\\\\host@SSL\\share\\o.doc", EXTERNAL);
        assert!(read("word/_rels/document.xml.rels", &object).remote_object);
        // A workbook on the company's file server linked into a report.
        let linked = rels(
            "oleObject",
            "file:///\\\\fileserver\\finance\\budget.xlsx",
            EXTERNAL,
        );
        assert!(!read("word/_rels/document.xml.rels", &linked).remote_object);
        // A prefixed twin of `Target` is not the attribute Office reads.
        let twin = format!(
            "<Relationships><Relationship x:Target=\"C:\\a.dotx\" Type=\"{REL}/attachedTemplate\" \
             Target=\"http://198.51.100.7/t\" {EXTERNAL}/></Relationships>"
        );
        assert!(read(SETTINGS, twin.as_bytes()).remote_object);
    }

    #[test]
    fn company_templates_and_local_files_are_not_flagged() {
        for target in [
            "file:///C:\\Users\\ann\\AppData\\Roaming\\Microsoft\\Templates\\Letter.dotx",
            "C:\\Templates\\Letter.dotx",
            "Letter.dotx",
            "file:///\\\\fileserver\\templates\\Normal.dotm",
            "https://contoso.sharepoint.com/sites/hr/Templates/Letter.dotx",
        ] {
            let part = rels("attachedTemplate", target, EXTERNAL);
            assert!(!read(SETTINGS, &part).remote_object, "{target}");
        }
        // Links the reader clicks, and targets inside the package, are not loaded on opening.
        assert!(!read(SETTINGS, &rels("hyperlink", "http://x.example/", EXTERNAL)).remote_object);
        let internal = rels("attachedTemplate", "http://198.51.100.7/t", "");
        assert!(!read(SETTINGS, &internal).remote_object);
    }

    #[test]
    fn dde_fields_are_found_however_they_are_split() {
        let split = "<w:document><w:body><w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r>\
                     <w:r><w:instrText xml:space=\"preserve\"> DD</w:instrText></w:r>\
                     <w:r><w:instrText>EAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc\"</w:instrText></w:r>\
                     </w:p></w:body></w:document>";
        assert!(read("word/document.xml", split.as_bytes()).dde);
        for part in [
            "<w:fldSimple w:instr=\" DDE &quot;c:\\\\x.exe&quot; \"/>",
            "<w:instrText>DD<!-- x -->EAUTO x</w:instrText>",
            "<w:instrText><![CDATA[DDEAUTO x]]></w:instrText>",
            "<w:instrText>&#68;DEAUTO x</w:instrText>",
            "<w:instrText>&#00000000068;DEAUTO x</w:instrText>",
            "<w:fldSimple w:instr='DDEAUTO c:\\\\x.exe \"/k a > b\"'/>",
            "<w:fldChar w:fldCharType=\"begin\"/><w:instrText> PAGE </w:instrText>\
             <w:fldChar w:fldCharType=\"begin\"/><w:instrText>DDEAUTO x</w:instrText>",
        ] {
            assert!(read("word/footer1.xml", part.as_bytes()).dde, "{part}");
        }
        // Outside `word/` too: parts are judged by what they hold.
        assert!(read("custom/part.xml", b"<w:instrText>DDE x</w:instrText>").dde);
        for part in [
            "<w:instrText> PAGE </w:instrText><w:t>DDE is a protocol</w:t>",
            "<w:instrText> HYPERLINK \"https://intranet/DDE/\" </w:instrText>",
            "<w:instrText> REF DDE_Total </w:instrText>",
            "<w:instrText>DDE_Total</w:instrText>",
        ] {
            assert!(!read("word/document.xml", part.as_bytes()).dde, "{part}");
        }
        let link = b"<externalLink><ddeLink ddeService=\"cmd\"/></externalLink>";
        assert!(read("xl/externalLinks/externalLink1.xml", link).dde);
    }

    #[test]
    fn hostile_parts_are_read_in_one_pass() {
        // Quadratic before (a search to the end for every `&`, and for both comment and
        // CDATA after each one): these took minutes; now a linear walk each.
        let ampersands = format!("<w:instrText>{}</w:instrText>", "&".repeat(2_000_000));
        assert!(!read("word/document.xml", ampersands.as_bytes()).dde);
        let comments = "<!---->".repeat(300_000);
        assert!(!read("word/document.xml", comments.as_bytes()).dde);
        let targets = format!("<Relationship Target=\"{}\"/>", "&".repeat(2_000_000));
        assert!(!read(SETTINGS, targets.as_bytes()).remote_object);
    }

    #[test]
    fn excel_4_macro_sheets_and_auto_open_are_found() {
        assert!(read("xl/macrosheets/sheet1.xml", b"<xm:macrosheet/>").macros);
        assert!(read("xl/macrosheets/sheet1.bin", b"\x00\x01").macros);
        for name in [
            "_xlnm.Auto_Open",
            "_xlnm.AUTO_OPEN",
            "Auto_Open",
            "Auto_Open_2",
            "auto_open21",
        ] {
            let wb = format!(
                "<workbook><definedNames><definedName name = '{name}'>Macro1!$A$1</definedName></definedNames></workbook>"
            );
            assert!(
                read("xl/workbook.xml", wb.as_bytes()).autorun_macro(),
                "{name}"
            );
        }
        assert_eq!(read("xl/workbook.xml", b"<workbook/>"), Facts::default());
    }
}
