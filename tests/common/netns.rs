//! Private network namespaces for tests that need several hosts (GUIDE §6): each test
//! makes its own (`ip netns add`), where gateways can own `127.0.0.X:25` as real MX
//! targets and real MTAs resolve through a test DNS server (`/etc/netns/NAME/resolv.conf`).
//! Programs run inside with `ip netns exec`; test code runs inside on a thread that joined
//! the namespace (`setns`), so its sockets live there. Everything is torn down on drop.

use super::interop_required;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One network namespace and the processes started in it.
pub struct Netns {
    /// Its name.
    pub name: String,
    children: Vec<(String, Child)>,
}

impl Netns {
    /// Makes a namespace with its loopback up, or `None` (SKIP) without root or `ip`;
    /// under `MXGUARD_INTEROP=1` those are failures.
    pub fn create() -> Option<Netns> {
        interop_required("ip")?;
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            super::process::skip("network namespaces need root");
            return None;
        }
        let name = format!(
            "mxg{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name} failed");
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        let ok = ns.command("ip", &["link", "set", "lo", "up"]).status();
        assert!(ok.is_ok_and(|s| s.success()), "lo up in {} failed", ns.name);
        Some(ns)
    }

    /// `ip netns exec NAME program args...`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        c
    }

    /// Makes `ip netns exec` give programs `nameserver` as their resolver.
    pub fn set_resolver(&self, nameserver: &str) {
        let dir = PathBuf::from("/etc/netns").join(&self.name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\n"),
        )
        .unwrap();
    }

    /// Starts a long-running program inside, killed when the namespace goes (or by
    /// [`Netns::stop`]); stdout and stderr go to `log`.
    pub fn spawn(&mut self, label: &str, mut cmd: Command, log: &Path) {
        let out = fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        self.children.push((label.to_owned(), child));
    }

    /// Stops (SIGTERM, then SIGKILL after `grace`) the program started as `label`.
    pub fn stop(&mut self, label: &str, grace: Duration) {
        let Some(i) = self.children.iter().position(|(l, _)| l == label) else {
            return;
        };
        let (_, mut child) = self.children.remove(i);
        // `ip netns exec` execs the program: its pid is the program's.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Runs `f` on a thread inside the namespace: sockets it makes live there.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::fd::AsRawFd;
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns into {path}: {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Whether something accepts TCP connections at `addr` inside.
    pub fn listening(&self, addr: &str) -> bool {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        self.run(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for (_, mut child) in self.children.drain(..).rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
    }
}
