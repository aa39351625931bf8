//! Live model refresh against the real binary on a local store (issue 17): under a
//! steady request loop, a newly published version is served within the interval plus
//! its load, with no failed request; moving `latest` back rolls the answers back; a
//! tampered version, or one with other feature names, is refused while the old one keeps
//! answering, and `/model` and `/metrics` say why; a `MODEL_URI` naming a version pins it.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use model::store::{LocalStore, ObjectStore, latest_key, model_key, publish};
use serde_json::Value;
use support::running::{Running, command};

/// One request on a fresh connection: status, `x-model-version`, body.
fn call(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let version = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-model-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, version, body.to_string()))
}

/// Requests `/predict` in a loop until stopped; returns (answers, failures, versions seen
/// in order of first appearance).
fn request_loop(
    addr: String,
    body: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut ok, mut failures, mut versions) = (0, Vec::new(), Vec::<String>::new());
        while !stop.load(Ordering::Relaxed) {
            match call(&addr, "POST", "/predict", &body) {
                Ok((200, v, _)) => {
                    ok += 1;
                    if versions.last() != Some(&v) {
                        versions.push(v);
                    }
                }
                Ok((s, _, b)) => failures.push(format!("{s}: {b}")),
                Err(e) => failures.push(e.to_string()),
            }
        }
        (ok, failures, versions)
    })
}

/// Wait until `/model` says `version` is served, at most `limit`; returns how long it took.
fn wait_for_version(addr: &str, version: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (_, v, _) = call(addr, "GET", "/health", "").unwrap();
        if v == version {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{version} not served within {limit:?} (serving {v})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn model_doc(addr: &str) -> Value {
    let (s, _, b) = call(addr, "GET", "/model", "").unwrap();
    assert_eq!(s, 200);
    serde_json::from_str(&b).unwrap()
}

fn metric(addr: &str, series: &str) -> u64 {
    let (_, _, b) = call(addr, "GET", "/metrics", "").unwrap();
    b.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn new_versions_are_served_without_a_restart_and_bad_ones_refused() {
    let d = support::digits();
    let (train, _) = support::split(&d);
    let v1 = support::centroid_artifact(&d, &train, "digits");
    let (dir, uri) = support::store_with(&v1);
    let store = LocalStore::new(dir.path());
    let v1_version = model::store::read_latest(&store, "digits").unwrap().version;
    let v1_pointer = store.get(&latest_key("digits")).unwrap();

    let mut cmd = command();
    cmd.env("MODEL_URI", &uri).env("MODEL_REFRESH_SECONDS", "1");
    let server = Running::start(cmd);
    let addr = server.addr.clone();
    let body = serde_json::json!({"image": d.rows[0]}).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(addr.clone(), body.clone(), stop.clone());

    // A new version (fit on other rows, so other weights), published as the trainer does.
    let other: Vec<usize> = train.iter().copied().filter(|i| i % 3 != 0).collect();
    let v2 = support::centroid_artifact(&d, &other, "digits");
    let v2_version = publish(&store, &v2).unwrap().version;
    let took = wait_for_version(&addr, &v2_version, Duration::from_secs(5));
    println!(
        "v2 served {:.0} ms after its publication",
        took.as_secs_f64() * 1e3
    );

    // Rollback: `latest` names v1 again.
    store.put(&latest_key("digits"), &v1_pointer).unwrap();
    wait_for_version(&addr, &v1_version, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (ok, failures, versions) = load.join().unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during the swaps: {failures:?}"
    );
    assert!(ok > 20, "only {ok} requests");
    assert_eq!(versions.first(), Some(&v1_version));
    assert!(versions.contains(&v2_version), "{versions:?}");
    assert_eq!(versions.last(), Some(&v1_version), "{versions:?}");
    let doc = model_doc(&addr);
    assert_eq!(doc["refresh"]["result"], "loaded", "{doc}");
    assert!(metric(&addr, "model_reloads_total{result=\"loaded\"}") >= 2);

    // A tampered version: its bytes no longer match the checksum `latest` records.
    let v3 = support::centroid_artifact(&d, &train[..train.len() / 2], "digits");
    let v3_version = publish(&store, &v3).unwrap().version;
    let key = model_key("digits", &v3_version);
    let path = dir.path().join(&key);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("\"digits\"", "\"digits\" ", 1);
    std::fs::write(&path, text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let doc = loop {
        let doc = model_doc(&addr);
        if doc["refresh"]["result"] == "refused" {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "tampered version not refused: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        doc["version"],
        v1_version.as_str(),
        "the old version keeps serving"
    );
    assert!(
        doc["refresh"]["reason"]
            .as_str()
            .unwrap()
            .contains("checksum"),
        "{doc}"
    );
    assert!(metric(&addr, "model_reloads_total{result=\"refused\"}") >= 1);
    let (s, v, _) = call(&addr, "POST", "/predict", &body).unwrap();
    assert_eq!((s, v.as_str()), (200, v1_version.as_str()));

    // Other feature names: refused (clients would break), with the reason.
    let mut renamed = support::centroid_artifact(&d, &train, "digits");
    renamed.feature_names = (0..64).map(|i| format!("px{i}")).collect();
    renamed.seal();
    publish(&store, &renamed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let doc = model_doc(&addr);
        let reason = doc["refresh"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if reason.contains("feature names") {
            assert!(reason.contains("MODEL_ALLOW_SCHEMA_CHANGE"), "{reason}");
            assert_eq!(doc["version"], v1_version.as_str());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "renamed features not refused: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
}

#[test]
fn a_model_uri_naming_a_version_pins_it() {
    let d = support::digits();
    let (train, _) = support::split(&d);
    let v1 = support::centroid_artifact(&d, &train, "digits");
    let (dir, uri) = support::store_with(&v1);
    let store = LocalStore::new(dir.path());
    let v1_version = model::store::read_latest(&store, "digits").unwrap().version;
    let mut cmd = command();
    cmd.env("MODEL_URI", format!("{uri}/{v1_version}"))
        .env("MODEL_REFRESH_SECONDS", "1");
    let server = Running::start(cmd);
    let v2 = support::centroid_artifact(&d, &train[..500], "digits");
    publish(&store, &v2).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let doc = model_doc(&server.addr);
    assert_eq!(doc["version"], v1_version.as_str());
    assert!(
        doc.get("refresh").is_none(),
        "a pinned version has no refresh: {doc}"
    );
}
