//! The real `predict` binary, started the way every process test starts it: a cleared
//! environment plus the caller's, `127.0.0.1` and a port the kernel picks, JSON logs on
//! stdout read by a thread until the `listening` line gives the address.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test. Cargo names it to integration tests only; `examples/test_model.rs`
/// compiles this module too (also in `cargo test --all-targets`) and never starts it.
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_predict") {
    Some(path) => path,
    None => "",
};

/// `predict` with a cleared environment, listening on 127.0.0.1 and a free port, logging
/// JSON at `info`; add `MODEL_URI` and the rest. Also for runs expected to fail at start-up.
pub fn command() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    c
}

/// A running `predict`; killed (by its own pid) on drop if still running.
pub struct Running {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:<port>`, from its `listening` log line.
    pub addr: String,
    /// Its later stdout lines.
    pub logs: mpsc::Receiver<String>,
}

impl Running {
    /// Spawn `cmd` (from [`command`]) and wait up to 20 s for it to listen.
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("predict did not start listening within 20 s"));
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
            if v["message"] == "listening" {
                break v["addr"].as_str().unwrap().to_string();
            }
        };
        Self {
            child,
            addr,
            logs: rx,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap()
    }

    /// Send SIGTERM to this process only, by its id.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Wait for it to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "predict did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
