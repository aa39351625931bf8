//! Batch scoring: CSV / JSON Lines files (gzip too) scored with a stored model, on S3
//! events under AWS Lambda or from the command line, streaming with bounded memory.
//!
//! - [`engine`]: records in, scored and refused rows out, parallel over blocks with rayon,
//!   in input order; the probabilities are `model::Model::predict`'s, as `predict` answers.
//! - [`job`]: one file end to end (local or S3 input, outputs published whole, manifest).
//! - [`lambda`]: S3 event records -> jobs, prefixes, model refresh.
//! - [`event`]: the S3 event notification's fields.
//! - [`cli`]: the flags (each an environment variable too).
//!
//! Not here: training, serving single requests (that is `predict`), the artifact format
//! (that is `model`).

pub mod cli;
pub mod engine;
pub mod error;
pub mod event;
pub mod job;
pub mod lambda;
mod records;

pub use cli::Args;
pub use engine::{Format, Settings};
pub use error::ScoreError;
pub use job::{Job, LoadedModel, Manifest, Outcome, Scorer, Stores};
pub use records::{Block, Record, RecordReader};
