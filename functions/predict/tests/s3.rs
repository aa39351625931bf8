//! The `predict` binary loading its model from a real S3-compatible server (s3s-fs on
//! loopback, started by `storage::testing`), configured only through the environment:
//! `MODEL_URI=s3://...` follows `latest`, a version URI loads that version, and the service
//! keeps answering from memory once S3 is gone.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use model::store::publish;
use serde_json::{Value, json};
use storage::testing::S3Server;

use support::running::{Running, command};

/// `predict` configured for `server` (credentials, endpoint, region) and `model_uri`.
fn predict(server: &S3Server, model_uri: &str) -> Command {
    let mut c = command();
    c.envs(server.env()).env("MODEL_URI", model_uri);
    c
}

fn health(p: &Running) -> Value {
    let (status, body) = support::http(&p.addr, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
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
    let latest = Running::start(predict(&server, &server.uri("models/digits")));
    assert_eq!(health(&latest)["version"], second.version.as_str());
    // A version URI: that version.
    let pinned = Running::start(predict(
        &server,
        &server.uri(&format!("models/digits/{}", first.version)),
    ));
    assert_eq!(health(&pinned)["version"], first.version.as_str());

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
        assert_eq!(health(p)["status"], "ok");
    }
}

#[test]
fn a_missing_model_in_s3_stops_start_up_with_its_uri() {
    let server = S3Server::start();
    let o = predict(&server, &server.uri("models/absent"))
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
    let o = predict(&server, &server.uri("models/digits"))
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!o.status.success());
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot reach the S3 server"), "{err}");
}
