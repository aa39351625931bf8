//! The protocols in-process (`oneshot`): KServe V2, MLflow scoring and Prometheus metrics
//! answer what the model crate computes, validate input the same way as `POST /predict`
//! (errors name the row and the feature), and keep the same body limit.
//! Third-party clients drive the real binary in `tests/clients/`.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod support;

use std::time::Duration;

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
) -> (u16, String, Vec<u8>) {
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
    (
        status,
        ct,
        res.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

async fn json_call(app: &Router, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (s, _, b) = send(
        app,
        method,
        path,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn digits() -> (Router, predict::AppState, support::Digits, Vec<usize>) {
    let (d, test, a) = support::digits_model();
    let state = support::state_for(&a);
    (predict::app(state.clone()), state, d, test)
}

#[tokio::test]
async fn v2_infer_answers_what_the_model_computes_for_the_holdout() {
    let (app, state, d, test) = digits();
    let rows: Vec<&Vec<f64>> = test.iter().map(|&i| &d.rows[i]).collect();
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    let body = json!({"id": "42", "inputs": [{"name": "x", "shape": [rows.len(), 64], "datatype": "FP64", "data": flat}]});
    let (status, v) = json_call(&app, "POST", "/v2/models/digits/infer", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model_name"], "digits");
    assert_eq!(v["model_version"], state.version());
    assert_eq!(v["id"], "42");
    let expected = state.model().predict_batch(&rows).unwrap();
    let labels = &v["outputs"][0];
    assert_eq!(labels["name"], "label");
    assert_eq!(labels["datatype"], "BYTES");
    assert_eq!(labels["shape"], json!([rows.len()]));
    let proba = &v["outputs"][1];
    assert_eq!(proba["name"], "probabilities");
    assert_eq!(proba["shape"], json!([rows.len(), 10]));
    let p: Vec<f64> = serde_json::from_value(proba["data"].clone()).unwrap();
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(labels["data"][i], state.model().label(e), "row {i}");
        assert_eq!(&p[i * 10..(i + 1) * 10], &e.probabilities[..], "row {i}");
    }
}

#[tokio::test]
async fn v2_accepts_nested_int_data_and_the_binary_tensor_extension() {
    let (app, state, d, _) = digits();
    let row = &d.rows[7];
    let expected = state.model().predict(row).unwrap();
    let label = state.model().label(&expected).to_string();

    let ints: Vec<i64> = row.iter().map(|x| *x as i64).collect();
    for dt in [
        "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP32",
    ] {
        let body =
            json!({"inputs": [{"name": "x", "shape": [1, 64], "datatype": dt, "data": [ints]}]});
        let (status, v) = json_call(&app, "POST", "/v2/models/digits/infer", &body).await;
        assert_eq!(status, 200, "{dt}: {v}");
        assert_eq!(v["outputs"][0]["data"][0], label.as_str(), "{dt}");
    }

    // Binary: the JSON header, then 64 little-endian f32 values.
    let header = json!({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
        "parameters": {"binary_data_size": 256}}], "outputs": [{"name": "label", "parameters": {"binary_data": false}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    for x in row {
        body.extend_from_slice(&(*x as f32).to_le_bytes());
    }
    let len = header.len().to_string();
    let (status, _, b) = send(
        &app,
        "POST",
        "/v2/models/digits/infer",
        &[
            ("inference-header-content-length", len.as_str()),
            ("content-type", "application/octet-stream"),
        ],
        body.clone(),
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["outputs"].as_array().unwrap().len(),
        1,
        "only `label` was asked for"
    );
    assert_eq!(v["outputs"][0]["data"][0], label.as_str());

    // A NaN in the binary data is named by row and feature.
    let mut nan = header.clone().into_bytes();
    for (j, x) in row.iter().enumerate() {
        let x = if j == 5 { f32::NAN } else { *x as f32 };
        nan.extend_from_slice(&x.to_le_bytes());
    }
    let (status, _, b) = send(
        &app,
        "POST",
        "/v2/models/digits/infer",
        &[("inference-header-content-length", len.as_str())],
        nan,
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"], "row 0: feature 5 is not a finite number");

    // Too few bytes for the shape.
    body.truncate(body.len() - 4);
    let (status, _, b) = send(
        &app,
        "POST",
        "/v2/models/digits/infer",
        &[("inference-header-content-length", len.as_str())],
        body,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&b));
}

#[tokio::test]
async fn v2_errors_have_the_protocol_shape_and_name_row_and_feature() {
    let (app, _, d, _) = digits();
    let row = &d.rows[0];
    let two: Vec<f64> = row.iter().chain(row.iter().take(63)).copied().collect();
    let cases = [
        (
            json!({"inputs": [{"name": "x", "shape": [2, 63], "datatype": "FP64", "data": &two[..126]}]}),
            422,
            "expected 64 features, got 63",
        ),
        (
            json!({"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP64", "data": two}]}),
            400,
            "needs 128 values, got 127",
        ),
        (
            json!({"inputs": [{"name": "x", "shape": [64], "datatype": "FP64", "data": row}]}),
            400,
            "is not [N, F]",
        ),
        (
            json!({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "INT8", "data": [vec![1000; 64]]}]}),
            400,
            "element 0 (1000) is not a I8 value",
        ),
        (json!({"inputs": []}), 400, "exactly one input"),
        (
            json!({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": row}], "outputs": [{"name": "logits"}]}),
            400,
            "unknown output \"logits\"",
        ),
        (json!({"nope": 1}), 400, "invalid inference request"),
    ];
    for (body, status, needle) in cases {
        let (s, v) = json_call(&app, "POST", "/v2/models/digits/infer", &body).await;
        assert_eq!(s, status, "{body}: {v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not the V2 shape: {v}"));
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    }
    let (s, _, b) = send(
        &app,
        "POST",
        "/v2/models/digits/infer",
        &[("content-type", "application/json")],
        r#"{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1e999]}]}"#,
    )
    .await;
    assert_eq!(s, 422, "{}", String::from_utf8_lossy(&b));
    let (s, v) = json_call(&app, "GET", "/v2/models/other", &Value::Null).await;
    assert_eq!((s, v["error"].as_str().is_some()), (404, true), "{v}");
}

#[tokio::test]
async fn mlflow_formats_agree_with_predict() {
    let (app, state, d, test) = digits();
    let rows: Vec<Vec<f64>> = test[..20].iter().map(|&i| d.rows[i].clone()).collect();
    let expected: Vec<Value> = state
        .model()
        .predict_batch(&rows)
        .unwrap()
        .iter()
        .map(|p| json!(state.model().label(p).parse::<i64>().unwrap()))
        .collect();
    let served = state.model();
    let names = &served.artifact().feature_names;

    // Columns in reverse order: matched by name.
    let rev_names: Vec<&String> = names.iter().rev().collect();
    let rev_rows: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().rev().copied().collect())
        .collect();
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            Value::Object(
                names
                    .iter()
                    .cloned()
                    .zip(r.iter().map(|x| json!(x)))
                    .collect(),
            )
        })
        .collect();
    let columnar: serde_json::Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(j, n)| {
            (
                n.clone(),
                json!(rows.iter().map(|r| r[j]).collect::<Vec<_>>()),
            )
        })
        .collect();
    let positional: Vec<usize> = (0..64).collect();
    for body in [
        json!({"dataframe_split": {"columns": rev_names, "data": rev_rows, "index": (0..20).collect::<Vec<_>>()}}),
        json!({"dataframe_split": {"columns": positional, "data": rows}}),
        json!({"dataframe_split": {"data": rows}}),
        json!({"dataframe_records": records}),
        json!({"instances": rows}),
        json!({"instances": records}),
        json!({"inputs": rows, "params": {"x": 1}}),
        json!({"inputs": columnar}),
    ] {
        let (s, v) = json_call(&app, "POST", "/invocations", &body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["predictions"],
            json!(expected),
            "{}",
            &body.to_string()[..60]
        );
    }

    // CSV with a header in another order, and without a header.
    let mut with_header = rev_names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    // A frame without names, as pandas writes it: the header is the positions. (The
    // first line is always the header, as MLflow reads CSV with pandas.)
    let mut positional = (0..64).map(|j| j.to_string()).collect::<Vec<_>>().join(",");
    positional.push('\n');
    for (r, rr) in rows.iter().zip(&rev_rows) {
        with_header.push_str(&format!(
            "\r\n{}",
            rr.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
        ));
        positional.push_str(&format!(
            "{}\n",
            r.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
        ));
    }
    for csv in [with_header, positional] {
        let (s, _, b) = send(
            &app,
            "POST",
            "/invocations",
            &[("content-type", "text/csv; charset=utf-8")],
            csv,
        )
        .await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["predictions"], json!(expected));
    }

    let (s, _, b) = send(&app, "GET", "/ping", &[], "").await;
    assert_eq!((s, b.as_slice()), (200, &b"\n"[..]));
}

