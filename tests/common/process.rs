//! Running programs from a test: the `mxguard` binary as a one-shot command, any command
//! with a deadline, child processes killed on drop, and finding external programs for the
//! interop tests.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn mxguard_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mxguard")
}

/// The rule and symbol names in the `rules` array of one `mxguard scan --json` line.
pub fn scan_rules(line: &serde_json::Value) -> Vec<String> {
    line["rules"]
        .as_array()
        .expect("a scan --json line has a rules array")
        .iter()
        .map(|r| r.as_str().expect("rule names are strings").to_string())
        .collect()
}

/// Runs `mxguard ARGS...` in `dir` (with a 120 s deadline), capturing its output.
pub fn run_mxguard(dir: &Path, args: &[&str]) -> std::process::Output {
    run_with_timeout(
        Command::new(mxguard_bin()).args(args).current_dir(dir),
        Duration::from_secs(120),
    )
}

/// Runs a command with a deadline (killed after it), capturing its output.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_thread.join().unwrap();
            let stderr = err_thread.join().unwrap();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds `program` in PATH or /usr/sbin. When missing: panics if `MXGUARD_INTEROP=1`
/// (CI must run the interop tests), otherwise prints `SKIP: ...` and returns `None`.
pub fn interop_required(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let candidate = d.join(program);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    skip(&format!("{program} not installed"));
    None
}

/// Says why a test does not run: a failure under `MXGUARD_INTEROP=1`, where everything
/// the tests drive must be there, otherwise `SKIP: why` on the real stderr (the test
/// harness shows nothing a passing test prints, so a `println!` here was never seen).
pub fn skip(why: &str) {
    assert_ne!(
        std::env::var("MXGUARD_INTEROP").as_deref(),
        Ok("1"),
        "MXGUARD_INTEROP=1 but {why}"
    );
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}
