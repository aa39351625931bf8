//! In-process tests of every route and every error case, through `Router::oneshot`.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn digits_app() -> (Router, predict::AppState, support::Digits, Vec<usize>) {
    let (d, test, a) = support::digits_model();
    let state = support::state_for(&a);
    (predict::app(state.clone()), state, d, test)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, header::HeaderMap, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, headers, v)
}

fn post(path: &str, ct: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(path);
    if let Some(ct) = ct {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

fn post_json(body: &Value) -> Request<Body> {
    post("/predict", Some("application/json"), body.to_string())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn assert_error(v: &Value, code: &str) -> String {
    assert_eq!(v["error"]["code"], code, "{v}");
    let msg = v["error"]["message"].as_str().unwrap().to_string();
    assert!(!msg.is_empty());
    msg
}

#[tokio::test]
async fn predict_image_answers_like_the_original_plus_label_and_probabilities() {
    let (app, state, d, _) = digits_app();
    let row = &d.rows[0];
    let (status, headers, v) = send(&app, post_json(&json!({ "image": row }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let expected = state.model().predict(row).unwrap();
    let served = state.model();
    let label = served.label(&expected);
    assert_eq!(v["predicted_class"], json!(label.parse::<i64>().unwrap()));
    assert_eq!(v["label"], label);
    assert_eq!(v["predicted_class"], 0, "row 0 is a zero");
    let p: Vec<f64> = serde_json::from_value(v["probabilities"].clone()).unwrap();
    assert_eq!(p, expected.probabilities);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

#[tokio::test]
async fn predict_features_and_charset_and_missing_content_type() {
    let (app, state, d, _) = digits_app();
    let body = json!({ "features": d.rows[5] }).to_string();
    let expected = state.model().predict(&d.rows[5]).unwrap();
    let label = state.model().label(&expected).to_string();
    for ct in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/vnd.api+json"),
        None,
    ] {
        let (status, _, v) = send(&app, post("/predict", ct, body.clone())).await;
        assert_eq!(status, StatusCode::OK, "{ct:?}: {v}");
        assert_eq!(v["label"], label);
    }
}

#[tokio::test]
async fn predict_instances_batch() {
    let (app, state, d, test) = digits_app();
    let rows: Vec<&Vec<f64>> = test.iter().take(7).map(|&i| &d.rows[i]).collect();
    let (status, _, v) = send(&app, post_json(&json!({ "instances": rows }))).await;
    assert_eq!(status, StatusCode::OK);
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 7);
    for (p, row) in preds.iter().zip(&rows) {
        let e = state.model().predict(row).unwrap();
        assert_eq!(p["label"], state.model().label(&e));
        let probs: Vec<f64> = serde_json::from_value(p["probabilities"].clone()).unwrap();
        assert_eq!(probs, e.probabilities);
    }
    let (status, _, v) = send(&app, post_json(&json!({ "instances": [] }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({ "predictions": [] }));
}

#[tokio::test]
async fn non_integer_labels_answer_the_class_index() {
    let a = support::tiny_artifact("pets");
    let app = predict::app(support::state_for(&a));
    let (status, _, v) = send(&app, post_json(&json!({ "features": [0.0, 3.0] }))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["label"], "dog");
    assert_eq!(v["predicted_class"], 1);
}

#[tokio::test]
async fn health_and_model_metadata() {
    let (app, state, _, _) = digits_app();
    let (status, _, v) = send(&app, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    let served = state.model();
    let a = served.artifact();
    assert_eq!(v["model_id"], a.model_id);

    let (status, headers, v) = send(&app, get("/model")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(v["name"], "digits");
    assert_eq!(v["version"], state.version());
    assert_eq!(v["model_id"], a.model_id);
    assert_eq!(v["created_at"], a.created_at);
    assert_eq!(v["classes"], json!(a.classes));
    assert_eq!(v["feature_names"].as_array().unwrap().len(), 64);
    assert_eq!(v["metrics"], json!(a.metrics));
    assert_eq!(v["training"], json!(a.training));
    assert!(v.get("coefficients").is_none(), "no weights in metadata");
    assert!(v.get("scaler").is_none(), "no weights in metadata");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (app, _, _, _) = digits_app();
    for body in [
        "{",
        "{\"image\": [1, 2,]}",
        "not json",
        "{\"image\": [NaN]}",
        "",
    ] {
        let (status, headers, v) =
            send(&app, post("/predict", Some("application/json"), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_error(&v, "malformed_json");
    }
}

#[tokio::test]
async fn wrong_shape_is_422() {
    let (app, _, _, _) = digits_app();
    for body in [
        json!([1, 2, 3]),
        json!({}),
        json!({ "pixels": [1, 2] }),
        json!({ "image": "zero" }),
        json!({ "image": [1, "2"] }),
        json!({ "image": [1], "features": [1] }),
        json!({ "instances": [1, 2] }),
    ] {
        let (status, _, v) = send(&app, post_json(&body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_error(&v, "invalid_body");
    }
}

#[tokio::test]
async fn wrong_feature_count_is_422_and_names_the_row() {
    let (app, _, d, _) = digits_app();
    let (status, _, v) = send(&app, post_json(&json!({ "image": [1, 2, 3] }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = assert_error(&v, "wrong_feature_count");
    assert!(msg.contains("expected 64 features, got 3"), "{msg}");

    let batch = json!({ "instances": [d.rows[0], d.rows[1], vec![0.0; 63]] });
    let (status, _, v) = send(&app, post_json(&batch)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = assert_error(&v, "wrong_feature_count");
    assert!(msg.contains("row 2"), "{msg}");
    assert!(msg.contains("got 63"), "{msg}");
}

#[tokio::test]
async fn non_finite_value_is_422_and_names_row_and_feature() {
    let (app, _, _, _) = digits_app();
    let mut row: Vec<String> = vec!["0".into(); 64];
    row[7] = "1e999".into();
    let body = format!("{{\"image\": [{}]}}", row.join(","));
    let (status, _, v) = send(&app, post("/predict", Some("application/json"), body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = assert_error(&v, "non_finite_value");
    assert!(msg.starts_with("feature 7 is not a finite number"), "{msg}");

    let ok: Vec<&str> = vec!["1"; 64];
    row[7] = "0".into();
    row[63] = "-1e400".into();
    let body = format!(
        "{{\"instances\": [[{}], [{}]]}}",
        ok.join(","),
        row.join(",")
    );
    let (status, _, v) = send(&app, post("/predict", None, body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = assert_error(&v, "non_finite_value");
    assert!(
        msg.starts_with("row 1: feature 63 is not a finite number"),
        "{msg}"
    );
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let (_, state, _, _) = digits_app();
    let app = predict::app(state.with_limits(100, Duration::from_secs(5)));
    let big = json!({ "image": vec![0.0; 64] }).to_string();
    assert!(big.len() > 100);
    // Declared by Content-Length.
    let req = Request::post("/predict")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let (status, _, v) = send(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let msg = assert_error(&v, "payload_too_large");
    assert!(msg.contains("100 bytes"), "{msg}");
    // Streamed without a length.
    let body = chunked(big.as_bytes());
    let (status, _, v) = send(&app, post("/predict", Some("application/json"), body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&v, "payload_too_large");
}

/// A body in 10-byte chunks with no Content-Length.
fn chunked(bytes: &[u8]) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(10).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(Chunks(chunks.into_iter()))
}

struct Chunks(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

#[tokio::test]
async fn not_json_is_415() {
    let (app, _, _, _) = digits_app();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, _, v) = send(&app, post("/predict", Some(ct), "{\"image\": []}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
        let msg = assert_error(&v, "unsupported_media_type");
        assert!(msg.contains(ct), "{msg}");
    }
}

#[tokio::test]
async fn unknown_route_is_404() {
    let (app, _, _, _) = digits_app();
    for req in [get("/"), get("/predict/x"), post("/nope", None, "{}")] {
        let (status, _, v) = send(&app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&v, "not_found");
    }
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let (app, _, _, _) = digits_app();
    let cases = [
        (get("/predict"), "POST"),
        (
            Request::delete("/predict").body(Body::empty()).unwrap(),
            "POST",
        ),
        (post("/health", None, ""), "GET,HEAD"),
        (
            Request::put("/model").body(Body::empty()).unwrap(),
            "GET,HEAD",
        ),
    ];
    for (req, allow) in cases {
        let (status, headers, v) = send(&app, req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], allow);
        assert_error(&v, "method_not_allowed");
    }
}

#[tokio::test]
async fn slow_request_times_out_with_408() {
    let (_, state, _, _) = digits_app();
    let app = predict::app(state.with_limits(1 << 20, Duration::from_millis(50)));
    // A body that never finishes arriving.
    let (tx, body) = slow_body();
    let req = post("/predict", Some("application/json"), body);
    let (status, _, v) = send(&app, req).await;
    drop(tx);
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    let msg = assert_error(&v, "timeout");
    assert!(msg.contains("50 ms"), "{msg}");
}

fn slow_body() -> (tokio::sync::mpsc::Sender<()>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    let stream = Pending(rx);
    (tx, Body::from_stream(stream))
}

struct Pending(tokio::sync::mpsc::Receiver<()>);

impl futures_core::Stream for Pending {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.0.poll_recv(cx) {
            std::task::Poll::Ready(_) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}
