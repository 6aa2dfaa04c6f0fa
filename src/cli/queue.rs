//! `mxguard queue`: list, show, flush and delete spooled messages.

use super::{list_entries, parse_id, printable, QueueAction};
use anyhow::Context as _;
use mxguard::config::Config;
use mxguard::spool::{unix_now, QueueId, RcptStatus, Spool};
use std::path::Path;
use std::process::ExitCode;

/// Runs one queue action against the spool named in the configuration.
pub fn run(config_path: &Path, action: QueueAction) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let spool = Spool::open_for_admin(&config.spool.dir)?;
    match action {
        QueueAction::List => list(&spool)?,
        QueueAction::Show { id } => show(&spool, &parse_id(&id)?)?,
        QueueAction::Flush => {
            spool.request_flush().context("writing the flush request")?;
            // Not told apart from "no gateway running": probing the spool's lock could make
            // a gateway starting at that moment find its spool in use.
            println!(
                "flush requested: a running gateway retries every queued message within seconds, \
                 a stopped one when it starts"
            );
        }
        QueueAction::Delete { id } => {
            let id = parse_id(&id)?;
            spool.remove(&id)?;
            // "deleted" must hold after a power loss too, or the message comes back and is
            // delivered after all.
            spool.sync_queue()?;
            // The running gateway still counts it until it looks again: asked to now.
            if let Err(e) = spool.request_listing() {
                eprintln!("{id}: the running gateway was not told ({e}); it forgets the message at its next retry");
            }
            println!("{id}: deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(spool: &Spool) -> anyhow::Result<()> {
    let ids = spool.ids()?;
    println!(
        "{:<24} {:>8} {:>8} {:<32} {:<40} ERROR",
        "ID", "AGE", "TRIES", "SENDER", "RECIPIENTS"
    );
    let now = unix_now();
    list_entries(
        &ids,
        |id| spool.entry(id),
        |id, e| {
            let pending: Vec<&str> = e
                .envelope
                .rcpt_to
                .iter()
                .zip(&e.state.rcpt_status)
                .filter(|(_, s)| **s == RcptStatus::Pending)
                .map(|(r, _)| r.as_str())
                .collect();
            let sender = if e.envelope.mail_from.is_empty() {
                "<>"
            } else {
                e.envelope.mail_from.as_str()
            };
            println!(
                "{:<24} {:>8} {:>8} {:<32} {:<40} {}",
                id,
                humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(e.envelope.received_at)
                ))
                .to_string(),
                e.state.attempts,
                printable(sender),
                printable(&pending.join(",")),
                printable(e.state.last_error.as_deref().unwrap_or("-"))
            );
        },
    )
}

fn show(spool: &Spool, id: &QueueId) -> anyhow::Result<()> {
    let m = spool.load(id)?;
    let e = &m.envelope;
    println!("id:          {}", m.id);
    println!("from:        <{}>", printable(&e.mail_from));
    for (rcpt, status) in e.rcpt_to.iter().zip(&m.state.rcpt_status) {
        println!("to:          <{}> ({status:?})", printable(rcpt));
    }
    println!("client:      {} ({})", e.client_ip, printable(&e.helo));
    println!("received:    {} (unix)", e.received_at);
    let score = mxguard::mail::score::hundredths_down(e.score);
    println!("verdict:     {} (score {score})", e.verdict);
    println!("size:        {}", m.body.len());
    println!("attempts:    {}", m.state.attempts);
    println!("next try:    {} (unix)", m.state.next_attempt);
    println!(
        "last error:  {}",
        printable(m.state.last_error.as_deref().unwrap_or("-"))
    );
    println!();
    let end = memchr::memmem::find(&m.body, b"\r\n\r\n")
        .map(|i| i + 2)
        .unwrap_or(m.body.len());
    // The header section as `quarantine show` prints a message: raw 8-bit header bytes
    // came out as U+FFFD.
    super::write_message(&m.body[..end])?;
    Ok(())
}
