//! The Lambda side: S3 `ObjectCreated` events for keys under `INPUT_PREFIX` become jobs
//! whose outputs go under `OUTPUT_PREFIX` (same relative key plus `.out.csv` /
//! `.out.jsonl`, `.errors.csv`, `.manifest.json`), in the event's bucket.
//!
//! A direct invocation (`{"bucket", "key", "version_id"}`, see [`crate::event`]) is
//! handled as one such record, its key taken literally; the same prefix rules apply.
//!
//! The model is loaded once, at cold start. When `MODEL_URI` names a model (not a
//! version), its `latest` pointer is read again before an invocation at most every
//! `MODEL_REFRESH_SECONDS` (default 60, as `predict` under Lambda; 0: never); a new
//! version is loaded with the same checks as at start-up, and one that fails them is
//! refused and the current model kept.
//!
//! Records are scored one after another; each is independent. The invocation fails (so
//! Lambda retries it) when any record failed; the others are scored again then, with the
//! same output, since scoring is deterministic.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::store::Location;
use serde::Serialize;
use storage::{ReadCondition, S3Options};

use crate::engine::Format;
use crate::error::ScoreError;
use crate::event::{S3Event, parse_event};
use crate::job::{Job, LoadedModel, Outcome, Scorer, load_model, outputs_for};

/// The input and output key prefixes, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    input: String,
    output: String,
}

fn normalise(name: &str, p: &str) -> Result<String, ScoreError> {
    let p = p.trim().trim_start_matches('/');
    if p.is_empty() || p.starts_with("s3://") {
        return Err(ScoreError::Config(format!(
            "{name} must be a non-empty key prefix such as \"incoming/\" (not a bucket URI), \
             got {p:?}"
        )));
    }
    Ok(if p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    })
}

impl Prefixes {
    /// Check `INPUT_PREFIX` and `OUTPUT_PREFIX`. A trailing `/` is added when missing.
    /// Refused: an empty prefix, and either inside the other (an output under the input
    /// prefix would trigger the function again, and again).
    pub fn new(input: &str, output: &str) -> Result<Self, ScoreError> {
        let input = normalise("INPUT_PREFIX", input)?;
        let output = normalise("OUTPUT_PREFIX", output)?;
        if output.starts_with(&input) {
            return Err(ScoreError::Config(format!(
                "OUTPUT_PREFIX {output:?} is inside INPUT_PREFIX {input:?}: every output \
                 would trigger the function again"
            )));
        }
        if input.starts_with(&output) {
            return Err(ScoreError::Config(format!(
                "INPUT_PREFIX {input:?} is inside OUTPUT_PREFIX {output:?}: outputs could \
                 land under the input prefix and trigger the function again"
            )));
        }
        Ok(Self { input, output })
    }

    /// The input prefix, ending in `/`.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The output prefix, ending in `/`.
    pub fn output(&self) -> &str {
        &self.output
    }
}

/// What happened to one record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordResult {
    /// `s3://bucket/key` (decoded, or literal from a direct invocation), or the raw key
    /// when it could not be decoded.
    pub input: String,
    /// `scored`, `ignored`, `superseded`, `missing` or `failed`.
    pub status: &'static str,
    /// Why (ignored, failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The manifest (scored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Rows scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_scored: Option<u64>,
    /// Rows refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_refused: Option<u64>,
}

impl RecordResult {
    fn new(input: String, status: &'static str, reason: Option<String>) -> Self {
        Self {
            input,
            status,
            reason,
            manifest: None,
            rows_scored: None,
            rows_refused: None,
        }
    }
}

/// The invocation's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Response {
    /// One entry per record, in the event's order.
    pub records: Vec<RecordResult>,
}

/// The current model and its refresh state.
struct ModelSlot {
    model: LoadedModel,
    last_check: Instant,
}

/// Everything an invocation needs, built once at cold start.
pub struct Handler {
    scorer: Scorer,
    prefixes: Prefixes,
    model: Mutex<ModelSlot>,
    refresh: Option<Duration>,
    s3: S3Options,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("prefixes", &self.prefixes)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// Wrap a loaded model. `refresh_seconds`: see the module documentation (ignored when
    /// the model URI names a version).
    pub fn new(
        scorer: Scorer,
        prefixes: Prefixes,
        model: LoadedModel,
        refresh_seconds: u64,
        s3: S3Options,
    ) -> Self {
        let pinned = model::store::ModelUri::parse(&model.uri)
            .map(|u| u.version.is_some())
            .unwrap_or(true);
        let refresh =
            (refresh_seconds > 0 && !pinned).then(|| Duration::from_secs(refresh_seconds));
        Self {
            scorer,
            prefixes,
            model: Mutex::new(ModelSlot {
                model,
                last_check: Instant::now(),
            }),
            refresh,
            s3,
        }
    }

