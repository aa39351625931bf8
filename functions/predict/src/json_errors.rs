//! Every error answer is our JSON error body, including those made below our handlers:
//! axum's extractor rejections (a path that is not valid UTF-8, say) answer in plain
//! text, and a layer's own refusals with an empty body. This layer rewrites any error
//! answer that is not JSON into `{"error": {"code": ..., "message": ...}}`, keeping its
//! status and headers; answers that are already JSON (ours, V2's, MLflow's) pass as they
//! are, and success answers are never touched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tower::{Layer, Service};

/// The most of a non-JSON error body kept as the message.
const MAX_MESSAGE: usize = 1024;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

/// The layer. A plain tower layer: success answers and JSON errors pass through with no
/// allocation; only an error answer to rewrite takes a boxed future (its body is read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonErrorsLayer;

impl<S> Layer<S> for JsonErrorsLayer {
    type Service = JsonErrors<S>;
    fn layer(&self, inner: S) -> Self::Service {
        JsonErrors { inner }
    }
}

/// See [`JsonErrorsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct JsonErrors<S> {
    inner: S,
}

impl<S> Service<Request> for JsonErrors<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = JsonErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        JsonErrorsFuture::Inner {
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`JsonErrors`].
    #[project = JsonErrorsProj]
    pub(crate) enum JsonErrorsFuture<F> {
        /// Waiting for the inner answer.
        Inner { #[pin] inner: F },
        /// Rewriting an error answer that is not JSON.
        Rewriting { rewrite: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F, E> Future for JsonErrorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                JsonErrorsProj::Inner { inner } => {
                    let res = std::task::ready!(inner.poll(cx));
                    match res {
                        Ok(r) if needs_rewrite(&r) => {
                            self.set(JsonErrorsFuture::Rewriting {
                                rewrite: Box::pin(rewrite(r)),
                            });
                        }
                        other => return Poll::Ready(other),
                    }
                }
                JsonErrorsProj::Rewriting { rewrite } => {
                    return rewrite.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

/// An error answer whose body is not JSON.
fn needs_rewrite(res: &Response) -> bool {
    let status = res.status();
    (status.is_client_error() || status.is_server_error()) && !is_json(res)
}

/// Our JSON error body in place of `res`'s, keeping its status and headers.
pub(crate) async fn rewrite(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&res) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.is_empty() {
        reason
    } else {
        text.as_str()
    };
    let code = code(status);
    let body = serde_json::to_vec(&ErrorBody {
        error: Detail {
            code: &code,
            message,
        },
    })
    .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

fn is_json(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let m = v.split(';').next().unwrap_or("").trim();
            m.eq_ignore_ascii_case("application/json")
        })
}

/// `bad_request` for 400 and so on: the status's reason, snake-cased.
fn code(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_and_empty_error_bodies_become_json() {
        let res = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("Invalid URL"))
            .expect("response");
        let res = rewrite(res).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let b = axum::body::to_bytes(res.into_body(), 4096)
            .await
            .expect("body");
        assert_eq!(
            &b[..],
            br#"{"error":{"code":"bad_request","message":"Invalid URL"}}"#
        );
        let res = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Body::empty())
            .expect("response");
        let b = axum::body::to_bytes(rewrite(res).await.into_body(), 4096)
            .await
            .expect("body");
        assert_eq!(
            &b[..],
            br#"{"error":{"code":"service_unavailable","message":"Service Unavailable"}}"#
        );
        let ok = Response::new(Body::from("fine"));
        let b = axum::body::to_bytes(rewrite(ok).await.into_body(), 4096)
            .await
            .expect("body");
        assert_eq!(&b[..], b"fine");
    }
}
