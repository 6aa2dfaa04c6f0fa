//! `mxguard quarantine`: list, show and release quarantined messages.

use super::{list_entries, parse_id, printable, QuarantineAction};
use mxguard::config::Config;
use mxguard::spool::{unix_now, QueueId, Spool, SpoolError};
use std::path::Path;
use std::process::ExitCode;

/// Runs one quarantine action against the spool named in the configuration.
pub fn run(config_path: &Path, action: QuarantineAction) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let spool = Spool::open_for_admin(&config.spool.dir)?;
    match action {
        QuarantineAction::List => list(&spool)?,
        QuarantineAction::Show { id } => show(&spool, &parse_id(&id)?)?,
        QuarantineAction::Release { id } => {
            let id = parse_id(&id)?;
            match spool.release(&id) {
                Err(SpoolError::NotQuarantined(_)) if spool.holds(&id) => {
                    anyhow::bail!(
                        "{id} is not in quarantine: a message with this id is in the delivery queue"
                    )
                }
                released => released?,
            }
            println!("{id}: released to the delivery queue");
        }
        QuarantineAction::Delete { id } => {
            let id = parse_id(&id)?;
            spool.delete_quarantined(&id)?;
            println!("{id}: deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(spool: &Spool) -> anyhow::Result<()> {
    let ids = spool.quarantined()?;
    println!(
        "{:<24} {:>8} {:>7} {:<32} {:<32} RULES",
        "ID", "AGE", "SCORE", "SENDER", "RECIPIENTS"
    );
    let now = unix_now();
    list_entries(
        &ids,
        |id| spool.quarantined_envelope(id),
        |id, e| {
            let sender = if e.mail_from.is_empty() {
                "<>"
            } else {
                e.mail_from.as_str()
            };
            let age = humantime::format_duration(std::time::Duration::from_secs(
                now.saturating_sub(e.received_at),
            ));
            println!(
                "{:<24} {:>8} {:>7} {:<32} {:<32} {}",
                id,
                age.to_string(),
                mxguard::mail::score::hundredths_down(e.score),
                printable(sender),
                printable(&e.rcpt_to.join(",")),
                printable(&e.rules.join(","))
            );
        },
    )
}

fn show(spool: &Spool, id: &QueueId) -> anyhow::Result<()> {
    let m = spool.load_quarantined(id)?;
    let e = &m.envelope;
    println!("id:       {}", m.id);
    println!("from:     <{}>", printable(&e.mail_from));
    println!("to:       {}", printable(&e.rcpt_to.join(", ")));
    println!("client:   {} ({})", e.client_ip, printable(&e.helo));
    let score = mxguard::mail::score::hundredths_down(e.score);
    println!("verdict:  {} (score {score})", e.verdict);
    println!("rules:    {}", e.rules.join(", "));
    println!();
    super::write_message(&m.body)?;
    Ok(())
}
