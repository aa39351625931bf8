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
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::metrics::Predicted;
use crate::body::{is_json, json_error, media_type, read_limited};
use crate::error::AppError;
use crate::model_version::HEADER as MODEL_VERSION;
use crate::served::Served;
use crate::state::AppState;

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
fn resolve(served: &Served, r: &ModelRef) -> Result<(), V2Error> {
    let a = served.artifact();
    if r.name != a.name {
        return Err(V2Error::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model {:?}; this server serves {:?}",
                r.name, a.name
            ),
        ));
    }
    if let Some(v) = r.version.as_ref().filter(|v| *v != served.version()) {
        return Err(V2Error::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown version {v:?} of model {:?}; this server serves version {:?}",
                r.name,
                served.version()
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

fn metadata(m: &Served) -> ModelMetadata {
    let f = i64::try_from(m.n_features()).unwrap_or(i64::MAX);
    let c = i64::try_from(m.classes().len()).unwrap_or(i64::MAX);
    ModelMetadata {
        name: m.artifact().name.clone(),
        versions: vec![m.version().to_string()],
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
    let served = state.served();
    resolve(&served, &r)?;
    Ok(ok_json(&metadata(&served)))
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
    resolve(&state.served(), &r)?;
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
pub(crate) struct RequestInput<'a> {
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
    parameters: Option<InputParameters>,
    /// Row-major values, flat or nested as the shape; absent with the binary extension.
    /// Kept as the raw JSON text until the shape and datatype are known, then read once
    /// straight into the feature buffer.
    #[serde(default, borrow)]
    #[schema(value_type = Option<Vec<f64>>)]
    data: Option<&'a RawValue>,
}

/// The parameters of an input: only `binary_data_size` is read; others are skipped
/// without being kept.
#[derive(Debug, Deserialize)]
pub(crate) struct InputParameters {
    #[serde(default)]
    binary_data_size: Option<Value>,
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
    parameters: Option<IgnoredAny>,
}

/// `POST /v2/models/{name}/infer` body.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct InferRequest<'a> {
    /// Echoed in the answer.
    #[serde(default)]
    id: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<IgnoredAny>,
    /// Exactly one tensor of shape `[N, F]`.
    #[serde(borrow)]
    inputs: Vec<RequestInput<'a>>,
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
    let served = state.served();
    resolve(&served, &r)?;
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
    let answer = run(&state, &served, request, &binary)?;
    let mut res = ok_json(&answer.0);
    res.headers_mut()
        .insert(MODEL_VERSION, served.version_header());
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

    /// A JSON integer as a feature value of this type: any integer for the float types
    /// (FP32 only within its range), an integer in range for the others.
    #[allow(clippy::cast_precision_loss)]
    fn read_int(self, x: i128) -> Option<f64> {
        match self.int_range() {
            Some((lo, hi)) => (lo..=hi).contains(&x).then_some(x as f64),
            None => self.read_float(x as f64),
        }
    }

    /// A JSON number with a fraction or exponent: a value of the float types only; an
    /// FP32 value must be representable as one (finite once rounded to `f32`), and is
    /// the rounded value.
    #[allow(clippy::cast_possible_truncation)]
    fn read_float(self, x: f64) -> Option<f64> {
        match self {
            Self::F64 => Some(x),
            Self::F32 => {
                let y = x as f32;
                (y.is_finite() || !x.is_finite()).then_some(f64::from(y))
            }
            _ => None,
        }
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

/// How `data` lays out the values of an `[N, F]` tensor: flat (N x F numbers) or nested
/// exactly as the shape (N lists of F numbers). One layout per tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    Flat,
    Nested,
}

/// Reads a tensor's JSON `data` straight into `out` (whose capacity is N x F), checking
/// every element's type and the layout against the shape as it goes: nothing past N x F
/// values is ever stored, and no intermediate JSON tree is built.
struct TensorReader<'o> {
    dt: Datatype,
    n: usize,
    f: usize,
    out: &'o mut Vec<f64>,
}

impl<'de> DeserializeSeed<'de> for TensorReader<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TensorReader<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a list of {} values, flat or nested as the shape",
            self.n * self.f
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let expected = self.n * self.f;
        let mut layout = None;
        let mut rows = 0usize;
        loop {
            let start = self.out.len();
            let element = Element {
                dt: self.dt,
                f: self.f,
                room: expected,
                out: &mut *self.out,
            };
            let kind = match seq.next_element_seed(element) {
                Ok(Some(kind)) => kind,
                Ok(None) => break,
                Err(e) => return Err(out_of_range(e, start)),
            };
            match layout {
                None => layout = Some(kind),
                Some(l) if l != kind => {
                    return Err(de::Error::custom(format!(
                        "element {start} breaks the layout: give N x F numbers, or N lists of F numbers, not a mix"
                    )));
                }
                Some(_) => {}
            }
            if kind == Layout::Nested {
                rows += 1;
            }
        }
        let got = self.out.len();
        if got != expected || (layout == Some(Layout::Nested) && rows != self.n) {
            return Err(de::Error::custom(format!(
                "the shape needs {expected} values, got {got}"
            )));
        }
        Ok(())
    }
}

