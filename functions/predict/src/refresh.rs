//! Live model refresh: when `MODEL_URI` names a model (not a version), its `latest`
//! pointer is checked every `MODEL_REFRESH_SECONDS` (a conditional read: on S3 a GET with
//! `If-None-Match` on the pointer's ETag, so an unchanged model costs one small request
//! and never a download); a new version is loaded and verified
//! off the request path (checksum against the pointer, model_id, shapes, the same feature
//! names as the served model unless `MODEL_ALLOW_SCHEMA_CHANGE`, a warm-up prediction),
//! and only then handed back to be swapped in. A version that fails any of that is
//! refused and the served model stays; an unreachable store is the same. Both are
//! recorded (the status shown by `GET /model`, the counts in `/metrics`) and retried with
//! exponential backoff, up to 16 intervals.
//!
//! This module only checks and loads; swapping and scheduling are the state's business
//! (`AppState::refresh_now`, `AppState::run_refresh`, `AppState::refresh_if_due`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use model::store::{ObjectStore, load, read_latest_if_changed};

use crate::served::Served;

/// What the refresh needs to know besides the store.
#[derive(Debug, Clone)]
pub(crate) struct RefreshSettings {
    /// The model name in the store.
    pub(crate) name: String,
    /// How often `latest` is checked.
    pub(crate) interval: Duration,
    /// Accept a new version whose feature names differ from the served model's.
    pub(crate) allow_schema_change: bool,
}

/// The result of one check, as `/metrics` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckResult {
    /// `latest` names the version being served.
    Unchanged,
    /// A new version was loaded and verified.
    Loaded,
    /// A new version was there but failed verification (kept the old one).
    Refused,
    /// The store could not be read (kept the old one).
    Error,
}

impl CheckResult {
    /// Every result, in the order of [`Refresh::counts`].
    pub(crate) const ALL: [Self; 4] = [Self::Unchanged, Self::Loaded, Self::Refused, Self::Error];

    /// The `result` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Loaded => "loaded",
            Self::Refused => "refused",
            Self::Error => "error",
        }
    }
}

#[derive(Debug)]
struct Status {
    /// RFC 3339, UTC.
    last_check: Option<String>,
    last: Option<CheckResult>,
    reason: Option<String>,
    /// Failed checks in a row (refused or error), for the backoff.
    failures: u32,
    next_due: Instant,
}

/// The live refresh of one model: its store, settings, status and counts.
pub(crate) struct Refresh {
    store: Box<dyn ObjectStore>,
    settings: RefreshSettings,
    status: Mutex<Status>,
    counts: [AtomicU64; 4],
    /// One check at a time: a check that finds another running returns at once. Holds
    /// the tag (ETag, or content hash locally) of the pointer that names the served
    /// version, so an unchanged pointer costs one conditional request.
    running: Mutex<Option<String>>,
}

impl std::fmt::Debug for Refresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresh")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The most intervals a failing check waits before the next try.
const MAX_BACKOFF: u32 = 16;

