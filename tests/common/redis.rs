//! Private Redis servers for the tier tests: one `redis-server` on a free loopback port, or
//! a three-node Redis Cluster made with `redis-cli --cluster create`. Nothing persists
//! (`--save "" --appendonly no`), every process is killed on drop.

use super::{free_port, interop_required, wait_until};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `redis-server`.
pub struct RedisServer {
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port, or `None` (SKIP) without `redis-server` (a failure
    /// under `MXGUARD_INTEROP=1`).
    pub fn start() -> Option<RedisServer> {
        Self::start_with(free_port(), &[])
    }

    fn start_with(port: u16, extra: &[&str]) -> Option<RedisServer> {
        let bin = interop_required("redis-server")?;
        let mut server = RedisServer {
            bin,
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.resume();
        Some(server)
    }

    /// The `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL): the gateways see their connections drop.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered, the
    /// way a hung or overloaded server behaves. `thaw` resumes it.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// Starts the server again on the same port (empty: nothing was saved).
    pub fn resume(&mut self) {
        self.kill();
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let port = self.port;
        // Generous: a cluster's six servers start at once beside a parallel test run, and
        // one took more than ten seconds to answer on a loaded two-core machine.
        assert!(
            wait_until(Duration::from_secs(30), || redis_cli(port, &["PING"])
                .is_some_and(|o| o.contains("PONG"))),
            "redis-server on {port} did not answer PING"
        );
    }

    /// Runs `redis-cli -p PORT ARGS...`; its stdout.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A three-node Redis Cluster (masters only) on free ports.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them, or `None` (SKIP) without
    /// `redis-server`.
    pub fn start() -> Option<RedisCluster> {
        interop_required("redis-cli")?;
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = format!("nodes-{port}.conf");
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.as_str(),
                "--cluster-node-timeout",
                "2000",
            ];
            nodes.push(RedisServer::start_with(port, &args)?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-yes");
        let out = create
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for node in &nodes {
            assert!(
                wait_until(Duration::from_secs(20), || node
                    .cli(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))),
                "cluster node {} never reported cluster_state:ok",
                node.port
            );
        }
        Some(RedisCluster { nodes })
    }

    /// The seed URLs, as a TOML array.
    pub fn toml_urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{:?}", n.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }
}
