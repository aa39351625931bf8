//! The Open Inference Protocol (KServe V2, as Triton's HTTP clients speak it) over the
//! loaded model: health, server and model metadata, readiness and `infer`.
//!
//! `infer` takes one input tensor of shape `[N, F]` (F = the model's features) with
//! datatype FP32, FP64 or any INT / UINT, as JSON `data` (flat in row-major order, or
//! nested) or in the binary tensor extension (`Inference-Header-Content-Length`), and
//! answers two outputs: `label` (BYTES, `[N]`) and `probabilities` (FP64, `[N, C]`).
//! Errors are the protocol's `{"error": "..."}` with the status `POST /predict` would
//! give the same mistake; an unknown model or version is 404.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Predicted, is_json, json_error, media_type};
use crate::read_limited;
use crate::{AppError, AppState};

/// The name of the one input in the model metadata (any name is accepted).
const INPUT_NAME: &str = "input";
/// The binary tensor extension's header: the length of the JSON part of the body.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The `/v2` routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_version),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_version),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
}

/// A V2 error: `{"error": "message"}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "row 0: expected 64 features, got 3"}))]
pub(crate) struct V2Error {
    /// What went wrong, for people.
    error: String,
    #[serde(skip)]
    status: StatusCode,
}

impl V2Error {
    fn new(status: StatusCode, error: String) -> Self {
        Self { error, status }
    }
    fn bad(error: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }
}

impl From<AppError> for V2Error {
    fn from(e: AppError) -> Self {
        Self::new(e.status(), e.to_string())
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        json_response(status, body)
    }
}

fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn ok_json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(b) => json_response(StatusCode::OK, b),
        Err(e) => V2Error::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /v2` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerMetadata {
    /// Server name.
    name: &'static str,
    /// Server version.
    version: &'static str,
    /// Protocol extensions supported.
    extensions: Vec<&'static str>,
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "Open Inference Protocol (KServe V2)",
    responses((status = 200, description = "Server name, version and extensions", body = ServerMetadata)))]
pub(crate) async fn server_metadata() -> Response {
    ok_json(&ServerMetadata {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data"],
    })
}

/// `GET /v2/health/live` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Live {
    /// Always true once the server answers.
    live: bool,
}

/// `GET /v2/health/ready` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ready {
    /// True: the model is loaded before the first request is accepted.
    ready: bool,
}

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/v2/health/live", tag = "Open Inference Protocol (KServe V2)",
    responses((status = 200, description = "The server is live", body = Live)))]
pub(crate) async fn live() -> Response {
    ok_json(&Live { live: true })
}

/// Readiness: 200 once the model is loaded, which is before the first request.
#[utoipa::path(get, path = "/v2/health/ready", tag = "Open Inference Protocol (KServe V2)",
    responses((status = 200, description = "The server is ready", body = Ready)))]
pub(crate) async fn ready() -> Response {
    ok_json(&Ready { ready: true })
}

/// A model name and, on `/versions/` routes, a version.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelRef {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

/// The model `r` names, or a 404.
fn resolve(state: &AppState, r: &ModelRef) -> Result<(), V2Error> {
    let a = state.model().artifact();
    if r.name != a.name {
        return Err(V2Error::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model {:?}; this server serves {:?}",
                r.name, a.name
            ),
        ));
    }
    if let Some(v) = r.version.as_ref().filter(|v| *v != state.version()) {
        return Err(V2Error::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown version {v:?} of model {:?}; this server serves version {:?}",
                r.name,
                state.version()
            ),
        ));
    }
    Ok(())
}

/// A tensor's description in the model metadata.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TensorMetadata {
    /// Tensor name.
    name: &'static str,
    /// Element type.
    datatype: &'static str,
    /// Shape; -1 is a variable dimension (the batch).
    shape: Vec<i64>,
}

/// `GET /v2/models/{name}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelMetadata {
    /// Model name.
    name: String,
    /// The version served (one).
    versions: Vec<String>,
    /// What runs it.
    platform: &'static str,
    /// Inputs: one `[N, F]` tensor; FP32, FP64, INT* and UINT* are all accepted.
    inputs: Vec<TensorMetadata>,
    /// Outputs: `label` and `probabilities`.
    outputs: Vec<TensorMetadata>,
}

