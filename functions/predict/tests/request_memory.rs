//! A request's peak heap is a small multiple of its body (issue 16): every hostile body
//! class that once bloated the server, and the valid bodies of every route, each about
//! 1 MiB (the default body limit), sent in-process while a counting allocator records the
//! peak. The table it prints is the figure the README quotes
//! (`cargo test -p predict --test request_memory -- --nocapture`).
//!
//! One test in this binary, on a current-thread runtime: nothing else allocates while a
//! request is measured.

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::cast_precision_loss
)]

mod support;

use std::io::Write;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Request;
use http_body_util::BodyExt;
use peak_alloc::PeakAlloc;
use tower::ServiceExt;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

/// The bound: a request may allocate at most this many times its body, plus a constant.
const MULTIPLE: usize = 8;
const CONSTANT: usize = 256 << 10;
const TARGET: usize = 1 << 20;

struct Case {
    name: &'static str,
    /// The body once decoded, when it has a content coding (capped by the body limit).
    decoded: Option<usize>,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

/// `prefix` + `item` repeated (separated by `sep`) + `suffix`, as close to 1 MiB as fits.
fn fill(prefix: &str, item: &str, sep: &str, suffix: &str) -> Vec<u8> {
    let room = TARGET - prefix.len() - suffix.len();
    let n = (room + sep.len()) / (item.len() + sep.len());
    let mut s = String::with_capacity(TARGET);
    s.push_str(prefix);
    for i in 0..n {
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(item);
    }
    s.push_str(suffix);
    s.into_bytes()
}

fn cases(d: &support::Digits) -> Vec<Case> {
    const JSON: (&str, &str) = ("content-type", "application/json");
    const CSV: (&str, &str) = ("content-type", "text/csv");
    let row = serde_json::to_string(&d.rows[0]).unwrap();
    let zeros = vec!["0"; 64].join(",");
    let names = d.feature_names.join(",");
    let record = format!(
        "{{{}}}",
        d.feature_names
            .iter()
            .map(|n| format!("\"{n}\":0"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let columns_then_long_first = format!("{{\"inputs\": {{\"{}\": [", d.feature_names[0]);
    let gzip = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    // Exactly `rows` rows of `item` (one row, or one value when `per_row` is 64).
    let v2 = |rows: usize, dt: &str, item: &str, per_row: usize| {
        let head = format!(
            "{{\"inputs\": [{{\"name\": \"x\", \"shape\": [{rows}, 64], \"datatype\": \"{dt}\", \"data\": ["
        );
        let items = vec![item; rows * per_row].join(",");
        format!("{head}{items}]}}]}}").into_bytes()
    };
    vec![
        Case {
            decoded: None,
            name: "/predict: valid batch",
            path: "/predict",
            headers: vec![JSON],
            body: fill("{\"instances\": [", &row, ",", "]}"),
        },
        Case {
            decoded: None,
            name: "/predict: empty rows",
            path: "/predict",
            headers: vec![JSON],
            body: fill("{\"instances\": [", "[]", ",", "]}"),
        },
        Case {
            decoded: None,
            name: "/predict: one long row",
            path: "/predict",
            headers: vec![JSON],
            body: fill("{\"image\": [", "0", ",", "]}"),
        },
        Case {
            decoded: None,
            name: "/predict: ignored key of zeros",
            path: "/predict",
            headers: vec![JSON],
            body: fill("{\"x\": [", "0", ",", "], \"image\": []}"),
        },
        Case {
            decoded: Some(TARGET),
            name: "/predict: gzip bomb",
            path: "/predict",
            headers: vec![JSON, ("content-encoding", "gzip")],
            body: gzip(&vec![b' '; 64 << 20]),
        },
        Case {
            decoded: None,
            name: "V2: valid flat FP64",
            path: "/v2/models/digits/infer",
            headers: vec![JSON],
            body: v2(8_000, "FP64", "0", 64),
        },
        Case {
            decoded: None,
            name: "V2: valid nested INT32",
            path: "/v2/models/digits/infer",
            headers: vec![JSON],
            body: v2(8_000, "INT32", &format!("[{zeros}]"), 1),
        },
        Case {
            decoded: None,
            name: "V2: huge shape, little data",
            path: "/v2/models/digits/infer",
            headers: vec![JSON],
            body: fill(
                "{\"inputs\": [{\"name\": \"x\", \"shape\": [10000, 64], \"datatype\": \"FP32\", \"data\": [",
                "0",
                ",",
                "]}]}",
            ),
        },
        Case {
            decoded: None,
            name: "V2: parameters of zeros",
            path: "/v2/models/digits/infer",
            headers: vec![JSON],
            body: fill(
                "{\"parameters\": {\"x\": [",
                "0",
                ",",
                "]}, \"inputs\": []}",
            ),
        },
        Case {
            decoded: None,
            name: "V2: many inputs",
            path: "/v2/models/digits/infer",
            headers: vec![JSON],
            body: fill(
                "{\"inputs\": [",
                "{\"name\":\"\",\"shape\":[],\"datatype\":\"\"}",
                ",",
                "]}",
            ),
        },
        Case {
            decoded: None,
            name: "V2: many outputs",
            path: "/v2/models/digits/infer",
            headers: vec![JSON],
            body: fill(
                "{\"inputs\": [], \"outputs\": [",
                "{\"name\":\"\"}",
                ",",
                "]}",
            ),
        },
        Case {
            decoded: None,
            name: "MLflow: valid instances",
            path: "/invocations",
            headers: vec![JSON],
            body: fill("{\"instances\": [", &row, ",", "]}"),
        },
        Case {
            decoded: None,
            name: "MLflow: valid split",
            path: "/invocations",
            headers: vec![JSON],
            body: fill("{\"dataframe_split\": {\"data\": [", &row, ",", "]}}"),
        },
        Case {
            decoded: None,
            name: "MLflow: valid records",
            path: "/invocations",
            headers: vec![JSON],
            body: fill("{\"dataframe_records\": [", &record, ",", "]}"),
        },
        Case {
            decoded: None,
            name: "MLflow: empty rows",
            path: "/invocations",
            headers: vec![JSON],
            body: fill("{\"instances\": [", "[]", ",", "]}"),
        },
        Case {
            decoded: None,
            name: "MLflow: one long column",
            path: "/invocations",
            headers: vec![JSON],
            body: fill(&columns_then_long_first, "0", ",", "]}}"),
        },
        Case {
            decoded: None,
            name: "MLflow: params of zeros",
            path: "/invocations",
            headers: vec![JSON],
            body: fill("{\"params\": {\"x\": [", "0", ",", "]}, \"instances\": []}"),
        },
        Case {
            decoded: None,
            name: "MLflow: valid CSV",
            path: "/invocations",
            headers: vec![CSV],
            body: fill(&format!("{names}\n"), &zeros, "\n", "\n"),
        },
        Case {
            decoded: None,
            name: "MLflow: CSV of short lines",
            path: "/invocations",
            headers: vec![CSV],
            body: fill(&format!("{names}\n"), "0", "\n", "\n"),
        },
        Case {
            decoded: None,
            name: "MLflow: CSV of empty fields",
            path: "/invocations",
            headers: vec![CSV],
            body: fill(&format!("{names}\n"), ",", "", "\n"),
        },
    ]
}

async fn measure(app: &Router, case: &Case) -> (u16, usize) {
    let body = Bytes::from(case.body.clone());
    let mut b = Request::builder().method("POST").uri(case.path);
    for (k, v) in &case.headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Body::from(body)).unwrap();
    let base = PEAK.current_usage();
    PEAK.reset_peak_usage();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await.unwrap();
    (status, PEAK.peak_usage().saturating_sub(base))
}

#[test]
fn every_request_peaks_within_a_small_multiple_of_its_body() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (d, _, a) = support::digits_model();
    let app = predict::app(support::state_for(&a));
    let cases = cases(&d);
    let mut worst = 0.0_f64;
    let mut over = Vec::new();
    println!(
        "{:<34} {:>6} {:>10} {:>11} {:>7}",
        "request", "status", "body*", "peak heap", "x body"
    );
    for case in &cases {
        // Once to warm lazily built state, then measured.
        rt.block_on(measure(&app, case));
        let (status, peak) = rt.block_on(measure(&app, case));
        let n = case.decoded.unwrap_or(0).max(case.body.len());
        let ratio = peak as f64 / n as f64;
        println!(
            "{:<34} {status:>6} {n:>10} {peak:>11} {ratio:>7.2}",
            case.name
        );
        assert!(status < 500, "{}: {status}", case.name);
        if peak > MULTIPLE * n.max(TARGET / 16) + CONSTANT {
            over.push(case.name);
        }
        if n >= TARGET / 2 {
            worst = worst.max(ratio);
        }
    }
    println!("* decoded, for a body with a content coding");
    println!(
        "worst: {worst:.2} x the body (bound: {MULTIPLE} x + {} KiB)",
        CONSTANT >> 10
    );
    assert!(
        over.is_empty(),
        "over {MULTIPLE} x body + {CONSTANT} bytes: {over:?}"
    );
}