#[tokio::test]
async fn mlflow_errors_name_row_and_feature() {
    let (app, _, d, _) = digits();
    let row = &d.rows[0];
    let short: Vec<f64> = row[..60].to_vec();
    let mut rec = serde_json::Map::new();
    for j in 0..63 {
        rec.insert(format!("pixel_{j}"), json!(1));
    }
    let mut with_null = row.iter().map(|x| json!(x)).collect::<Vec<_>>();
    with_null[9] = Value::Null;
    let cases = [
        (
            json!({"instances": [row, short]}),
            422,
            "row 1: expected 64 features, got 60",
        ),
        (
            json!({"dataframe_records": [rec]}),
            422,
            "row 0: missing feature \"pixel_63\"",
        ),
        (
            json!({"dataframe_split": {"data": [row, with_null]}}),
            422,
            "row 1: feature 9 is not a finite number",
        ),
        (
            json!({"dataframe_split": {"columns": ["a"], "data": [[1]]}}),
            422,
            "unknown column \"a\"",
        ),
        (
            json!({"instances": [row], "inputs": [row]}),
            422,
            "exactly one of",
        ),
        (
            json!({"instances": [["x"]]}),
            422,
            "row 0: column 0: \"x\" is not a number",
        ),
        (json!([1]), 422, "expected a JSON object"),
    ];
    for (body, status, needle) in cases {
        let (s, v) = json_call(&app, "POST", "/invocations", &body).await;
        assert_eq!(s, status, "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE");
    }
    let (s, _, b) = send(
        &app,
        "POST",
        "/invocations",
        &[("content-type", "text/csv")],
        format!(
            "{}\n3,x{}\n",
            (0..64).map(|j| j.to_string()).collect::<Vec<_>>().join(","),
            ",0".repeat(62)
        ),
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s, 422);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("CSV line 2, column 2"),
        "{v}"
    );
    let (s, v) = json_call(&app, "POST", "/invocations", &json!(null)).await;
    assert_eq!(s, 422, "{v}");
    let (s, _, b) = send(
        &app,
        "POST",
        "/invocations",
        &[("content-type", "application/json")],
        "{",
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (s, v["error_code"].as_str()),
        (400, Some("MALFORMED_REQUEST"))
    );
}

