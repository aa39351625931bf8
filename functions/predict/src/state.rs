//! [`AppState`]: the loaded model and everything precomputed from it once, at start-up
//! (the `/model` and `/health` bodies, the answer of each class), plus the request limits.
//! Every handler takes it; nothing here reads a request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use model::Model;
use model::store::ModelUri;
use serde::Serialize;

use crate::auth::ApiKeys;
use crate::config::{Config, DEFAULT_BODY_LIMIT, DEFAULT_MAX_BATCH_ROWS, DEFAULT_TIMEOUT};
use crate::error::StartupError;

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
    max_batch_rows: usize,
    api_keys: Option<ApiKeys>,
    /// Most requests served at once (`MAX_IN_FLIGHT`, see `crate::limits`).
    max_in_flight: usize,
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
            training: &without_local_paths(&a.training),
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
                max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
                api_keys: None,
                max_in_flight: crate::limits::DEFAULT_MAX_IN_FLIGHT,
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
        if config.max_batch_rows == 0 {
            return Err(StartupError::Config(
                "MAX_BATCH_ROWS must be at least 1".into(),
            ));
        }
        if config.max_in_flight == 0 {
            return Err(StartupError::Config(
                "MAX_IN_FLIGHT must be at least 1".into(),
            ));
        }
        let keys = ApiKeys::load(
            config.api_keys.as_deref(),
            config.api_keys_file.as_deref(),
            config.metrics_public,
        )
        .map_err(|e| StartupError::Config(e.to_string()))?;
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
        Ok(Self::new(model, version, &public_source(&uri))
            .with_limits(config.body_limit, Duration::from_millis(config.timeout_ms))
            .with_max_batch_rows(config.max_batch_rows)
            .with_api_keys(keys)
            .with_max_in_flight(config.max_in_flight))
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

    /// The answer for class index `i` in the other protocols: the label as a JSON integer
    /// when every label is one (as `predicted_class`), the label string otherwise.
    pub(crate) fn label_value(&self, i: usize) -> serde_json::Value {
        let classes = self.inner.model.classes();
        if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
            serde_json::Value::from(self.predicted_class(i))
        } else {
            serde_json::Value::from(classes.get(i).map_or("", String::as_str))
        }
    }

    /// The `GET /model` body.
    pub(crate) fn metadata_body(&self) -> Bytes {
        self.inner.metadata.clone()
    }

    /// The `GET /health` body.
    pub(crate) fn health_body(&self) -> Bytes {
        self.inner.health.clone()
    }

    /// The largest accepted request body, in bytes.
    pub(crate) fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    /// Most rows one batch request may carry.
    pub(crate) fn max_batch_rows(&self) -> usize {
        self.inner.max_batch_rows
    }

    /// The same state with another cap on the rows of a batch request.
    #[must_use]
    pub fn with_max_batch_rows(self, max_batch_rows: usize) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.max_batch_rows = max_batch_rows;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same state with API keys required (`None`: no keys, every route is open).
    #[must_use]
    pub fn with_api_keys(self, keys: Option<ApiKeys>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.api_keys = keys;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The API keys requests need, if any.
    pub(crate) fn api_keys(&self) -> Option<&ApiKeys> {
        self.inner.api_keys.as_ref()
    }

    /// How long a request body may take to arrive.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }
}

/// Load shedding (`crate::limits`).
impl AppState {
    /// The same state with another cap on the requests served at once (`MAX_IN_FLIGHT`).
    #[must_use]
    pub fn with_max_in_flight(self, max_in_flight: usize) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.max_in_flight = max_in_flight;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Most requests served at once; one more is answered 503.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight
    }
}

fn index_i64(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// Where the model came from, as `GET /model` shows it: an S3 URI whole; for a local store
/// only `<name>` (and the version, when pinned), never the machine's directories.
fn public_source(uri: &ModelUri) -> String {
    match &uri.root {
        model::store::Location::S3 { .. } => uri.to_string(),
        model::store::Location::Local(_) => match &uri.version {
            Some(v) => format!("local store: {}/{v}", uri.name),
            None => format!("local store: {}", uri.name),
        },
    }
}

/// The training parameters with local file paths (the trainer's `data`, `test_data`)
/// reduced to their file names; `s3://` locations are kept.
fn without_local_paths(
    training: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = training.clone();
    for key in ["data", "test_data"] {
        if let Some(serde_json::Value::String(path)) = out.get_mut(key)
            && !path.starts_with("s3://")
        {
            let name = std::path::Path::new(path.as_str())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            *path = name;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_metadata_shows_no_local_paths() {
        let mut t = serde_json::Map::new();
        t.insert("data".into(), "/home/me/secret/digits.csv".into());
        t.insert("test_data".into(), "s3://bucket/holdout.csv".into());
        t.insert("seed".into(), 42.into());
        let t = without_local_paths(&t);
        assert_eq!(t["data"], "digits.csv");
        assert_eq!(t["test_data"], "s3://bucket/holdout.csv");
        assert_eq!(t["seed"], 42);
        let local = ModelUri::parse("/srv/models/digits").expect("uri");
        assert_eq!(public_source(&local), "local store: digits");
        let v = "20261127T000000.000Z-000000000000";
        let pinned = ModelUri::parse(&format!("/srv/models/digits/{v}")).expect("uri");
        assert_eq!(public_source(&pinned), format!("local store: digits/{v}"));
        let s3 = ModelUri::parse("s3://b/models/digits").expect("uri");
        assert_eq!(public_source(&s3), "s3://b/models/digits");
    }
}
