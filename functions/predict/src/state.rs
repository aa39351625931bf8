//! [`AppState`]: the model being served and everything precomputed from it when it was
//! loaded ([`Served`]: the `/health` body, the answer of each class, the `x-model-version`
//! value), swapped whole when a new version is loaded (see `crate::refresh`); plus the
//! request limits and keys, fixed at start-up. Every handler takes it; nothing here reads
//! a request.
//!
//! A request takes one snapshot ([`AppState::served`]) and uses it to the end, so it
//! finishes on the model it started with while a swap happens beside it.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use model::Model;
use model::store::ModelUri;

use crate::auth::ApiKeys;
use crate::config::{
    Config, DEFAULT_BODY_LIMIT, DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT,
};
use crate::error::StartupError;
use crate::refresh::{Refresh, RefreshSettings};
use crate::served::Served;

/// The served model and the settings; cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    served: ArcSwap<Served>,
    settings: Settings,
    /// The live refresh, when `MODEL_URI` names a model (not a version) and it is on.
    refresh: Option<Arc<Refresh>>,
}

/// The request limits and keys: fixed at start-up.
#[derive(Debug, Clone)]
struct Settings {
    body_limit: usize,
    timeout: Duration,
    max_batch_rows: usize,
    api_keys: Option<ApiKeys>,
    /// Most requests served at once (`MAX_IN_FLIGHT`, see `crate::limits`).
    max_in_flight: usize,
}

impl AppState {
    /// Wrap a loaded model. `version` is the version it was loaded from and `source` the
    /// location it came from (shown by `GET /model`). No live refresh.
    pub fn new(model: Model, version: String, source: &str) -> Self {
        Self::from_parts(
            Arc::new(Served::new(model, version, source.to_string())),
            Settings {
                body_limit: DEFAULT_BODY_LIMIT,
                timeout: DEFAULT_TIMEOUT,
                max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
                api_keys: None,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            },
            None,
        )
    }