#[tokio::test]
async fn every_protocol_keeps_the_body_limit() {
    let (_, _, a) = support::digits_model();
    let state = support::state_for(&a).with_limits(1000, Duration::from_secs(10));
    let app = predict::app(state);
    let big = format!("[{}]", "1.0,".repeat(400) + "1");
    for (path, ct, body) in [
        (
            "/predict",
            "application/json",
            format!("{{\"image\": {big}}}"),
        ),
        (
            "/invocations",
            "application/json",
            format!("{{\"instances\": [{big}]}}"),
        ),
        ("/invocations", "text/csv", "1.0,".repeat(400)),
        (
            "/v2/models/digits/infer",
            "application/json",
            format!(
                "{{\"inputs\": [{{\"name\":\"x\",\"shape\":[1,401],\"datatype\":\"FP64\",\"data\":{big}}}]}}"
            ),
        ),
    ] {
        // Declared length over the limit, and a chunked body (no length) over it.
        let (s, _, _) = send(&app, "POST", path, &[("content-type", ct)], body.clone()).await;
        assert_eq!(s, 413, "{path} {ct}");
        let stream = Body::from_stream(futures_stream(body.as_bytes()));
        let (s, _, _) = send(&app, "POST", path, &[("content-type", ct)], stream).await;
        assert_eq!(s, 413, "{path} {ct} chunked");
    }
}

