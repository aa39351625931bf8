//! Prometheus metrics: request counts and latency histograms per route and status,
//! predictions per class, and the served model, in the text exposition format
//! (`GET /metrics`).
//!
//! The hot path is a few relaxed atomic additions: every series that can exist is
//! allocated up front (routes and statuses are small fixed sets, classes come from the
//! model), so recording never takes a lock and never allocates. Everything that costs,
//! formatting and summing the buckets, happens at scrape time.
//!
//! This is not a general metrics registry: it knows this function's routes only.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::refresh::CheckResult;
use crate::state::AppState;

/// Every route template of the router, as `MatchedPath` spells it. A path that matched
/// no route (the 404 fallback) is counted as `unmatched`, so a scan of random URLs cannot
/// grow the number of series.
pub(crate) const ROUTES: &[&str] = &[
    "/predict",
    "/health",
    "/model",
    "/openapi.json",
    "/docs",
    "/docs/app.js",
    "/docs/app.css",
    "/metrics",
    "/ping",
    "/invocations",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/versions/{version}/infer",
];
const UNMATCHED: usize = ROUTES.len();
const METRICS_ROUTE: usize = 7;

/// Statuses with a series of their own; anything else is counted as `other`.
const STATUSES: &[u16] = &[200, 204, 400, 404, 405, 408, 413, 415, 422, 500, 503];
const OTHER_STATUS: usize = STATUSES.len();
const N_STATUSES: usize = STATUSES.len() + 1;

/// Upper bounds of the latency buckets, in seconds (the last, `+Inf`, is implicit).
const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];
const N_BUCKETS: usize = BUCKETS.len() + 1;

/// The same bounds in nanoseconds, for the hot path.
const BUCKETS_NS: [u64; BUCKETS.len()] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// One (route, status) series: per-bucket (not cumulative) counts and the latency sum.
#[derive(Debug, Default)]
struct Series {
    buckets: [AtomicU64; N_BUCKETS],
    sum_ns: AtomicU64,
}

/// All counters of one app. Shared by the layer that records and the handler that renders.
#[derive(Debug)]
pub(crate) struct Metrics {
    series: Box<[Series]>,
    predictions: Box<[AtomicU64]>,
    classes: Vec<String>,
    /// The served model and its refresh, read at scrape time.
    state: AppState,
}

impl Metrics {
    /// Counters for the model `state` serves (its classes, for the predictions).
    pub(crate) fn new(state: &AppState) -> Self {
        let classes = state.served().classes().to_vec();
        Self {
            series: (0..(ROUTES.len() + 1) * N_STATUSES)
                .map(|_| Series::default())
                .collect(),
            predictions: classes.iter().map(|_| AtomicU64::new(0)).collect(),
            classes,
            state: state.clone(),
        }
    }

    /// `predict_model_info`, `predict_model_loaded_timestamp_seconds` of the version
    /// served now, and the live refresh's checks by result.
    fn model_lines(&self, out: &mut String) {
        let served = self.state.served();
        let a = served.artifact();
        let _ = write!(
            out,
            "# HELP predict_model_info The model being served (always 1).\n\
             # TYPE predict_model_info gauge\n\
             predict_model_info{{name=\"{}\",version=\"{}\",model_id=\"{}\",created_at=\"{}\",n_features=\"{}\",n_classes=\"{}\"}} 1\n\
             # HELP predict_model_loaded_timestamp_seconds When the served version was loaded, in seconds since the Unix epoch.\n\
             # TYPE predict_model_loaded_timestamp_seconds gauge\n\
             predict_model_loaded_timestamp_seconds{{model_id=\"{}\"}} {:.3}\n",
            escape(&a.name),
            escape(served.version()),
            escape(&a.model_id),
            escape(&a.created_at),
            a.n_features(),
            a.classes.len(),
            escape(&a.model_id),
            served.loaded_at(),
        );
        if let Some(refresh) = self.state.refresh() {
            out.push_str(
                "# HELP model_reloads_total Checks of the model's latest pointer, by result: unchanged, loaded (a new version served), refused (it failed verification), error (the store failed).\n\
                 # TYPE model_reloads_total counter\n",
            );
            for (result, n) in CheckResult::ALL.iter().zip(refresh.counts()) {
                let _ = writeln!(
                    out,
                    "model_reloads_total{{result=\"{}\"}} {n}",
                    result.as_str()
                );
            }
        }
    }

