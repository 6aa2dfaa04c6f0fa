//! The command-line edge: argument parsing and the verbs of GUIDE §4. Errors here are
//! `anyhow` (reported to the operator), never inside the library.

mod check;
mod queue;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
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

/// Parses the command line and runs the verb; the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Verb::Serve { log_format } => serve::run(&cli.config, log_format),
        Verb::Check => check::run(&cli.config),
        Verb::Queue { action } => queue::run(&cli.config, action),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mxguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
