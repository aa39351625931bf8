//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the answer types' `ToSchema` derives, so it cannot
//! drift from the code. `POST /predict`'s body is parsed by a hand-written visitor (for
//! speed), so its shapes are described here by types of their own; the test
//! `tests/openapi.rs` checks every route's real answers against this document.
//!
//! Built once, on the first request, with examples taken from the loaded model (its
//! name, its feature count, a real input row), and served as bytes after that.

use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::native_schema::{
    ErrorCode, ErrorDetail, ErrorResponse, FeaturesBody, Health, ImageBody, InstancesBody,
    ModelInfo, PredictAnswer, PredictBatch, PredictRequest, PredictResponse,
};
use super::{docs, mlflow, native, v2};
use crate::served::Served;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "predict: the digits classifier",
        description = "A logistic-regression classifier served from one loaded model, \
            over its own JSON API (`/predict`), the Open Inference Protocol (KServe V2, `/v2`) \
            and MLflow / SageMaker scoring (`/invocations`), with Prometheus metrics. \
            Every route validates input the same way: a wrong feature count or a non-finite \
            value is refused with a message naming the row and the feature.",
    ),
    paths(
        native::predict,
        native::health,
        native::metadata,
        v2::server_metadata,
        v2::live,
        v2::ready,
        v2::model_metadata,
        v2::model_ready,
        v2::infer,
        v2::model_metadata_version,
        v2::model_ready_version,
        v2::infer_version,
        mlflow::ping,
        mlflow::invocations,
        metrics_doc,
        openapi_json,
        docs::page,
        docs::script,
        docs::style,
    ),
    components(schemas(
        PredictRequest, ImageBody, FeaturesBody, InstancesBody,
        PredictResponse, PredictAnswer, PredictBatch,
        ErrorResponse, ErrorDetail, ErrorCode, Health, ModelInfo,
    )),
    tags(
        (name = "predict", description = "The original API: `POST /predict`, health and model metadata."),
        (name = "Open Inference Protocol (KServe V2)", description = "For KServe, Triton clients and gateways that speak V2."),
        (name = "MLflow / SageMaker scoring", description = "For MLflow's scoring clients and SageMaker endpoints."),
        (name = "operations", description = "Metrics and these docs."),
    )
)]
struct ApiDoc;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Request counts and latency histograms per route and status, \
        predictions per class, the model's id and load time",
        body = String, content_type = "text/plain; version=0.0.4")))]
#[allow(dead_code)] // Documents `metrics::handler`, which takes the metrics from the layer.
fn metrics_doc() {}

/// This document: OpenAPI 3.1, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub(crate) async fn openapi_json(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<OnceLock<Bytes>>>,
) -> Response {
    let body = cache
        .get_or_init(|| {
            serde_json::to_vec(&document(&state))
                .unwrap_or_default()
                .into()
        })
        .clone();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Summaries of the original routes, whose handlers are documented in their own module.
const SUMMARIES: &[(&str, &str, &str, &str)] = &[
    (
        "/predict",
        "post",
        "Predict one row or a batch",
        "`{\"image\": [...]}` (the original's body) or `{\"features\": [...]}` for one row, \
         answered with `predicted_class`, `label` and `probabilities`; \
         `{\"instances\": [[...], ...]}` for a batch, answered with `{\"predictions\": [...]}`.",
    ),
    (
        "/health",
        "get",
        "Health",
        "200 once the model is loaded, which is before the first request is accepted.",
    ),
    (
        "/model",
        "get",
        "Model metadata",
        "The served model's name, version, id, classes, features, metrics and training \
         parameters; no weights.",
    ),
];

/// The document for the model `state` serves, with examples from it.
pub(crate) fn document(state: &AppState) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    for (path, method, summary, description) in SUMMARIES {
        if let Some(op) = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(*path))
            .and_then(|p| p.get_mut(*method))
        {
            op["summary"] = json!(summary);
            op["description"] = json!(description);
        }
    }

    let model = state.served();
    let a = model.artifact();
    let row = example_row(&model);
    let rows = vec![row.clone(), row.clone()];
    let f = row.len();
    let name = a.name.clone();
    set_example(
        &mut doc,
        "/predict",
        "post",
        "application/json",
        json!({ "image": row }),
    );
    let infer = json!({
        "id": "example",
        "inputs": [{ "name": "input", "shape": [1, f], "datatype": "FP32", "data": row }],
    });
    set_example(
        &mut doc,
        "/v2/models/{name}/infer",
        "post",
        "application/json",
        infer.clone(),
    );
    set_example(
        &mut doc,
        "/v2/models/{name}/versions/{version}/infer",
        "post",
        "application/json",
        infer,
    );
    set_example(
        &mut doc,
        "/invocations",
        "post",
        "application/json",
        json!({ "dataframe_split": { "columns": a.feature_names, "data": rows } }),
    );
    let mut csv = a.feature_names.join(",");
    for r in &rows {
        csv.push('\n');
        csv.push_str(&r.iter().map(f64::to_string).collect::<Vec<_>>().join(","));
    }
    csv.push('\n');
    set_example(&mut doc, "/invocations", "post", "text/csv", json!(csv));

    // Path parameters: this model's name and version.
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                    continue;
                };
                for p in params {
                    match p.get("name").and_then(Value::as_str) {
                        Some("name") => p["example"] = json!(name),
                        Some("version") => p["example"] = json!(model.version()),
                        _ => {}
                    }
                }
            }
        }
    }
    doc
}

fn set_example(doc: &mut Value, path: &str, method: &str, media: &str, example: Value) {
    if let Some(content) = doc
        .get_mut("paths")
        .and_then(|p| p.get_mut(path))
        .and_then(|p| p.get_mut(method))
        .and_then(|op| op.get_mut("requestBody"))
        .and_then(|b| b.get_mut("content"))
        .and_then(|c| c.get_mut(media))
    {
        content["example"] = example;
    }
}

/// A handwritten zero from the digits data (its first row), 8x8 pixels of 0..16.
const DIGIT_ZERO: [f64; 64] = [
    0., 0., 5., 13., 9., 1., 0., 0., 0., 0., 13., 15., 10., 15., 5., 0., 0., 3., 15., 2., 0., 11.,
    8., 0., 0., 4., 12., 0., 0., 8., 8., 0., 0., 5., 8., 0., 0., 9., 8., 0., 0., 4., 11., 0., 1.,
    12., 7., 0., 0., 2., 14., 5., 10., 12., 0., 0., 0., 0., 6., 13., 10., 0., 0., 0.,
];

/// A valid input row for examples: a real digit for a 64-pixel model, else the training
/// mean (finite and of the right length by construction).
fn example_row(model: &Served) -> Vec<f64> {
    let a = model.artifact();
    if a.n_features() == DIGIT_ZERO.len() && a.feature_names.first().is_some_and(|n| n == "pixel_0")
    {
        DIGIT_ZERO.to_vec()
    } else {
        a.scaler
            .mean
            .iter()
            .map(|m| (m * 100.0).round() / 100.0)
            .collect()
    }
}