fn metadata(state: &AppState) -> ModelMetadata {
    let m = state.model();
    let f = i64::try_from(m.n_features()).unwrap_or(i64::MAX);
    let c = i64::try_from(m.classes().len()).unwrap_or(i64::MAX);
    ModelMetadata {
        name: m.artifact().name.clone(),
        versions: vec![state.version().to_string()],
        platform: "rust_logistic_regression",
        inputs: vec![TensorMetadata {
            name: INPUT_NAME,
            datatype: "FP64",
            shape: vec![-1, f],
        }],
        outputs: vec![
            TensorMetadata {
                name: "label",
                datatype: "BYTES",
                shape: vec![-1],
            },
            TensorMetadata {
                name: "probabilities",
                datatype: "FP64",
                shape: vec![-1, c],
            },
        ],
    }
}

/// Model metadata: its inputs and outputs.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "Open Inference Protocol (KServe V2)",
    params(("name" = String, Path, description = "Model name (see `GET /model`)", example = "digits")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Unknown model", body = V2Error)))]
pub(crate) async fn model_metadata(
    State(state): State<AppState>,
    Path(r): Path<ModelRef>,
) -> Result<Response, V2Error> {
    resolve(&state, &r)?;
    Ok(ok_json(&metadata(&state)))
}

/// Metadata of one version of the model.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "Open Inference Protocol (KServe V2)",
    params(
        ("name" = String, Path, description = "Model name", example = "digits"),
        ("version" = String, Path, description = "Model version (see `GET /model`)")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Unknown model or version", body = V2Error)))]
pub(crate) async fn model_metadata_version(
    state: State<AppState>,
    r: Path<ModelRef>,
) -> Result<Response, V2Error> {
    model_metadata(state, r).await
}

/// `GET /v2/models/{name}/ready` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelReady {
    /// Model name.
    name: String,
    /// True: the model is loaded.
    ready: bool,
}

/// Model readiness: 200 when the model is loaded (always, once the server answers).
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "Open Inference Protocol (KServe V2)",
    params(("name" = String, Path, description = "Model name", example = "digits")),
    responses(
        (status = 200, description = "The model is ready", body = ModelReady),
        (status = 404, description = "Unknown model", body = V2Error)))]
pub(crate) async fn model_ready(
    State(state): State<AppState>,
    Path(r): Path<ModelRef>,
) -> Result<Response, V2Error> {
    resolve(&state, &r)?;
    Ok(ok_json(&ModelReady {
        name: r.name,
        ready: true,
    }))
}

/// Readiness of one version of the model.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "Open Inference Protocol (KServe V2)",
    params(
        ("name" = String, Path, description = "Model name", example = "digits"),
        ("version" = String, Path, description = "Model version")),
    responses(
        (status = 200, description = "The model is ready", body = ModelReady),
        (status = 404, description = "Unknown model or version", body = V2Error)))]
pub(crate) async fn model_ready_version(
    state: State<AppState>,
    r: Path<ModelRef>,
) -> Result<Response, V2Error> {
    model_ready(state, r).await
}

/// One input tensor of an inference request.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RequestInput {
    /// Any name.
    name: String,
    /// `[N, F]`: N rows of the model's F features.
    #[schema(example = json!([1, 64]))]
    shape: Vec<u64>,
    /// FP32, FP64, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32 or UINT64.
    #[schema(example = "FP32")]
    datatype: String,
    /// `binary_data_size` when the data follows the JSON part in binary.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Map<String, Value>>,
    /// Row-major values, flat or nested; absent with the binary extension.
    #[serde(default)]
    #[schema(value_type = Option<Vec<f64>>)]
    data: Option<Value>,
}

/// An output asked for by name.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RequestOutput {
    /// `label` or `probabilities`.
    name: String,
    /// Accepted and ignored: outputs are always answered as JSON data.
    #[serde(default)]
    #[allow(dead_code)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Map<String, Value>>,
}

/// `POST /v2/models/{name}/infer` body.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct InferRequest {
    /// Echoed in the answer.
    #[serde(default)]
    id: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Map<String, Value>>,
    /// Exactly one tensor of shape `[N, F]`.
    inputs: Vec<RequestInput>,
    /// Outputs to answer (default: both).
    #[serde(default)]
    outputs: Option<Vec<RequestOutput>>,
}

/// The data of an output tensor.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum OutputData {
    /// `label`: one string a row.
    Labels(Vec<String>),
    /// `probabilities`: N x C numbers, row-major.
    Numbers(Vec<f64>),
}

