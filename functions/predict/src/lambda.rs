//! Running the router under the Lambda runtime (`lambda_http`), behind every front door
//! Lambda has: API Gateway REST and HTTP APIs, ALB and function URLs.

use axum::http::Uri;

use axum::Router;

use crate::state::AppState;

/// Run `router` (the app over `state`) under the Lambda runtime (API Gateway REST and HTTP
/// APIs, ALB, function URLs). A REST API stage prefix (`/prod/predict`) is removed from
/// the path, so the routes are the same behind every front door.
///
/// Nothing runs between invocations under Lambda (the environment is frozen), so the
/// live model refresh is checked at the start of the first invocation after its interval.
pub(crate) async fn run(router: Router, state: AppState) -> Result<(), lambda_http::Error> {
    let router = router.layer(axum::middleware::from_fn_with_state(state, refresh_first));
    let svc = tower::ServiceBuilder::new()
        .map_request(strip_stage)
        .service(router);
    lambda_http::run(svc).await
}

async fn refresh_first(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    state.refresh_if_due().await;
    next.run(req).await
}

fn strip_stage(mut req: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return req;
    };
    let path = req.uri().path();
    let Some(rest) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(stage.as_str()))
        .filter(|r| r.starts_with('/'))
    else {
        return req;
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}
