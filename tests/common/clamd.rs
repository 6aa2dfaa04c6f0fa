//! A private clamd for the antivirus tests: its own database holding only an EICAR
//! signature made with `sigtool --md5` (no signature downloads), its own TCP port and
//! Unix socket, killed on drop.

use super::{free_port, interop_required, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The EICAR anti-virus test file (68 bytes).
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// What clamd calls EICAR with the test database (`sigtool` names it after the file).
pub const EICAR_SIGNATURE: &str = "eicar.com.UNOFFICIAL";

/// One private `clamd`.
pub struct ClamdServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl ClamdServer {
    /// Builds the database and starts clamd, or `None` (SKIP) without `clamd` and
    /// `sigtool` (a failure under `MXGUARD_INTEROP=1`).
    pub fn start() -> Option<ClamdServer> {
        let bin = interop_required("clamd")?;
        let sigtool = interop_required("sigtool")?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::write(d.join("eicar.com"), EICAR).unwrap();
        let out = Command::new(sigtool)
            .args(["--md5", "eicar.com"])
            .current_dir(d)
            .output()
            .expect("run sigtool");
        assert!(out.status.success(), "sigtool: {out:?}");
        std::fs::write(d.join("db/test.hdb"), &out.stdout).unwrap();
        let mut server = ClamdServer {
            bin,
            dir,
            port: free_port(),
            child: None,
        };
        server.resume();
        Some(server)
    }

    fn conf(&self) -> String {
        let d = self.dir.path().display();
        // Runs as whoever runs the tests (no `User`): root in CI, which clamd accepts.
        format!(
            "DatabaseDirectory {d}/db\nTCPSocket {}\nTCPAddr 127.0.0.1\nLocalSocket {d}/clamd.ctl\n\
             Foreground yes\nLogFile {d}/clamd.log\nPidFile {d}/clamd.pid\nTemporaryDirectory {d}/tmp\n",
            self.port
        )
    }

    /// The `[antivirus] clamd` value for its TCP port.
    pub fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The `[antivirus] clamd` value for its Unix socket.
    pub fn unix(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("clamd.ctl")
    }

    /// Kills clamd: the gateway's next scan cannot connect.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts clamd again (same port, same database) and waits until it answers PING.
    pub fn resume(&mut self) {
        self.stop();
        let conf = self.dir.path().join("clamd.conf");
        std::fs::write(&conf, self.conf()).unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clamd");
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(Duration::from_secs(120), || ping(port));
        assert!(up, "clamd did not answer PING; log:\n{}", self.log());
    }

    /// clamd's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }
}

impl Drop for ClamdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"zPING\0").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"PONG"))
}
