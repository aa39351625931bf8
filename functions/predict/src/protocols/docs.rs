//! `GET /docs`: an interactive page that reads `/openapi.json`, lists every route with its
//! schemas and examples, and sends requests. The page, its script and its style are our
//! own files under `assets/`, compiled into the binary: nothing is fetched from anywhere
//! else, so it works offline and under Lambda.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::openapi;
use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/docs.html");
const SCRIPT: &str = include_str!("../../assets/docs.js");
const STYLE: &str = include_str!("../../assets/docs.css");

/// `/docs`, its assets and `/openapi.json` (built once, on first request).
pub(crate) fn routes() -> Router<AppState> {
    let cache: Arc<OnceLock<Bytes>> = Arc::new(OnceLock::new());
    Router::new()
        .route("/openapi.json", get(openapi::openapi_json))
        .layer(Extension(cache))
        .route("/docs", get(page))
        .route("/docs/app.js", get(script))
        .route("/docs/app.css", get(style))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
        ),
    );
    res
}

/// The interactive API page.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub(crate) async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// The page's script.
#[utoipa::path(get, path = "/docs/app.js", tag = "operations",
    responses((status = 200, description = "JavaScript", body = String, content_type = "text/javascript")))]
pub(crate) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The page's style sheet.
#[utoipa::path(get, path = "/docs/app.css", tag = "operations",
    responses((status = 200, description = "CSS", body = String, content_type = "text/css")))]
pub(crate) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
