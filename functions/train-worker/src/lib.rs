//! The distributed trainer's worker (issue 18): one task per invocation, defined in
//! `trainer::distributed::task`.
//!
//! - *cv*: one fold's warm-started penalty path over the grid (`trainer::train::fold_path`,
//!   the code a local fit runs), scored on the fold's validation rows;
//! - *gradient*: the block sums of one shard's rows at the event's parameters
//!   (`trainer::solver::shard_block_sums`);
//! - *ping*: nothing (round-trip benchmarks);
//! - *plan* and *finish*: TrainWorkflow's first and last steps
//!   (`trainer::distributed::workflow`): prepare and stage the data and write the CV task
//!   list; gather the CV results, refit (here, or over shards by sending gradient tasks to
//!   the function named by `TRAIN_WORKER_FUNCTION`) and publish.
//!
//! Data comes from the staged objects the event names (`trainer::distributed::stage`); the
//! bytes must hash to the event's sha256 or the task is refused. Parsed rows stay in memory
//! across warm invocations, keyed by that sha256 (which names the object's content and so
//! the shard), so only a cold worker reads S3. The handler is synchronous CPU work; `main`
//! runs it on a blocking thread.
#![warn(missing_docs)]

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use storage::{ReadCondition, S3Options, S3Store};

use model::store::Location;
use trainer::TrainError;
use trainer::data;
use trainer::distributed::engine::{self, Engine, EngineConfig};
use trainer::distributed::stage::{self, StagedRows};
use trainer::distributed::task::{
    self, BlockSums, CvTask, Event, FinishTask, GradientTask, Outcome, PAYLOAD_LIMIT, StagedRef,
    Task, TaskResult, TrainSpec,
};
use trainer::distributed::workflow;
use trainer::solver::{self, Spread};
use trainer::train::{self, PathParams};

/// Parsed objects kept across invocations, at most (oldest dropped first).
pub const CACHE_ENTRIES: usize = 4;

/// Bytes the cache may hold in a function of `memory_mb` megabytes: half of it, since a load
/// briefly needs the object's bytes beside its parsed rows and a task its own working memory
/// (unbounded when unknown: outside Lambda, only [`CACHE_ENTRIES`] bounds it).
pub fn cache_budget(memory_mb: Option<usize>) -> usize {
    memory_mb.map_or(usize::MAX, |mb| mb.saturating_mul(1 << 20) / 2)
}

/// Memory the parsed rows take (values and labels).
fn rows_bytes(rows: &StagedRows) -> usize {
    rows.x.len() * std::mem::size_of::<f64>() + rows.y.len() * std::mem::size_of::<usize>()
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The same event would fail again: bad event, data that does not match its sha256,
    /// a result over the payload limit. Error type `Refused`: the coordinator does not retry.
    #[error("{0}")]
    Refused(String),
    /// Perhaps not next time (S3 unreachable, ...): the coordinator retries.
    #[error("{0}")]
    Failed(String),
}

impl WorkerError {
    /// The Lambda error type: `Refused` or `Failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused(_) => "Refused",
            Self::Failed(_) => "Failed",
        }
    }
}

/// Reads a whole object (S3 in production; a seam for tests).
pub type ReadObject = Box<dyn Fn(&Location) -> Result<Vec<u8>, model::StoreError> + Send + Sync>;

/// The environment variable naming the function a finishing task sends a sharded refit's
/// gradient tasks to (the template sets it to the train-worker function).
pub const WORKER_FUNCTION_ENV: &str = "TRAIN_WORKER_FUNCTION";

/// Reads staged objects (through `read`, S3 in production) and caches what it parsed.
pub struct Worker {
    read: ReadObject,
    cache: Mutex<Vec<(String, Arc<StagedRows>)>>,
    cache_budget: usize,
    worker_function: Option<String>,
}

