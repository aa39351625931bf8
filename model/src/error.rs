//! Errors of the model crate: loading, validating, predicting and storing.

use thiserror::Error;

/// Everything that can go wrong with an artifact or a prediction.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The document is not valid JSON or does not have the artifact's shape.
    #[error("model artifact is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The artifact was written by an unknown version of the format.
    #[error("unsupported artifact format_version {found}; this build reads version {supported}")]
    Version {
        /// Version found in the document.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },
    /// The artifact's numbers do not add up (shapes, finiteness, id).
    #[error("invalid model artifact: field `{field}`: {reason}")]
    Invalid {
        /// The offending field, e.g. `coefficients[3]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A row has the wrong number of features.
    #[error("{}expected {expected} features, got {got}", row_prefix(*.row))]
    FeatureCount {
        /// Features the model was trained on.
        expected: usize,
        /// Features supplied.
        got: usize,
        /// Row index within a batch, when the input was a batch.
        row: Option<usize>,
    },
    /// A feature is NaN or infinite.
    #[error("{}feature {index} is not a finite number", row_prefix(*.row))]
    NonFinite {
        /// Index of the offending feature.
        index: usize,
        /// Row index within a batch, when the input was a batch.
        row: Option<usize>,
    },
}

fn row_prefix(row: Option<usize>) -> String {
    match row {
        Some(r) => format!("row {r}: "),
        None => String::new(),
    }
}

impl ModelError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Attach a batch row index to an input error (feature count or non-finite value).
    #[must_use]
    pub fn at_row(self, r: usize) -> Self {
        match self {
            Self::FeatureCount { expected, got, .. } => Self::FeatureCount {
                expected,
                got,
                row: Some(r),
            },
            Self::NonFinite { index, .. } => Self::NonFinite {
                index,
                row: Some(r),
            },
            other => other,
        }
    }

    /// True when the error is about the caller's input rather than the model itself.
    pub fn is_input_error(&self) -> bool {
        matches!(self, Self::FeatureCount { .. } | Self::NonFinite { .. })
    }
}

/// Errors of an artifact store (local directory, S3, ...).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A version that already exists would have been overwritten.
    #[error("refusing to overwrite existing object {0}")]
    AlreadyExists(String),
    /// The URI or a name is not usable.
    #[error("invalid store location {uri}: {reason}")]
    InvalidUri {
        /// The location as given.
        uri: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Local I/O failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (read, write, rename, ...).
        op: &'static str,
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The object's bytes do not match the checksum recorded for them.
    #[error("checksum mismatch for {key}: expected {expected}, got {actual}")]
    Checksum {
        /// The object.
        key: String,
        /// The recorded checksum.
        expected: String,
        /// The checksum of the bytes received.
        actual: String,
    },
    /// A backend (e.g. S3) failed; the message says how.
    #[error("{0}")]
    Backend(String),
    /// The location is not a model store (its root is missing, or a file, ...).
    #[error("{location} is not a model store: {reason}")]
    NotAStore {
        /// The store root (or the path under it) as given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store has no model of that name: no versions and no `latest` pointer.
    #[error("no model at {location}: it has no versions and no latest pointer")]
    NoSuchModel {
        /// Where the model would be (`<root>/<name>`).
        location: String,
    },
    /// The model exists, but not this version of it.
    #[error("{location}: no such version of model {name:?} (`trainer models list` shows them)")]
    NoSuchVersion {
        /// Where the version would be (`<root>/<name>/<version>`).
        location: String,
        /// The model name.
        name: String,
    },
    /// A version that does not pass verification (it does not load, its `model_id` does
    /// not match its content or its version name, it belongs to another model).
    #[error("{location} fails verification: {source}")]
    Unverified {
        /// The version's `model.json`.
        location: String,
        /// What failed.
        #[source]
        source: Box<StoreError>,
    },
    /// Deleting this version would leave `latest` naming nothing.
    #[error("refusing to delete {location}: the latest pointer names it")]
    InUse {
        /// The version's location.
        location: String,
    },
    /// The artifact found in the store is not a valid model.
    #[error("{location}: {source}")]
    Model {
        /// Where the artifact was read from.
        location: String,
        /// What is wrong with it.
        #[source]
        source: ModelError,
    },
}
