//! Task events and results: versioned JSON, the same types on both sides.
//!
//! An event is `{"version": 1, "id": "...", "task": {"cv": {...}}}` (or `"gradient"`,
//! `"ping"`, and TrainWorkflow's `"plan"` and `"finish"`, see [`crate::distributed::workflow`]). Unknown fields are refused and a missing one is named in the error
//! (serde's "missing field `fold`"); an event of another version is refused before its
//! shape is looked at. Floats travel as JSON numbers written shortest-round-trip and read
//! with `float_roundtrip`: the bits arrive unchanged.

use serde::{Deserialize, Serialize};

use crate::solver::SolverKind;
use crate::train::{FoldPath, defaults};

/// The version of [`Event`] and [`TaskResult`] this build speaks.
pub const TASK_VERSION: u32 = 1;

/// AWS Lambda's limit on a synchronous invocation's request and response payloads.
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// A staged object the worker reads: where it is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagedRef {
    /// `s3://bucket/key` of the object.
    pub uri: String,
    /// Hex SHA-256 of the object's bytes; a mismatch is refused.
    pub sha256: String,
}

/// One fold's warm-started penalty path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvTask {
    /// All training rows (standardised) and labels.
    pub data: StagedRef,
    /// Folds of the stratified split (recomputed by the worker from the labels).
    pub folds: usize,
    /// This task's fold.
    pub fold: usize,
    /// The grid, as given.
    pub alphas: Vec<f64>,
    /// Grid indices in path order.
    pub order: Vec<usize>,
    /// Iteration limit per fit.
    pub max_iter: u64,
    /// Gradient tolerance per fit.
    pub tol: f64,
    /// Solver.
    pub solver: SolverKind,
}

/// Loss and gradient sums of one shard's blocks at the given parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientTask {
    /// This shard's rows and labels.
    pub shard: StagedRef,
    /// Shard index.
    pub index: usize,
    /// Shards of the fit.
    pub shards: usize,
    /// Training rows of the whole fit (the chunk and block layout depends on it).
    pub n: usize,
    /// First and one-past-last block of this shard.
    pub blocks: [usize; 2],
    /// Parameters: coefficient rows, then intercepts.
    pub weights: Vec<f64>,
}

/// A training run as TrainWorkflow's input gives it: `trainer fit`'s inputs. Only `data`
/// and `store` are required; every other field has `trainer fit`'s default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Training data, `s3://bucket/key` (CSV).
    pub data: String,
    /// Store root the model is published under, `s3://bucket/prefix`.
    pub store: String,
    /// Model name.
    #[serde(default = "default_name")]
    pub name: String,
    /// Cross-validation folds.
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// Penalty grid (alpha = 1/C); one value skips cross-validation.
    #[serde(default = "defaults::alphas")]
    pub alphas: Vec<f64>,
    /// Seed of the split and the folds.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Data-parallel refit over this many shards; 0 refits in the finishing task.
    #[serde(default)]
    pub shards: usize,
    /// Label column.
    #[serde(default = "default_label")]
    pub label: String,
    /// Holdout file (`s3://`); without it a stratified split of `data` is held out.
    #[serde(default)]
    pub test_data: Option<String>,
    /// Fraction held out when there is no `test_data`.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Iteration limit per fit.
    #[serde(default = "default_max_iter")]
    pub max_iter: u64,
    /// Gradient tolerance per fit.
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Solver.
    #[serde(default = "default_solver")]
    pub solver: SolverKind,
    /// Gradient tasks in flight during a sharded refit (default: all shards at once).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

fn default_name() -> String {
    defaults::NAME.to_string()
}
fn default_folds() -> usize {
    defaults::FOLDS
}
fn default_seed() -> u64 {
    defaults::SEED
}
fn default_label() -> String {
    defaults::LABEL.to_string()
}
fn default_test_fraction() -> f64 {
    defaults::TEST_FRACTION
}
fn default_max_iter() -> u64 {
    defaults::MAX_ITER
}
fn default_tol() -> f64 {
    defaults::TOL
}
fn default_solver() -> SolverKind {
    defaults::SOLVER
}

