//! Every route's real answers, checked against the OpenAPI document the app serves:
//! the status must be documented for that operation, the content type must be one the
//! document lists, and a JSON body must validate against the documented schema (JSON
//! Schema 2020-12, which OpenAPI 3.1 uses). Every documented operation must be exercised,
//! so a route cannot be added to the document without being checked here, and a route
//! answered without being documented fails the lookup.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A request (router, method, path, content type, body) and the status it must get.
type Case<'a> = (&'a Router, &'a str, String, Option<&'a str>, String, u16);

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn call(app: &Router, method: &str, path: &str, ct: Option<&str>, body: &str) -> Answer {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(ct) = ct {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    let res = app
        .clone()
        .oneshot(b.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// The document's path template matching a concrete path (`{x}` matches one segment).
fn template<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()?
        .keys()
        .map(String::as_str)
        .find(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segs.len()
                && ts
                    .iter()
                    .zip(&segs)
                    .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
        })
}

/// One JSON pointer reference token, escaped for a URI fragment.
fn esc(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Check one answer against the document; returns the operation's key.
fn check(doc: &Value, method: &str, path: &str, a: &Answer) -> String {
    let what = format!("{method} {path} -> {}", a.status);
    let t = template(doc, path).unwrap_or_else(|| panic!("{what}: path not documented"));
    let m = method.to_ascii_lowercase();
    let op = &doc["paths"][t][&m];
    assert!(op.is_object(), "{what}: {m} {t} not documented");
    let status = a.status.to_string();
    let response = &op["responses"][&status];
    assert!(
        response.is_object(),
        "{what}: status {status} not documented for {m} {t}; body {}",
        String::from_utf8_lossy(&a.body)
    );
    let media = a.content_type.split(';').next().unwrap().trim().to_string();
    let content = response["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: response has no documented content"));
    let documented = content
        .keys()
        .find(|k| k.split(';').next().unwrap().trim() == media)
        .unwrap_or_else(|| panic!("{what}: content type {media:?} not in {:?}", content.keys()));
    if media.ends_with("json") {
        let instance: Value = serde_json::from_slice(&a.body)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
        // Validate against the documented schema in place, so `$ref`s resolve within the
        // document: the root is the whole document plus a `$ref` to the schema.
        let pointer = format!(
            "#/paths/{}/{m}/responses/{status}/content/{}/schema",
            esc(t),
            esc(documented)
        );
        let mut root = doc.clone();
        root["$ref"] = json!(pointer);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: answer does not match the documented schema:\n{}\nanswer: {instance}",
            errors.join("\n")
        );
    } else {
        assert!(!a.body.is_empty() || a.status == 204, "{what}: empty body");
    }
    format!("{m} {t}")
}

