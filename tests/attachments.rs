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
