//! The protocols other tools already speak, on the same loaded model as `POST /predict`,
//! with the same validation (the model crate's errors, naming row and feature) and the
//! same body limit and body-read timeout (`crate::read_limited`, which `/predict` uses):
//!
//! - [`v2`]: the Open Inference Protocol (KServe V2 / Triton HTTP), under `/v2`;
//! - [`mlflow`]: MLflow / SageMaker scoring, `GET /ping` and `POST /invocations`;
//! - [`metrics`]: Prometheus `GET /metrics`, and the layer that records every request;
//! - [`openapi`] and [`docs`]: `GET /openapi.json`, generated from the handlers, and the
//!   interactive page `GET /docs` that reads it. Every asset is compiled into the binary.
//!
//! `app()` merges [`routes`] and applies [`metrics_layer`]; nothing here changes how
//! `/predict`, `/health` or `/model` answer.

pub(crate) mod docs;
pub(crate) mod metrics;
pub(crate) mod mlflow;
pub(crate) mod openapi;
pub(crate) mod v2;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::get;

use crate::{AppError, AppState};

pub(crate) use metrics::Predicted;

/// Every route of this module, to merge into `app()`'s router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .merge(v2::routes())
        .merge(mlflow::routes())
        .merge(docs::routes())
        .route("/metrics", get(metrics::handler))
}

/// The layer that counts requests, latencies and predictions; see [`metrics`].
pub(crate) fn metrics_layer(state: &AppState) -> metrics::MetricsLayer {
    metrics::MetricsLayer::new(state)
}

/// Methods each route of this module answers, for the `Allow` header of a 405.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/invocations" => Some("POST"),
        "/ping" | "/metrics" | "/openapi.json" | "/docs" | "/docs/app.js" | "/docs/app.css"
        | "/v2" | "/v2/health/live" | "/v2/health/ready" => Some("GET,HEAD"),
        p if p.starts_with("/v2/models/") && p.ends_with("/infer") => Some("POST"),
        p if p.starts_with("/v2/models/") => Some("GET,HEAD"),
        _ => None,
    }
}

/// The media type of a request, lower-cased and without parameters (`None` when absent).
pub(crate) fn media_type(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| {
        AppError::UnsupportedMediaType(String::from_utf8_lossy(v.as_bytes()).into())
    })?;
    Ok(Some(
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    ))
}

/// True for `application/json` and `application/*+json`.
pub(crate) fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// A `serde_json` error on a request body, classified as `POST /predict` classifies its
/// own: syntax errors are malformed JSON (400); a number too large for an `f64` is a
/// non-finite value (422); the rest is a body of the wrong shape (422).
pub(crate) fn json_error(e: &serde_json::Error) -> AppError {
    use serde_json::error::Category;
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        return AppError::NonFinite(format!("a number is not finite ({msg})"));
    }
    match e.classify() {
        Category::Data => AppError::InvalidBody(msg),
        Category::Syntax | Category::Eof | Category::Io => AppError::MalformedJson(msg),
    }
}

/// The answer for a class index: the label as a JSON integer when every label is one
/// (as `predicted_class` in `POST /predict`), the label string otherwise.
pub(crate) fn label_value(state: &AppState, class_index: usize) -> serde_json::Value {
    if state
        .inner
        .model
        .classes()
        .iter()
        .all(|c| c.parse::<i64>().is_ok())
    {
        serde_json::Value::from(state.predicted_class(class_index))
    } else {
        let label = state
            .inner
            .model
            .classes()
            .get(class_index)
            .map_or("", String::as_str);
        serde_json::Value::from(label)
    }
}
