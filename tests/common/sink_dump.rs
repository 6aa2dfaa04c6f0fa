//! Postfix's `smtp-sink` as an internal server, and what `smtp-sink -d DIR/%M.` wrote: one
//! file per message, read whole.

use super::{free_port, interop_required, wait_until, ChildGuard};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One `smtp-sink` on a free loopback port with the options a test gives (`-8` no
/// 8BITMIME, `-r`/`-f` faults, …), dumping every transaction it accepts into a directory
/// of its own; stopped when dropped.
pub struct SmtpSink {
    /// Where it listens on 127.0.0.1.
    pub port: u16,
    /// The directory of its dumps (see [`sink_dumps`]).
    pub dump: PathBuf,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts it and waits for it to listen; `None` (SKIP) without smtp-sink, a failure
    /// under `MXGUARD_INTEROP=1`.
    pub fn start(options: &[&str]) -> Option<SmtpSink> {
        let bin = interop_required("smtp-sink")?;
        // As root smtp-sink drops to `nobody`: its dump directory must be reachable.
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dump = dir.path().join("dump");
        fs::create_dir(&dump).unwrap();
        fs::set_permissions(&dump, fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .args(options)
            .arg("-d")
            .arg(format!("{}/m.", dump.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let child = ChildGuard(child);
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "smtp-sink {options:?} did not start on {port}"
        );
        Some(SmtpSink {
            port,
            dump,
            _child: child,
            _dir: dir,
        })
    }

    /// The Message-IDs (without brackets) of the transactions it dumped, one per file
    /// that has one: smtp-sink creates a file before it writes the message into it.
    pub fn message_ids(&self) -> Vec<String> {
        sink_dumps(&self.dump)
            .iter()
            .filter_map(|(_, text)| {
                text.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("message-id")
                        .then(|| value.trim().trim_matches(['<', '>']).to_string())
                })
            })
            .collect()
    }
}

/// The files smtp-sink dumped (one per message), sorted by path, each with its text (bytes
/// that are not UTF-8 replaced). A file smtp-sink has created but not yet written reads
/// empty.
pub fn sink_dumps(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .map(|p| {
                    let text =
                        String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()).into_owned();
                    (p, text)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
