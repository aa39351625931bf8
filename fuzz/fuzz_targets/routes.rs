//! Every route that takes a body, driven in-process through the real router (`predict::app`),
//! one request per input, with the default body limit (1 MiB).
//!
//! Input layout: byte 0 chooses the route (`% 5`) and the encoding (`/ 5 % 3`); the V2
//! binary route takes bytes 1..3 as the `Inference-Header-Content-Length` (u16, little
//! endian); the rest is the body.
//!
//! A crash is: a panic (the release profile aborts on one), any 5xx answer, or the request
//! allocating more than its budget (see `digits_fuzz::within_budget`; counted from when the
//! request is built until its answer has been read whole).

#![no_main]

use std::io::Write;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use digits_fuzz::{MODEL_NAME, MODEL_VERSION, tiny_model, within_budget};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// The router, built once, and a single-threaded runtime to drive it.
static APP: LazyLock<(tokio::runtime::Runtime, Router)> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let state = predict::AppState::new(tiny_model(), MODEL_VERSION.into(), "fuzz");
    (rt, predict::app(state))
});

enum Route {
    Predict,
    InvocationsJson,
    InvocationsCsv,
    V2Json,
    /// The binary tensor extension, with this header length.
    V2Binary(u16),
}

enum Encoding {
    Identity,
    /// `Content-Encoding: gzip` on the body compressed here, so its content is fuzzed too.
    Gzip,
    /// `Content-Encoding: gzip` on the body as it is (mostly not gzip at all).
    GzipRaw,
}

/// Split an input into route, encoding and body; `None` when it is too short.
fn decode(data: &[u8]) -> Option<(Route, Encoding, &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let encoding = match selector / 5 % 3 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        _ => Encoding::GzipRaw,
    };
    let (route, body) = match selector % 5 {
        0 => (Route::Predict, rest),
        1 => (Route::InvocationsJson, rest),
        2 => (Route::InvocationsCsv, rest),
        3 => (Route::V2Json, rest),
        _ => {
            let (len, body) = rest.split_at_checked(2)?;
            (Route::V2Binary(u16::from_le_bytes([len[0], len[1]])), body)
        }
    };
    Some((route, encoding, body))
}

fn request(route: &Route, encoding: &Encoding, body: &[u8]) -> Request<Body> {
    let infer = format!("/v2/models/{MODEL_NAME}/infer");
    let (path, content_type) = match route {
        Route::Predict => ("/predict", "application/json"),
        Route::InvocationsJson => ("/invocations", "application/json"),
        Route::InvocationsCsv => ("/invocations", "text/csv"),
        Route::V2Json => (infer.as_str(), "application/json"),
        Route::V2Binary(_) => (infer.as_str(), "application/octet-stream"),
    };
    let mut req = Request::post(path).header(header::CONTENT_TYPE, content_type);
    if let Route::V2Binary(n) = route {
        req = req.header("inference-header-content-length", n.to_string());
    }
    let body = match encoding {
        Encoding::Identity => body.to_vec(),
        Encoding::Gzip => {
            req = req.header(header::CONTENT_ENCODING, "gzip");
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body).expect("writing to a Vec");
            gz.finish().expect("writing to a Vec")
        }
        Encoding::GzipRaw => {
            req = req.header(header::CONTENT_ENCODING, "gzip");
            body.to_vec()
        }
    };
    req.body(Body::from(body)).expect("a valid request")
}

fuzz_target!(|data: &[u8]| {
    let Some((route, encoding, body)) = decode(data) else {
        return;
    };
    let (rt, app) = &*APP;
    let req = request(&route, &encoding, body);
    within_budget(data.len(), || {
        let (status, answer) = rt.block_on(async {
            let res = app
                .clone()
                .oneshot(req)
                .await
                .expect("the router is infallible");
            let status = res.status();
            let answer = axum::body::to_bytes(res.into_body(), usize::MAX).await;
            (status, answer)
        });
        assert!(
            !status.is_server_error(),
            "answered {status}: {:?}",
            answer.as_deref().map(String::from_utf8_lossy)
        );
    });
});