/// An S3 object by bucket and key (a Step Functions ItemReader's parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Object {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// What the plan task prepared: the finishing task's input, with the CV task list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The run, every default filled in.
    pub spec: TrainSpec,
    /// The CV task list: a JSON array of cv [`Event`]s, one per fold (empty for one alpha).
    pub tasks: S3Object,
    /// Folds cross-validated (0 for one alpha).
    pub folds: usize,
    /// Training rows.
    pub n_train: usize,
    /// SHA-256 of the data file the plan read; the finishing task refuses other bytes.
    pub data_sha256: String,
    /// All training rows, staged.
    pub whole: StagedRef,
    /// One staged object per shard of the refit (empty without shards).
    pub shards: Vec<StagedRef>,
    /// When the plan ran, as the start of a version name (`YYYYMMDDTHHMMSS.mmmZ`): a
    /// finishing task retried after its publish finds that version (same model id, named
    /// after this time) and answers with it instead of publishing again.
    pub planned_at: String,
}

/// The finishing task: the plan and the Map's results, one entry per CV task in plan order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishTask {
    /// The plan task's outcome, as it returned it.
    pub plan: Plan,
    /// Each CV task's [`TaskResult`]; `null` or the item with an `error` field where it
    /// failed (refused, naming the task).
    pub results: Vec<serde_json::Value>,
}

/// The metrics a published model is judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedMetrics {
    /// Holdout accuracy.
    pub accuracy: f64,
    /// Holdout macro F1.
    pub macro_f1: f64,
    /// Mean CV accuracy of the chosen alpha (absent for one alpha).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_accuracy: Option<f64>,
    /// Training rows.
    pub n_train: usize,
    /// Holdout rows.
    pub n_test: usize,
}

/// What the finishing task published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// Model name.
    pub name: String,
    /// The new version.
    pub version: String,
    /// `<store>/<name>/<version>`.
    pub uri: String,
    /// The artifact's content id (the same as `trainer fit` gives for the same inputs).
    pub model_id: String,
    /// Chosen penalty.
    pub alpha: f64,
    /// Holdout and CV metrics.
    pub metrics: PublishedMetrics,
    /// SHA-256 of the training data.
    pub data_sha256: String,
    /// `coordinator` (refit in the finishing task) or `shards` (gradient rounds).
    pub refit: String,
    /// Rounds of gradient tasks of a sharded refit (0 otherwise).
    pub rounds: usize,
    /// True when this task published the version; false when an earlier attempt of the same
    /// finishing task had (a retry after a lost answer), and this one found it.
    pub published_now: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Task {
    /// A CV fold's penalty path.
    Cv(CvTask),
    /// A shard's loss and gradient.
    Gradient(GradientTask),
    /// Nothing: a round trip (benchmarks, smoke tests).
    Ping {},
    /// TrainWorkflow's first step: prepare, stage, write the CV task list.
    Plan(TrainSpec),
    /// TrainWorkflow's last step: gather CV, select, refit, publish.
    Finish(Box<FinishTask>),
}

impl Task {
    /// `cv`, `gradient` or `ping`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cv(_) => "cv",
            Self::Gradient(_) => "gradient",
            Self::Ping {} => "ping",
            Self::Plan(_) => "plan",
            Self::Finish(_) => "finish",
        }
    }
}

/// An invocation's event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// [`TASK_VERSION`].
    pub version: u32,
    /// Names the task in logs and errors, e.g. `cv fold 3` or `gradient round 12 shard 1`.
    pub id: String,
    /// The work.
    pub task: Task,
}

/// One block's loss and gradient sums (see `solver::MAX_BLOCKS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSums {
    /// Summed loss.
    pub loss: f64,
    /// Summed gradient, parameter layout.
    pub grad: Vec<f64>,
}

/// What a task produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Outcome {
    /// The fold's scores and evaluation counts.
    Cv(FoldPath),
    /// The shard's block sums, in block order.
    Gradient {
        /// One per block of the shard.
        blocks: Vec<BlockSums>,
    },
    /// Nothing.
    Ping {},
    /// The plan.
    Plan(Plan),
    /// The published model.
    Finish(Published),
}

/// An invocation's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    /// [`TASK_VERSION`].
    pub version: u32,
    /// The event's id.
    pub id: String,
    /// The result.
    pub outcome: Outcome,
    /// Worker clock, Unix milliseconds, when the task started and ended.
    pub started_ms: u64,
    /// See `started_ms`.
    pub ended_ms: u64,
    /// True when this task had to read its data from S3 (not in the worker's cache).
    pub loaded: bool,
    /// The worker process's peak resident memory so far (Linux `VmHWM`), if known.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// The cross-validation of a fit as tasks: one cv event per fold, each running the whole