impl Default for Worker {
    /// Reads from S3 (the standard AWS configuration), one client for every bucket, built
    /// on first use; the body is streamed (no whole-object timeout on a large shard).
    fn default() -> Self {
        let client: OnceLock<Result<S3Store, String>> = OnceLock::new();
        let mut w = Self::new(Box::new(move |loc| read_s3(&client, loc)));
        w.worker_function = std::env::var(WORKER_FUNCTION_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        w.cache_budget = cache_budget(
            std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        );
        w
    }
}

/// Objects larger than this are refused before reading (Lambda's largest memory is 10 GB).
pub const MAX_OBJECT_BYTES: u64 = 10 << 30;

fn read_s3(
    client: &OnceLock<Result<S3Store, String>>,
    loc: &Location,
) -> Result<Vec<u8>, model::StoreError> {
    let Location::S3 { bucket, key } = loc else {
        return Err(model::StoreError::Backend(format!(
            "{loc}: not an s3:// location"
        )));
    };
    let base = client
        .get_or_init(|| {
            S3Store::connect(bucket, "", &S3Options::default()).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| model::StoreError::Backend(e.clone()))?;
    let store = base.with_bucket(bucket, "");
    let mut reader = store
        .open_read(key, &ReadCondition::default())?
        .ok_or_else(|| model::StoreError::NotFound(loc.to_string()))?;
    let size = reader.info().size.unwrap_or(0);
    if size > MAX_OBJECT_BYTES {
        return Err(model::StoreError::Backend(format!(
            "{loc}: {size} bytes, over the worker's {MAX_OBJECT_BYTES}-byte limit; use more shards"
        )));
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    std::io::Read::read_to_end(&mut reader, &mut buf)
        .map_err(|e| model::StoreError::Backend(format!("{loc}: {e}")))?;
    Ok(buf)
}

/// TrainWorkflow's plan: prepare, stage, write the CV task list (S3 only).
fn plan(spec: &TrainSpec) -> Result<task::Plan, WorkerError> {
    let (bucket, prefix) = workflow::store_root(spec).map_err(|e| classify(&e))?;
    let store = S3Store::connect(&bucket, &prefix, &S3Options::default())
        .map_err(|e| classify(&e.into()))?;
    workflow::plan(spec, &store).map_err(|e| classify(&e))
}

/// Whether a plan or finish error may go away by itself (S3 unreachable, a local I/O
/// error: `Failed`, retried) or not (bad input, data that does not fit, a failed CV task:
/// `Refused`).
fn classify(e: &TrainError) -> WorkerError {
    match e {
        TrainError::Io { .. }
        | TrainError::Store(model::StoreError::Backend(_) | model::StoreError::Io { .. }) => {
            WorkerError::Failed(e.to_string())
        }
        _ => WorkerError::Refused(e.to_string()),
    }
}

impl Worker {
    /// A worker reading objects with `read`.
    pub fn new(read: ReadObject) -> Self {
        Self {
            read,
            cache: Mutex::new(Vec::new()),
            cache_budget: usize::MAX,
            worker_function: None,
        }
    }

    /// Keep at most `bytes` of parsed rows across invocations (see [`cache_budget`]).
    #[must_use]
    pub fn with_cache_budget(mut self, bytes: usize) -> Self {
        self.cache_budget = bytes;
        self
    }

    /// Bytes of parsed rows held in the cache now.
    pub fn cached_bytes(&self) -> usize {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.iter().map(|(_, r)| rows_bytes(r)).sum()
    }

    /// The rows of `r`, from the cache or S3; true when read from S3.
    fn rows(&self, r: &StagedRef) -> Result<(Arc<StagedRows>, bool), WorkerError> {
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, rows)) = cache.iter().find(|(sha, _)| *sha == r.sha256) {
                return Ok((Arc::clone(rows), false));
            }
        }
        let loc = Location::parse(&r.uri)
            .map_err(|e| WorkerError::Refused(format!("bad staged uri {:?}: {e}", r.uri)))?;
        if !matches!(loc, Location::S3 { .. }) {
            return Err(WorkerError::Refused(format!(
                "staged uri {:?} is not s3://bucket/key",
                r.uri
            )));
        }
        let bytes = (self.read)(&loc).map_err(|e| match e {
            model::StoreError::NotFound(_) => {
                WorkerError::Refused(format!("{}: staged object not found", r.uri))
            }
            e => WorkerError::Failed(format!("{}: {e}", r.uri)),
        })?;
        let rows = Arc::new(
            stage::decode(&bytes, &r.uri, &r.sha256)
                .map_err(|e| WorkerError::Refused(e.to_string()))?,
        );
        drop(bytes);
        // Oldest out first, until the new rows fit both bounds; rows larger than the whole
        // budget are used for this task and not kept.
        let size = rows_bytes(&rows);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if size <= self.cache_budget {
            let mut held: usize = cache.iter().map(|(_, r)| rows_bytes(r)).sum();
            while !cache.is_empty()
                && (cache.len() >= CACHE_ENTRIES || held.saturating_add(size) > self.cache_budget)
            {
                held -= rows_bytes(&cache.remove(0).1);
            }
            cache.push((r.sha256.clone(), Arc::clone(&rows)));
        }
        Ok((rows, true))
    }

