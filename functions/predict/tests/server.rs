//! The real binary on a real socket: start-up, predictions equal to the model crate's for
//! every holdout row, `--check`, start-up errors, graceful shutdown on SIGTERM with
//! requests in flight, and the body-read timeout on every route that reads a body.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::running::{BIN, Running, command};

/// `predict` serving `model_uri`, with more environment variables.
fn start(model_uri: &str, env: &[(&str, &str)]) -> Running {
    let mut c = command();
    c.env("MODEL_URI", model_uri).envs(env.iter().copied());
    Running::start(c)
}

#[test]
fn predictions_over_http_equal_the_model_for_every_holdout_row() {
    let (d, test, a) = support::digits_model();
    let (_dir, uri) = support::store_with(&a);
    let model = model::Model::new(a).unwrap();
    let server = start(&uri, &[]);

    let (status, body) = support::http(&server.addr, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");

    let mut correct = 0;
    for &i in &test {
        let req = json!({ "image": d.rows[i] }).to_string();
        let (status, body) = support::http(&server.addr, "POST", "/predict", Some(&req));
        assert_eq!(status, 200, "row {i}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let e = model.predict(&d.rows[i]).unwrap();
        let label = model.label(&e);
        assert_eq!(v["label"], label, "row {i}");
        assert_eq!(
            v["predicted_class"],
            label.parse::<i64>().unwrap(),
            "row {i}"
        );
        let p: Vec<f64> = serde_json::from_value(v["probabilities"].clone()).unwrap();
        assert_eq!(p, e.probabilities, "row {i}: probabilities differ");
        correct += usize::from(label == d.labels[i]);
    }
    // The test model is a simple one; the point is equality, but it must also be sane.
    let accuracy = correct as f64 / test.len() as f64;
    assert!(accuracy > 0.85, "holdout accuracy {accuracy}");

    // The whole holdout as one batch gives the same answers.
    let rows: Vec<&Vec<f64>> = test.iter().map(|&i| &d.rows[i]).collect();
    let req = json!({ "instances": rows }).to_string();
    let (status, body) = support::http(&server.addr, "POST", "/predict", Some(&req));
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), test.len());
    for (p, row) in preds.iter().zip(&rows) {
        let e = model.predict(row).unwrap();
        let probs: Vec<f64> = serde_json::from_value(p["probabilities"].clone()).unwrap();
        assert_eq!(probs, e.probabilities);
        assert_eq!(p["label"], model.label(&e));
    }
}

#[test]
fn check_flag_reports_health_without_a_shell() {
    let a = support::tiny_artifact("pets");
    let (_dir, uri) = support::store_with(&a);
    let server = start(&uri, &[]);
    let check = |port: &str| {
        Command::new(BIN)
            .arg("--check")
            .env_clear()
            .env("PORT", port)
            .status()
            .unwrap()
    };
    assert!(check(server.port()).success());
    // A port nobody listens on: bind one, learn it, close it.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port().to_string();
    drop(free);
    assert_eq!(check(&port).code(), Some(1));
}

#[test]
fn bad_or_missing_model_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}/digits", dir.path().display());
    // A model whose artifact was altered after publishing.
    let a = support::tiny_artifact("pets");
    let (tampered_dir, tampered) = support::store_with(&a);
    let latest: Value =
        serde_json::from_slice(&std::fs::read(tampered_dir.path().join("pets/latest")).unwrap())
            .unwrap();
    let version = latest["version"].as_str().unwrap();
    let file = tampered_dir
        .path()
        .join(format!("pets/{version}/model.json"));
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"dog\"", "\"dot\"");
    std::fs::write(&file, text).unwrap();
    let pinned = format!("{tampered}/{version}");
    for (uri, expect) in [
        (missing.as_str(), "not found"),
        ("http://example.invalid/x", "only local paths and s3://"),
        ("", "MODEL_URI"),
        (tampered.as_str(), "checksum mismatch"),
        (pinned.as_str(), "model_id"),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env("MODEL_URI", uri)
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{uri}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{uri}: expected {expect:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn sigterm_lets_requests_in_flight_complete_then_exits_0() {
    let (d, _, a) = support::digits_model();
    let (_dir, uri) = support::store_with(&a);
    let mut server = start(&uri, &[]);
    let body = json!({ "image": d.rows[0] }).to_string();

    // Several requests whose bodies are only half sent when SIGTERM arrives.
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (head, tail) = body.split_at(body.len() / 2);
        write!(
            s,
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
            body.len()
        )
        .unwrap();
        s.flush().unwrap();
        in_flight.push((s, tail.to_string()));
    }
    // Let the server read the headers and enter the handler.
    std::thread::sleep(Duration::from_millis(200));
    server.sigterm();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with requests in flight"
    );

    for (mut s, tail) in in_flight {
        s.write_all(tail.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the whole (content-length delimited) answer is in; the server closes
        // the connection after it because it is shutting down.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if complete(&raw) {
                break;
            }
        }
        let (status, body) = support::parse_response(&String::from_utf8_lossy(&raw));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["predicted_class"], 0);
    }
    let status = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let logs: Vec<String> = server.logs.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("shutting down")),
        "no shutdown log in {logs:?}"
    );
}

#[test]
fn a_stalled_body_gets_the_timeout_error_on_every_route_that_reads_one() {
    let (_, _, a) = support::digits_model();
    let (_dir, uri) = support::store_with(&a);
    let server = start(&uri, &[("REQUEST_TIMEOUT_MS", "300")]);
    let (_, health) = support::http(&server.addr, "GET", "/health", None);
    let version = serde_json::from_str::<Value>(&health).unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let v2_versioned = format!("/v2/models/digits/versions/{version}/infer");
    // Each route's own error shape, with the timeout in it.
    type Shape = fn(&Value) -> bool;
    let predict_shape: Shape = |v| v["error"]["code"] == "timeout";
    let mlflow_shape: Shape = |v| v["error_code"] == "DEADLINE_EXCEEDED";
    let v2_shape: Shape = |v| v["error"].as_str().is_some_and(|m| m.contains("300 ms"));
    let cases = [
        ("/predict", predict_shape),
        ("/invocations", mlflow_shape),
        ("/v2/models/digits/infer", v2_shape),
        (v2_versioned.as_str(), v2_shape),
    ];
    for (path, shape) in cases {
        // The headers and the first bytes of a 100-byte body, then nothing.
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"inp"
        )
        .unwrap();
        s.flush().unwrap();
        let started = Instant::now();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !complete(&raw) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{path}: no answer after {:?}: {e}", started.elapsed()),
            }
        }
        let elapsed = started.elapsed();
        let (status, body) = support::parse_response(&String::from_utf8_lossy(&raw));
        assert_eq!(status, 408, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(shape(&v), "{path}: {v}");
        assert!(
            elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5),
            "{path}: answered after {elapsed:?}"
        );
    }
}

fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|n| body.len() >= n)
}