/// A body in 100-byte chunks with no declared length.
fn futures_stream(
    bytes: &[u8],
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Chunks(Vec<Vec<u8>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(if self.0.is_empty() {
                None
            } else {
                Some(Ok(self.0.remove(0)))
            })
        }
    }
    Chunks(bytes.chunks(100).map(<[u8]>::to_vec).collect())
}

#[tokio::test]
async fn metrics_count_requests_latencies_and_predictions() {
    let (app, state, d, _) = digits();
    let row = &d.rows[0];
    let label = state
        .model()
        .label(&state.model().predict(row).unwrap())
        .to_string();
    for _ in 0..3 {
        let (s, _) = json_call(
            &app,
            "POST",
            "/invocations",
            &json!({"instances": [row, row]}),
        )
        .await;
        assert_eq!(s, 200);
    }
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": row}]});
    let (s, _) = json_call(&app, "POST", "/v2/models/digits/infer", &body).await;
    assert_eq!(s, 200);
    let (s, _) = json_call(&app, "POST", "/v2/models/nope/infer", &body).await;
    assert_eq!(s, 404);
    let (s, _) = json_call(&app, "POST", "/predict", &json!({"image": [1]})).await;
    assert_eq!(s, 422);
    let (s, _) = json_call(&app, "POST", "/predict", &json!({"image": row})).await;
    assert_eq!(s, 200);
    let (s, _) = json_call(&app, "POST", "/predict", &json!({"instances": [row, row]})).await;
    assert_eq!(s, 200);
    let (s, _) = json_call(&app, "GET", "/no/such/route", &Value::Null).await;
    assert_eq!(s, 404);

    let (s, ct, b) = send(&app, "GET", "/metrics", &[], "").await;
    assert_eq!(s, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = String::from_utf8(b).unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        "predict_http_requests_total{route=\"/invocations\",status=\"200\"} 3",
        "predict_http_requests_total{route=\"/v2/models/{name}/infer\",status=\"200\"} 1",
        "predict_http_requests_total{route=\"/v2/models/{name}/infer\",status=\"404\"} 1",
        "predict_http_requests_total{route=\"/predict\",status=\"422\"} 1",
        "predict_http_requests_total{route=\"/predict\",status=\"200\"} 2",
        "predict_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "predict_http_request_duration_seconds_bucket{route=\"/invocations\",status=\"200\",le=\"+Inf\"} 3",
        "predict_http_request_duration_seconds_count{route=\"/invocations\",status=\"200\"} 3",
        "# TYPE predict_http_request_duration_seconds histogram",
        &format!("predict_predictions_total{{class=\"{label}\"}} 10"),
    ] {
        assert!(has(line), "missing {line:?} in\n{text}");
    }
    let served = state.model();
    let a = served.artifact();
    assert!(
        text.contains(&format!(
            "predict_model_info{{name=\"digits\",version=\"{}\",model_id=\"{}\"",
            state.version(),
            a.model_id
        )),
        "{text}"
    );
    assert!(
        text.contains("predict_model_loaded_timestamp_seconds{model_id="),
        "{text}"
    );
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let (app, _, _, _) = digits();
    for (method, path, allow) in [
        ("GET", "/invocations", "POST"),
        ("POST", "/ping", "GET,HEAD"),
        ("GET", "/v2/models/digits/infer", "POST"),
        ("DELETE", "/v2/models/digits", "GET,HEAD"),
        ("POST", "/metrics", "GET,HEAD"),
        ("PUT", "/docs", "GET,HEAD"),
    ] {
        let res = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()[header::ALLOW], allow, "{method} {path}");
    }
}

