//! Spool failures are answered 452 4.3.1 (never 250), and the gateway recovers as soon as
//! the spool works again. Works as root: `SPOOL/tmp` and `SPOOL/free` (the reused files of
//! delivered messages) are replaced by regular files.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

/// Runs one transaction; returns the first non-2xx/354 reply or the final one.
fn attempt(gw: &Gateway, id: &str) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    for cmd in [
        "MAIL FROM:<s@sender.test>",
        "RCPT TO:<user@example.test>",
        "DATA",
    ] {
        let r = c.cmd(cmd);
        if !(r.is_positive() || r.code == 354) {
            return r;
        }
    }
    c.send(&dot_stuffed(&message(id, "spool", "body")));
    let r = c.read_reply();
    c.quit();
    r
}

/// Removes a spool directory the gateway may be filling at that moment (the committer tops
/// `free/` up when the gateway is idle), so one pass of `remove_dir_all` can find it not empty.
fn remove_while_in_use(dir: &std::path::Path) {
    let removed = wait_until(Duration::from_secs(2), || match fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => false,
        Err(e) => panic!("removing {}: {e}", dir.display()),
    });
    assert!(removed, "{} stayed in use", dir.display());
}

#[test]
fn unwritable_spool_is_452_431_then_recovers() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    attempt(&gw, "before@test").expect(250, "2.0.0");
    internal.expect_message_id("before@test");

    let dirs = [gw.spool().join("tmp"), gw.spool().join("free")];
    for dir in &dirs {
        assert!(
            dir.is_dir(),
            "expected the spool to keep {} (see src/spool)",
            dir.display()
        );
        remove_while_in_use(dir);
        fs::write(dir, b"not a directory").unwrap();
    }

    let r = attempt(&gw, "during@test");
    r.expect(452, "4.3.1");

    for dir in &dirs {
        fs::remove_file(dir).unwrap();
        fs::create_dir(dir).unwrap();
    }
    attempt(&gw, "after@test").expect(250, "2.0.0");
    internal.expect_message_id("after@test");
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(
        !msgs
            .iter()
            .any(|m| m.message_id().as_deref() == Some("during@test")),
        "a message refused with 452 was delivered anyway"
    );
}

#[test]
fn queue_directory_replaced_by_a_file_is_452_431() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let queue = gw.spool().join("queue");
    assert!(queue.is_dir(), "expected {}", queue.display());
    let saved = gw.spool().join("queue.saved");
    fs::rename(&queue, &saved).unwrap();
    fs::write(&queue, b"not a directory").unwrap();
    attempt(&gw, "noqueue@test").expect(452, "4.3.1");
    fs::remove_file(&queue).unwrap();
    fs::rename(&saved, &queue).unwrap();
    attempt(&gw, "queue-back@test").expect(250, "2.0.0");
    internal.expect_message_id("queue-back@test");
}
