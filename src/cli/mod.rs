//! The command-line edge: argument parsing and the verbs of GUIDE §4. Errors here are
//! `anyhow` (reported to the operator), never inside the library.

mod audit;
mod check;
mod files;
mod learn;
mod quarantine;
mod queue;
mod rules;
mod scan;
mod serve;
mod stamp;

use clap::{ArgGroup, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
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
    Check {
        /// Also print the policy fingerprint of every tier peer beside ours.
        #[arg(long)]
        tier: bool,
    },
    /// Verdict stamps of the tier.
    Stamp {
        /// Stamp action.
        #[command(subcommand)]
        action: StampAction,
    },
    /// Judge message files offline with the configured policy.
    Scan {
        /// One JSON object per message (`file`, `verdict`, `score`, `rules`, `scores`, `classifier`, and beside it its parts `bayes` and `lr`).
        #[arg(long)]
        json: bool,
        /// List every hit with its score and description (a table: not with `--json`,
        /// whose lines it would break, nor `--compare`, which prints differences only).
        #[arg(long, conflicts_with_all = ["json", "compare"])]
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
    /// Teach the classifier: learn message files as spam or ham, forget them, or import
    /// or export a seed.
    #[command(group(ArgGroup::new("what").required(true).args(["spam", "ham", "forget", "import", "export"])))]
    Learn {
        /// Learn the messages as spam.
        #[arg(long)]
        spam: bool,
        /// Learn the messages as ham.
        #[arg(long)]
        ham: bool,
        /// Forget the messages (undo what learning them added).
        #[arg(long)]
        forget: bool,
        /// Import a seed file (ledger and model), e.g. the shipped one.
        #[arg(long, value_name = "SEED")]
        import: Option<PathBuf>,
        /// Write the store's ledger and model to a seed file.
        #[arg(long, value_name = "SEED")]
        export: Option<PathBuf>,
        /// Message files or directories of them.
        paths: Vec<PathBuf>,
    },
    /// Tools for the people who tune rules files.
    Rules {
        /// Rules action.
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Audit a domain's published MX tier from outside: records, SMTP probes (unknown
    /// recipient, relay, GTUBE), policy fingerprints. Exit 0 clean, 1 serious finding,
    /// 2 could not run.
    Audit {
        /// The mail domain to audit.
        domain: String,
        /// DNS server to ask, port 53 unless given (default: the system resolver).
        #[arg(long, value_name = "IP[:PORT]", value_parser = audit::parse_resolver)]
        resolver: Option<std::net::SocketAddr>,
        /// SMTP port probed on every MX address.
        #[arg(long, value_name = "N", default_value_t = 25)]
        port: u16,
        /// Recipient of the GTUBE probe (default: postmaster@DOMAIN).
        #[arg(long, value_name = "ADDRESS")]
        rcpt: Option<String>,
        /// Admin endpoint whose /policy fingerprint is compared (repeatable; default:
        /// this gateway's and its [[tier.peers]]' from --config).
        #[arg(long, value_name = "NAME=IP:PORT", value_parser = audit::parse_admin)]
        admin: Vec<mxguard::tier::audit::AdminEndpoint>,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
        /// Deadline of every network step (e.g. 10s, 500ms).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = audit::parse_timeout)]
        timeout: std::time::Duration,
        /// Name sent in EHLO (default: this machine's host name).
        #[arg(long, value_name = "NAME")]
        helo: Option<String>,
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

/// `mxguard rules` actions.
#[derive(Debug, Subcommand)]
pub enum RulesAction {
    /// Per rule: the share of spam and of ham it hits, S/O ratio and score.
    Stats {
        /// Spam messages (directories or files).
        #[arg(long, required = true, num_args = 1..)]
        spam: Vec<PathBuf>,
        /// Ham messages (directories or files).
        #[arg(long, required = true, num_args = 1..)]
        ham: Vec<PathBuf>,
        /// One JSON object per rule.
        #[arg(long)]
        json: bool,
        /// Worker threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
    },
}

/// A duration option: a plain number of seconds or a humantime duration (`10s`, `7d`),
/// more than zero (`what` names it in the error).
fn positive_duration(s: &str, what: &str) -> Result<std::time::Duration, String> {
    let parsed = match s.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?,
    };
    if parsed.is_zero() {
        return Err(format!("{what} must be positive"));
    }
    Ok(parsed)
}

/// `mxguard stamp` actions.
#[derive(Debug, Subcommand)]
pub enum StampAction {
    /// Check the `X-Mxguard-Stamp` of a message file: exit 0 when it is valid.
    Verify {
        /// Oldest stamp accepted. Default: as old as mail the tier still delivers
        /// (`relay.max_queue_lifetime` plus `spool.quarantine_lifetime`), since a message
        /// keeps the stamp of its acceptance through a queue or a quarantine.
        #[arg(long, value_name = "DURATION", value_parser = stamp::parse_max_age)]
        max_age: Option<std::time::Duration>,
        /// The message file.
        file: PathBuf,
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

/// The one thing `learn` was asked to do (clap makes the flags exclusive).
fn learn_action(
    spam: bool,
    ham: bool,
    forget: bool,
    import: Option<PathBuf>,
    export: Option<PathBuf>,
    paths: Vec<PathBuf>,
) -> anyhow::Result<learn::LearnAction> {
    use mxguard::classify::Class;
    let needs_paths = spam || ham || forget;
    if needs_paths == paths.is_empty() {
        anyhow::bail!(if needs_paths {
            "name the message files or directories to learn"
        } else {
            "--import and --export take no message files"
        });
    }
    Ok(match (import, export) {
        (Some(seed), _) => learn::LearnAction::Import(seed),
        (_, Some(seed)) => learn::LearnAction::Export(seed),
        _ if forget => learn::LearnAction::Forget(paths),
        _ if spam => learn::LearnAction::Learn(Class::Spam, paths),
        _ => learn::LearnAction::Learn(Class::Ham, paths),
    })
}

/// Parses a queue id given on the command line.
/// `s` as a terminal may show it: characters that are not printable (controls, line and
/// paragraph separators, bidi overrides such as U+202E, zero-width ones) escaped as Rust
/// escapes them (`\u{202e}`), the rest as it is. A sender's address or a server's reply
/// in `queue list` reversed or hid the rest of its row (review); the log escapes alike.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a terminal would not show `c` as itself: controls, line and paragraph
/// separators, bidi overrides and zero-width characters. Named, not Rust's own notion of
/// printable: that escapes every combining mark, and so ordinary Hindi, Thai or decomposed
/// accents (review of this change).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}' | '\u{200E}' | '\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// A file name as `scan`, `learn` and `rules stats` print it: what [`printable`] escapes,
/// escaped alike, bytes that are not UTF-8 written `\xNN`, and a backslash doubled, so
/// every name reads as one line and two files never print alike (review: a name with a
/// line end forged a verdict line, and `a\xfe.eml` and `a\xff.eml` both printed `a�.eml`).
pub(crate) fn shown(path: &std::path::Path) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if hidden(c) {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A file name as `scan --json` writes it: the name itself when it is UTF-8 (JSON escapes
/// what it must), else as [`shown`] writes it (review: every name was escaped twice there,
/// so `a\b.eml` read `a\\b.eml`, a file that does not exist).
pub(crate) fn json_name(path: &std::path::Path) -> String {
    match path.to_str() {
        Some(name) => name.to_owned(),
        None => shown(path),
    }
}

/// Writes a held message to stdout: byte for byte into a file or a pipe (an 8-bit body
/// must come out as it is held), but with control characters other than tab and line
/// ends written as `\xNN` when stdout is a terminal: a header such as `Subject:
/// \x1b]52;c;...` (a terminal's clipboard write) or `\x1b[2J` is the sender's to write,
/// and `queue show ID` acted it out on the operator's terminal.
fn write_message(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::IsTerminal as _;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if stdout.is_terminal() {
        out.write_all(&terminal_safe(bytes))?;
    } else {
        out.write_all(bytes)?;
    }
    out.flush()
}

/// `bytes` with C0 controls (but tab, and CR before LF), DEL, the C1 controls (in UTF-8,
/// and as single bytes outside it, which an 8-bit terminal reads as controls) written as
/// `\xNN`, each byte: a lone CR (`Subject: invoice\rFrom: ceo@`) drew a line over another.
fn terminal_safe(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |out: &mut Vec<u8>, b: u8| out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
    let mut at = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            at += c.len_utf8();
            let line_end = c == '\r' && bytes.get(at) == Some(&b'\n');
            let control = c.is_control() && !matches!(c, '\t' | '\n') && !line_end;
            let mut utf8 = [0u8; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            if control {
                for &b in encoded {
                    hex(&mut out, b);
                }
            } else {
                out.extend_from_slice(encoded);
            }
        }
        for &b in chunk.invalid() {
            at += 1;
            if (0x80..=0x9F).contains(&b) {
                hex(&mut out, b);
            } else {
                out.push(b);
            }
        }
    }
    out
}

fn parse_id(s: &str) -> anyhow::Result<mxguard::spool::QueueId> {
    mxguard::spool::QueueId::parse(s).ok_or_else(|| anyhow::anyhow!("{s:?} is not a queue id"))
}

/// Lists spool entries: loads each of `ids` and hands it to `row`, one at a time. An entry gone since the directory was read
/// (delivered, released, deleted by the running gateway) is skipped; one that cannot be
/// read is named on stderr, counted on the closing line, and makes the listing fail.
fn list_entries<T>(
    ids: &[mxguard::spool::QueueId],
    load: impl Fn(&mxguard::spool::QueueId) -> Result<T, mxguard::spool::SpoolError>,
    mut row: impl FnMut(&mxguard::spool::QueueId, T),
) -> anyhow::Result<()> {
    let (mut shown, mut unreadable) = (0usize, 0usize);
    for id in ids {
        match load(id) {
            Ok(entry) => {
                shown += 1;
                row(id, entry);
            }
            Err(
                mxguard::spool::SpoolError::NotFound(_)
                | mxguard::spool::SpoolError::NotQuarantined(_),
            ) => {}
            Err(e) => {
                eprintln!("{id}: {e}");
                unreadable += 1;
            }
        }
    }
    if unreadable == 0 {
        println!("{shown} message(s)");
        Ok(())
    } else {
        println!("{shown} message(s), {unreadable} unreadable");
        anyhow::bail!("{unreadable} message file(s) could not be read (named above)")
    }
}

/// Parses the command line and runs the verb; the process exit code.
pub fn run() -> ExitCode {
    let matches = Cli::command().get_matches();
    // Whether `--config` was written, or is the default: `audit` reads the file only for
    // its admin endpoints, and a missing default is no error there, a mistyped path is.
    let config_given =
        matches.value_source("config") == Some(clap::parser::ValueSource::CommandLine);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let serving = matches!(cli.command, Verb::Serve { .. });
    if serving {
        serve::ignore_hangups_until_handled();
    } else {
        end_quietly_when_stdout_fails();
    }
    let result = match cli.command {
        Verb::Serve { log_format } => serve::run(&cli.config, log_format),
        Verb::Check { tier } => check::run(&cli.config, tier),
        Verb::Stamp {
            action: StampAction::Verify { max_age, file },
        } => stamp::verify(&cli.config, &file, max_age),
        Verb::Queue { action } => queue::run(&cli.config, action),
        Verb::Audit {
            domain,
            resolver,
            port,
            rcpt,
            admin,
            json,
            timeout,
            helo,
        } => audit::run(
            &cli.config,
            config_given,
            audit::AuditArgs {
                domain,
                resolver,
                port,
                rcpt,
                admins: admin,
                json,
                timeout,
                helo,
            },
        ),
        Verb::Quarantine { action } => quarantine::run(&cli.config, action),
        Verb::Learn {
            spam,
            ham,
            forget,
            import,
            export,
            paths,
        } => learn_action(spam, ham, forget, import, export, paths)
            .and_then(|action| learn::run(&cli.config, action)),
        Verb::Rules {
            action:
                RulesAction::Stats {
                    spam,
                    ham,
                    json,
                    jobs,
                },
        } => rules::stats(
            &cli.config,
            rules::StatsOptions {
                spam,
                ham,
                json,
                jobs,
            },
        ),
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
        // Not for `serve`: systemd counts death by SIGPIPE as a clean exit.
        Err(e) if !serving && is_broken_pipe(&e) => die_of_sigpipe(),
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is a write into a pipe nobody reads any more (`mxguard queue show ID | head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, a cause the line already ends with left out
/// (`io::Error`'s text is often both the context's last words and its source's).
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Prints an error with its causes on stderr, each said once: many library errors (a
/// configuration or seed file that cannot be read) already end with their source's text,
/// which `{:#}` would repeat (`x.toml: No such file or directory (os error 2): No such
/// file or directory (os error 2)`).
fn report(e: &anyhow::Error) {
    let text = error_text(e);
    // Not `eprintln!`: it panics when stderr is a closed pipe (exit 101), and `serve`
    // keeps SIGPIPE ignored, so nothing else would end the process quietly.
    let _ = writeln!(std::io::stderr(), "mxguard: {text}");
}

/// `mxguard check | head -1` must end quietly like any Unix filter, not panic on a closed
/// pipe: a verb whose output goes into a pipe nobody reads dies of SIGPIPE, as a filter
/// with the default disposition does. SIGPIPE itself stays ignored (as Rust sets it, and
/// as `serve` needs it, so a vanished log reader never kills the gateway): with the
/// default disposition, a write into a reset network connection killed the process
/// outright (`audit`: a probed MX hanging up during STARTTLS, whose records rustls sends
/// with `writev`, which, unlike `send`, raises the signal), and the report was lost.
/// A verb whose output cannot be written otherwise (`scan --json > results.json` on a
/// full disk) ends with exit 1 and one line naming the error; `println!` panicked there,
/// with a backtrace and exit 101. Other panics keep the default report.
fn end_quietly_when_stdout_fails() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let printing = message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr");
        if printing && message.contains("Broken pipe") {
            die_of_sigpipe();
        }
        if message.starts_with("failed printing to stderr") {
            std::process::exit(1);
        }
        if message.starts_with("failed printing to stdout") {
            // stderr may be just as full: a second failure here would abort the process.
            let _ = writeln!(std::io::stderr().lock(), "mxguard: {message}");
            std::process::exit(1);
        }
        default(info);
    }));
}

/// Ends the process as a filter whose output pipe closed ends: killed by SIGPIPE.
fn die_of_sigpipe() -> ! {
    // SAFETY: SIG_DFL is a valid disposition for SIGPIPE, and raising a signal has no
    // precondition; the process ends here, so no other thread's handling matters.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached: the signal's default action ends the process.
    std::process::exit(141)
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory as _;

    /// Regression (review of README's command line): `audit --help` wrote `--resolver
    /// <IP:PORT>` though a bare address is taken (port 53), as README says.
    #[test]
    fn audit_help_says_the_resolver_port_is_optional() {
        let mut cli = super::Cli::command();
        let audit = cli.find_subcommand_mut("audit").expect("the audit verb");
        let help = audit.render_long_help().to_string();
        assert!(help.contains("--resolver <IP[:PORT]>"), "{help}");
        assert!(
            super::audit::parse_resolver("192.0.2.53").is_ok(),
            "a bare address is taken"
        );
    }
}

#[cfg(test)]
mod terminal_tests {
    #[test]
    fn controls_are_written_out_for_a_terminal_and_text_is_kept() {
        let held = "Subject: \x1b]52;c;aGk=\x07 caf\u{e9}\u{9b}2J\r\n\tfolded\r\n".as_bytes();
        let shown = String::from_utf8(super::terminal_safe(held)).unwrap();
        assert_eq!(
            shown,
            "Subject: \\x1b]52;c;aGk=\\x07 caf\u{e9}\\xc2\\x9b2J\r\n\tfolded\r\n"
        );
        // Raw 8-bit bytes that are no control pass as they are; a raw C1 byte does not.
        assert_eq!(super::terminal_safe(b"\xe9t\xe9"), b"\xe9t\xe9");
        assert_eq!(super::terminal_safe(b"a\x9b2J"), b"a\\x9b2J");
        // A CR of its own draws over the line: written out.
        assert_eq!(
            super::terminal_safe(b"Subject: invoice\rFrom: ceo@x\r\n"),
            b"Subject: invoice\\x0dFrom: ceo@x\r\n"
        );
    }
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn only_what_is_not_printable_is_escaped() {
        assert_eq!(super::printable("\"a b\"@x.test"), "\"a b\"@x.test");
        assert_eq!(super::printable("caf\u{e9}@x.test"), "caf\u{e9}@x.test");
        assert_eq!(super::printable("a\u{202e}livE@x"), "a\\u{202e}livE@x");
        assert_eq!(super::printable("451 x\u{1b}[2Jy"), "451 x\\u{1b}[2Jy");
        for ordinary in [
            "मुकेश@उदाहरण.भारत",
            "สวัสดี@ไทย.th",
            "cafe\u{301}@x.test",
            "ali\u{200c}reza@x.ir",
        ] {
            assert_eq!(super::printable(ordinary), ordinary);
        }
        assert_eq!(super::printable("a\u{2066}b\u{9b}c"), "a\\u{2066}b\\u{9b}c");
    }

    #[test]
    fn file_names_print_on_one_line_and_never_alike() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        use std::path::Path;
        let name = |b: &[u8]| super::shown(Path::new(OsStr::from_bytes(b)));
        assert_eq!(name(b"msgs/caf\xc3\xa9.eml"), "msgs/caf\u{e9}.eml");
        assert_eq!(
            name(b"x.eml: accept score=-9.00\nceo.eml"),
            "x.eml: accept score=-9.00\\u{a}ceo.eml"
        );
        assert_eq!(name(b"a\xfe.eml"), "a\\xfe.eml");
        assert_eq!(name(b"a\xff.eml"), "a\\xff.eml");
        assert_eq!(name(b"a\\xfe.eml"), "a\\\\xfe.eml");
        let json = |b: &[u8]| super::json_name(Path::new(OsStr::from_bytes(b)));
        assert_eq!(json(b"m2/a\\b.eml"), "m2/a\\b.eml");
        assert_eq!(json(b"tab\tx.eml"), "tab\tx.eml");
        assert_eq!(json(b"a\xfe.eml"), "a\\xfe.eml");
    }
}