/// One output tensor of an inference answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResponseOutput {
    /// `label` or `probabilities`.
    name: &'static str,
    /// BYTES or FP64.
    datatype: &'static str,
    /// `[N]` or `[N, C]`.
    shape: Vec<usize>,
    /// Row-major values.
    data: OutputData,
}

/// `POST /v2/models/{name}/infer` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InferResponse {
    /// Model name.
    model_name: String,
    /// Model version.
    model_version: String,
    /// The request's id, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// The outputs asked for (default: `label` and `probabilities`).
    outputs: Vec<ResponseOutput>,
}

/// Run the model on one `[N, F]` tensor.
///
/// Errors: 400 malformed JSON or a request that is not a valid inference request;
/// 408 body not in within the timeout; 413 body over the limit; 415 neither JSON nor the
/// binary extension; 422 wrong number of features or a non-finite value (the message
/// names row and feature); 404 unknown model.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "Open Inference Protocol (KServe V2)",
    params(("name" = String, Path, description = "Model name", example = "digits")),
    request_body(content = InferRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Labels and probabilities, one row each", body = InferResponse),
        (status = 400, description = "Malformed JSON or not a valid inference request", body = V2Error),
        (status = 404, description = "Unknown model", body = V2Error),
        (status = 408, description = "The body did not arrive within the timeout", body = V2Error),
        (status = 413, description = "Body over the limit", body = V2Error),
        (status = 415, description = "Unsupported content type", body = V2Error),
        (status = 422, description = "Wrong feature count or non-finite value", body = V2Error)))]
pub(crate) async fn infer(
    State(state): State<AppState>,
    Path(r): Path<ModelRef>,
    req: Request,
) -> Result<Response, V2Error> {
    resolve(&state, &r)?;
    let (parts, body) = req.into_parts();
    let header_len = binary_header_length(&parts.headers)?;
    match media_type(&parts.headers)? {
        None => {}
        Some(m) if is_json(&m) => {}
        Some(m) if header_len.is_some() && m == "application/octet-stream" => {}
        Some(m) => return Err(AppError::UnsupportedMediaType(m).into()),
    }
    let bytes = read_limited(&state, &parts.headers, body).await?;
    let (json, binary) = match header_len {
        Some(n) if n <= bytes.len() => (bytes.slice(..n), bytes.slice(n..)),
        Some(n) => {
            return Err(V2Error::bad(format!(
                "{HEADER_LENGTH} is {n}, but the body has {} bytes",
                bytes.len()
            )));
        }
        None => (bytes, Bytes::new()),
    };
    let request: InferRequest = serde_json::from_slice(&json).map_err(|e| {
        let e = json_error(&e);
        match e {
            // The shape of a V2 request is the protocol's business: 400, as Triton answers.
            AppError::InvalidBody(m) => V2Error::bad(format!("invalid inference request: {m}")),
            other => other.into(),
        }
    })?;
    let answer = run(&state, request, &binary)?;
    let mut res = ok_json(&answer.0);
    res.extensions_mut().insert(answer.1);
    Ok(res)
}

/// Inference on one version of the model.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "Open Inference Protocol (KServe V2)",
    params(
        ("name" = String, Path, description = "Model name", example = "digits"),
        ("version" = String, Path, description = "Model version")),
    request_body(content = InferRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Labels and probabilities, one row each", body = InferResponse),
        (status = 400, description = "Malformed JSON or not a valid inference request", body = V2Error),
        (status = 404, description = "Unknown model or version", body = V2Error),
        (status = 408, description = "The body did not arrive within the timeout", body = V2Error),
        (status = 413, description = "Body over the limit", body = V2Error),
        (status = 415, description = "Unsupported content type", body = V2Error),
        (status = 422, description = "Wrong feature count or non-finite value", body = V2Error)))]
pub(crate) async fn infer_version(
    state: State<AppState>,
    r: Path<ModelRef>,
    req: Request,
) -> Result<Response, V2Error> {
    infer(state, r, req).await
}

fn binary_header_length(headers: &HeaderMap) -> Result<Option<usize>, V2Error> {
    let Some(v) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| V2Error::bad(format!("{HEADER_LENGTH} is not a number")))
}

