//! Test support: a real model artifact built with the model crate alone (the trainer is
//! developed separately), published into a temporary local store; plain HTTP/1.1 over
//! loopback; and the real binary, started and stopped ([`running`]).
//!
//! The model is a nearest-centroid linear classifier on standardised features:
//! `w_k = mu_k`, `b_k = -|mu_k|^2 / 2`, which is exactly a softmax-shaped linear model;
//! good enough (>85% on digits) and deterministic, with no iteration.

#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod running;

use std::path::{Path, PathBuf};

use model::store::{LocalStore, publish};
use model::{Artifact, FORMAT_VERSION, Model, Scaler};

/// The digits data set: rows of 64 pixels and their labels.
pub struct Digits {
    pub rows: Vec<Vec<f64>>,
    pub labels: Vec<String>,
    pub feature_names: Vec<String>,
    pub sha256: String,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Read `data/digits.csv`.
pub fn digits() -> Digits {
    let path = repo_root().join("data/digits.csv");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(bytes.clone()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let label_col = header.iter().position(|h| *h == "label").unwrap();
    let feature_names = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != label_col)
        .map(|(_, h)| (*h).to_string())
        .collect();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        labels.push(cells[label_col].to_string());
        rows.push(
            cells
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != label_col)
                .map(|(_, c)| c.parse::<f64>().unwrap())
                .collect(),
        );
    }
    Digits {
        rows,
        labels,
        feature_names,
        sha256: model::artifact::sha256_hex(&bytes),
    }
}

/// Deterministic 80/20 split: every fifth row is held out.
pub fn split(d: &Digits) -> (Vec<usize>, Vec<usize>) {
    (0..d.rows.len()).partition(|i| i % 5 != 4)
}

/// Fit the nearest-centroid linear model on the given rows.
pub fn centroid_artifact(d: &Digits, train: &[usize], name: &str) -> Artifact {
    let f = d.feature_names.len();
    let n = train.len() as f64;
    let mut mean = vec![0.0; f];
    for &i in train {
        for (m, x) in mean.iter_mut().zip(&d.rows[i]) {
            *m += x / n;
        }
    }
    let mut scale = vec![0.0; f];
    for &i in train {
        for ((s, x), m) in scale.iter_mut().zip(&d.rows[i]).zip(&mean) {
            *s += (x - m) * (x - m) / n;
        }
    }
    for s in &mut scale {
        *s = if *s > 0.0 { s.sqrt() } else { 1.0 };
    }
    let mut classes: Vec<String> = train.iter().map(|&i| d.labels[i].clone()).collect();
    classes.sort();
    classes.dedup();
    let mut coefficients = vec![vec![0.0; f]; classes.len()];
    let mut counts = vec![0.0; classes.len()];
    for &i in train {
        let k = classes.iter().position(|c| *c == d.labels[i]).unwrap();
        counts[k] += 1.0;
        for (j, w) in coefficients[k].iter_mut().enumerate() {
            *w += (d.rows[i][j] - mean[j]) / scale[j];
        }
    }
    let mut intercepts = Vec::new();
    for (w, c) in coefficients.iter_mut().zip(&counts) {
        for x in w.iter_mut() {
            *x /= c;
        }
        intercepts.push(-0.5 * w.iter().map(|x| x * x).sum::<f64>());
    }
    let mut metrics = serde_json::Map::new();
    metrics.insert("note".into(), "test model, not evaluated".into());
    let mut training = serde_json::Map::new();
    training.insert("solver".into(), "nearest-centroid (test support)".into());
    let mut a = Artifact {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        name: name.to_string(),
        created_at: model::artifact::now_rfc3339(),
        classes,
        feature_names: d.feature_names.clone(),
        scaler: Scaler { mean, scale },
        coefficients,
        intercepts,
        training,
        metrics,
        data_sha256: d.sha256.clone(),
    };
    a.seal();
    a
}

/// A tiny hand-made model with non-integer labels: 2 features, 3 classes.
pub fn tiny_artifact(name: &str) -> Artifact {
    let mut a = Artifact {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        name: name.to_string(),
        created_at: model::artifact::now_rfc3339(),
        classes: vec!["cat".into(), "dog".into(), "eel".into()],
        feature_names: vec!["a".into(), "b".into()],
        scaler: Scaler {
            mean: vec![0.0, 0.0],
            scale: vec![1.0, 1.0],
        },
        coefficients: vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, -1.0]],
        intercepts: vec![0.0, 0.0, 0.0],
        training: serde_json::Map::new(),
        metrics: serde_json::Map::new(),
        data_sha256: "0".repeat(64),
    };
    a.seal();
    a
}

/// A store in a temporary directory holding `artifact`; returns the dir and a MODEL_URI
/// naming the model (so `latest` is followed).
pub fn store_with(artifact: &Artifact) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    publish(&store, artifact).unwrap();
    let uri = format!("{}/{}", dir.path().display(), artifact.name);
    (dir, uri)
}

/// The digits model trained on the 80% split, and the split.
pub fn digits_model() -> (Digits, Vec<usize>, Artifact) {
    let d = digits();
    let (train, test) = split(&d);
    let a = centroid_artifact(&d, &train, "digits");
    (d, test, a)
}

/// An `AppState` for in-process tests.
pub fn state_for(a: &Artifact) -> predict::AppState {
    let m = Model::new(a.clone()).unwrap();
    predict::AppState::new(m, "20261127T000000.000Z-000000000000".into(), "memory")
}

/// One HTTP/1.1 exchange over a fresh loopback connection (`Connection: close`):
/// returns the status and the body.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    parse_response(&out)
}

/// Split a whole HTTP/1.1 response (not chunked) into status and body.
pub fn parse_response(raw: &str) -> (u16, String) {
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}
