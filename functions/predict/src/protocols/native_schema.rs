//! The OpenAPI schemas of the project's own routes (`POST /predict`, `GET /health`,
//! `GET /model`): types that describe bodies for the document, never built at run time.
//! Below both `native` (whose handlers name them) and `openapi` (which lists them).

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};

/// `POST /predict` body: one of three shapes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Schemas only: the body is parsed by `request::parse`.
pub(crate) enum PredictRequest {
    /// The original's shape.
    Image(ImageBody),
    /// The same, named for what it is.
    Features(FeaturesBody),
    /// A batch.
    Instances(InstancesBody),
}

/// One row, as the original took it (64 pixels for digits).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ImageBody {
    /// The row's features, in the model's order.
    image: Vec<f64>,
}

/// One row.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct FeaturesBody {
    /// The row's features, in the model's order.
    features: Vec<f64>,
}

/// Many rows.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct InstancesBody {
    /// Rows of features.
    instances: Vec<Vec<f64>>,
}

/// The answer for one row.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"predicted_class": 0, "label": "0", "probabilities": [0.9, 0.1]}))]
#[allow(dead_code)]
pub(crate) struct PredictAnswer {
    /// The label as an integer when every label is one (as the original answered);
    /// otherwise the class index.
    predicted_class: i64,
    /// The predicted class label.
    label: String,
    /// The probability of each class, in the order of `GET /model`'s `classes`.
    probabilities: Vec<f64>,
}

/// The answer for a batch (`instances`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct PredictBatch {
    /// One answer a row, in order.
    predictions: Vec<PredictAnswer>,
}

/// `POST /predict` answer: one answer, or a batch for `instances`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum PredictResponse {
    /// For `image` and `features`.
    One(PredictAnswer),
    /// For `instances`.
    Batch(PredictBatch),
}

/// The stable machine-readable error codes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ErrorCode {
    /// 400.
    MalformedJson,
    /// 400.
    BodyReadError,
    /// 422.
    InvalidBody,
    /// 422.
    WrongFeatureCount,
    /// 422.
    NonFiniteValue,
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 408.
    Timeout,
    /// 401: API keys are configured and the request has none, or an unknown one.
    Unauthorized,
    /// 413: a batch over `MAX_BATCH_ROWS`.
    TooManyRows,
    /// 415: a `Content-Encoding` other than gzip, deflate or identity.
    UnsupportedEncoding,
    /// 503: at `MAX_IN_FLIGHT` or `MAX_CONNECTIONS`; retry after `Retry-After`.
    Overloaded,
}

/// An error's code and message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ErrorDetail {
    /// Stable, for programs.
    code: ErrorCode,
    /// For people; names the row and the feature when the input is at fault.
    message: String,
}

/// The error body of the `predict` routes (and of unknown routes).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"error": {"code": "wrong_feature_count", "message": "expected 64 features, got 3"}}))]
#[allow(dead_code)]
pub(crate) struct ErrorResponse {
    /// What went wrong.
    error: ErrorDetail,
}

/// `GET /health` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct Health {
    /// `ok`.
    status: String,
    /// The served model's id (sha256 of its content).
    model_id: String,
    /// The served model's version.
    version: String,
}

/// `GET /model` answer: the artifact's metadata, without weights.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ModelInfo {
    /// Model name.
    name: String,
    /// Version served.
    version: String,
    /// sha256 of the artifact's canonical content.
    model_id: String,
    /// Where it was loaded from.
    source: String,
    /// Artifact format version.
    format_version: u32,
    /// When it was trained (RFC 3339).
    created_at: String,
    /// Class labels, sorted; the order of `probabilities`.
    classes: Vec<String>,
    /// Feature names, in input order.
    feature_names: Vec<String>,
    /// Number of features a row must have.
    n_features: usize,
    /// sha256 of the training data.
    data_sha256: String,
    /// Evaluation metrics recorded by the trainer.
    #[schema(value_type = Object)]
    metrics: Value,
    /// Training parameters.
    #[schema(value_type = Object)]
    training: Value,
}

/// Responses of `POST /predict`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum PredictResponses {
    /// One answer for `image` / `features`; `{"predictions": [...]}` for `instances`.
    #[response(status = 200)]
    Ok(PredictResponse),
    /// Malformed JSON, or the body could not be read.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// The request took longer than the timeout.
    #[response(status = 408)]
    Timeout(ErrorResponse),
    /// The body is over the limit (1 MiB by default, also once decoded), or the batch
    /// over `MAX_BATCH_ROWS`.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// The content type is not JSON, or the content coding is not gzip, deflate or
    /// identity.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorResponse),
    /// Not an accepted shape, a wrong feature count or a non-finite value.
    #[response(status = 422)]
    Unprocessable(ErrorResponse),
    /// API keys are configured and the request has none, or an unknown one.
    #[response(status = 401)]
    Unauthorized(ErrorResponse),
    /// At `MAX_IN_FLIGHT` requests; retry after `Retry-After` seconds.
    #[response(status = 503)]
    Overloaded(ErrorResponse),
}

/// Responses of `GET /health`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum HealthResponses {
    /// The model is loaded (always, once the server answers).
    #[response(status = 200)]
    Ok(Health),
}

/// Responses of `GET /model`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum ModelResponses {
    /// The served model's metadata.
    #[response(status = 200)]
    Ok(ModelInfo),
}