/// One element of `data`: a number (flat layout) or a row of F numbers (nested layout).
struct Element<'o> {
    dt: Datatype,
    f: usize,
    /// The most values `out` may hold.
    room: usize,
    out: &'o mut Vec<f64>,
}

impl Element<'_> {
    fn push<E: de::Error>(
        &mut self,
        x: Option<f64>,
        shown: &dyn std::fmt::Display,
    ) -> Result<(), E> {
        let index = self.out.len();
        let x = x.ok_or_else(|| {
            E::custom(format!(
                "element {index} ({shown}) is not a {:?} value",
                self.dt
            ))
        })?;
        if index >= self.room {
            return Err(E::custom(format!(
                "the shape needs {} values, got more",
                self.room
            )));
        }
        self.out.push(x);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = Layout;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Layout, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = Layout;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {:?} value or a list of {} of them", self.dt, self.f)
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Layout, E> {
        self.push(self.dt.read_int(v.into()), &v)?;
        Ok(Layout::Flat)
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Layout, E> {
        self.push(self.dt.read_int(v.into()), &v)?;
        Ok(Layout::Flat)
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Layout, E> {
        self.push(self.dt.read_float(v), &v)?;
        Ok(Layout::Flat)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Layout, A::Error> {
        let (dt, f) = (self.dt, self.f);
        let row_start = self.out.len();
        let cell = Element {
            dt,
            f,
            room: self.room,
            out: self.out,
        };
        loop {
            let index = cell.out.len();
            let scalar = Scalar(Element {
                dt,
                f,
                room: cell.room,
                out: &mut *cell.out,
            });
            match seq.next_element_seed(scalar) {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(e) => return Err(out_of_range(e, index)),
            }
            if cell.out.len() - row_start > f {
                return Err(de::Error::custom(format!(
                    "a row has more than {f} values (element {index})"
                )));
            }
        }
        let got = cell.out.len() - row_start;
        if got != f {
            return Err(de::Error::custom(format!(
                "a row has {got} values; the shape says {f}"
            )));
        }
        Ok(Layout::Nested)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Layout, E> {
        Err(E::custom(format!(
            "element {} ({v:?}) is not a {:?} value",
            self.out.len(),
            self.dt
        )))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Layout, E> {
        Err(E::custom(format!(
            "element {} ({v}) is not a {:?} value",
            self.out.len(),
            self.dt
        )))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Layout, E> {
        Err(E::custom(format!(
            "element {} (null) is not a {:?} value",
            self.out.len(),
            self.dt
        )))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Layout, A::Error> {
        Err(de::Error::custom(format!(
            "element {} (an object) is not a {:?} value",
            self.out.len(),
            self.dt
        )))
    }
}

/// A number inside a row: a list here is nesting deeper than the shape.
struct Scalar<'o>(Element<'o>);

impl<'de> DeserializeSeed<'de> for Scalar<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let index = self.0.out.len();
        match d.deserialize_any(self.0)? {
            Layout::Flat => Ok(()),
            Layout::Nested => Err(de::Error::custom(format!(
                "element {index} is a list: the data nests deeper than the shape [N, F]"
            ))),
        }
    }
}

/// serde_json's "number out of range" (a number beyond `f64`, as `1e999`), said as the
/// element it was.
fn out_of_range<E: de::Error>(e: E, index: usize) -> E {
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        E::custom(format!("element {index} {NON_FINITE}"))
    } else {
        e
    }
}

/// Our phrase for a number too large to be finite; `read_data` turns it into a 422.
const NON_FINITE: &str = "is not a finite number";

/// Read `raw` (a tensor's JSON `data`) as an `[n, f]` tensor of `dt`.
fn read_data(
    raw: &RawValue,
    dt: Datatype,
    n: usize,
    f: usize,
    name: &str,
) -> Result<Vec<f64>, V2Error> {
    let expected = n * f;
    // Each number takes at least one byte and a separator: a shape the text cannot fill
    // is refused before its buffer is allocated.
    let text = raw.get();
    if expected > text.len() / 2 + 1 {
        return Err(V2Error::bad(format!(
            "input {name:?}: the shape needs {expected} values, but `data` is {} bytes",
            text.len()
        )));
    }
    let mut out = Vec::with_capacity(expected);
    let mut de = serde_json::Deserializer::from_str(text);
    TensorReader {
        dt,
        n,
        f,
        out: &mut out,
    }
    .deserialize(&mut de)
    .map_err(|e| {
        let msg = e.to_string();
        let msg = msg.find(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
        if msg.contains(NON_FINITE) {
            V2Error::from(AppError::NonFinite(format!("input {name:?}: {msg}")))
        } else {
            V2Error::bad(format!("input {name:?}: {msg}"))
        }
    })?;
    Ok(out)
}

fn run(
    state: &AppState,
    model: &Served,
    request: InferRequest<'_>,
    binary: &[u8],
) -> Result<(InferResponse, Predicted), V2Error> {
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
        [n, f] => (n, f),
        _ => {
            return Err(V2Error::bad(format!(
                "input {name:?}: shape {:?} is not [N, F]",
                input.shape
            )));
        }
    };
    // The declared shape is checked against the model and the limits before anything is
    // allocated for it.
    let features = model.n_features();
    if usize::try_from(f).ok() != Some(features) {
        return Err(V2Error::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "input {name:?}: shape {:?}: expected {features} features, got {f}",
                input.shape
            ),
        ));
    }
    let max_rows = state.max_batch_rows();
    let n = match usize::try_from(n) {
        Ok(n) if n <= max_rows => n,
        _ => {
            return Err(AppError::TooManyRows {
                rows: n,
                limit: max_rows,
            }
            .into());
        }
    };
    let expected = n.checked_mul(features).ok_or_else(|| {
        V2Error::bad(format!(
            "input {name:?}: shape {:?} is too large",
            input.shape
        ))
    })?;
    let binary_size = input
        .parameters
        .as_ref()
        .and_then(|p| p.binary_data_size.as_ref())
        .map(|v| {
            v.as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| {
                    V2Error::bad(format!("input {name:?}: binary_data_size is not a size"))
                })
        })
        .transpose()?;
    let values = match (binary_size, input.data) {
        (Some(size), None) => {
            let needed = expected.saturating_mul(dt.size());
            if size != binary.len() || size != needed {
                return Err(V2Error::bad(format!(
                    "input {name:?}: binary_data_size {size}, {} bytes follow the JSON, and shape {:?} of {dt:?} needs {needed}",
                    binary.len(),
                    input.shape,
                )));
            }
            let mut values = Vec::with_capacity(expected);
            values.extend(binary.chunks_exact(dt.size()).filter_map(|b| dt.read_le(b)));
            values
        }
        (None, Some(data)) => read_data(data, dt, n, features, name)?,
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
    let rows: Vec<&[f64]> = values.chunks_exact(features.max(1)).collect();
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
            model_version: model.version().to_string(),
            id: request.id,
            outputs,
        },
        predicted,
    ))
}

