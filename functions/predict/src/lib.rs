//! The predict function: one axum [`Router`] ([`app`]) that answers `POST /predict`,
//! `GET /health` and `GET /model` (and the other protocols, see `protocols`) from a model
//! loaded once, at start-up.
//!
//! The same router runs two ways (see the `predict` binary):
//! - under AWS Lambda or `cargo lambda watch` (`AWS_LAMBDA_RUNTIME_API` set), through
//!   [`run_lambda`], which hands it to `lambda_http::run`;
//! - anywhere else through [`serve`], our own hyper accept loop on `HOST:PORT`, with
//!   connection limits ([`ServerLimits`]) and graceful shutdown.
//!
//! Everything expensive (reading and validating the artifact, the `/model` document, the
//! class labels as answered) is built once in [`AppState::new`]; a request only parses its
//! body, runs the model and writes the answer.
//!
//! This file only assembles the router; the modules below it never import from it.
//! This crate does not train and does not define the artifact: that is the `model` crate.

mod allowed;
pub mod auth;
mod body;
mod config;
pub mod error;
mod health_check;
pub mod init_error;
mod json_errors;
mod lambda;
mod limits;
mod logging;
mod model_version;
mod protocols;
mod refresh;
mod request;
mod served;
mod server;
mod state;

use axum::Router;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{get, post};

pub use config::{Config, DEFAULT_BODY_LIMIT, DEFAULT_MODEL_URI, DEFAULT_TIMEOUT};
pub use error::{AppError, StartupError};
pub use health_check::check_health;
pub use logging::init_tracing;
pub use request::{Input, parse as parse_input};
pub use served::Served;
pub use server::ServerLimits;
pub use state::AppState;

/// The router: `POST /predict`, `GET /health`, `GET /model`, the other protocols, JSON
/// 404 / 405 answers; a request whose body does not arrive within the timeout is answered
/// 408. Layers, from the outside in: metrics (counts every answer), `x-model-version`,
/// JSON error bodies for
/// errors made below the handlers, load shedding (`MAX_IN_FLIGHT`, before any key is
/// hashed), API keys (when configured).
pub fn app(state: AppState) -> Router {
    use protocols::native;
    let mut router = Router::new()
        .route("/predict", post(native::predict))
        .route("/health", get(native::health))
        .route("/model", get(native::metadata))
        .merge(protocols::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(keys) = state.api_keys() {
        router = router.layer(middleware::from_fn_with_state(keys.clone(), auth::require));
    }
    router
        .layer(limits::InFlight::new(state.max_in_flight()))
        .layer(json_errors::JsonErrorsLayer)
        .layer(model_version::VersionLayer::new(state.clone()))
        .layer(protocols::metrics_layer(&state))
        .with_state(state)
}

/// Serve `app(state)` over plain HTTP on `listener` within `limits` until SIGTERM or
/// Ctrl-C (see `server`); requests in flight complete before this returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ServerLimits,
) -> std::io::Result<()> {
    server::serve_router(listener, app(state), limits).await
}

/// Run `app(state)` under the Lambda runtime (see `lambda`): every front door Lambda has,
/// the model refreshed at the start of the first invocation after the interval.
pub async fn run_lambda(state: AppState) -> Result<(), lambda_http::Error> {
    lambda::run(app(state.clone()), state).await
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
