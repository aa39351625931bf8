//! Errors of the trainer library. Every failure a user can cause (bad data, bad flags,
//! an unreachable store) is a value here, never a panic.

use thiserror::Error;

/// Everything that can go wrong while loading data, training, evaluating or publishing.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The data is unusable; `location` names the file and, when known, line and column.
    #[error("{location}: {message}")]
    Data {
        /// `file`, `file: line N` or `file: line N, column M (name)`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A parameter value is out of range or inconsistent with the data.
    #[error("invalid parameter {name}: {message}")]
    Param {
        /// The flag, e.g. `--folds`.
        name: &'static str,
        /// Why it cannot be used.
        message: String,
    },
    /// Reading or writing a local file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The artifact store (or reading data through it) failed.
    #[error(transparent)]
    Store(#[from] model::StoreError),
    /// A registry verb (`trainer models ...`) refused or stopped; `unchanged` says what it
    /// left as it was.
    #[error("{what} ({unchanged}): {source}")]
    Refused {
        /// What was refused, e.g. `cannot promote artifacts/digits/<version>`.
        what: String,
        /// What is as it was, e.g. `latest is unchanged`.
        unchanged: &'static str,
        /// Why.
        source: model::StoreError,
    },
    /// The model crate refused the artifact or a prediction.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// The optimiser failed.
    #[error("solver failed: {0}")]
    Solver(String),
    /// linfa reported an error (dataset or parameter checks).
    #[error("linfa: {0}")]
    Linfa(#[from] linfa::Error),
    /// The linfa-logistic reference solver failed.
    #[error("linfa-logistic: {0}")]
    LinfaLogistic(#[from] linfa_logistic::error::Error),
    /// The rayon thread pool could not be built.
    #[error("cannot build the thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// Serialising a report failed.
    #[error("cannot serialise JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl TrainError {
    /// A data error at a file (no line).
    pub fn data(file: &str, message: impl Into<String>) -> Self {
        Self::Data {
            location: file.to_string(),
            message: message.into(),
        }
    }

    /// A data error at a line of a file.
    pub fn at_line(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self::Data {
            location: format!("{file}: line {line}"),
            message: message.into(),
        }
    }

    /// A data error at a line and (1-based) column of a file; `name` is the column's header.
    pub fn at_cell(
        file: &str,
        line: usize,
        column: usize,
        name: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::Data {
            location: format!("{file}: line {line}, column {column} ({name})"),
            message: message.into(),
        }
    }

    /// An out-of-range or inconsistent parameter.
    pub fn param(name: &'static str, message: impl Into<String>) -> Self {
        Self::Param {
            name,
            message: message.into(),
        }
    }

    /// A local I/O failure.
    pub fn io(op: &'static str, path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_string(),
            source,
        }
    }
}
