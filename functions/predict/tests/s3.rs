//! The `predict` binary loading its model from a real S3-compatible server (s3s-fs on
//! loopback, started by `storage::testing`), configured only through the environment:
//! `MODEL_URI=s3://...` follows `latest`, a version URI loads that version, and the service
//! keeps answering from memory once S3 is gone.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use model::store::publish;
use serde_json::{Value, json};
use storage::testing::S3Server;

const BIN: &str = env!("CARGO_BIN_EXE_predict");

fn command(server: &S3Server, model_uri: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .envs(server.env())
        .env("MODEL_URI", model_uri)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    c
}

/// A running `predict`; killed (by its own pid) on drop.
struct Predict {
    child: Child,
    addr: String,
}

impl Predict {
    fn start(server: &S3Server, model_uri: &str) -> Self {
        let mut child = command(server, model_uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("predict did not start listening within 20 s"));
        Self { child, addr }
    }

    fn health(&self) -> Value {
        let (status, body) = support::http(&self.addr, "GET", "/health", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Predict {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follows_latest_loads_a_version_and_answers_after_s3_is_gone() {
    let mut server = S3Server::start();
    let store = server.store("models");
    let (_, test_rows, digits) = support::digits_model();
    let first = publish(&store, &digits).unwrap();
    std::thread::sleep(Duration::from_millis(5)); // a distinct version name
    let second = publish(&store, &digits).unwrap();
    assert_ne!(first.version, second.version);

    // The model name: `latest` is followed.
    let latest = Predict::start(&server, &server.uri("models/digits"));
    assert_eq!(latest.health()["version"], second.version.as_str());
    // A version URI: that version.
    let pinned = Predict::start(
        &server,
        &server.uri(&format!("models/digits/{}", first.version)),
    );
    assert_eq!(pinned.health()["version"], first.version.as_str());

    // S3 goes away: both keep answering from memory.
    server.stop();
    let d = support::digits();
    let row = &d.rows[test_rows[0]];
    for p in [&latest, &pinned] {
        let body = json!({ "image": row }).to_string();
        let (status, answer) = support::http(&p.addr, "POST", "/predict", Some(&body));
        assert_eq!(status, 200, "{answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert!(v["predicted_class"].is_i64(), "{answer}");
        assert_eq!(p.health()["status"], "ok");
    }
}

#[test]
fn a_missing_model_in_s3_stops_start_up_with_its_uri() {
    let server = S3Server::start();
    let o = command(&server, &server.uri("models/absent"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("s3://artifacts/models/absent/latest"), "{err}");
}

#[test]
fn s3_down_at_cold_start_fails_within_ten_seconds() {
    let mut server = S3Server::start();
    server.stop();
    let started = Instant::now();
    let o = command(&server, &server.uri("models/digits"))
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!o.status.success());
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot reach the S3 server"), "{err}");
}
