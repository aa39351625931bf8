//! A real S3-compatible server for tests: s3s-fs on a loopback port, in a temporary
//! directory, with its own access key and secret, killed when dropped.
//!
//! ```no_run
//! let server = storage::testing::S3Server::start();
//! let store = server.store("models");            // an in-process S3Store
//! let mut cmd = std::process::Command::new("trainer");
//! cmd.envs(server.env());                          // or a child process
//! ```
//!
//! s3s-fs checks SigV4 signatures, so credentials are tested for real. It must be on `PATH`
//! (or named by `S3S_FS`); `make tools` installs it. Without it, [`S3Server::start`] panics
//! with that advice rather than letting tests skip silently.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, Region};

use crate::S3Options;
use crate::S3Store;
use crate::runtime::block_on;

/// The access key every test server accepts.
pub const ACCESS_KEY: &str = "test-access-key";
/// The secret every test server accepts.
pub const SECRET_KEY: &str = "test-secret-key-0123456789";
/// The bucket every test server starts with.
pub const BUCKET: &str = "artifacts";
/// The region tests sign with (s3s-fs accepts any).
pub const REGION: &str = "us-east-1";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running s3s-fs. Dropping it kills the server and removes its data.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// The s3s-fs binary: `$S3S_FS`, else `s3s-fs` on `PATH`, else cargo's bin directory.
pub fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"));
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin").join("s3s-fs"));
    on_path.chain(cargo_bin).find(|p| p.is_file())
}

impl S3Server {
    /// Start a server with the bucket [`BUCKET`] and wait until it answers.
    ///
    /// # Panics
    /// When s3s-fs is missing (run `make tools`) or does not come up.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("s3s-fs-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for s3s-fs: {e}"));
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        let mut server = Self {
            child: None,
            port: 0,
            dir,
        };
        server.launch(0);
        server.create_bucket(BUCKET);
        server
    }

    /// Spawn s3s-fs on `port` (0: any free port) and wait for its "running" line.
    fn launch(&mut self, port: u16) {
        let bin = s3s_fs_binary().unwrap_or_else(|| {
            panic!(
                "s3s-fs is not installed (looked on PATH and in ~/.cargo/bin): run `make tools` \
                 (cargo install --locked s3s-fs --version 0.14.1 --features binary)"
            )
        });
        let log_path = self.log_path();
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.data_dir())
            // "server is running at", and one "resolved route" line per request.
            .env("RUST_LOG", "s3s_fs=info,s3s::ops=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // Copy the server's output to a log file, reporting the address once it is known.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        for (stream, tx) in [
            (
                stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                Some(tx),
            ),
            (
                stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                None,
            ),
        ] {
            let (Some(stream), Ok(mut log)) = (stream, log.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(log, "{line}");
                    if let (Some(tx), Some(addr)) =
                        (&tx, line.split("server is running at http://").nth(1))
                    {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "s3s-fs exited at start ({status}); its log: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3s-fs did not start within {START_TIMEOUT:?}");
            }
        };
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the port from s3s-fs's address {addr:?}"));
        self.child = Some(child);
    }

    /// Create a bucket through the S3 API.
    ///
    /// # Panics
    /// When the server refuses.
    pub fn create_bucket(&self, bucket: &str) {
        let client = self.client();
        let bucket = bucket.to_string();
        let res = block_on(async move {
            client
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = res {
            panic!("s3s-fs refused CreateBucket: {e}");
        }
    }

    /// A raw SDK client for this server, for tests that go around the store.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .force_path_style(true)
            .http_client(crate::s3::http_client())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The endpoint URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (kept across [`S3Server::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Settings for an in-process store on this server.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint()),
            region: Some(REGION.into()),
            credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
        }
    }

    /// An in-process store under `s3://BUCKET/<prefix>`.
    ///
    /// # Panics
    /// When the client cannot be built.
    pub fn store(&self, prefix: &str) -> S3Store {
        S3Store::connect(BUCKET, prefix, &self.options()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `s3://BUCKET/<key>`.
    pub fn uri(&self, key: &str) -> String {
        format!("s3://{BUCKET}/{}", key.trim_start_matches('/'))
    }

    /// The environment a child process needs to reach this server through the default chain.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The directory s3s-fs serves: `<data_dir>/<bucket>/<key>` is an object's bytes.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding object `key` of [`BUCKET`] (e.g. to corrupt it behind S3's back).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.data_dir().join(BUCKET).join(key)
    }

    /// The server's log (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("s3s-fs.log")
    }

    /// The requests the server has received so far, oldest first, as `(operation, bucket,
    /// key)`, e.g. `("PutObject", "artifacts", "models/digits/latest")`; read from its log.
    pub fn requests(&self) -> Vec<(String, String, String)> {
        // The log is copied by a thread; give it a moment to catch up.
        std::thread::sleep(Duration::from_millis(100));
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines().filter_map(parse_route).collect()
    }

    /// Kill the server (SIGKILL: no goodbye to clients), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port and data.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.launch(port);
    }
}

/// `... resolved route, op: PutObject, s3_path: Object { bucket: "b", key: "k" }`
fn parse_route(line: &str) -> Option<(String, String, String)> {
    let rest = line.split("resolved route, op: ").nth(1)?;
    let (op, rest) = rest.split_once(',')?;
    let quoted = |field: &str| {
        rest.split(&format!("{field}: \""))
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    Some((op.trim().to_string(), quoted("bucket"), quoted("key")))
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_route;

    #[test]
    fn routes_are_parsed_from_the_log() {
        let line = "  2026-11-27T03:48:22.679735Z DEBUG s3s::ops: resolved route, op: PutObject, \
                    s3_path: Object { bucket: \"bkt\", key: \"a/x\" }";
        assert_eq!(
            parse_route(line),
            Some(("PutObject".into(), "bkt".into(), "a/x".into()))
        );
        assert_eq!(parse_route("  INFO s3s_fs: server is running"), None);
    }
}