    /// Run one event (raw JSON) to its result.
    pub fn handle(&self, payload: &[u8]) -> Result<TaskResult, WorkerError> {
        let event = task::parse_event(payload).map_err(WorkerError::Refused)?;
        let started_ms = task::now_ms();
        let (outcome, loaded) = self.run(&event)?;
        let result = TaskResult {
            version: task::TASK_VERSION,
            id: event.id.clone(),
            outcome,
            started_ms,
            ended_ms: task::now_ms(),
            loaded,
            peak_rss_bytes: trainer::report::peak_rss_bytes(),
        };
        let size = serde_json::to_vec(&result)
            .map_err(|e| {
                WorkerError::Refused(format!("task {:?}: result not serialisable: {e}", event.id))
            })?
            .len();
        if size > PAYLOAD_LIMIT {
            return Err(WorkerError::Refused(format!(
                "task {:?}: the result is {size} bytes, over Lambda's {PAYLOAD_LIMIT}-byte response limit; \
                 use more shards",
                event.id
            )));
        }
        Ok(result)
    }

    fn run(&self, event: &Event) -> Result<(Outcome, bool), WorkerError> {
        match &event.task {
            Task::Ping {} => Ok((Outcome::Ping {}, false)),
            Task::Cv(t) => self.cv(t),
            Task::Gradient(t) => self.gradient(t),
            Task::Plan(spec) => Ok((Outcome::Plan(plan(spec)?), true)),
            Task::Finish(t) => Ok((Outcome::Finish(self.finish(t)?), true)),
        }
    }

    fn finish(&self, t: &FinishTask) -> Result<task::Published, WorkerError> {
        let spec = &t.plan.spec;
        let root = Location::parse(&spec.store)
            .map_err(|e| WorkerError::Refused(format!("field `store`: {e}")))?;
        let store = storage::open_store(&root).map_err(|e| classify(&e.into()))?;
        let engine = if t.plan.shards.is_empty() {
            None
        } else {
            let function = self.worker_function.clone().ok_or_else(|| {
                WorkerError::Refused(format!(
                    "a sharded refit sends gradient tasks to the worker function: set {WORKER_FUNCTION_ENV}"
                ))
            })?;
            Some(
                Engine::connect(EngineConfig {
                    function,
                    concurrency: spec.concurrency.unwrap_or(t.plan.shards.len()).max(1),
                    retries: engine::DEFAULT_RETRIES,
                    task_timeout: std::time::Duration::from_secs(engine::DEFAULT_TASK_TIMEOUT_SECS),
                    backoff: engine::FIRST_BACKOFF,
                })
                .map_err(|e| classify(&e))?,
            )
        };
        workflow::finish(t, store.as_ref(), engine.as_ref()).map_err(|e| classify(&e))
    }

    fn cv(&self, t: &CvTask) -> Result<(Outcome, bool), WorkerError> {
        let (rows, loaded) = self.rows(&t.data)?;
        if rows.first != 0 || rows.x.nrows() != rows.n {
            return Err(WorkerError::Refused(format!(
                "{}: a CV task needs all training rows, this object holds rows {}..{} of {}",
                t.data.uri,
                rows.first,
                rows.first + rows.x.nrows(),
                rows.n
            )));
        }
        if t.folds < 2 || t.fold >= t.folds || t.folds > rows.n {
            return Err(WorkerError::Refused(format!(
                "field `fold`: fold {} of {} folds over {} rows",
                t.fold, t.folds, rows.n
            )));
        }
        let folds = data::stratified_folds(&rows.y, rows.n_classes, t.folds);
        let train_rows = train::fold_train_rows(&folds, rows.n);
        let path = train::fold_path(
            rows.x.view(),
            &rows.y,
            rows.n_classes,
            &train_rows[t.fold],
            &folds[t.fold],
            &t.order,
            PathParams {
                alphas: &t.alphas,
                max_iter: t.max_iter,
                tol: t.tol,
                solver: t.solver,
            },
            Spread::Off,
            &|| {},
        )
        .map_err(|e| WorkerError::Refused(format!("fold {}: {e}", t.fold)))?;
        Ok((Outcome::Cv(path), loaded))
    }

