//! The coordinator's side: the Lambda client, concurrent `Invoke`s with bounded retries,
//! and the [`Distributor`] that turns a fit's CV and refit into tasks.
//!
//! The client is built once per fit from the standard AWS configuration (environment,
//! profile, role; `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL` for an emulator), with
//! the SDK's own retries off: this module counts, reports and bounds every retry itself.
//! A task that fails (function error, throttling, timeout, lost connection) is sent again
//! after a backoff, at most `retries` times; then the fit stops with an error naming the
//! task, the function and the last error. Tasks are pure functions of their events, so a
//! retry is always safe. An error the worker marks `Refused` (bad or changed data, a wrong
//! event) and an unknown function are not retried.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_smithy_http_client::tls;
use serde::Serialize;

use crate::distributed::stage::Staged;
use crate::distributed::task::{
    self, BlockSums, Event, GradientTask, Outcome, PAYLOAD_LIMIT, Task, TaskResult,
};
use crate::error::TrainError;
use crate::kernel::ChunkSums;
use crate::progress::Progress;
use crate::solver::{self, BlockEval};
use crate::train::{Distributor, FoldPath, TrainConfig};

/// The worker's error type for a task that must not be retried.
pub const REFUSED: &str = "Refused";

/// Retries of a failed task by default (`--retries`, and TrainWorkflow's finishing task).
pub const DEFAULT_RETRIES: u32 = 3;
/// Seconds allowed for one invocation by default (`--task-timeout`): Lambda's own limit of
/// 900 s, and a little for the round trip.
pub const DEFAULT_TASK_TIMEOUT_SECS: u64 = 905;
/// The first backoff before a retry (doubled after each retry of the same task, at most 5 s).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Settings of the Lambda engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Function name or ARN.
    pub function: String,
    /// Invocations in flight at most.
    pub concurrency: usize,
    /// Retries of a failed task (after its first attempt).
    pub retries: u32,
    /// Time allowed for one invocation.
    pub task_timeout: Duration,
    /// First backoff; doubled after each retry of the same task, at most 5 s.
    pub backoff: Duration,
}

/// One task as the coordinator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskTiming {
    /// The task's id.
    pub id: String,
    /// `cv`, `gradient` or `ping`.
    pub kind: &'static str,
    /// Attempts (1 without retries).
    pub attempts: u32,
    /// Seconds from the first send to the accepted answer, retries included.
    pub seconds: f64,
    /// Seconds the worker spent on the accepted attempt (its own clock).
    pub worker_seconds: f64,
    /// Worker clock, Unix ms, start and end of the accepted attempt.
    pub started_ms: u64,
    /// See `started_ms`.
    pub ended_ms: u64,
    /// Whether the worker read the data from S3 (cold cache).
    pub loaded: bool,
    /// The worker's peak resident memory when it answered, if it said.
    pub peak_rss_bytes: Option<u64>,
}

/// What the engine did, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineStats {
    /// Tasks completed.
    pub tasks: usize,
    /// Retries (attempts beyond each task's first).
    pub retries: usize,
    /// Seconds spent waiting on rounds of invocations (wall clock).
    pub invoke_seconds: f64,
    /// Rounds of gradient tasks (data-parallel refit evaluations).
    pub rounds: usize,
    /// Every task.
    pub task_timings: Vec<TaskTiming>,
}

/// The Lambda client and the retry policy.
pub struct Engine {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_lambda::Client,
    cfg: EngineConfig,
    stats: Mutex<EngineStats>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt.
    Retry(String),
    /// Not: the same event would fail the same way.
    Permanent(String),
}

