//! Distributed training on AWS Lambda (issue 18): the trainer as coordinator, `train-worker`
//! as the worker.
//!
//! - [`task`]: the versioned events and results, defined once for both sides.
//! - [`stage`]: the prepared training rows as compact checksummed binary objects under
//!   `<store>/_staging/`, content-addressed, and the worker's reader of them.
//! - [`engine`]: the coordinator's Lambda client: concurrent `Invoke`s, bounded retries,
//!   the CV tasks and the data-parallel refit's gradient rounds.
//! - [`workflow`]: TrainWorkflow's plan and finish steps (issue 20), run by the worker.
//!
//! The model is the same bit for bit as `--mode seq`: a CV task runs exactly the local
//! fold path ([`crate::train::fold_path`]) and a gradient task returns its shard's block
//! sums ([`crate::solver::shard_block_sums`]), which the coordinator adds in block order
//! as one machine does.

pub mod engine;
pub mod stage;
pub mod task;
pub mod workflow;
