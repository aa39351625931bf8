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
//! [`native`] is the project's own protocol: `/predict`, `/health` and `/model`.

pub(crate) mod docs;
pub(crate) mod metrics;
pub(crate) mod mlflow;
pub(crate) mod native;
pub(crate) mod native_schema;
pub(crate) mod openapi;
pub(crate) mod v2;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

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