impl Engine {
    /// Build the client (no request is made).
    pub fn connect(cfg: EngineConfig) -> Result<Self, TrainError> {
        if cfg.function.trim().is_empty() {
            return Err(TrainError::param("--function", "name the worker function"));
        }
        if cfg.concurrency == 0 {
            return Err(TrainError::param("--concurrency", "must be at least 1"));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("trainer-lambda")
            .enable_all()
            .build()
            .map_err(|e| TrainError::io("start", "the Lambda client runtime", e))?;
        let endpoint =
            env_nonempty("AWS_ENDPOINT_URL_LAMBDA").or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
        let region = env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION"));
        let timeout = cfg.task_timeout;
        let sdk = rt.block_on(async move {
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https();
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(3))
                        .operation_attempt_timeout(timeout)
                        .operation_timeout(timeout)
                        .build(),
                );
            // An emulator takes any region; do not go looking for one on the metadata service.
            match (region, &endpoint) {
                (Some(r), _) => loader = loader.region(aws_config::Region::new(r)),
                (None, Some(_)) => loader = loader.region(aws_config::Region::new("us-east-1")),
                (None, None) => {}
            }
            loader.load().await
        });
        if sdk.region().is_none() {
            return Err(TrainError::param(
                "--function",
                "no AWS region configured for the Lambda client; set AWS_REGION",
            ));
        }
        Ok(Self {
            rt,
            client: aws_sdk_lambda::Client::new(&sdk),
            cfg,
            stats: Mutex::new(EngineStats::default()),
        })
    }

    /// The function tasks go to.
    pub fn function(&self) -> &str {
        &self.cfg.function
    }

    /// What the engine did so far.
    pub fn stats(&self) -> EngineStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Run `events` concurrently (at most `concurrency` in flight), each retried as the
    /// policy says; the results in the events' order. The first task that fails for good
    /// stops the round (the others are abandoned) with an error naming it.
    pub fn run(
        &self,
        events: &[Event],
        on_done: &(dyn Fn() + Sync),
    ) -> Result<Vec<TaskResult>, TrainError> {
        let started = Instant::now();
        let n = events.len();
        let mut payloads = Vec::with_capacity(n);
        for e in events {
            let bytes = serde_json::to_vec(e)?;
            if bytes.len() > PAYLOAD_LIMIT {
                return Err(TrainError::Solver(format!(
                    "task {:?}: its event is {} bytes, over Lambda's {PAYLOAD_LIMIT}-byte payload limit",
                    e.id,
                    bytes.len()
                )));
            }
            payloads.push(bytes);
        }
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(self.cfg.concurrency));
        let outcome = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, (e, bytes)) in events.iter().zip(payloads).enumerate() {
                let sem = std::sync::Arc::clone(&sem);
                let client = self.client.clone();
                let cfg = self.cfg.clone();
                let id = e.id.clone();
                let kind = e.task.kind();
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    (i, attempt_all(&client, &cfg, &id, kind, bytes).await)
                });
            }
            let mut results: Vec<Option<(TaskResult, TaskTiming)>> = vec![None; n];
            while let Some(joined) = set.join_next().await {
                let (i, r) =
                    joined.map_err(|e| TrainError::Solver(format!("a task runner failed: {e}")))?;
                let (r, timing, retries) = r?;
                if let Ok(mut s) = self.stats.lock() {
                    s.retries += retries;
                }
                on_done();
                results[i] = Some((r, timing));
            }
            Ok::<_, TrainError>(results)
        });
        let elapsed = started.elapsed().as_secs_f64();
        if let Ok(mut s) = self.stats.lock() {
            s.invoke_seconds += elapsed;
        }
        let results = outcome?;
        let mut out = Vec::with_capacity(n);
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (e, r) in events.iter().zip(results) {
            let Some((r, timing)) = r else {
                return Err(TrainError::Solver(format!("task {:?}: no result", e.id)));
            };
            stats.tasks += 1;
            stats.task_timings.push(timing);
            out.push(r);
        }
        Ok(out)
    }

    fn note_round(&self) {
        if let Ok(mut s) = self.stats.lock() {
            s.rounds += 1;
        }
    }
}

/// Every attempt of one task: the result, its timing and the retries it took.
async fn attempt_all(
    client: &aws_sdk_lambda::Client,
    cfg: &EngineConfig,
    id: &str,
    kind: &'static str,
    payload: Vec<u8>,
) -> Result<(TaskResult, TaskTiming, usize), TrainError> {
    let started = Instant::now();
    let mut backoff = cfg.backoff;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let failure = match invoke_once(client, &cfg.function, payload.clone()).await {
            Ok(bytes) => match task::parse_result(&bytes) {
                Ok(r) if r.id == id => {
                    let timing = TaskTiming {
                        id: id.to_string(),
                        kind,
                        attempts: attempt,
                        seconds: started.elapsed().as_secs_f64(),
                        #[allow(clippy::cast_precision_loss)]
                        worker_seconds: r.ended_ms.saturating_sub(r.started_ms) as f64 / 1000.0,
                        started_ms: r.started_ms,
                        ended_ms: r.ended_ms,
                        loaded: r.loaded,
                        peak_rss_bytes: r.peak_rss_bytes,
                    };
                    return Ok((r, timing, (attempt - 1) as usize));
                }
                Ok(r) => Failure::Permanent(format!("the answer is for task {:?}", r.id)),
                Err(e) => Failure::Permanent(e),
            },
            Err(f) => f,
        };
        let (last, permanent) = match failure {
            Failure::Retry(m) => (m, false),
            Failure::Permanent(m) => (m, true),
        };
        if permanent || attempt > cfg.retries {
            let tries = if permanent {
                format!("after {attempt} attempt(s), not retried")
            } else {
                format!("after {attempt} attempts")
            };
            return Err(TrainError::Solver(format!(
                "task {id:?} on function {:?} failed {tries}: {last}",
                cfg.function
            )));
        }
        eprintln!(
            "trainer: task {id:?} attempt {attempt} failed ({last}); retrying in {} ms",
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One `Invoke`: the answer's bytes, or how it failed.
async fn invoke_once(
    client: &aws_sdk_lambda::Client,
    function: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    let sent = client
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload))
        .send()
        .await;
    match sent {
        Ok(out) => {
            let body = out
                .payload()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default();
            match out.function_error() {
                None => Ok(body),
                Some(kind) => Err(function_failure(kind, &body)),
            }
        }
        Err(SdkError::ServiceError(e)) => {
            let err = e.err();
            if err.is_resource_not_found_exception() {
                return Err(Failure::Permanent(format!(
                    "no such function ({})",
                    DisplayErrorContext(err)
                )));
            }
            let raw = e.raw();
            let status = raw.status().as_u16();
            let body = raw.body().bytes().map(<[u8]>::to_vec).unwrap_or_default();
            // cargo-lambda's emulator answers a function error with HTTP 500 and the
            // error document as its body; AWS with 200 and X-Amz-Function-Error.
            if status == 404 {
                return Err(Failure::Permanent(format!(
                    "no such function (HTTP 404: {})",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                )));
            }
            if !body.is_empty()
                && serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|v| v.get("errorType").is_some())
            {
                return Err(function_failure("Unhandled", &body));
            }
            Err(Failure::Retry(format!(
                "HTTP {status}: {}",
                DisplayErrorContext(err)
            )))
        }
        Err(e) => Err(Failure::Retry(DisplayErrorContext(&e).to_string())),
    }
}

