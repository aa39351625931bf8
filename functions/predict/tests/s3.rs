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

/// `GET path` on `p`: (status, `x-model-version`, body as JSON).
fn get_versioned(p: &Running, path: &str) -> (u16, String, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let version = head
        .lines()
        .find_map(|l| l.strip_prefix("x-model-version: "))
        .unwrap_or_default()
        .to_string();
    (
        status,
        version,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn a_new_version_in_s3_is_served_live_and_an_outage_keeps_the_old_one() {
    let mut server = S3Server::start();
    let store = server.store("models");
    let (d, _, digits) = support::digits_model();
    let first = publish(&store, &digits).unwrap();
    let mut cmd = predict(&server, &server.uri("models/digits"));
    cmd.env("MODEL_REFRESH_SECONDS", "1");
    let p = Running::start(cmd);
    assert_eq!(get_versioned(&p, "/health").1, first.version);

    let (train, _) = support::split(&d);
    let other = support::centroid_artifact(&d, &train[..700], "digits");
    let second = publish(&store, &other).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_versioned(&p, "/health").1 != second.version {
        assert!(
            Instant::now() < deadline,
            "{} not served live",
            second.version
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Unchanged: a check costs one small request a second, never a model download.
    let before = server.requests().len();
    std::thread::sleep(Duration::from_millis(3_000));
    let checks: Vec<_> = server.requests().into_iter().skip(before).collect();
    assert!(
        (2..=4).contains(&checks.len()),
        "expected about 3 checks in 3 s: {checks:?}"
    );
    assert!(
        checks.iter().all(|(_, _, key)| key.ends_with("/latest")),
        "{checks:?}"
    );

    // S3 goes away: the served version stays, /model says why, checks go on with backoff.
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    let doc = loop {
        let (_, _, doc) = get_versioned(&p, "/model");
        if doc["refresh"]["result"] == "error" {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "the outage is not reported: {doc}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(doc["version"], second.version.as_str(), "{doc}");
    assert!(
        doc["refresh"]["reason"]
            .as_str()
            .unwrap()
            .contains("latest"),
        "{doc}"
    );
    let body = json!({ "image": d.rows[0] }).to_string();
    let (status, answer) = support::http(&p.addr, "POST", "/predict", Some(&body));
    assert_eq!(status, 200, "{answer}");
}
