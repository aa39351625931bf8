//! The `x-model-version` header on every answer: the version served when the request
//! arrived, unless the handler set the one it actually used (the prediction routes do,
//! from the snapshot they computed with).
//!
//! A tower layer of its own rather than an axum `from_fn` middleware: it is on every
//! request, and this costs one atomic load and no allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use tower::{Layer, Service};

use crate::state::AppState;

/// The header's name.
pub(crate) const HEADER: &str = "x-model-version";

/// Adds the header; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct VersionLayer {
    state: AppState,
}

impl VersionLayer {
    /// The layer for the models `state` serves.
    pub(crate) fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for VersionLayer {
    type Service = VersionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        VersionService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See [`VersionLayer`].
#[derive(Debug, Clone)]
pub(crate) struct VersionService<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for VersionService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = VersionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        VersionFuture {
            version: Some(self.state.version_header()),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`VersionService`].
    pub(crate) struct VersionFuture<F> {
        #[pin]
        inner: F,
        version: Option<HeaderValue>,
    }
}

impl<F, E> Future for VersionFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx));
        if let (Ok(r), Some(v)) = (&mut res, this.version.take()) {
            r.headers_mut().entry(HEADER).or_insert(v);
        }
        Poll::Ready(res)
    }
}
