//! Errors of the predict function: [`AppError`] for requests (one type, turned into the JSON
//! error body by its [`IntoResponse`] impl) and [`StartupError`] for loading the model.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::{ModelError, StoreError};
use serde::Serialize;
use thiserror::Error;

/// Everything a request can fail with. Each variant has one HTTP status and one stable
/// `code`; the message is for people.
#[derive(Debug, Error)]
pub enum AppError {
    /// The body is not syntactically valid JSON (400).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Valid JSON, but not one of the accepted shapes (422).
    #[error("{0}")]
    InvalidBody(String),
    /// A row has the wrong number of features (422).
    #[error("{0}")]
    FeatureCount(ModelError),
    /// A feature is not a finite number (422).
    #[error("{0}")]
    NonFinite(String),
    /// The body is larger than the configured limit (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch has more rows than the configured cap (413).
    #[error("{rows} rows is more than the limit of {limit} rows a request (MAX_BATCH_ROWS)")]
    TooManyRows {
        /// The rows the request has or declares.
        rows: u64,
        /// The limit.
        limit: usize,
    },
    /// The request declares a content type that is not JSON (415).
    #[error("content-type {0:?} is not supported; send application/json")]
    UnsupportedMediaType(String),
    /// The request's body has a content coding this server does not decode (415).
    #[error(
        "content-encoding {0:?} is not supported; send the body as gzip, deflate or identity (one coding)"
    )]
    UnsupportedEncoding(String),
    /// A request needs an API key and has none, or an unknown one (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The server is at its limit of requests in flight (503, with `Retry-After`).
    #[error("the server is busy ({0} requests in flight); retry shortly")]
    Overloaded(usize),
    /// No route matches the path (404).
    #[error("no route for {method} {path}")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The route exists, but not for this method (405).
    #[error("method {method} is not allowed for {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The request took longer than the configured timeout (408).
    #[error("request did not complete within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The body could not be read (400), e.g. the client went away mid-body.
    #[error("failed to read the request body: {0}")]
    BodyRead(String),
}

impl AppError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::InvalidBody(_) | Self::FeatureCount(_) | Self::NonFinite(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::PayloadTooLarge { .. } | Self::TooManyRows { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType(_) | Self::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The stable machine-readable code of this error (the `error.code` field).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::FeatureCount(_) => "wrong_feature_count",
            Self::NonFinite(_) => "non_finite_value",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::TooManyRows { .. } => "too_many_rows",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::Unauthorized(_) => "unauthorized",
            Self::Overloaded(_) => "overloaded",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Timeout(_) => "timeout",
            Self::BodyRead(_) => "body_read_error",
        }
    }
}

impl From<ModelError> for AppError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::NonFinite { .. } => Self::NonFinite(e.to_string()),
            // Only input errors reach here: the model was validated at start-up.
            _ => Self::FeatureCount(e),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::error!(code = self.code(), %message, "request failed");
        } else {
            tracing::debug!(code = self.code(), %message, "request rejected");
        }
        let body = serde_json::to_vec(&Body {
            error: Detail {
                code: self.code(),
                message: &message,
            },
        })
        .unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Self::Overloaded(_) = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::Unauthorized(_) = &self {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"predict\""),
            );
        }
        if let Self::MethodNotAllowed { path, .. } = &self
            && let Some(allow) = crate::allowed::allowed_methods(path)
        {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        res
    }
}

/// Why the function could not start. Each message names the model location.
#[derive(Debug, Error)]
pub enum StartupError {
    /// `MODEL_URI` does not parse.
    #[error("MODEL_URI {uri:?} is not usable: {source}")]
    BadUri {
        /// The value given.
        uri: String,
        /// Why it does not parse.
        #[source]
        source: StoreError,
    },
    /// The store could not be opened, or the model could not be read or validated.
    #[error("cannot load the model {uri}: {source}")]
    Load {
        /// The model URI.
        uri: String,
        /// What went wrong.
        #[source]
        source: StoreError,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl StartupError {
    /// The error type reported to the Lambda Runtime API when start-up fails under
    /// Lambda (see [`crate::init_error`]), in Lambda's `Category.Reason` form.
    pub fn lambda_error_type(&self) -> &'static str {
        match self {
            Self::Config(_) => "Runtime.InvalidConfig",
            Self::BadUri { .. }
            | Self::Load {
                source: StoreError::InvalidUri { .. },
                ..
            } => "Runtime.InvalidModelUri",
            Self::Load {
                source: StoreError::NotFound(_),
                ..
            } => "Runtime.ModelNotFound",
            Self::Load {
                source: StoreError::Checksum { .. } | StoreError::Model { .. },
                ..
            } => "Runtime.InvalidModel",
            Self::Load { .. } => "Runtime.ModelLoadFailed",
        }
    }
}
