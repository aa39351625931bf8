//! The batch trainer: load CSV data, split and standardise it, select an L2 penalty by
//! k-fold cross-validation (sequentially or with rayon), refit, evaluate on the holdout
//! with `model::Model` (the same code the predict function runs), publish the artifact
//! and report.
#![warn(missing_docs)]

pub mod data;
pub mod distributed;
pub mod error;
pub mod kernel;
mod lbfgs;
pub mod solver;

pub use error::TrainError;
pub mod cli;
pub mod progress;
pub mod registry;
pub mod report;
pub mod train;
