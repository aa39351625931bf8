//! The project's own protocol: `POST /predict` (the original's body and its extensions),
//! `GET /health` and `GET /model`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Serialize;

use super::metrics::Predicted;
use crate::body::{check_content_type, read_limited};
use crate::error::AppError;
use crate::model_version::HEADER as MODEL_VERSION;
use crate::request::{self, Input};
use crate::state::AppState;

fn json(body: impl Into<Body>) -> Response {
    let mut res = Response::new(body.into());
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "predict",
    responses(super::native_schema::HealthResponses)
)]
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    json(state.served().health_body())
}

#[utoipa::path(
    get,
    path = "/model",
    tag = "predict",
    responses(super::native_schema::ModelResponses)
)]
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    json(state.metadata_body())
}

#[derive(Serialize)]
struct Answer<'a> {
    predicted_class: i64,
    label: &'a str,
    probabilities: &'a [f64],
}

#[derive(Serialize)]
struct Batch<'a> {
    predictions: Vec<Answer<'a>>,
}

#[utoipa::path(post, path = "/predict", tag = "predict", request_body = super::native_schema::PredictRequest, responses(super::native_schema::PredictResponses))]
pub(crate) async fn predict(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, AppError> {
    let (parts, body) = req.into_parts();
    check_content_type(&parts.headers)?;
    let bytes = read_limited(&state, &parts.headers, body).await?;
    let model = &state.served();
    let (out, predicted) =
        match request::parse_with_max_rows(&bytes, model.n_features(), state.max_batch_rows())? {
            Input::One(row) => {
                let p = model.predict(&row)?;
                let answer = Answer {
                    predicted_class: model.predicted_class(p.class_index),
                    label: model.label(&p),
                    probabilities: &p.probabilities,
                };
                let mut out = Vec::with_capacity(64 + 24 * p.probabilities.len());
                serde_json::to_writer(&mut out, &answer)
                    .map_err(|e| AppError::BodyRead(e.to_string()))?;
                (out, Predicted::One(p.class_index))
            }
            Input::Many(rows) => {
                let preds = model.predict_batch(&rows)?;
                let batch = Batch {
                    predictions: preds
                        .iter()
                        .map(|p| Answer {
                            predicted_class: model.predicted_class(p.class_index),
                            label: model.label(p),
                            probabilities: &p.probabilities,
                        })
                        .collect(),
                };
                let mut out =
                    Vec::with_capacity(32 + preds.len() * (64 + 24 * model.classes().len()));
                serde_json::to_writer(&mut out, &batch)
                    .map_err(|e| AppError::BodyRead(e.to_string()))?;
                (
                    out,
                    Predicted::Many(preds.iter().map(|p| p.class_index).collect()),
                )
            }
        };
    // Counted per class by the metrics layer.
    let mut res = json(out);
    res.headers_mut()
        .insert(MODEL_VERSION, model.version_header());
    res.extensions_mut().insert(predicted);
    Ok(res)
}