    fn gradient(&self, t: &GradientTask) -> Result<(Outcome, bool), WorkerError> {
        let (rows, loaded) = self.rows(&t.shard)?;
        let [first, last] = t.blocks;
        if first > last || last > solver::blocks(t.n) {
            return Err(WorkerError::Refused(format!(
                "field `blocks`: {first}..{last} with {} blocks",
                solver::blocks(t.n)
            )));
        }
        let want = solver::block_rows(first, last, t.n);
        if rows.n != t.n || rows.first != want.start || rows.x.nrows() != want.len() {
            return Err(WorkerError::Refused(format!(
                "{}: holds rows {}..{} of {}, but blocks {first}..{last} of {} rows are rows {}..{}",
                t.shard.uri,
                rows.first,
                rows.first + rows.x.nrows(),
                rows.n,
                t.n,
                want.start,
                want.end
            )));
        }
        let sums = solver::shard_block_sums(
            rows.x.view(),
            &rows.y,
            t.n,
            first..last,
            rows.n_classes,
            &t.weights,
        )
        .map_err(|e| WorkerError::Refused(e.to_string()))?;
        let blocks = sums
            .into_iter()
            .map(|s| BlockSums {
                loss: s.loss,
                grad: s.grad,
            })
            .collect();
        Ok((Outcome::Gradient { blocks }, loaded))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ndarray::Array2;

    use super::*;

    /// Four shard objects of 100 rows x 3 columns each (2,400 bytes of values, 800 of labels).
    fn objects() -> Vec<(String, Vec<u8>)> {
        (0..4)
            .map(|s| {
                let x = Array2::from_shape_fn((100, 3), |(i, j)| (s * 300 + i * 3 + j) as f64);
                let y: Vec<usize> = (0..100).map(|i| i % 2).collect();
                let bytes = stage::encode(x.view(), &y, 2, s * 100, 400);
                (format!("s3://b/_staging/x/{s}.bin"), bytes)
            })
            .collect()
    }

    fn ping_rows(w: &Worker, uri: &str, bytes: &[u8]) -> bool {
        let r = StagedRef {
            uri: uri.into(),
            sha256: stage::sha256_hex(bytes),
        };
        w.rows(&r).expect("rows").1
    }

    #[test]
    fn the_cache_holds_what_fits_its_byte_budget_oldest_out_first() {
        let objs = objects();
        let reads = Arc::new(AtomicUsize::new(0));
        let served = objs.clone();
        let counter = Arc::clone(&reads);
        let read: ReadObject = Box::new(move |loc| {
            counter.fetch_add(1, Ordering::Relaxed);
            let uri = loc.to_string();
            served
                .iter()
                .find(|(u, _)| *u == uri)
                .map(|(_, b)| b.clone())
                .ok_or(model::StoreError::NotFound(uri))
        });
        let one = 100 * 3 * 8 + 100 * std::mem::size_of::<usize>();
        // Room for two objects' rows, not three.
        let w = Worker::new(read).with_cache_budget(2 * one + one / 2);
        for (uri, bytes) in &objs[..3] {
            assert!(ping_rows(&w, uri, bytes), "{uri} read from S3");
        }
        assert_eq!(w.cached_bytes(), 2 * one, "the oldest went to make room");
        assert!(
            !ping_rows(&w, &objs[2].0, &objs[2].1),
            "newest still cached"
        );
        assert!(!ping_rows(&w, &objs[1].0, &objs[1].1));
        assert!(
            ping_rows(&w, &objs[0].0, &objs[0].1),
            "the oldest was dropped"
        );
        assert_eq!(reads.load(Ordering::Relaxed), 4);

        // Rows larger than the whole budget are used, never kept.
        let w = Worker::new(Box::new({
            let objs = objs.clone();
            move |_| Ok(objs[3].1.clone())
        }))
        .with_cache_budget(one - 1);
        assert!(ping_rows(&w, &objs[3].0, &objs[3].1));
        assert_eq!(w.cached_bytes(), 0);
        assert!(ping_rows(&w, &objs[3].0, &objs[3].1), "read again");
    }

    #[test]
    fn the_budget_is_half_the_functions_memory() {
        assert_eq!(cache_budget(Some(1769)), 1769 << 19);
        assert_eq!(cache_budget(None), usize::MAX);
    }
}
