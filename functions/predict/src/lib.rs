//! The predict function: one axum [`Router`] ([`app`]) that answers `POST /predict`,
//! `GET /health` and `GET /model` from a model loaded once, at start-up.
//!
//! The same router runs two ways (see the `predict` binary):
//! - under AWS Lambda or `cargo lambda watch` (`AWS_LAMBDA_RUNTIME_API` set), through
//!   [`run_lambda`], which hands it to `lambda_http::run`;
//! - anywhere else through [`serve`], `axum::serve` on `HOST:PORT` with graceful shutdown.
//!
//! Everything expensive (reading and validating the artifact, the `/model` document, the
//! class labels as answered) is built once in [`AppState::new`]; a request only parses its
//! body, runs the model and writes the answer.
//!
//! This crate does not train and does not define the artifact: that is the `model` crate.

pub mod error;
pub mod init_error;
mod protocols;
mod request;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use model::Model;
use model::store::ModelUri;
use serde::Serialize;

pub use error::{AppError, StartupError};
pub use request::{Input, parse as parse_input};

/// Default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default model location, as `make train-par` publishes it.
pub const DEFAULT_MODEL_URI: &str = "artifacts/digits";

/// Configuration of the function: every flag is also an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "predict",
    version,
    about = "Serve the digits classifier over HTTP or AWS Lambda"
)]
pub struct Config {
    /// Model to serve: `<store>/<name>` (follows `latest`) or `<store>/<name>/<version>`;
    /// a local path or `s3://bucket/prefix/...`.
    #[arg(long, env = "MODEL_URI", default_value = DEFAULT_MODEL_URI)]
    pub model_uri: String,
    /// Address to listen on (plain HTTP mode only).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (plain HTTP mode only); 0 picks a free port.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Requests taking longer than this many milliseconds are answered 408.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Log format: `text` or `json` (default: json under Lambda, text elsewhere).
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Health-check a server running on 127.0.0.1:$PORT and exit 0 (healthy) or 1;
    /// for container health checks without a shell.
    #[arg(long)]
    pub check: bool,
}

/// The loaded model and everything precomputed from it; cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    model: Model,
    version: String,
    /// `predicted_class` of each class: the label as an integer when every label is one.
    answers: Vec<i64>,
    /// The `GET /model` body.
    metadata: Bytes,
    /// The `GET /health` body.
    health: Bytes,
    body_limit: usize,
    timeout: Duration,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    version: &'a str,
    model_id: &'a str,
    source: &'a str,
    format_version: u32,
    created_at: &'a str,
    classes: &'a [String],
    feature_names: &'a [String],
    n_features: usize,
    data_sha256: &'a str,
    metrics: &'a serde_json::Map<String, serde_json::Value>,
    training: &'a serde_json::Map<String, serde_json::Value>,
}

