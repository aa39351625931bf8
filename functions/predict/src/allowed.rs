//! The methods each route answers, for the `Allow` header of a 405 answer. One table for
//! the whole router, below every module that answers a request, so the error type can
//! read it without reaching up into the router.

/// Methods `path` answers (`None` for a path no route matches).
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/predict" | "/invocations" => Some("POST"),
        "/health" | "/model" | "/ping" | "/metrics" | "/openapi.json" | "/docs"
        | "/docs/app.js" | "/docs/app.css" | "/v2" | "/v2/health/live" | "/v2/health/ready" => {
            Some("GET,HEAD")
        }
        p if p.starts_with("/v2/models/") && p.ends_with("/infer") => Some("POST"),
        p if p.starts_with("/v2/models/") => Some("GET,HEAD"),
        _ => None,
    }
}