/// `/invocations` against hostile and odd bodies (issue 16): MLflow's CSV header rule,
/// CSV details, a 415 that names CSV, the row cap, and bodies that used to allocate far
/// more than their size.
#[tokio::test]
async fn mlflow_invocations_read_hostile_bodies_within_their_bounds() {
    let (_, _, a) = support::digits_model();
    let state = support::state_for(&a).with_max_batch_rows(3);
    let app = predict::app(state.clone());
    let served = state.model();
    let names = &served.artifact().feature_names;
    let row = |x: &str| vec![x; 64].join(",");
    let csv = |body: String| {
        let app = app.clone();
        async move {
            let (s, _, b) = send(
                &app,
                "POST",
                "/invocations",
                &[("content-type", "text/csv")],
                body,
            )
            .await;
            (
                s,
                serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
            )
        }
    };

    // The first line is always the header: a headerless body is refused, naming line 1.
    let (s, v) = csv(format!("{}\n{}\n", row("1.5"), row("2"))).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("CSV line 1, column 1: unknown column \"1.5\""),
        "{v}"
    );
    // A byte-order mark, quoted names, CRLF and bare CR line ends, blank lines.
    let quoted = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(",");
    let body = format!("\u{feff}{quoted}\r\n{}\r\r\n{}\r", row("1"), row("2"));
    let (s, v) = csv(body).await;
    assert_eq!(
        (s, v["predictions"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{v}"
    );
    // A ragged record names its line (bare CRs count as line ends).
    let (s, v) = csv(format!("{}\r{}\r\r{}\r", names.join(","), row("1"), "1,2")).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("row 1 (CSV line 4): expected 64 values"),
        "{v}"
    );
    // More rows than MAX_BATCH_ROWS: 413, in CSV and JSON.
    let (s, v) = csv(format!(
        "{}\n{}",
        names.join(","),
        format!("{}\n", row("0")).repeat(4)
    ))
    .await;
    assert_eq!(
        (s, v["error_code"].as_str()),
        (413, Some("REQUEST_LIMIT_EXCEEDED")),
        "{v}"
    );
    let r = vec![0; 64];
    let (s, _) = json_call(
        &app,
        "POST",
        "/invocations",
        &json!({"instances": [r, r, r, r]}),
    )
    .await;
    assert_eq!(s, 413);
    let (s, _) = json_call(
        &app,
        "POST",
        "/invocations",
        &json!({"instances": [r, r, r]}),
    )
    .await;
    assert_eq!(s, 200);

    // The 415 names both content types; a charset other than UTF-8 is refused too.
    for ct in ["text/plain", "application/xml", "text/csv; charset=latin1"] {
        let (s, _, b) = send(&app, "POST", "/invocations", &[("content-type", ct)], "{}").await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (s, v["error_code"].as_str()),
            (415, Some("BAD_REQUEST")),
            "{ct}: {v}"
        );
        let m = v["message"].as_str().unwrap();
        assert!(m.contains("text/csv") || m.contains("UTF-8"), "{ct}: {m}");
    }

    // Bodies that made the old parser allocate hundreds of times their size: a columnar
    // frame whose first column is long (rows x features was allocated from it), and a
    // CSV record of nothing but commas. Both are refused, naming what is wrong.
    let long = format!(
        "{{\"inputs\": {{\"pixel_0\": [{}], \"pixel_1\": [0]}}}}",
        vec!["0"; 400_000].join(",")
    );
    let (s, _, b) = send(
        &app,
        "POST",
        "/invocations",
        &[("content-type", "application/json")],
        long,
    )
    .await;
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&b));
    let state = support::state_for(&a)
        .with_limits(1 << 20, Duration::from_secs(10))
        .with_max_batch_rows(1_000_000);
    let app = predict::app(state);
    let first = vec!["0"; 400_000].join(",");
    let long = format!("{{\"inputs\": {{\"pixel_0\": [{first}], \"pixel_1\": [0]}}}}");
    let (s, _, b) = send(
        &app,
        "POST",
        "/invocations",
        &[("content-type", "application/json")],
        long,
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("column \"pixel_1\" has 1 values, the first column 400000"),
        "{v}"
    );
    let commas = format!("{}\n{}\n", names.join(","), ",".repeat(900_000));
    let (s, _, b) = send(
        &app,
        "POST",
        "/invocations",
        &[("content-type", "text/csv")],
        commas,
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("CSV line 2: a record longer than"),
        "{v}"
    );
}