impl AppState {
    /// Wrap a loaded model. `version` is the version it was loaded from and `source` the
    /// location it came from (shown by `GET /model`).
    pub fn new(model: Model, version: String, source: &str) -> Self {
        let a = model.artifact();
        let parsed: Option<Vec<i64>> = a.classes.iter().map(|c| c.parse().ok()).collect();
        let answers = parsed.unwrap_or_else(|| (0..a.classes.len()).map(index_i64).collect());
        let metadata = serde_json::to_vec(&Metadata {
            name: &a.name,
            version: &version,
            model_id: &a.model_id,
            source,
            format_version: a.format_version,
            created_at: &a.created_at,
            classes: &a.classes,
            feature_names: &a.feature_names,
            n_features: a.n_features(),
            data_sha256: &a.data_sha256,
            metrics: &a.metrics,
            training: &a.training,
        })
        .unwrap_or_default();
        let health = serde_json::to_vec(&serde_json::json!({
            "status": "ok",
            "model_id": a.model_id,
            "version": version,
        }))
        .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                model,
                version,
                answers,
                metadata: metadata.into(),
                health: health.into(),
                body_limit: DEFAULT_BODY_LIMIT,
                timeout: DEFAULT_TIMEOUT,
            }),
        }
    }

    /// Load the model `config.model_uri` names (local or S3), validate it, and apply the
    /// limits of `config`. Synchronous: call it before starting a runtime.
    pub fn load(config: &Config) -> Result<Self, StartupError> {
        if config.body_limit == 0 {
            return Err(StartupError::Config(
                "BODY_LIMIT_BYTES must be at least 1".into(),
            ));
        }
        if config.timeout_ms == 0 {
            return Err(StartupError::Config(
                "REQUEST_TIMEOUT_MS must be at least 1".into(),
            ));
        }
        let uri = ModelUri::parse(&config.model_uri).map_err(|source| StartupError::BadUri {
            uri: config.model_uri.clone(),
            source,
        })?;
        let load_err = |source| StartupError::Load {
            uri: uri.to_string(),
            source,
        };
        let store = storage::open_store(&uri.root).map_err(load_err)?;
        let (model, version) =
            model::store::load(store.as_ref(), &uri.name, uri.version.as_deref())
                .map_err(load_err)?;
        Ok(Self::new(model, version, &uri.to_string())
            .with_limits(config.body_limit, Duration::from_millis(config.timeout_ms)))
    }

    /// The same state with another body limit (bytes) and request timeout.
    #[must_use]
    pub fn with_limits(self, body_limit: usize, timeout: Duration) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.body_limit = body_limit;
        inner.timeout = timeout;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.inner.model
    }

    /// The version the model was loaded from.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The `predicted_class` answered for class index `i`.
    pub fn predicted_class(&self, i: usize) -> i64 {
        self.inner.answers.get(i).copied().unwrap_or(-1)
    }
}

fn index_i64(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// The router: `POST /predict`, `GET /health`, `GET /model`, JSON 404 / 405 answers; a
/// request whose body does not arrive within the timeout is answered 408.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/predict", post(predict))
        .route("/health", get(health))
        .route("/model", get(metadata))
        .merge(protocols::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(protocols::metrics_layer(&state))
        .with_state(state)
}

/// Methods each route answers, for the `Allow` header of a 405.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/predict" => Some("POST"),
        "/health" | "/model" => Some("GET,HEAD"),
        _ => protocols::allowed_methods(path),
    }
}

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
    responses(protocols::openapi::HealthResponses)
)]
async fn health(State(state): State<AppState>) -> Response {
    json(state.inner.health.clone())
}

#[utoipa::path(
    get,
    path = "/model",
    tag = "predict",
    responses(protocols::openapi::ModelResponses)
)]
async fn metadata(State(state): State<AppState>) -> Response {
    json(state.inner.metadata.clone())
}

async fn not_found(method: Method, uri: Uri) -> AppError {
    AppError::NotFound {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

/// JSON when the content type says so; a request without one is read as JSON too, as
/// the original (FastAPI) did.
fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let s = ct.to_str().unwrap_or("");
    let mime = s.split(';').next().unwrap_or("").trim();
    let (kind, sub) = mime.split_once('/').unwrap_or((mime, ""));
    if kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
    {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType(s.to_string()))
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, AppError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return AppError::PayloadTooLarge { limit };
            }
            src = s.source();
        }
        AppError::BodyRead(e.to_string())
    })
}

/// Read the body, giving up after `timeout`. Everything after the body is pure computation,
/// so the body is the only part of a request that can stall. A timer costs a lock on the
/// timer wheel, so it is armed only when the body is not already in: a typical request
/// arrives in one segment and never touches it.
async fn read_body_within(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, AppError> {
    let mut read = std::pin::pin!(read_body(body, limit));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| AppError::Timeout(timeout))?,
    }
}