/// A function error: its type and message from the error document.
fn function_failure(kind: &str, body: &[u8]) -> Failure {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let ty = doc["errorType"].as_str().unwrap_or(kind).to_string();
    let msg = doc["errorMessage"].as_str().map_or_else(
        || String::from_utf8_lossy(body).chars().take(500).collect(),
        str::to_string,
    );
    let text = format!("function error {ty}: {msg}");
    if ty == REFUSED || ty.ends_with("::Refused") {
        Failure::Permanent(text)
    } else {
        Failure::Retry(text)
    }
}

/// A fit's work as Lambda tasks: CV folds, and (with shards) the refit's gradient rounds.
pub struct LambdaDistributor<'e> {
    engine: &'e Engine,
    staged: &'e Staged,
    cfg: &'e TrainConfig,
    n: usize,
    n_classes: usize,
    round: AtomicUsize,
}

impl<'e> LambdaDistributor<'e> {
    /// Tasks for a fit of `cfg` over `n` staged training rows of `n_classes` classes.
    pub fn new(
        engine: &'e Engine,
        staged: &'e Staged,
        cfg: &'e TrainConfig,
        n: usize,
        n_classes: usize,
    ) -> Self {
        Self {
            engine,
            staged,
            cfg,
            n,
            n_classes,
            round: AtomicUsize::new(0),
        }
    }
}

fn event(id: String, task: Task) -> Event {
    Event {
        version: task::TASK_VERSION,
        id,
        task,
    }
}

impl Distributor for LambdaDistributor<'_> {
    fn cv(
        &self,
        folds: usize,
        order: &[usize],
        progress: &Progress,
    ) -> Result<Vec<FoldPath>, TrainError> {
        let events = task::cv_events(&self.staged.whole, self.cfg, folds, order);
        progress.start("cross-validation (lambda tasks)", folds);
        let done = AtomicUsize::new(0);
        let results = self.engine.run(&events, &|| {
            progress.tick(done.fetch_add(1, Ordering::Relaxed) + 1);
        })?;
        results
            .into_iter()
            .map(|r| match r.outcome {
                Outcome::Cv(p) => Ok(p),
                _ => Err(TrainError::Solver(format!(
                    "task {:?}: the answer is not a CV result",
                    r.id
                ))),
            })
            .collect()
    }

    fn refit(&self) -> Option<&dyn BlockEval> {
        if self.staged.shards.is_empty() {
            None
        } else {
            Some(self)
        }
    }
}

impl BlockEval for LambdaDistributor<'_> {
    fn block_sums(&self, w: &[f64]) -> Result<Vec<ChunkSums>, TrainError> {
        let round = self.round.fetch_add(1, Ordering::Relaxed) + 1;
        let shards = self.staged.shards.len();
        let events: Vec<Event> = self
            .staged
            .shards
            .iter()
            .enumerate()
            .map(|(s, r)| {
                let b = solver::shard_blocks(s, shards, self.n);
                event(
                    format!("gradient round {round} shard {s}"),
                    Task::Gradient(GradientTask {
                        shard: r.clone(),
                        index: s,
                        shards,
                        n: self.n,
                        blocks: [b.start, b.end],
                        weights: w.to_vec(),
                    }),
                )
            })
            .collect();
        let results = self.engine.run(&events, &|| {})?;
        self.engine.note_round();
        let dim = w.len();
        let mut out = Vec::with_capacity(solver::blocks(self.n));
        for (s, r) in results.into_iter().enumerate() {
            let want = solver::shard_blocks(s, shards, self.n).len();
            let Outcome::Gradient { blocks } = r.outcome else {
                return Err(TrainError::Solver(format!(
                    "task {:?}: the answer is not a gradient result",
                    r.id
                )));
            };
            if blocks.len() != want || blocks.iter().any(|b| b.grad.len() != dim) {
                return Err(TrainError::Solver(format!(
                    "task {:?}: {} block sums (expected {want} of {dim} values each)",
                    r.id,
                    blocks.len()
                )));
            }
            out.extend(
                blocks
                    .into_iter()
                    .map(|BlockSums { loss, grad }| ChunkSums { loss, grad }),
            );
        }
        let _ = self.n_classes;
        Ok(out)
    }
}
