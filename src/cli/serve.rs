//! `mxguard serve`: logging, signals, listeners, then the library's `serve`.

use super::LogFormatArg;
use anyhow::Context as _;
use mxguard::config::{Config, LogFormat};
use std::path::Path;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Starts the gateway and blocks until SIGTERM/SIGINT.
pub fn run(config_path: &Path, log_format: Option<LogFormatArg>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let format = match log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => config.log.format,
    };
    init_logging(format, &config.log.level);
    tune_allocator();
    raise_open_files_limit(config.server.limits.max_sessions);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mxguard")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async_main(config_path, config))?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP's default action ends the process, and its handler (a reload) is installed
/// only once the runtime, the listeners and the watches are up: a `systemctl reload` in
/// that window (a certificate renewal hook during a restart) ended the gateway, and
/// systemd, counting death by SIGHUP as a clean exit, did not start it again. Ignored
/// until then; the reload handler replaces the disposition (a hangup in the window is
/// lost, and the configuration being loaded is the newest anyway).
pub(super) fn ignore_hangups_until_handled() {
    // SAFETY: SIG_IGN is a valid disposition for SIGHUP; called before any thread of ours.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// glibc raises its mmap threshold each time a big block is freed (up to 32 MiB), so after
/// a burst of big buffers later ones come from the heap arenas and freed memory is never
/// returned (a gateway kept 2.6 GB after its queue had drained). A fixed threshold keeps
/// every big buffer in its own mapping, given back to the system when freed.
fn tune_allocator() {
    // The global allocator (mimalloc 3) kept freed memory after a burst of big messages:
    // 20 messages of 20 MB at once left the gateway at 230 MB (830 MB with transparent
    // huge pages; review). Purged 100 ms after it is freed, 120 MB is left; at once (0)
    // 86 MB, but each free is then a system call and relay throughput fell by a quarter.
    // `mi_option_purge_delay` is the 15th option of mimalloc 3's `mi_option_e` (the crate
    // names no constant for it); another major version is left with its defaults.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: reading the version and setting an option are plain calls into mimalloc,
    // made before any other thread runs.
    unsafe {
        // 30302 for 3.3.2.
        if libmimalloc_sys::mi_version() / 10_000 == 3 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100);
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
        // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    }
}

/// Every session is a socket: raises the soft open-files limit to the hard one and warns
/// when that still cannot hold `max_sessions`.
fn raise_open_files_limit(max_sessions: usize) {
    let Some(mut limit) = open_files() else {
        return;
    };
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    warn_if_short_of_open_files(limit.rlim_cur, max_sessions);
}

/// Warns when `open_files` (the limit in force) cannot hold `max_sessions` sessions: at
/// start, and after a reload that raised `max_sessions` (the accept loop then met EMFILE
/// without a word of why).
fn warn_if_short_of_open_files(open_files: u64, max_sessions: usize) {
    // Spool, state, DNS, relay and admin need descriptors too.
    let needed = u64::try_from(max_sessions)
        .unwrap_or(u64::MAX)
        .saturating_add(256);
    if open_files < needed {
        tracing::warn!(
            open_files,
            max_sessions,
            "the open-files limit is below server.limits.max_sessions; raise it (LimitNOFILE) or lower max_sessions"
        );
    }
}

/// The open-files limits in force, when they can be read.
fn open_files() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // A log reader that went away (journald restarted, a `| tee` that died) must not
        // stop the gateway: tracing-subscriber would report the failed write with
        // `eprintln!`, which panics on that same closed stderr. Lines are lost, mail is not.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn async_main(config_path: &Path, config: Config) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for addr in &config.server.listen {
        let l = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            // The port is taken before the spool's lock is tried: say so when the gateway
            // holding the port is most likely this configuration's own, already running.
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && mxguard::spool::Spool::in_use(&config.spool.dir) =>
            {
                anyhow::bail!(
                    "server.listen: cannot bind {addr}: {e}; spool {} is in use by another \
                     running gateway, most likely this configuration's, already started",
                    config.spool.dir.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("server.listen: cannot bind {addr}")),
        };
        listeners.push(l);
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handlers(shutdown.clone())?;
    let (gateway_tx, gateway_rx) = tokio::sync::oneshot::channel();
    let inputs = mxguard::config::Config::named_inputs(config_path)?;
    spawn_reload_handler(config_path.to_owned(), inputs, gateway_rx)?;
    mxguard::serve(config, listeners, shutdown, |gw| {
        let _ = gateway_tx.send(gw);
    })
    .await?;
    Ok(())
}

fn spawn_signal_handlers(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
        // A second signal (an operator's second Ctrl-C) stops at once, as a kill would:
        // every accepted message is on disk already, and one cut off in delivery is
        // delivered again after the restart.
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second stop signal: stopping now, without the drain");
        std::process::exit(1);
    });
    Ok(())
}

/// SIGHUP or a change of the configuration file, the rules directory or another file a
/// reload reads reloads the policy; a broken file keeps the running policy. Before each
/// reload the watch is made anew for the files the configuration names then: a reload
/// naming a new recipient list watches it, a rules directory replaced whole (`rm -rf`,
/// then a copy) is watched again, and one reload is counted per trigger.
fn spawn_reload_handler(
    path: std::path::PathBuf,
    inputs: mxguard::config::watch::ReloadInputs,
    gateway: tokio::sync::oneshot::Receiver<mxguard::Gateway>,
) -> anyhow::Result<()> {
    use mxguard::config::watch::watch;
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let (watching, mut changes) = watch(&path, &inputs).context("watching the configuration")?;
    tokio::spawn(async move {
        // Kept alive, not read: dropping it ends the OS watch.
        let mut _watching = watching;
        let mut inputs = inputs;
        let Ok(gateway) = gateway.await else { return };
        loop {
            let why = tokio::select! {
                Some(()) = hup.recv() => "SIGHUP",
                Some(()) = changes.recv() => "file change",
                else => return,
            };
            // The new watch stands before the old one goes, and before the reload reads
            // the files: an edit made from here on is seen (review: a rules directory
            // replaced whole was never watched again, and the rebuild's extra reload
            // counted one change as two).
            let (named, watched) = mxguard::runtime::off_the_async_threads(|| {
                let named =
                    mxguard::config::Config::named_inputs(&path).unwrap_or_else(|_| inputs.clone());
                let watched = watch(&path, &named);
                (named, watched)
            });
            match watched {
                Ok((next, next_changes)) => {
                    if named != inputs {
                        tracing::info!("the file watch follows the files the configuration names");
                    }
                    (_watching, changes, inputs) = (next, next_changes, named);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the file watch could not be renewed: reload with SIGHUP after editing files")
                }
            }
            match gateway.reload(&path) {
                Ok(fingerprint) => {
                    tracing::info!(trigger = why, fingerprint, "policy reloaded");
                    let max_sessions = gateway.policy().config().server.limits.max_sessions;
                    if let Some(limit) = open_files() {
                        warn_if_short_of_open_files(limit.rlim_cur, max_sessions);
                    }
                }
                Err(e) => {
                    tracing::error!(trigger = why, error = %e, "reload failed; keeping the running policy")
                }
            }
        }
    });
    Ok(())
}
