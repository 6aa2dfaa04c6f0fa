//! The gateway under test: a `mxguard serve` child process in its own temporary directory,
//! started until it listens, signalled, restarted and killed; its logs and admin port.

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::client::SmtpClient;
use super::gateway_config::GatewayConfig;
use super::process::{mxguard_bin, run_with_timeout};
use super::{free_port, wait_until};

/// A running `mxguard serve` child process in its own temporary directory (its working
/// directory: the spool is `DIR/spool`). Killed (SIGKILL) on drop; its log is printed
/// when the test is panicking.
pub struct Gateway {
    /// SMTP port on 127.0.0.1.
    pub port: u16,
    /// The working directory (config, spool, log).
    pub dir: PathBuf,
    /// The configuration used.
    pub config: GatewayConfig,
    child: Option<Child>,
    starts: usize,
    _tmp: Arc<tempfile::TempDir>,
}

impl Gateway {
    /// Starts a gateway with `config` in a fresh temporary directory.
    #[track_caller]
    pub fn start(config: GatewayConfig) -> Gateway {
        let tmp = tempfile::Builder::new()
            .prefix("mxguard-test-")
            .tempdir()
            .expect("tempdir");
        let mut gw = Gateway {
            port: 0,
            dir: tmp.path().to_path_buf(),
            config,
            child: None,
            starts: 0,
            _tmp: Arc::new(tmp),
        };
        gw.spawn(free_port());
        gw
    }

    /// Spool directory (`spool.dir`, relative to the working directory).
    pub fn spool(&self) -> PathBuf {
        match self.config.spool.get("dir") {
            Some(v) => self.dir.join(v.trim_matches('"')),
            None => self.dir.join("spool"),
        }
    }

    /// Config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("mxguard.toml")
    }

    /// Log file of the current run.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("gateway-{}.log", self.starts))
    }

    /// All logs written so far.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let p = self.dir.join(format!("gateway-{i}.log"));
            if let Ok(s) = fs::read_to_string(&p) {
                out.push_str(&format!("----- {} -----\n{s}", p.display()));
            }
        }
        out
    }

    #[track_caller]
    fn spawn(&mut self, port: u16) {
        self.port = port;
        // Two picks can return the same free port (the first is released before the
        // second): the configuration would then refuse metrics.listen = server.listen.
        let metrics = std::iter::repeat_with(free_port)
            .find(|&p| p != port)
            .unwrap_or_default();
        let text = self.config.render(&self.dir, port, metrics);
        fs::write(self.config_path(), text).unwrap();
        self.starts += 1;
        let log = fs::File::create(self.log_path()).unwrap();
        let child = Command::new(mxguard_bin())
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .args(&self.config.serve_args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn mxguard");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // Another process took one of the free ports we picked: pick again.
                let log = fs::read_to_string(self.log_path()).unwrap_or_default();
                if log.contains("in use") && self.starts < 5 {
                    self.child = None;
                    return self.spawn(free_port());
                }
                panic!(
                    "mxguard exited during startup with {status}; config:\n{}\nlog:\n{}",
                    fs::read_to_string(self.config_path()).unwrap_or_default(),
                    self.logs()
                );
            }
            let addr = ([127, 0, 0, 1], port).into();
            // Only our own process's "listening" line proves the port is ours: another
            // test's gateway may have picked the same free port and answer the probe.
            let ours = fs::read_to_string(self.log_path())
                .map(|log| log.contains(&format!("127.0.0.1:{port}")) && log.contains("listening"))
                .unwrap_or(false);
            if !ours {
                if Instant::now() >= deadline {
                    panic!(
                        "mxguard did not start listening on port {port} within 20 s; log:\n{}",
                        self.logs()
                    );
                }
                thread::sleep(Duration::from_millis(30));
                continue;
            }
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                // Read the banner and quit, so the probe session ends cleanly.
                let mut c = SmtpClient::from_stream(s, Duration::from_secs(5));
                if c.try_read_reply().is_ok() {
                    let _ = c.try_cmd("QUIT");
                    let _ = c.is_closed();
                }
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "mxguard did not accept connections on port {port} within 20 s; log:\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the running child.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid().expect("gateway not running");
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }

    /// How many lines of the current run's log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits up to `timeout` until more than `before` lines of the current log contain
    /// `needle`; returns the first such new entry: that line plus the continuation lines
    /// after it (lines that do not start with a `YYYY-` timestamp or a `{`).
    pub fn wait_log_line(&self, timeout: Duration, needle: &str, before: usize) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            let log = fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            found = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.contains(needle))
                .nth(before)
                .map(|(i, l)| {
                    let mut entry = l.to_string();
                    for next in &lines[i + 1..] {
                        let b = next.as_bytes();
                        let timestamp =
                            b.len() > 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
                        if timestamp || next.starts_with('{') {
                            break;
                        }
                        entry.push('\n');
                        entry.push_str(next);
                    }
                    entry
                });
            found.is_some()
        });
        found
    }

    /// OS process id of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the status (or
    /// `None` after SIGKILLing a child that did not exit in time).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let c = self.child.as_ref()?;
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for a gateway already told to stop (a second SIGTERM would
    /// stop it at once, without the drain); kills it past that and returns `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the child is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Starts again on the same spool and working directory, on `port`
    /// (or a new free port when `None`). Kills a running child first.
    #[track_caller]
    pub fn restart(&mut self, port: Option<u16>) {
        self.kill9();
        self.spawn(port.unwrap_or_else(free_port));
    }

    /// Runs `mxguard ARGS... --config CONFIG` in the gateway's directory.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        run_with_timeout(
            Command::new(mxguard_bin())
                .args(args)
                .arg("--config")
                .arg(self.config_path())
                .current_dir(&self.dir),
            Duration::from_secs(30),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let logs = self.logs();
            let tail: String = if logs.len() > 20_000 {
                logs[logs.len() - 20_000..].to_string()
            } else {
                logs
            };
            eprintln!("===== mxguard log (port {}) =====\n{tail}", self.port);
        }
    }
}

/// The admin (metrics) port of a running test gateway, read from the configuration file of
/// its current run (a restart picks new ports).
pub fn admin_port(gw: &Gateway) -> u16 {
    let text = fs::read_to_string(gw.config_path()).expect("read gateway config");
    let section = text
        .split("[metrics]")
        .nth(1)
        .expect("no [metrics] section in the test config");
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("listen"))
        .expect("no metrics.listen in the test config");
    line.rsplit(':')
        .next()
        .map(|p| p.trim_matches(|c: char| !c.is_ascii_digit()))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad metrics.listen line: {line}"))
}
