//! The `x-model-version` header on every answer: the version served when the request
//! arrived, unless the handler set the one it actually used (the prediction routes do,
//! from the snapshot they computed with).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The header's name.
pub(crate) const HEADER: &str = "x-model-version";

/// The middleware.
pub(crate) async fn header(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let version = state.served().version_header();
    let mut res = next.run(req).await;
    res.headers_mut().entry(HEADER).or_insert(version);
    res
}
