//! The model artifact, inference and storage layout shared by the trainer and the
//! predict function.
//!
//! - [`Artifact`]: the versioned JSON document and its validation.
//! - [`Model`]: a validated artifact that predicts; bad input is an error value.
//! - [`store`]: the `<root>/<name>/<version>/model.json` + `latest` layout over a tiny
//!   [`store::ObjectStore`] trait, with a local-directory backend.
//!
//! No training code and no cloud SDK live here.

pub mod artifact;
pub mod classifier;
pub mod error;
pub mod store;

pub use artifact::{Artifact, FORMAT_VERSION, Scaler};
pub use classifier::{Model, Prediction};
pub use error::{ModelError, StoreError};