/// Read a request body under the configured limit and within the configured timeout,
/// refusing early when the declared length is already over the limit. Every route that
/// reads a body (`/predict`, `/invocations`, the V2 `infer` routes) reads it through
/// here, so a client that sends its headers and then stalls gets the 408 error (in the
/// route's error shape) instead of holding a connection and a task forever.
pub(crate) async fn read_limited(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, AppError> {
    let limit = state.inner.body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    read_body_within(body, limit, state.inner.timeout).await
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

#[utoipa::path(post, path = "/predict", tag = "predict", request_body = protocols::openapi::PredictRequest, responses(protocols::openapi::PredictResponses))]
async fn predict(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let (parts, body) = req.into_parts();
    check_content_type(&parts.headers)?;
    let bytes = read_limited(&state, &parts.headers, body).await?;
    let model = &state.inner.model;
    let (out, predicted) = match request::parse(&bytes, model.n_features())? {
        Input::One(row) => {
            let p = model.predict(&row)?;
            let answer = Answer {
                predicted_class: state.predicted_class(p.class_index),
                label: model.label(&p),
                probabilities: &p.probabilities,
            };
            let mut out = Vec::with_capacity(64 + 24 * p.probabilities.len());
            serde_json::to_writer(&mut out, &answer)
                .map_err(|e| AppError::BodyRead(e.to_string()))?;
            (out, protocols::Predicted::One(p.class_index))
        }
        Input::Many(rows) => {
            let preds = model.predict_batch(&rows)?;
            let batch = Batch {
                predictions: preds
                    .iter()
                    .map(|p| Answer {
                        predicted_class: state.predicted_class(p.class_index),
                        label: model.label(p),
                        probabilities: &p.probabilities,
                    })
                    .collect(),
            };
            let mut out = Vec::with_capacity(32 + preds.len() * (64 + 24 * model.classes().len()));
            serde_json::to_writer(&mut out, &batch)
                .map_err(|e| AppError::BodyRead(e.to_string()))?;
            (
                out,
                protocols::Predicted::Many(preds.iter().map(|p| p.class_index).collect()),
            )
        }
    };
    // Counted per class by the metrics layer.
    let mut res = json(out);
    res.extensions_mut().insert(predicted);
    Ok(res)
}

/// Serve `app(state)` on `listener` until SIGTERM or Ctrl-C; requests in flight complete
/// before this returns.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let which = tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    };
    tracing::info!(
        signal = which,
        "shutting down; finishing requests in flight"
    );
}

/// Run `app(state)` under the Lambda runtime (API Gateway REST and HTTP APIs, ALB,
/// function URLs). A REST API stage prefix (`/prod/predict`) is removed from the path, so
/// the routes are the same behind every front door.
pub async fn run_lambda(state: AppState) -> Result<(), lambda_http::Error> {
    let svc = tower::ServiceBuilder::new()
        .map_request(strip_stage)
        .service(app(state));
    lambda_http::run(svc).await
}

fn strip_stage(mut req: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return req;
    };
    let path = req.uri().path();
    let Some(rest) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(stage.as_str()))
        .filter(|r| r.starts_with('/'))
    else {
        return req;
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Set up logging: `RUST_LOG` filters (default `info`); `json` writes one JSON object a line.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second initialisation (e.g. in tests) is harmless; ignore it.
    if json {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init();
    } else {
        let _ = builder.with_ansi(false).try_init();
    }
}

/// `GET http://127.0.0.1:{port}/health` with a plain socket (no shell, no client library):
/// true when the answer is 200 within `timeout`.
pub fn check_health(port: u16, timeout: Duration) -> bool {
    let started = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: predict-check\r\n\r\n"
    );
    let left = timeout.saturating_sub(started.elapsed());
    matches!(http_status(&mut s, req.as_bytes(), left), Ok(Some(200)))
}

/// Send a whole HTTP/1.1 `request` on `stream` and read the status code of the answer,
/// each step within `timeout`: `Ok(None)` when the answer does not start with a status
/// line. The rest of the answer is not read.
pub(crate) fn http_status(
    stream: &mut TcpStream,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<Option<u16>> {
    let timeout = timeout.max(Duration::from_millis(1));
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    // "HTTP/1.1 200 OK": the first 12 bytes are all we need.
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let line = &buf[..n];
    if line.len() < 12 || !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
        return Ok(None);
    }
    Ok(std::str::from_utf8(&line[9..12])
        .ok()
        .and_then(|c| c.parse().ok()))
}