impl Refresh {
    /// A refresh of `settings.name` in `store`; the first check is one interval away.
    pub(crate) fn new(store: Box<dyn ObjectStore>, settings: RefreshSettings) -> Self {
        let next_due = Instant::now() + settings.interval;
        Self {
            store,
            settings,
            status: Mutex::new(Status {
                last_check: None,
                last: None,
                reason: None,
                failures: 0,
                next_due,
            }),
            counts: Default::default(),
            running: Mutex::new(None),
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        // A poisoned lock only means a check panicked mid-update; the status is still
        // usable (every field is valid on its own).
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The check interval.
    pub(crate) fn interval(&self) -> Duration {
        self.settings.interval
    }

    /// How long until the next check is due (zero when it is).
    pub(crate) fn until_due(&self) -> Duration {
        self.status()
            .next_due
            .saturating_duration_since(Instant::now())
    }

    /// True when a check is due.
    pub(crate) fn is_due(&self) -> bool {
        self.until_due().is_zero()
    }

    /// How many checks ended with each result, in [`CheckResult::ALL`]'s order.
    pub(crate) fn counts(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Check `latest` now (blocking I/O: call it off the async threads). Returns the new
    /// version, verified and warmed up, when there is one to swap in; `None` when the
    /// served one stays (unchanged, refused, the store failed, or another check is
    /// running).
    pub(crate) fn check(&self, current: &Served) -> Option<Arc<Served>> {
        let Ok(mut tag) = self.running.try_lock() else {
            return None;
        };
        let (result, reason, next) = match self.try_load(current, &mut tag) {
            Ok(None) => (CheckResult::Unchanged, None, None),
            Ok(Some(next)) => (CheckResult::Loaded, None, Some(next)),
            Err((result, reason)) => (result, Some(reason), None),
        };
        self.counts[result as usize].fetch_add(1, Ordering::Relaxed);
        let mut st = self.status();
        st.last_check = Some(model::artifact::now_rfc3339());
        st.last = Some(result);
        match result {
            CheckResult::Unchanged | CheckResult::Loaded => st.failures = 0,
            CheckResult::Refused | CheckResult::Error => {
                st.failures = st.failures.saturating_add(1);
            }
        }
        if let Some(reason) = &reason {
            tracing::warn!(
                model = %self.settings.name,
                result = result.as_str(),
                %reason,
                "model refresh: keeping version {}",
                current.version()
            );
        } else if let Some(n) = &next {
            tracing::info!(
                model = %self.settings.name,
                from = current.version(),
                to = n.version(),
                "model refresh: new version loaded"
            );
        }
        // Only a failure's reason is kept: an unchanged check after a refusal still shows
        // why the newer version is not served until `latest` moves again.
        if result != CheckResult::Unchanged {
            st.reason = reason;
        }
        let backoff = 1u32 << st.failures.min(4);
        st.next_due = Instant::now() + self.settings.interval * backoff.min(MAX_BACKOFF);
        next
    }

    /// `Ok(None)`: `latest` names the served version. `Err`: why the served one stays.
    /// `tag` is the served pointer's tag; it moves only when the version it names is the
    /// one served (so a refused version is tried again at the next check).
    fn try_load(
        &self,
        current: &Served,
        tag: &mut Option<String>,
    ) -> Result<Option<Arc<Served>>, (CheckResult, String)> {
        let store = self.store.as_ref();
        let name = &self.settings.name;
        let Some((latest, new_tag)) = read_latest_if_changed(store, name, tag.as_deref())
            .map_err(|e| (CheckResult::Error, format!("reading latest: {e}")))?
        else {
            return Ok(None);
        };
        if latest.version == current.version() {
            *tag = Some(new_tag);
            return Ok(None);
        }
        // `load` reads the pointer again and checks the version against its checksum.
        let (model, version) = load(store, name, None).map_err(|e| {
            let kind = match e {
                model::StoreError::Checksum { .. } | model::StoreError::Model { .. } => {
                    CheckResult::Refused
                }
                _ => CheckResult::Error,
            };
            (kind, format!("version {}: {e}", latest.version))
        })?;
        if version == current.version() {
            return Ok(None);
        }
        let refuse = |why: String| (CheckResult::Refused, format!("version {version}: {why}"));
        let (old, new) = (current.artifact(), model.artifact());
        if !self.settings.allow_schema_change && old.feature_names != new.feature_names {
            return Err(refuse(format!(
                "its feature names differ from the served model's ({} vs {}); clients would break (MODEL_ALLOW_SCHEMA_CHANGE=1 accepts it)",
                new.feature_names.len(),
                old.feature_names.len()
            )));
        }
        // Warm-up: one prediction on the training mean must give probabilities.
        let mean = new.scaler.mean.clone();
        match model.predict(&mean) {
            Ok(p) if p.probabilities.iter().all(|x| x.is_finite()) => {}
            Ok(_) => return Err(refuse("the warm-up prediction is not finite".into())),
            Err(e) => return Err(refuse(format!("the warm-up prediction failed: {e}"))),
        }
        // The pointer may have moved again between the two reads: keep the tag only when
        // it still names the version loaded.
        *tag = (version == latest.version).then_some(new_tag);
        Ok(Some(Arc::new(Served::new(
            model,
            version,
            current.source().to_string(),
        ))))
    }

    /// The status shown by `GET /model` under `refresh`.
    pub(crate) fn status_json(&self) -> serde_json::Value {
        let st = self.status();
        serde_json::json!({
            "interval_seconds": self.settings.interval.as_secs(),
            "last_check": st.last_check,
            "result": st.last.map(CheckResult::as_str),
            "reason": st.reason,
            "failures_in_a_row": st.failures,
            "next_check_in_seconds": st.next_due.saturating_duration_since(Instant::now()).as_secs(),
        })
    }
}
