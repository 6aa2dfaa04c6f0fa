//! The command-line edge: argument parsing and the verbs of GUIDE §4. Errors here are
//! `anyhow` (reported to the operator), never inside the library.

mod check;
mod quarantine;
mod queue;
mod scan;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// mxguard: inbound spam-filtering SMTP gateway.
#[derive(Debug, Parser)]
#[command(name = "mxguard", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = "config/mxguard.toml")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Verb,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Run the gateway.
    Serve {
        /// Log format (overrides `log.format`).
        #[arg(long)]
        log_format: Option<LogFormatArg>,
    },
    /// Validate the configuration and print what it resolves to.
    Check,
    /// Judge message files offline with the configured policy.
    Scan {
        /// One JSON object per message (`file`, `verdict`, `score`, `rules`).
        #[arg(long)]
        json: bool,
        /// List every hit with its score and description.
        #[arg(long)]
        explain: bool,
        /// Print only messages whose verdict differs under this other configuration.
        #[arg(long, value_name = "OTHER.toml")]
        compare: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// Message files or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Inspect and release quarantined messages.
    Quarantine {
        /// Quarantine action.
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Inspect and manage the delivery queue.
    Queue {
        /// Queue action.
        #[command(subcommand)]
        action: QueueAction,
    },
}

/// `mxguard queue` actions.
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// List queued messages.
    List,
    /// Show one message: envelope, delivery state and headers.
    Show {
        /// Queue id.
        id: String,
    },
    /// Ask the running gateway to retry every deferred message now.
    Flush,
    /// Delete a message from the queue without delivering it.
    Delete {
        /// Queue id.
        id: String,
    },
}

/// `mxguard quarantine` actions.
#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// List quarantined messages.
    List,
    /// Show one quarantined message in full.
    Show {
        /// Queue id.
        id: String,
    },
    /// Move a quarantined message to the delivery queue.
    Release {
        /// Queue id.
        id: String,
    },
    /// Delete a quarantined message.
    Delete {
        /// Queue id.
        id: String,
    },
}

/// Parses a queue id given on the command line.
fn parse_id(s: &str) -> anyhow::Result<mxguard::spool::QueueId> {
    mxguard::spool::QueueId::parse(s).ok_or_else(|| anyhow::anyhow!("{s:?} is not a queue id"))
}

/// Parses the command line and runs the verb; the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Verb::Serve { .. }) {
        restore_default_sigpipe();
    }
    let result = match cli.command {
        Verb::Serve { log_format } => serve::run(&cli.config, log_format),
        Verb::Check => check::run(&cli.config),
        Verb::Queue { action } => queue::run(&cli.config, action),
        Verb::Quarantine { action } => quarantine::run(&cli.config, action),
        Verb::Scan {
            json,
            explain,
            compare,
            jobs,
            paths,
        } => scan::run(
            &cli.config,
            scan::ScanOptions {
                json,
                explain,
                compare,
                jobs,
                paths,
            },
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: it panics when stderr is a closed pipe (exit 101), and
            // `serve` keeps SIGPIPE ignored, so nothing else would end the process quietly.
            let _ = writeln!(std::io::stderr(), "mxguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `mxguard check | head -1` must end quietly like any Unix filter, not panic on a closed
/// pipe: the verbs that print get the default SIGPIPE disposition back (Rust ignores it).
/// `serve` keeps ignoring it, so a vanished log reader never kills the gateway.
fn restore_default_sigpipe() {
    // SAFETY: called once at start, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
