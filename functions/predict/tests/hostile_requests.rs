//! Hostile requests, in-process (`oneshot`): each one a class that once killed or bloated
//! the server, or that got an unclear answer (issue 16). Every answer here is a clear 4xx
//! in our JSON error shape (or the protocol's), produced without allocating more than a
//! small multiple of the body.
//!
//! The connection-level limits (stalled clients, caps, load shedding) are tested against
//! the real binary in `tests/hostile_clients.rs`; the fuzz targets in `fuzz/` look for
//! more of these, and each crash they find is added here.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod support;

use std::io::Write;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> (u16, Value) {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(b.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    if status >= 400 {
        assert!(
            ct.starts_with("application/json"),
            "{status}: content-type {ct:?}"
        );
    }
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn app() -> (Router, support::Digits) {
    let (d, _, a) = support::digits_model();
    (predict::app(support::state_for(&a)), d)
}

fn message(v: &Value) -> String {
    match &v["error"] {
        Value::String(s) => s.clone(),
        e => e["message"].as_str().unwrap_or_default().to_string(),
    }
}

#[tokio::test]
async fn v2_shapes_are_checked_before_anything_is_allocated_for_them() {
    let (app, _) = app();
    let path = "/v2/models/digits/infer";
    // Each once reached an allocation sized by the declared shape (a zero-width shape of
    // 2^64 - 1 rows aborted the process).
    for (shape, data, status, needle) in [
        (
            json!([u64::MAX, 0]),
            json!([]),
            422,
            "expected 64 features, got 0",
        ),
        (
            json!([1_000_000_000_000_u64, 64]),
            json!([]),
            413,
            "MAX_BATCH_ROWS",
        ),
        (
            json!([u64::MAX, u64::MAX]),
            json!([]),
            422,
            "expected 64 features",
        ),
        (
            json!([10_000, 64]),
            json!([0]),
            400,
            "the shape needs 640000 values, but `data` is 3 bytes",
        ),
        (json!([1, 64]), json!([[vec![0; 64]]]), 400, "nests deeper"),
    ] {
        let body =
            json!({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": data}]});
        let (s, v) = send(&app, "POST", path, &[JSON], body.to_string()).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(message(&v).contains(needle), "{body}: {v}");
    }
    // The fuzz reproducers (fuzz/regressions/routes/), byte for byte after the route byte:
    // once a panic (capacity overflow) and a 1.6 GB allocation.
    for name in ["v2-shape-max-by-zero", "v2-shape-1e8-by-zero"] {
        let file = support::repo_root()
            .join("fuzz/regressions/routes")
            .join(name);
        let bytes = std::fs::read(&file).unwrap();
        let (s, v) = send(&app, "POST", path, &[JSON], bytes[1..].to_vec()).await;
        assert_eq!(s, 422, "{name}: {v}");
    }
    // The binary extension: a size that does not add up is refused before any copy.
    let header = json!({"inputs": [{"name": "x", "shape": [u64::MAX / 8, 64], "datatype": "FP64",
        "parameters": {"binary_data_size": 8}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&[0; 8]);
    let len = header.len().to_string();
    let (s, v) = send(
        &app,
        "POST",
        path,
        &[("inference-header-content-length", len.as_str())],
        body,
    )
    .await;
    assert_eq!(s, 413, "{v}");
}

#[tokio::test]
async fn a_batch_of_tiny_rows_stops_at_the_first_bad_row() {
    let (app, d) = app();
    // 1 MiB of `[],` once grew the process by ~300 MB: a 512-byte row buffer per 3 bytes.
    let tiny = format!("{{\"instances\": [{}[]]}}", "[],".repeat(349_000));
    let (s, v) = send(&app, "POST", "/predict", &[JSON], tiny).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "wrong_feature_count", "{v}");
    assert_eq!(message(&v), "row 0: expected 64 features, got 0");
    // Rows over MAX_BATCH_ROWS are refused as they pass the cap.
    let (_, _, a) = support::digits_model();
    let capped = predict::app(support::state_for(&a).with_max_batch_rows(100));
    let row = serde_json::to_string(&d.rows[0]).unwrap();
    let many = format!(
        "{{\"instances\": [{}{row}]}}",
        format!("{row},").repeat(100)
    );
    let (s, v) = send(&capped, "POST", "/predict", &[JSON], many.clone()).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["code"], "too_many_rows", "{v}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn content_encodings_are_decoded_within_the_limit_or_refused_by_name() {
    let (app, d) = app();
    let body = json!({"image": d.rows[3]}).to_string();
    let (plain, expected) = send(&app, "POST", "/predict", &[JSON], body.clone()).await;
    assert_eq!(plain, 200);
    for coding in ["gzip", "x-gzip", "GZIP", "identity, gzip"] {
        let (s, v) = send(
            &app,
            "POST",
            "/predict",
            &[JSON, ("content-encoding", coding)],
            gzip(body.as_bytes()),
        )
        .await;
        assert_eq!((s, &v), (200, &expected), "{coding}");
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(body.as_bytes()).unwrap();
    let (s, v) = send(
        &app,
        "POST",
        "/invocations",
        &[JSON, ("content-encoding", "deflate")],
        z.finish().unwrap(),
    )
    .await;
    assert_eq!(
        s, 422,
        "an /predict body is not an MLflow body, but it was decoded: {v}"
    );
    // A bomb: 16 MiB of spaces in ~16 KiB of gzip; the default limit is 1 MiB decoded.
    let bomb = gzip(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 64 << 10);
    for path in ["/predict", "/invocations", "/v2/models/digits/infer"] {
        let (s, v) = send(
            &app,
            "POST",
            path,
            &[JSON, ("content-encoding", "gzip")],
            bomb.clone(),
        )
        .await;
        assert_eq!(s, 413, "{path}: {v}");
    }
    for (coding, needle) in [
        ("br", "\"br\""),
        ("zstd", "\"zstd\""),
        ("gzip, gzip", "gzip, gzip"),
    ] {
        let (s, v) = send(
            &app,
            "POST",
            "/predict",
            &[JSON, ("content-encoding", coding)],
            body.clone(),
        )
        .await;
        assert_eq!(s, 415, "{coding}: {v}");
        assert!(message(&v).contains(needle), "{coding}: {v}");
    }
    let (s, v) = send(
        &app,
        "POST",
        "/predict",
        &[JSON, ("content-encoding", "gzip")],
        body,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(message(&v).contains("gzip body does not decode"), "{v}");
}

#[tokio::test]
async fn errors_made_below_the_handlers_are_json_too() {
    let (app, _) = app();
    // A path that is not UTF-8 once percent-decoded: axum's own rejection, in plain text.
    let (s, v) = send(&app, "GET", "/v2/models/%FF", &[], Body::empty()).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    assert!(!message(&v).is_empty(), "{v}");
}

#[tokio::test]
async fn model_metadata_shows_no_local_paths() {
    let (d, _, mut a) = support::digits_model();
    a.training
        .insert("data".into(), json!("/home/someone/private/digits.csv"));
    a.seal();
    let (_dir, uri) = support::store_with(&a);
    let config =
        <predict::Config as clap::Parser>::try_parse_from(["predict", "--model-uri", &uri])
            .unwrap();
    let state = predict::AppState::load(&config).unwrap();
    let app = predict::app(state);
    let (s, v) = send(&app, "GET", "/model", &[], Body::empty()).await;
    assert_eq!(s, 200);
    let text = v.to_string();
    assert!(!text.contains("/home/someone"), "{text}");
    assert!(!text.contains(&*_dir.path().to_string_lossy()), "{text}");
    assert_eq!(v["training"]["data"], "digits.csv", "{v}");
    assert_eq!(v["source"], "local store: digits", "{v}");
    drop(d);
}

#[tokio::test]
async fn api_keys_guard_every_route_but_health() {
    let (d, _, a) = support::digits_model();
    let key = "k3y-of-at-least-16-chars";
    let keys = predict::auth::ApiKeys::load(Some(key), None, false).unwrap();
    let app = predict::app(support::state_for(&a).with_api_keys(keys));
    let body = json!({"image": d.rows[0]}).to_string();
    let (s, v) = send(&app, "POST", "/predict", &[JSON], body.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let (s, _) = send(
        &app,
        "POST",
        "/predict",
        &[JSON, ("x-api-key", "wrong-key-of-16-chars")],
        body.clone(),
    )
    .await;
    assert_eq!(s, 401);
    let bearer = format!("Bearer {key}");
    let (s, _) = send(
        &app,
        "POST",
        "/predict",
        &[JSON, ("authorization", bearer.as_str())],
        body.clone(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(&app, "POST", "/predict", &[JSON, ("x-api-key", key)], body).await;
    assert_eq!(s, 200);
    for open in ["/health", "/ping", "/v2/health/live", "/v2/health/ready"] {
        let (s, _) = send(&app, "GET", open, &[], Body::empty()).await;
        assert_eq!(s, 200, "{open}");
    }
    for closed in [
        "/model",
        "/metrics",
        "/openapi.json",
        "/v2/models/digits",
        "/nope",
    ] {
        let (s, _) = send(&app, "GET", closed, &[], Body::empty()).await;
        assert_eq!(s, 401, "{closed}");
    }
    let keys = predict::auth::ApiKeys::load(Some(key), None, true).unwrap();
    let app = predict::app(support::state_for(&a).with_api_keys(keys));
    let (s, _) = send(&app, "GET", "/metrics", &[], Body::empty()).await;
    assert_eq!(s, 200, "METRICS_PUBLIC opens /metrics");
}