/// Element types accepted for the input.
#[derive(Debug, Clone, Copy)]
enum Datatype {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl Datatype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "FP32" => Self::F32,
            "FP64" => Self::F64,
            "INT8" => Self::I8,
            "INT16" => Self::I16,
            "INT32" => Self::I32,
            "INT64" => Self::I64,
            "UINT8" => Self::U8,
            "UINT16" => Self::U16,
            "UINT32" => Self::U32,
            "UINT64" => Self::U64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F64 | Self::I64 | Self::U64 => 8,
        }
    }

    /// The values of an integer type, `None` for the float types.
    fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Self::F32 | Self::F64 => return None,
            Self::I8 => (i8::MIN.into(), i8::MAX.into()),
            Self::I16 => (i16::MIN.into(), i16::MAX.into()),
            Self::I32 => (i32::MIN.into(), i32::MAX.into()),
            Self::I64 => (i64::MIN.into(), i64::MAX.into()),
            Self::U8 => (0, u8::MAX.into()),
            Self::U16 => (0, u16::MAX.into()),
            Self::U32 => (0, u32::MAX.into()),
            Self::U64 => (0, u64::MAX.into()),
        })
    }

    /// A JSON element as a feature value, if it is one of this type: any number for the
    /// float types, an integer in range for the others.
    #[allow(clippy::cast_precision_loss)]
    fn read_json(self, v: &Value) -> Option<f64> {
        let Some((lo, hi)) = self.int_range() else {
            return v.as_f64();
        };
        let x = v
            .as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))?;
        (lo..=hi).contains(&x).then_some(x as f64)
    }

    /// One little-endian element of the binary extension.
    #[allow(clippy::cast_precision_loss)]
    fn read_le(self, b: &[u8]) -> Option<f64> {
        Some(match self {
            Self::F32 => f64::from(f32::from_le_bytes(b.try_into().ok()?)),
            Self::F64 => f64::from_le_bytes(b.try_into().ok()?),
            Self::I8 => f64::from(i8::from_le_bytes(b.try_into().ok()?)),
            Self::I16 => f64::from(i16::from_le_bytes(b.try_into().ok()?)),
            Self::I32 => f64::from(i32::from_le_bytes(b.try_into().ok()?)),
            Self::I64 => i64::from_le_bytes(b.try_into().ok()?) as f64,
            Self::U8 => f64::from(u8::from_le_bytes(b.try_into().ok()?)),
            Self::U16 => f64::from(u16::from_le_bytes(b.try_into().ok()?)),
            Self::U32 => f64::from(u32::from_le_bytes(b.try_into().ok()?)),
            Self::U64 => u64::from_le_bytes(b.try_into().ok()?) as f64,
        })
    }
}

/// Flatten JSON tensor data (flat or nested) in row-major order.
fn flatten(v: &Value, dt: Datatype, out: &mut Vec<f64>, input: &str) -> Result<(), V2Error> {
    match v {
        Value::Array(items) => {
            for item in items {
                flatten(item, dt, out, input)?;
            }
            Ok(())
        }
        other => match dt.read_json(other) {
            Some(x) => {
                out.push(x);
                Ok(())
            }
            None => Err(V2Error::bad(format!(
                "input {input:?}: element {} ({other}) is not a {dt:?} value",
                out.len()
            ))),
        },
    }
}

