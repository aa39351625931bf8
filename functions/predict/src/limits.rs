//! Load shedding: at most `MAX_IN_FLIGHT` requests are served at once; one more is
//! answered at once with 503, `Retry-After: 1` and the JSON error body
//! ([`AppError::Overloaded`]) instead of waiting in a queue, so a burst costs the server
//! a refusal each, not memory and latency for everyone.
//!
//! It is a layer on the router, so it applies under Lambda too (where the platform runs
//! one event at a time per instance, and it never triggers). The plain server's
//! connection limits (header and idle timeouts, the connection cap) are
//! `crate::server`'s; this module knows nothing of connections.
//!
//! The liveness and readiness routes are exempt: they answer a precomputed body, and a
//! load balancer that saw 503 from them under load would take a busy but healthy
//! instance out of service, moving its load onto the others.
//!
//! A slot is held from the moment the request passes this layer until its handler
//! returns the answer: that covers reading the body (the request timeout bounds it) and
//! running the model. Writing the answer to a slow client is the connection's business.

use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::error::AppError;

/// Routes never shed: liveness and readiness probes (the ones that never need an API key).
const EXEMPT: &[&str] = &["/health", "/ping", "/v2/health/live", "/v2/health/ready"];

/// The slots of requests in flight: one per router (every clone of it shares them).
#[derive(Clone, Debug)]
pub(crate) struct InFlight {
    slots: Arc<Semaphore>,
    max: usize,
}

impl InFlight {
    /// `max` slots (at least 1; [`crate::state::AppState::load`] refuses 0).
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> Layer<S> for InFlight {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            limit: self.clone(),
        }
    }
}

/// The layer's service: take a slot or refuse at once; the slot is released when the
/// handler has answered, or when the request is dropped (the client went away). A plain
/// tower service (no boxed future): it is on every request.
#[derive(Clone, Debug)]
pub(crate) struct Shed<S> {
    inner: S,
    limit: InFlight,
}

impl<S> Service<Request> for Shed<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let slot = if EXEMPT.contains(&req.uri().path()) {
            None
        } else {
            match Arc::clone(&self.limit.slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    return ShedFuture::Refused {
                        answer: Some(AppError::Overloaded(self.limit.max).into_response()),
                    };
                }
            }
        };
        ShedFuture::Served {
            inner: self.inner.call(req),
            _slot: slot,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Shed`].
    #[project = ShedProj]
    pub(crate) enum ShedFuture<F> {
        /// Refused at once.
        Refused { answer: Option<Response> },
        /// Served, holding a slot (none on an exempt route) until it answers.
        Served {
            #[pin]
            inner: F,
            _slot: Option<OwnedSemaphorePermit>,
        },
    }
}

impl<F, E> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ShedProj::Refused { answer } => match answer.take() {
                Some(a) => Poll::Ready(Ok(a)),
                None => Poll::Pending,
            },
            ShedProj::Served { inner, .. } => inner.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    /// A router whose `/slow` waits for `release`, behind the layer with `max` slots.
    fn router(max: usize, release: Arc<Notify>) -> Router {
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .route("/health", get(|| async { "ok" }))
            .layer(InFlight::new(max))
    }

    fn get_req(path: &str) -> Request {
        Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn beyond_the_cap_a_request_is_refused_at_once_with_503_json_and_retry_after() {
        let release = Arc::new(Notify::new());
        let app = router(2, release.clone());
        let held: Vec<_> = (0..2)
            .map(|_| tokio::spawn(app.clone().oneshot(get_req("/slow"))))
            .collect();
        // Let both take their slot and park in the handler.
        tokio::time::sleep(Duration::from_millis(50)).await;

        let res = tokio::time::timeout(
            Duration::from_millis(500),
            app.clone().oneshot(get_req("/fast")),
        )
        .await
        .expect("shedding must not wait")
        .expect("infallible");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 4096)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["code"], "overloaded", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains('2')),
            "{v}"
        );

        // Probes are never shed.
        let res = app.clone().oneshot(get_req("/health")).await.expect("ok");
        assert_eq!(res.status(), StatusCode::OK);

        // Once the held requests answer, their slots are free again.
        release.notify_waiters();
        for h in held {
            let res = h.await.expect("task").expect("infallible");
            assert_eq!(res.status(), StatusCode::OK);
        }
        let res = app.oneshot(get_req("/fast")).await.expect("ok");
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_dropped_mid_way_gives_its_slot_back() {
        let release = Arc::new(Notify::new());
        let app = router(1, release);
        let held = tokio::spawn(app.clone().oneshot(get_req("/slow")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let res = app.clone().oneshot(get_req("/fast")).await.expect("ok");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The client goes away: the connection drops the request's future.
        held.abort();
        let _ = held.await;
        let res = app.oneshot(get_req("/fast")).await.expect("ok");
        assert_eq!(res.status(), StatusCode::OK);
    }
}
