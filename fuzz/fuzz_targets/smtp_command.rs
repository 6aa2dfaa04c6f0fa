//! SMTP command lines from the internet → `smtp::command::parse`.
//!
//! Besides "never panics", what the parser accepts must be safe to reuse: host names and
//! paths carry no line breaks or spaces (they end up in replies, logs, `Received:` and the
//! relay's own commands), and a path re-parses to the same address when the relay client
//! writes it back out as `RCPT TO:<...>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::mail::Address;
use mxguard::smtp::command::{parse, Command};

fn check_address(a: &Address) {
    let path = a.to_path();
    assert!(!path.contains(['\r', '\n', '\0']), "line break in {path:?}");
    // The relay client writes `RCPT TO:<path>`: it must mean the same address again
    // (a source route is dropped on output; a local part that needs quotes gets them, so
    // only local part and domain are compared).
    if a.is_null() {
        return;
    }
    let line = format!("RCPT TO:<{path}>");
    match parse(line.as_bytes()) {
        Ok(Command::Rcpt(b)) => {
            assert_eq!(
                (&a.local, &a.domain),
                (&b.local, &b.domain),
                "{line:?} re-parses differently"
            );
        }
        // Paths the writer produces must parse; an empty local part is refused in RCPT.
        Err(_) if a.local.is_empty() => {}
        other => panic!("{line:?} does not re-parse: {other:?}"),
    }
}

fuzz_target!(|line: &[u8]| {
    let Ok(cmd) = parse(line) else { return };
    match &cmd {
        Command::Ehlo(name) | Command::Helo(name) => {
            assert!(!name.is_empty());
            assert!(!name.contains(char::is_whitespace), "{name:?}");
            assert!(!name.contains(char::is_control), "{name:?}");
        }
        Command::Mail(a, _) | Command::Rcpt(a) => check_address(a),
        Command::Bdat { .. } => {}
        _ => {}
    }
});