    /// Record one answered request.
    fn observe(&self, route: usize, status: StatusCode, elapsed: Duration) {
        let s = STATUSES
            .iter()
            .position(|&c| c == status.as_u16())
            .unwrap_or(OTHER_STATUS);
        let Some(series) = self.series.get(route * N_STATUSES + s) else {
            return;
        };
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let b = BUCKETS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(BUCKETS.len());
        series.buckets[b].fetch_add(1, Ordering::Relaxed);
        series.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Count predicted class indices.
    fn count(&self, classes: &[usize]) {
        for &c in classes {
            if let Some(n) = self.predictions.get(c) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The text exposition format (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str(
            "# HELP predict_http_requests_total HTTP requests answered, by route template and status.\n\
             # TYPE predict_http_requests_total counter\n",
        );
        let snapshot: Vec<(usize, usize, [u64; N_BUCKETS], u64)> = self
            .series
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let mut b = [0u64; N_BUCKETS];
                for (dst, src) in b.iter_mut().zip(&s.buckets) {
                    *dst = src.load(Ordering::Relaxed);
                }
                let sum = s.sum_ns.load(Ordering::Relaxed);
                b.iter()
                    .any(|&n| n > 0)
                    .then_some((i / N_STATUSES, i % N_STATUSES, b, sum))
            })
            .collect();
        for (route, status, b, _) in &snapshot {
            let _ = writeln!(
                out,
                "predict_http_requests_total{{route=\"{}\",status=\"{}\"}} {}",
                route_label(*route),
                status_label(*status),
                b.iter().sum::<u64>()
            );
        }
        out.push_str(
            "# HELP predict_http_request_duration_seconds Time to answer a request (until the response head), by route template and status.\n\
             # TYPE predict_http_request_duration_seconds histogram\n",
        );
        for (route, status, b, sum_ns) in &snapshot {
            let (route, status) = (route_label(*route), status_label(*status));
            let mut cumulative = 0u64;
            for (i, n) in b.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), f64::to_string);
                let _ = writeln!(
                    out,
                    "predict_http_request_duration_seconds_bucket{{route=\"{route}\",status=\"{status}\",le=\"{le}\"}} {cumulative}"
                );
            }
            #[allow(clippy::cast_precision_loss)]
            let sum = *sum_ns as f64 / 1e9;
            let _ = writeln!(
                out,
                "predict_http_request_duration_seconds_sum{{route=\"{route}\",status=\"{status}\"}} {sum}\n\
                 predict_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} {cumulative}"
            );
        }
        out.push_str(
            "# HELP predict_predictions_total Rows predicted, by predicted class, over every protocol.\n\
             # TYPE predict_predictions_total counter\n",
        );
        for (class, n) in self.classes.iter().zip(self.predictions.iter()) {
            let _ = writeln!(
                out,
                "predict_predictions_total{{class=\"{}\"}} {}",
                escape(class),
                n.load(Ordering::Relaxed)
            );
        }
        self.model_lines(&mut out);
        out
    }
}

fn route_label(i: usize) -> &'static str {
    ROUTES.get(i).copied().unwrap_or("unmatched")
}

fn status_label(i: usize) -> String {
    STATUSES
        .get(i)
        .map_or_else(|| "other".to_string(), u16::to_string)
}

/// Escape a label value: backslash, double quote and newline.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn route_index(path: &str) -> usize {
    ROUTES.iter().position(|r| *r == path).unwrap_or(UNMATCHED)
}

/// Class indices a handler predicted, attached to its response as an extension; the
/// layer counts them. Handlers that predict nothing attach nothing.
#[derive(Debug, Clone)]
pub(crate) enum Predicted {
    /// One row (no allocation).
    One(usize),
    /// A batch, in row order.
    Many(Vec<usize>),
}

impl Predicted {
    fn classes(&self) -> &[usize] {
        match self {
            Self::One(c) => std::slice::from_ref(c),
            Self::Many(v) => v,
        }
    }
}

/// `GET /metrics`.
pub(crate) async fn handler(metrics: Option<Extension<Arc<Metrics>>>) -> Response {
    let Some(Extension(metrics)) = metrics else {
        // Only reachable if the router was built without the layer.
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics are not enabled\n").into_response();
    };
    let mut res = metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// The layer that records every request; `app()` applies it outermost, so timeouts and
/// 404 / 405 answers are counted too.
#[derive(Debug, Clone)]
pub(crate) struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// A layer with fresh counters for the model `state` serves.
    pub(crate) fn new(state: &AppState) -> Self {
        Self {
            metrics: Arc::new(Metrics::new(state)),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for MetricsService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, |p| route_index(p.as_str()));
        if route == METRICS_ROUTE {
            req.extensions_mut().insert(Arc::clone(&self.metrics));
        }
        ResponseFuture {
            inner: self.inner.call(req),
            start,
            route,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`MetricsService`]: records when the inner one completes.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        route: usize,
        metrics: Arc<Metrics>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        if let Ok(r) = &res {
            this.metrics
                .observe(*this.route, r.status(), this.start.elapsed());
            if let Some(p) = r.extensions().get::<Predicted>() {
                this.metrics.count(p.classes());
            }
        }
        Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_agree() {
        for (s, ns) in BUCKETS.iter().zip(BUCKETS_NS) {
            assert!((s * 1e9 - ns as f64).abs() < 1e-3, "{s} vs {ns}");
        }
        assert_eq!(ROUTES[METRICS_ROUTE], "/metrics");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