#[cfg(test)]
mod tests {
    use super::{Datatype, read_data};
    use serde_json::value::RawValue;

    #[test]
    fn integers_are_accepted_exactly_within_their_type() {
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
            for x in [lo, hi] {
                assert!(dt.read_int(x).is_some(), "{name} {x}");
            }
            for x in [lo - 1, hi + 1] {
                assert_eq!(dt.read_int(x), None, "{name} {x}");
            }
            assert_eq!(dt.read_float(1.5), None, "{name} 1.5");
        }
        let fp64 = Datatype::parse("FP64").expect("FP64");
        assert_eq!(fp64.read_float(1.5), Some(1.5));
        assert_eq!(fp64.read_float(1e300), Some(1e300));
        assert_eq!(fp64.read_int(-3), Some(-3.0));
    }

    #[test]
    fn fp32_values_must_be_representable() {
        let fp32 = Datatype::parse("FP32").expect("FP32");
        assert_eq!(fp32.read_float(1.5), Some(1.5));
        assert_eq!(fp32.read_float(0.1), Some(f64::from(0.1_f32)));
        assert_eq!(fp32.read_float(3.4e38), Some(f64::from(3.4e38_f32)));
        assert_eq!(fp32.read_float(1e39), None);
        assert_eq!(fp32.read_float(-1e300), None);
        assert_eq!(
            fp32.read_int(i128::from(u64::MAX)),
            Some(f64::from(u64::MAX as f32))
        );
    }

    fn read(data: &str, n: usize, f: usize) -> Result<Vec<f64>, String> {
        let raw: &RawValue = serde_json::from_str(data).map_err(|e| e.to_string())?;
        let dt = Datatype::parse("FP64").ok_or("FP64")?;
        read_data(raw, dt, n, f, "x").map_err(|e| e.error)
    }

    #[test]
    fn data_must_match_the_shape_flat_or_nested() {
        assert_eq!(read("[1, 2, 3, 4]", 2, 2), Ok(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(read("[[1, 2], [3, 4]]", 2, 2), Ok(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(read("[]", 0, 2), Ok(vec![]));
        for (bad, needle) in [
            ("[[1, 2, 3], [4]]", "more than 2 values"),
            ("[[1], [2, 3, 4]]", "a row has 1 values"),
            ("[[1, 2], 3, 4]", "breaks the layout"),
            ("[1, 2, [3, 4]]", "breaks the layout"),
            ("[[[1, 2]], [[3, 4]]]", "nests deeper"),
            ("[1, 2, 3]", "needs 4 values, got 3"),
            ("[1, 2, 3, 4, 5]", "needs 4 values, got more"),
            ("[[1, 2], [3, 4], [5, 6]]", "needs 4 values, got more"),
            ("[1, 2, \"3\", 4]", "element 2 (\"3\") is not a F64 value"),
            ("[1, 2, null, 4]", "element 2 (null)"),
            ("[1, 2, 3, 1e999]", "element 3 is not a finite number"),
            ("[1]", "the shape needs 4 values, but `data` is 3 bytes"),
        ] {
            let e = read(bad, 2, 2).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e:?} lacks {needle:?}");
        }
    }

    mod properties {
        use super::super::{Datatype, read_data};
        use proptest::prelude::*;
        use serde_json::value::RawValue;

        proptest! {
            #[test]
            fn flat_and_nested_data_read_the_same_values(n in 0_usize..6, f in 1_usize..6, seed in any::<u64>()) {
                let values: Vec<f64> = (0..n * f).map(|i| ((seed >> (i % 64)) & 0xff) as f64 - 100.0).collect();
                let nested: Vec<&[f64]> = values.chunks(f).collect();
                let dt = Datatype::parse("FP64").ok_or_else(|| TestCaseError::fail("FP64"))?;
                for text in [serde_json::to_string(&values), serde_json::to_string(&nested)] {
                    let text = text.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let raw: &RawValue = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let got = read_data(raw, dt, n, f, "x").map_err(|e| TestCaseError::fail(e.error))?;
                    prop_assert_eq!(&got, &values);
                }
            }

            #[test]
            fn any_json_data_never_panics_and_never_exceeds_the_shape(text in "[\\[\\]{}:,\"a-z0-9.eE+-]{0,120}", n in 0_usize..5, f in 1_usize..5, dt in 0_usize..10) {
                let names = ["FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"];
                let dt = names.get(dt).and_then(|d| Datatype::parse(d)).ok_or_else(|| TestCaseError::fail("dt"))?;
                if let Ok(raw) = serde_json::from_str::<&RawValue>(&text)
                    && let Ok(values) = read_data(raw, dt, n, f, "x")
                {
                    prop_assert_eq!(values.len(), n * f);
                }
            }
        }
    }
}