/// penalty path in `order` over the staged rows `data` (ids `cv fold F`). `trainer fit
/// --mode lambda` sends them; TrainWorkflow's plan writes them for its Map.
pub fn cv_events(
    data: &StagedRef,
    cfg: &crate::train::TrainConfig,
    folds: usize,
    order: &[usize],
) -> Vec<Event> {
    (0..folds)
        .map(|f| Event {
            version: TASK_VERSION,
            id: cv_id(f),
            task: Task::Cv(CvTask {
                data: data.clone(),
                folds,
                fold: f,
                alphas: cfg.alphas.clone(),
                order: order.to_vec(),
                max_iter: cfg.max_iter,
                tol: cfg.tol,
                solver: cfg.solver,
            }),
        })
        .collect()
}

/// The id of fold `f`'s CV task.
pub fn cv_id(f: usize) -> String {
    format!("cv fold {f}")
}

/// Parse an event: the version first (another version is refused as such), then the
/// whole shape (unknown fields refused, a missing field named).
pub fn parse_event(bytes: &[u8]) -> Result<Event, String> {
    check_version(bytes, "event")?;
    parse_at_path(bytes, "event")
}

/// Parse a result, as [`parse_event`] does an event.
pub fn parse_result(bytes: &[u8]) -> Result<TaskResult, String> {
    check_version(bytes, "result")?;
    parse_at_path(bytes, "result")
}

/// Deserialise, naming the field an error is at (`task.plan.alphas: invalid type: ...`):
/// a workflow's input reaches the worker inside its event, and the user needs the field.
fn parse_at_path<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            format!("bad {what}: {}", e.inner())
        } else {
            format!("bad {what}: field `{path}`: {}", e.inner())
        }
    })?;
    de.end().map_err(|e| format!("bad {what}: {e}"))?;
    Ok(value)
}

fn check_version(bytes: &[u8], what: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Probe {
        version: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| format!("bad {what}: {e}"))?;
    match probe.version {
        Some(v) if v.as_u64() == Some(u64::from(TASK_VERSION)) => Ok(()),
        Some(v) => Err(format!(
            "bad {what}: field `version` is {v}; this build speaks version {TASK_VERSION}"
        )),
        None => Err(format!("bad {what}: missing field `version`")),
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_bad_ones_are_named() {
        let e = Event {
            version: TASK_VERSION,
            id: "gradient round 1 shard 0".into(),
            task: Task::Gradient(GradientTask {
                shard: StagedRef {
                    uri: "s3://b/k".into(),
                    sha256: "ab".into(),
                },
                index: 0,
                shards: 2,
                n: 1437,
                blocks: [0, 3],
                weights: vec![0.1, -1e-300, 1.0 / 3.0, f64::MIN_POSITIVE],
            }),
        };
        let bytes = serde_json::to_vec(&e).expect("json");
        assert_eq!(parse_event(&bytes).expect("parse"), e);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        v["version"] = 2.into();
        let err = parse_event(&serde_json::to_vec(&v).expect("json")).expect_err("v2");
        assert!(err.contains("`version` is 2"), "{err}");
        v["version"] = 1.into();
        if let Some(g) = v["task"]["gradient"].as_object_mut() {
            g.remove("n");
        }
        let err = parse_event(&serde_json::to_vec(&v).expect("json")).expect_err("no n");
        assert!(err.contains("missing field `n`"), "{err}");
        let err = parse_event(br#"{"id":"x","task":{"ping":{}}}"#).expect_err("no version");
        assert!(err.contains("missing field `version`"), "{err}");
        let err = parse_event(br#"{"version":1,"id":"x","task":{"ping":{}},"extra":1}"#)
            .expect_err("extra");
        assert!(err.contains("unknown field `extra`"), "{err}");
        assert!(parse_event(br#"{"version":1,"id":"x","task":{"ping":{}}}"#).is_ok());
        // A workflow's input arrives inside the event: the error names its field.
        let err = parse_event(
            br#"{"version":1,"id":"plan","task":{"plan":{"data":"s3://b/d.csv","store":"s3://b/m","alphas":"0.1,1"}}}"#,
        )
        .expect_err("alphas as a string");
        assert!(
            err.contains("field `task.plan.alphas`") && err.contains("invalid type"),
            "{err}"
        );
    }
}