    fn from_parts(served: Arc<Served>, settings: Settings, refresh: Option<Arc<Refresh>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                served: ArcSwap::new(served),
                settings,
                refresh,
            }),
        }
    }

    /// The same state with `f` applied to its settings (builders, before serving).
    fn with_settings(self, f: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings.clone();
        f(&mut settings);
        Self::from_parts(
            self.inner.served.load_full(),
            settings,
            self.inner.refresh.clone(),
        )
    }

    /// Load the model `config.model_uri` names (local or S3), validate it, and apply the
    /// limits of `config`; with a model (not a version) named and `MODEL_REFRESH_SECONDS`
    /// not 0, keep the store open for the live refresh (the plain server's default
    /// interval). Synchronous: call it before starting a runtime.
    pub fn load(config: &Config) -> Result<Self, StartupError> {
        Self::load_for(config, false)
    }

    /// [`AppState::load`], saying whether this runs under Lambda (the refresh default).
    pub fn load_for(config: &Config, lambda: bool) -> Result<Self, StartupError> {
        for (value, name) in [
            (config.body_limit, "BODY_LIMIT_BYTES"),
            (usize::from(config.timeout_ms != 0), "REQUEST_TIMEOUT_MS"),
            (config.max_batch_rows, "MAX_BATCH_ROWS"),
            (config.max_in_flight, "MAX_IN_FLIGHT"),
        ] {
            if value == 0 {
                return Err(StartupError::Config(format!("{name} must be at least 1")));
            }
        }
        let keys = ApiKeys::load(
            config.api_keys.as_deref(),
            config.api_keys_file.as_deref(),
            config.metrics_public,
        )
        .map_err(|e| StartupError::Config(e.to_string()))?;
        let uri = ModelUri::parse(&config.model_uri).map_err(|source| StartupError::BadUri {
            uri: config.model_uri.clone(),
            source,
        })?;
        let load_err = |source| StartupError::Load {
            uri: uri.to_string(),
            source,
        };
        let store = storage::open_store(&uri.root).map_err(load_err)?;
        let (model, version) =
            model::store::load(store.as_ref(), &uri.name, uri.version.as_deref())
                .map_err(load_err)?;
        let interval = config
            .model_refresh_seconds
            .unwrap_or(if lambda { 60 } else { 30 });
        let refresh = (uri.version.is_none() && interval > 0).then(|| {
            Arc::new(Refresh::new(
                store,
                RefreshSettings {
                    name: uri.name.clone(),
                    interval: Duration::from_secs(interval),
                    allow_schema_change: config.model_allow_schema_change,
                },
            ))
        });
        let served = Arc::new(Served::new(model, version, public_source(&uri)));
        Ok(Self::from_parts(
            served,
            Settings {
                body_limit: config.body_limit,
                timeout: Duration::from_millis(config.timeout_ms),
                max_batch_rows: config.max_batch_rows,
                api_keys: keys,
                max_in_flight: config.max_in_flight,
            },
            refresh,
        ))
    }

    /// The same state with another body limit (bytes) and request timeout.
    #[must_use]
    pub fn with_limits(self, body_limit: usize, timeout: Duration) -> Self {
        self.with_settings(|s| {
            s.body_limit = body_limit;
            s.timeout = timeout;
        })
    }

    /// The same state with another cap on the rows of a batch request.
    #[must_use]
    pub fn with_max_batch_rows(self, max_batch_rows: usize) -> Self {
        self.with_settings(|s| s.max_batch_rows = max_batch_rows)
    }

    /// The same state with API keys required (`None`: no keys, every route is open).
    #[must_use]
    pub fn with_api_keys(self, keys: Option<ApiKeys>) -> Self {
        self.with_settings(|s| s.api_keys = keys)
    }

    /// The same state with another cap on the requests served at once (`MAX_IN_FLIGHT`).
    #[must_use]
    pub fn with_max_in_flight(self, max_in_flight: usize) -> Self {
        self.with_settings(|s| s.max_in_flight = max_in_flight)
    }

    /// The model version being served now: take it once per request and use it to the
    /// end.
    pub fn served(&self) -> Arc<Served> {
        self.inner.served.load_full()
    }

    /// The model being served now (a snapshot, as [`AppState::served`]).
    pub fn model(&self) -> Arc<Served> {
        self.served()
    }

    /// The `x-model-version` value of the version served now.
    pub(crate) fn version_header(&self) -> axum::http::HeaderValue {
        self.inner.served.load().version_header()
    }

    /// The version being served now.
    pub fn version(&self) -> String {
        self.inner.served.load().version().to_string()
    }

    /// Serve `next` from now on; requests in flight finish on the one they took.
    pub(crate) fn swap(&self, next: Arc<Served>) {
        self.inner.served.store(next);
    }

    /// The live refresh, if on.
    pub(crate) fn refresh(&self) -> Option<&Arc<Refresh>> {
        self.inner.refresh.as_ref()
    }

    /// One refresh check now, swapping in a new version if it verifies. Blocking I/O:
    /// call it off the async threads (see [`AppState::run_refresh`]).
    pub fn refresh_now(&self) {
        if let Some(r) = self.refresh()
            && let Some(next) = r.check(&self.served())
        {
            self.swap(next);
        }
    }

    /// The plain server's refresh: a check every interval (longer after failures), each
    /// on the blocking pool, never on the request path. Returns at once when refresh is
    /// off; otherwise runs until the runtime stops.
    pub async fn run_refresh(self) {
        let Some(refresh) = self.refresh().cloned() else {
            return;
        };
        tracing::info!(
            interval_s = refresh.interval().as_secs(),
            "model refresh on: checking latest"
        );
        loop {
            tokio::time::sleep(refresh.until_due().max(Duration::from_millis(10))).await;
            let state = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || state.refresh_now()).await {
                tracing::error!(error = %e, "model refresh check did not finish");
            }
        }
    }

    /// Under Lambda, where nothing runs between invocations: at the start of an
    /// invocation, check if the interval has passed.
    pub async fn refresh_if_due(&self) {
        if self.refresh().is_some_and(|r| r.is_due()) {
            let state = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || state.refresh_now()).await {
                tracing::error!(error = %e, "model refresh check did not finish");
            }
        }
    }

    /// The `GET /model` body of the version served now.
    pub(crate) fn metadata_body(&self) -> Bytes {
        let status = self.refresh().map(|r| r.status_json());
        self.served().metadata_body(status)
    }

    /// The largest accepted request body, in bytes.
    pub(crate) fn body_limit(&self) -> usize {
        self.inner.settings.body_limit
    }

    /// Most rows one batch request may carry.
    pub(crate) fn max_batch_rows(&self) -> usize {
        self.inner.settings.max_batch_rows
    }

    /// The API keys requests need, if any.
    pub(crate) fn api_keys(&self) -> Option<&ApiKeys> {
        self.inner.settings.api_keys.as_ref()
    }

    /// How long a request body may take to arrive.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.settings.timeout
    }

    /// Most requests served at once; one more is answered 503.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.inner.settings.max_in_flight
    }
}

/// Where the model came from, as `GET /model` shows it: an S3 URI whole; for a local store
/// only `<name>` (and the version, when pinned), never the machine's directories.
fn public_source(uri: &ModelUri) -> String {
    match &uri.root {
        model::store::Location::S3 { .. } => uri.to_string(),
        model::store::Location::Local(_) => match &uri.version {
            Some(v) => format!("local store: {}/{v}", uri.name),
            None => format!("local store: {}", uri.name),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_sources_show_no_local_directories() {
        let local = ModelUri::parse("/srv/models/digits").expect("uri");
        assert_eq!(public_source(&local), "local store: digits");
        let v = "20261127T000000.000Z-000000000000";
        let pinned = ModelUri::parse(&format!("/srv/models/digits/{v}")).expect("uri");
        assert_eq!(public_source(&pinned), format!("local store: digits/{v}"));
        let s3 = ModelUri::parse("s3://b/models/digits").expect("uri");
        assert_eq!(public_source(&s3), "s3://b/models/digits");
    }
}