    /// The model to score with now, after a refresh check if one is due.
    pub fn current_model(&self) -> LoadedModel {
        let mut slot = self
            .model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(every) = self.refresh
            && slot.last_check.elapsed() >= every
        {
            slot.last_check = Instant::now();
            match load_model(&slot.model.uri, &self.s3) {
                Ok(m) if m.version != slot.model.version => {
                    tracing::info!(from = %slot.model.version, to = %m.version, "model refresh: new version loaded");
                    slot.model = m;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, version = %slot.model.version, "model refresh refused; keeping the current version");
                }
            }
        }
        slot.model.clone()
    }

    /// Handle one event (blocking: call it off the async runtime). `Err` lists the
    /// records that failed; the others were handled.
    pub fn handle(&self, event: &S3Event) -> Result<Response, String> {
        let model = self.current_model();
        let mut records = Vec::with_capacity(event.records.len());
        for rec in &event.records {
            let bucket = &rec.s3.bucket.name;
            let key = match rec.key() {
                Ok(k) => k,
                Err(e) => {
                    records.push(RecordResult::new(
                        format!("s3://{bucket}/{}", rec.s3.object.key),
                        "failed",
                        Some(e),
                    ));
                    continue;
                }
            };
            let input = format!("s3://{bucket}/{key}");
            if !rec.direct
                && (rec.event_source != "aws:s3" || !rec.event_name.starts_with("ObjectCreated:"))
            {
                records.push(RecordResult::new(
                    input,
                    "ignored",
                    Some(format!(
                        "not an S3 ObjectCreated event ({} {})",
                        rec.event_source, rec.event_name
                    )),
                ));
                continue;
            }
            let Some(rel) = key.strip_prefix(self.prefixes.input()) else {
                records.push(RecordResult::new(
                    input,
                    "ignored",
                    Some(format!("outside INPUT_PREFIX {:?}", self.prefixes.input())),
                ));
                continue;
            };
            if rel.is_empty() || key.ends_with('/') {
                records.push(RecordResult::new(
                    input,
                    "ignored",
                    Some("a folder marker, not a file".into()),
                ));
                continue;
            }
            let format = Format::from_name(&key);
            let base = Location::S3 {
                bucket: bucket.clone(),
                key: format!("{}{rel}", self.prefixes.output()),
            };
            let (output, errors, manifest) = outputs_for(&base, format.unwrap_or(Format::Csv));
            let job = Job {
                input: Location::S3 {
                    bucket: bucket.clone(),
                    key: key.clone(),
                },
                condition: ReadCondition {
                    version_id: rec.s3.object.version_id.clone().filter(|v| !v.is_empty()),
                    if_match: rec
                        .s3
                        .object
                        .e_tag
                        .as_ref()
                        .filter(|e| !e.is_empty())
                        .map(|e| format!("\"{}\"", e.trim_matches('"'))),
                },
                output,
                errors,
                manifest,
                format,
            };
            let started = Instant::now();
            let result = match self.scorer.run(&model, &job) {
                Ok(Outcome::Scored(m)) => {
                    tracing::info!(input = %input, rows_scored = m.rows_scored, rows_refused = m.rows_refused,
                        seconds = started.elapsed().as_secs_f64(), version = %m.model.version, "scored");
                    RecordResult {
                        manifest: Some(job.manifest.to_string()),
                        rows_scored: Some(m.rows_scored),
                        rows_refused: Some(m.rows_refused),
                        ..RecordResult::new(input, "scored", None)
                    }
                }
                Ok(Outcome::Superseded) => RecordResult::new(
                    input,
                    "superseded",
                    Some("the object changed since this event; its newer version has an event of its own".into()),
                ),
                Ok(Outcome::Missing) => RecordResult::new(
                    input,
                    "missing",
                    Some("the object no longer exists".into()),
                ),
                Err(e) => {
                    tracing::error!(input = %input, error = %e, "scoring failed; nothing written");
                    RecordResult::new(input, "failed", Some(e.to_string()))
                }
            };
            records.push(result);
        }
        let failed: Vec<String> = records
            .iter()
            .filter(|r| r.status == "failed")
            // Each reason names its input already.
            .map(|r| r.reason.clone().unwrap_or_else(|| r.input.clone()))
            .collect();
        if failed.is_empty() {
            Ok(Response { records })
        } else {
            Err(format!(
                "{} of {} records failed: {}",
                failed.len(),
                records.len(),
                failed.join("; ")
            ))
        }
    }
}

/// Serve events until the runtime stops. The scoring runs on a plain thread (not a
/// runtime worker), so the S3 client's blocking calls never stall the runtime.
pub async fn run(handler: Arc<Handler>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let handler = Arc::clone(&handler);
            async move {
                let parsed: S3Event = parse_event(event.payload)?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::Builder::new()
                    .name("score-job".into())
                    .spawn(move || {
                        let _ = tx.send(handler.handle(&parsed));
                    })
                    .map_err(|e| format!("cannot start the scoring thread: {e}"))?;
                let result = rx
                    .await
                    .map_err(|_| "the scoring thread stopped without an answer".to_string())?;
                result.map_err(lambda_runtime::Error::from)
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        let p = Prefixes::new("in", "/out/").expect("ok");
        assert_eq!((p.input(), p.output()), ("in/", "out/"));
        assert!(
            Prefixes::new("in/", "in/scored/").is_err(),
            "output inside input"
        );
        assert!(
            Prefixes::new("data/in/", "data/").is_err(),
            "input inside output"
        );
        assert!(Prefixes::new("in/", "in/").is_err());
        assert!(Prefixes::new("", "out/").is_err());
        assert!(Prefixes::new("in/", "s3://b/out").is_err());
        // "in" must not swallow "input/...".
        assert!(Prefixes::new("in", "input").is_ok());
    }
}
