//! The crate's one error type.

use model::StoreError;

/// Why scoring a file (or starting up) failed. Bad rows are not errors: they go to the
/// errors file and the other rows are scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The input cannot be scored at all (no header, a feature column missing, a header
    /// longer than the record limit, ...). Nothing is written.
    #[error("{location}: {reason}")]
    Unreadable {
        /// The input, e.g. `s3://bucket/in/a.csv`.
        location: String,
        /// What is wrong, and where (line, column).
        reason: String,
    },
    /// Reading the input failed midway (network, bad gzip, checksum). Nothing is written.
    #[error("{location}: read failed: {source}")]
    Read {
        /// The input.
        location: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing an output failed. Nothing is published.
    #[error("{location}: write failed: {source}")]
    Write {
        /// The output being written.
        location: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A store (local directory or S3) refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A setting is wrong (flag or environment variable named in the message).
    #[error("configuration: {0}")]
    Config(String),
}