fn run(
    state: &AppState,
    request: InferRequest,
    binary: &[u8],
) -> Result<(InferResponse, Predicted), V2Error> {
    let model = state.model();
    let [input] = <[RequestInput; 1]>::try_from(request.inputs).map_err(|inputs| {
        V2Error::bad(format!(
            "expected exactly one input tensor of shape [N, {}], got {}",
            model.n_features(),
            inputs.len()
        ))
    })?;
    let name = input.name.as_str();
    let dt = Datatype::parse(&input.datatype).ok_or_else(|| {
        V2Error::bad(format!(
            "input {name:?}: datatype {:?} is not supported; use FP32, FP64, INT8..INT64 or UINT8..UINT64",
            input.datatype
        ))
    })?;
    let (n, f) = match input.shape[..] {
        [n, f] => (
            usize::try_from(n).unwrap_or(usize::MAX),
            usize::try_from(f).unwrap_or(usize::MAX),
        ),
        _ => {
            return Err(V2Error::bad(format!(
                "input {name:?}: shape {:?} is not [N, F]",
                input.shape
            )));
        }
    };
    let expected = n.checked_mul(f).ok_or_else(|| {
        V2Error::bad(format!(
            "input {name:?}: shape {:?} is too large",
            input.shape
        ))
    })?;
    let binary_size = input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
        .map(|v| {
            v.as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| {
                    V2Error::bad(format!("input {name:?}: binary_data_size is not a size"))
                })
        })
        .transpose()?;
    let values = match (binary_size, &input.data) {
        (Some(size), None) => {
            if size != binary.len() || size != expected.saturating_mul(dt.size()) {
                return Err(V2Error::bad(format!(
                    "input {name:?}: binary_data_size {size}, {} bytes follow the JSON, and shape {:?} of {dt:?} needs {}",
                    binary.len(),
                    input.shape,
                    expected.saturating_mul(dt.size())
                )));
            }
            binary
                .chunks_exact(dt.size())
                .filter_map(|b| dt.read_le(b))
                .collect::<Vec<f64>>()
        }
        (None, Some(data)) => {
            let mut out = Vec::with_capacity(expected.min(1 << 20));
            flatten(data, dt, &mut out, name)?;
            out
        }
        (Some(_), Some(_)) => {
            return Err(V2Error::bad(format!(
                "input {name:?}: give `data` or binary_data_size, not both"
            )));
        }
        (None, None) => return Err(V2Error::bad(format!("input {name:?}: no `data`"))),
    };
    if values.len() != expected {
        return Err(V2Error::bad(format!(
            "input {name:?}: shape {:?} needs {expected} values, got {}",
            input.shape,
            values.len()
        )));
    }
    // The model checks F against its own feature count and names the first bad row.
    let rows: Vec<&[f64]> = if f == 0 {
        vec![&[][..]; n]
    } else {
        values.chunks_exact(f).collect()
    };
    let preds = model.predict_batch(&rows).map_err(AppError::from)?;

    let (mut want_label, mut want_proba) = (true, true);
    if let Some(outputs) = &request.outputs {
        want_label = false;
        want_proba = false;
        for o in outputs {
            match o.name.as_str() {
                "label" => want_label = true,
                "probabilities" => want_proba = true,
                other => {
                    return Err(V2Error::bad(format!(
                        "unknown output {other:?}; the outputs are \"label\" and \"probabilities\""
                    )));
                }
            }
        }
    }
    let c = model.classes().len();
    let mut outputs = Vec::with_capacity(2);
    if want_label {
        outputs.push(ResponseOutput {
            name: "label",
            datatype: "BYTES",
            shape: vec![preds.len()],
            data: OutputData::Labels(preds.iter().map(|p| model.label(p).to_string()).collect()),
        });
    }
    if want_proba {
        outputs.push(ResponseOutput {
            name: "probabilities",
            datatype: "FP64",
            shape: vec![preds.len(), c],
            data: OutputData::Numbers(
                preds
                    .iter()
                    .flat_map(|p| p.probabilities.iter().copied())
                    .collect(),
            ),
        });
    }
    let predicted = Predicted::Many(preds.iter().map(|p| p.class_index).collect());
    Ok((
        InferResponse {
            model_name: model.artifact().name.clone(),
            model_version: state.version().to_string(),
            id: request.id,
            outputs,
        },
        predicted,
    ))
}

#[cfg(test)]
mod tests {
    use super::Datatype;
    use serde_json::json;

    #[test]
    fn json_integers_are_accepted_exactly_within_their_type() {
        for (name, lo, hi) in [
            ("INT8", -128_i128, 127_i128),
            ("INT16", -32_768, 32_767),
            ("INT32", -2_147_483_648, 2_147_483_647),
            ("INT64", i64::MIN.into(), i64::MAX.into()),
            ("UINT8", 0, 255),
            ("UINT16", 0, 65_535),
            ("UINT32", 0, 4_294_967_295),
            ("UINT64", 0, u64::MAX.into()),
        ] {
            let dt = Datatype::parse(name).expect(name);
            let value = |x: i128| {
                i64::try_from(x)
                    .map(|x| json!(x))
                    .or_else(|_| u64::try_from(x).map(|x| json!(x)))
                    .ok()
            };
            for x in [lo, hi] {
                assert!(
                    dt.read_json(&value(x).expect("fits")).is_some(),
                    "{name} {x}"
                );
            }
            for x in [lo - 1, hi + 1] {
                if let Some(v) = value(x) {
                    assert_eq!(dt.read_json(&v), None, "{name} {x}");
                }
            }
            assert_eq!(dt.read_json(&json!(1.5)), None, "{name} 1.5");
        }
        for name in ["FP32", "FP64"] {
            let dt = Datatype::parse(name).expect(name);
            assert_eq!(dt.read_json(&json!(1.5)), Some(1.5));
            assert_eq!(dt.read_json(&json!(-3)), Some(-3.0));
            assert_eq!(dt.read_json(&json!("1")), None);
        }
    }
}
