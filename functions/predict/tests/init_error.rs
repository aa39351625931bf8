//! Under Lambda, a start-up failure is posted to the Runtime API's init-error endpoint
//! before the binary exits non-zero. `tests/lambda.sh` checks that end to end through the
//! real emulator (`cargo lambda watch` answers the pending invocation with the report).
//! This file checks what the emulator does not show: the exact request (the path after
//! the API's path prefix, the error-type header, the JSON body), the error type of each
//! kind of failure, and that a Runtime API that never answers cannot hold the exit up.
//! The "API" here is a loopback listener that records one request.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_predict");

/// One request as received: request line, lower-cased headers, body.
struct Received {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A listener on a free loopback port that reads one request, answers 202 (as Lambda
/// does) and hands the request over.
fn runtime_api() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n")
            .unwrap();
        let _ = tx.send(Received {
            line: line.trim_end().to_string(),
            headers,
            body: String::from_utf8(body).unwrap(),
        });
    });
    (addr, rx)
}

fn predict(api: &str, env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn each_start_up_failure_is_reported_with_its_type_then_the_binary_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}/digits", dir.path().display());
    for (env, error_type, message, code) in [
        (
            vec![("MODEL_URI", missing.as_str())],
            "Runtime.ModelNotFound",
            missing.as_str(),
            1,
        ),
        (
            vec![("MODEL_URI", "http://example.invalid/x")],
            "Runtime.InvalidModelUri",
            "only local paths and s3://",
            1,
        ),
        (
            vec![("MODEL_URI", missing.as_str()), ("BODY_LIMIT_BYTES", "0")],
            "Runtime.InvalidConfig",
            "BODY_LIMIT_BYTES",
            1,
        ),
        (
            vec![("REQUEST_TIMEOUT_MS", "soon")],
            "Runtime.InvalidConfig",
            "soon",
            2,
        ),
    ] {
        let (addr, received) = runtime_api();
        // As `cargo lambda watch` gives it: host:port and a path prefix.
        let out = predict(&format!("{addr}/predict"), &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let r = received
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{env:?}: nothing was reported; stderr: {stderr}"));
        assert_eq!(
            r.line, "POST /predict/2018-06-01/runtime/init/error HTTP/1.1",
            "{env:?}"
        );
        assert_eq!(
            r.header("lambda-runtime-function-error-type"),
            Some(error_type),
            "{env:?}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["errorType"], error_type, "{env:?}: {body}");
        let reported = body["errorMessage"].as_str().unwrap();
        assert!(
            reported.contains(message),
            "{env:?}: expected {message:?} in {reported:?}"
        );
    }
}

#[test]
fn a_runtime_api_that_never_answers_does_not_hold_the_exit_up() {
    // Accepts the connection (the kernel does, from the backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}/digits", dir.path().display());
    let started = Instant::now();
    let out = predict(&api, &[("MODEL_URI", &missing)]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    assert!(stderr.contains("cannot report the init error"), "{stderr}");
    drop(silent);

    // Nobody listening at all: refused at once, same exit.
    let out = predict(&api, &[("MODEL_URI", &missing)]);
    assert_eq!(out.status.code(), Some(1));
}
