//! [`Served`]: one loaded model version and what is precomputed from it when it is
//! loaded (the `/health` body, the answer of each class, the `x-model-version` value).
//! Immutable: a new version is a new `Served`, swapped in whole by the state.

use std::ops::Deref;

use axum::body::Bytes;
use axum::http::HeaderValue;
use model::Model;
use serde::Serialize;

/// One loaded model version and what is precomputed from it. Dereferences to the
/// [`Model`].
#[derive(Debug)]
pub struct Served {
    model: Model,
    version: String,
    /// Where it was loaded from, as `GET /model` shows it (no local directories).
    source: String,
    /// `predicted_class` of each class: the label as an integer when every label is one.
    answers: Vec<i64>,
    /// Whether every class label is an integer.
    integer_labels: bool,
    /// The `GET /health` body.
    health: Bytes,
    /// The `x-model-version` header value.
    version_header: HeaderValue,
    /// When it was loaded, in seconds since the Unix epoch.
    loaded_at: f64,
}

impl Deref for Served {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.model
    }
}

impl Served {
    /// Precompute what requests need from `model`, loaded from `version` at `source`.
    pub fn new(model: Model, version: String, source: String) -> Self {
        let a = model.artifact();
        let parsed: Option<Vec<i64>> = a.classes.iter().map(|c| c.parse().ok()).collect();
        let integer_labels = parsed.is_some();
        let answers = parsed.unwrap_or_else(|| (0..a.classes.len()).map(index_i64).collect());
        let health = serde_json::to_vec(&serde_json::json!({
            "status": "ok",
            "model_id": a.model_id,
            "version": version,
        }))
        .unwrap_or_default();
        let version_header =
            HeaderValue::from_str(&version).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Self {
            model,
            version,
            source,
            answers,
            integer_labels,
            health: health.into(),
            version_header,
            loaded_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The version the model was loaded from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where it was loaded from, as `GET /model` shows it.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The `x-model-version` header value.
    pub(crate) fn version_header(&self) -> HeaderValue {
        self.version_header.clone()
    }

    /// When it was loaded, in seconds since the Unix epoch.
    pub(crate) fn loaded_at(&self) -> f64 {
        self.loaded_at
    }

    /// The `predicted_class` answered for class index `i`.
    pub fn predicted_class(&self, i: usize) -> i64 {
        self.answers.get(i).copied().unwrap_or(-1)
    }

    /// The answer for class index `i` in the other protocols: the label as a JSON integer
    /// when every label is one (as `predicted_class`), the label string otherwise.
    pub(crate) fn label_value(&self, i: usize) -> serde_json::Value {
        if self.integer_labels {
            serde_json::Value::from(self.predicted_class(i))
        } else {
            let classes = self.model.classes();
            serde_json::Value::from(classes.get(i).map_or("", String::as_str))
        }
    }

    /// The `GET /model` body, with the live refresh's status when there is one.
    pub(crate) fn metadata_body(&self, refresh: Option<serde_json::Value>) -> Bytes {
        let a = self.model.artifact();
        serde_json::to_vec(&Metadata {
            name: &a.name,
            version: &self.version,
            model_id: &a.model_id,
            source: &self.source,
            format_version: a.format_version,
            created_at: &a.created_at,
            classes: &a.classes,
            feature_names: &a.feature_names,
            n_features: a.n_features(),
            data_sha256: &a.data_sha256,
            metrics: &a.metrics,
            training: &without_local_paths(&a.training),
            refresh,
        })
        .unwrap_or_default()
        .into()
    }

    /// The `GET /health` body.
    pub(crate) fn health_body(&self) -> Bytes {
        self.health.clone()
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh: Option<serde_json::Value>,
}

fn index_i64(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
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
    }
}