#[tokio::test]
async fn every_route_answers_as_documented() {
    let (d, test, artifact) = support::digits_model();
    let state = support::state_for(&artifact);
    let version = state.version().to_string();
    let app = predict::app(state.clone());
    let small = predict::app(state.with_limits(512, Duration::from_secs(10)));

    let doc_answer = call(&app, "GET", "/openapi.json", None, "").await;
    assert_eq!(doc_answer.status, 200);
    let doc: Value = serde_json::from_slice(&doc_answer.body).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let row: Vec<f64> = d.rows[test[0]].clone();
    let row2: Vec<f64> = d.rows[test[1]].clone();
    let one = json!({ "image": row }).to_string();
    let feats = json!({ "features": row }).to_string();
    let batch = json!({ "instances": [row, row2] }).to_string();
    let flat: Vec<f64> = row.iter().chain(&row2).copied().collect();
    let infer = json!({"id": "x", "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": flat}]}).to_string();
    let infer_ints = json!({"inputs": [{"name": "in", "shape": [1, 64], "datatype": "INT32",
        "data": [row.iter().map(|x| *x as i64).collect::<Vec<_>>()]}], "outputs": [{"name": "label"}]})
    .to_string();
    let infer_short = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}).to_string();
    let infer_dtype =
        json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "BOOL", "data": row}]})
            .to_string();
    let split =
        json!({"dataframe_split": {"columns": artifact.feature_names, "data": [row, row2]}})
            .to_string();
    let records: Vec<Value> = [&row, &row2]
        .iter()
        .map(|r| {
            Value::Object(
                artifact
                    .feature_names
                    .iter()
                    .cloned()
                    .zip(r.iter().map(|x| json!(x)))
                    .collect(),
            )
        })
        .collect();
    let records = json!({ "dataframe_records": records }).to_string();
    let instances = json!({ "instances": [row] }).to_string();
    let inputs = json!({ "inputs": [row2] }).to_string();
    let csv = format!(
        "{}\n{}\n",
        artifact.feature_names.join(","),
        row.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
    );
    let unknown_col = json!({"dataframe_split": {"columns": ["nope"], "data": [[1]]}}).to_string();
    let big = format!("{{\"image\": [{}]}}", "0,".repeat(400) + "0");

    let j = Some("application/json");
    let cases: Vec<Case<'_>> = vec![
        (&app, "POST", "/predict".into(), j, one.clone(), 200),
        (&app, "POST", "/predict".into(), j, feats, 200),
        (&app, "POST", "/predict".into(), j, batch, 200),
        (&app, "POST", "/predict".into(), j, "{".into(), 400),
        (
            &app,
            "POST",
            "/predict".into(),
            j,
            r#"{"image": [1, 2]}"#.into(),
            422,
        ),
        (
            &app,
            "POST",
            "/predict".into(),
            j,
            r#"{"image": [1e999]}"#.into(),
            422,
        ),
        (
            &app,
            "POST",
            "/predict".into(),
            Some("text/plain"),
            one.clone(),
            415,
        ),
        (&small, "POST", "/predict".into(), j, big.clone(), 413),
        (&app, "GET", "/health".into(), None, String::new(), 200),
        (&app, "GET", "/model".into(), None, String::new(), 200),
        (&app, "GET", "/v2".into(), None, String::new(), 200),
        (
            &app,
            "GET",
            "/v2/health/live".into(),
            None,
            String::new(),
            200,
        ),
        (
            &app,
            "GET",
            "/v2/health/ready".into(),
            None,
            String::new(),
            200,
        ),
        (
            &app,
            "GET",
            "/v2/models/digits".into(),
            None,
            String::new(),
            200,
        ),
        (
            &app,
            "GET",
            "/v2/models/nope".into(),
            None,
            String::new(),
            404,
        ),
        (
            &app,
            "GET",
            "/v2/models/digits/ready".into(),
            None,
            String::new(),
            200,
        ),
        (
            &app,
            "GET",
            "/v2/models/nope/ready".into(),
            None,
            String::new(),
            404,
        ),
        (
            &app,
            "GET",
            format!("/v2/models/digits/versions/{version}"),
            None,
            String::new(),
            200,
        ),
        (
            &app,
            "GET",
            "/v2/models/digits/versions/0".into(),
            None,
            String::new(),
            404,
        ),
        (
            &app,
            "GET",
            format!("/v2/models/digits/versions/{version}/ready"),
            None,
            String::new(),
            200,
        ),
        (
            &app,
            "GET",
            "/v2/models/digits/versions/0/ready".into(),
            None,
            String::new(),
            404,
        ),
        (
            &app,
            "POST",
            "/v2/models/digits/infer".into(),
            j,
            infer.clone(),
            200,
        ),
        (
            &app,
            "POST",
            "/v2/models/digits/infer".into(),
            None,
            infer_ints,
            200,
        ),
        (
            &app,
            "POST",
            "/v2/models/digits/infer".into(),
            j,
            infer_short,
            422,
        ),
        (
            &app,
            "POST",
            "/v2/models/digits/infer".into(),
            j,
            infer_dtype,
            400,
        ),
        (
            &app,
            "POST",
            "/v2/models/digits/infer".into(),
            j,
            "{".into(),
            400,
        ),
        (
            &app,
            "POST",
            "/v2/models/digits/infer".into(),
            Some("text/csv"),
            infer.clone(),
            415,
        ),
        (
            &small,
            "POST",
            "/v2/models/digits/infer".into(),
            j,
            infer.clone(),
            413,
        ),
        (
            &app,
            "POST",
            "/v2/models/nope/infer".into(),
            j,
            infer.clone(),
            404,
        ),
        (
            &app,
            "POST",
            format!("/v2/models/digits/versions/{version}/infer"),
            j,
            infer.clone(),
            200,
        ),
        (
            &app,
            "POST",
            "/v2/models/digits/versions/0/infer".into(),
            j,
            infer,
            404,
        ),
        (&app, "GET", "/ping".into(), None, String::new(), 200),
        (&app, "POST", "/invocations".into(), j, split.clone(), 200),
        (&app, "POST", "/invocations".into(), j, records, 200),
        (&app, "POST", "/invocations".into(), j, instances, 200),
        (&app, "POST", "/invocations".into(), j, inputs, 200),
        (
            &app,
            "POST",
            "/invocations".into(),
            Some("text/csv"),
            csv,
            200,
        ),
        (&app, "POST", "/invocations".into(), j, "[".into(), 400),
        (&app, "POST", "/invocations".into(), j, unknown_col, 422),
        (
            &app,
            "POST",
            "/invocations".into(),
            Some("application/xml"),
            split.clone(),
            415,
        ),
        (&small, "POST", "/invocations".into(), j, split, 413),
        (&app, "GET", "/metrics".into(), None, String::new(), 200),
        (
            &app,
            "GET",
            "/openapi.json".into(),
            None,
            String::new(),
            200,
        ),
        (&app, "GET", "/docs".into(), None, String::new(), 200),
        (&app, "GET", "/docs/app.js".into(), None, String::new(), 200),
        (
            &app,
            "GET",
            "/docs/app.css".into(),
            None,
            String::new(),
            200,
        ),
    ];

    let mut exercised = BTreeSet::new();
    for (router, method, path, ct, body, expected) in &cases {
        let a = call(router, method, path, *ct, body).await;
        assert_eq!(
            a.status,
            *expected,
            "{method} {path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        exercised.insert(check(&doc, method, path, &a));
    }

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{method} {path}"));
        }
    }
    let missing: Vec<&String> = documented.difference(&exercised).collect();
    assert!(
        missing.is_empty(),
        "documented but not exercised: {missing:?}"
    );
}

#[tokio::test]
async fn document_has_examples_from_the_model_and_schemas_for_errors() {
    let (_, _, artifact) = support::digits_model();
    let app = predict::app(support::state_for(&artifact));
    let a = call(&app, "GET", "/openapi.json", None, "").await;
    let doc: Value = serde_json::from_slice(&a.body).unwrap();
    let example =
        &doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(example["image"].as_array().unwrap().len(), 64, "{example}");
    let params = doc["paths"]["/v2/models/{name}"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert_eq!(params[0]["example"], "digits");
    for (path, method, status, schema) in [
        ("/predict", "post", "422", "ErrorResponse"),
        ("/v2/models/{name}/infer", "post", "404", "V2Error"),
        ("/invocations", "post", "422", "MlflowError"),
    ] {
        let s = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
        assert_eq!(
            s["$ref"],
            format!("#/components/schemas/{schema}"),
            "{path} {status}: {s}"
        );
    }
    // Examples given in the document are valid requests: send the /predict one.
    let answer = call(
        &app,
        "POST",
        "/predict",
        Some("application/json"),
        &example.to_string(),
    )
    .await;
    assert_eq!(answer.status, 200);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        v["predicted_class"], 0,
        "the example is a handwritten zero: {v}"
    );
}
