//! The function's configuration: every flag is also an environment variable, and the
//! defaults that `make serve` and the template rely on.
//!
//! Parsing only; checking the values against each other is [`crate::state::AppState::load`]'s
//! business.

use std::time::Duration;

/// Default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on the rows of one batch request.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 10_000;
/// Default of `MAX_IN_FLIGHT`: a 2-core instance computes a
/// prediction in microseconds, so 64 requests at once is already a deep queue; each holds
/// at most one body (`BODY_LIMIT_BYTES`) and its parse, which bounds the memory of a burst.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
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
    /// Check the model's `latest` pointer every this many seconds and serve a new version
    /// without a restart (default: 30 in the plain server, 60 under Lambda; 0 turns it
    /// off). Ignored when `MODEL_URI` names a version: that pins it.
    #[arg(long, env = "MODEL_REFRESH_SECONDS")]
    pub model_refresh_seconds: Option<u64>,
    /// Accept a new version whose feature names differ from the served model's (its
    /// clients may break); refused otherwise.
    #[arg(long, env = "MODEL_ALLOW_SCHEMA_CHANGE")]
    pub model_allow_schema_change: bool,
    /// Most rows one batch request may carry (`instances`, V2 `[N, F]`, `/invocations`).
    #[arg(long, env = "MAX_BATCH_ROWS", default_value_t = DEFAULT_MAX_BATCH_ROWS)]
    pub max_batch_rows: usize,
    /// A client must send a request's whole header within this many milliseconds of its
    /// first byte, or of the connection's start (plain HTTP mode only).
    #[arg(long, env = "HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_timeout_ms: u64,
    /// A keep-alive connection with no request for this many milliseconds is closed
    /// (plain HTTP mode only).
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
    /// Most open connections; one more is answered 503 with `Retry-After` and closed
    /// (plain HTTP mode only).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4_096)]
    pub max_connections: usize,
    /// Most requests being served at once; beyond it a request is answered 503 with
    /// `Retry-After` at once (load shedding).
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// API keys, comma-separated: when any is set (here or in `API_KEYS_FILE`), every
    /// route but the health routes needs one, as `Authorization: Bearer KEY` or
    /// `x-api-key: KEY`.
    #[arg(long, env = "API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// A file of API keys, one a line (blank lines and `#` comments skipped).
    #[arg(long, env = "API_KEYS_FILE")]
    pub api_keys_file: Option<std::path::PathBuf>,
    /// Serve `GET /metrics` without an API key even when keys are set.
    #[arg(long, env = "METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Log format: `text` or `json` (default: json under Lambda, text elsewhere).
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Health-check a server running on 127.0.0.1:$PORT and exit 0 (healthy) or 1;
    /// for container health checks without a shell.
    #[arg(long)]
    pub check: bool,
}
