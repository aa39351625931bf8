//! Scoring against a real S3 server (s3s-fs on loopback, one per test, stopped when the
//! test ends): multipart outputs published whole, nothing on failure, redelivery, stale
//! events, the Lambda handler's record rules. Every scored row is compared with
//! `model::Model::predict`.

use std::io::Write;
use std::sync::Arc;

use model::store::{Location, ObjectStore, publish};
use model::{Artifact, FORMAT_VERSION, Model, Scaler};
use score::event::S3Event;
use score::job::{LoadedModel, Outcome, Stores, load_model, outputs_for};
use score::lambda::{Handler, Prefixes};
use score::{Format, Job, Scorer, Settings};
use storage::ReadCondition;
use storage::testing::{BUCKET, S3Server};

/// A test's own s3s-fs and the model published on it. Owned by the test (not a static,
/// which is never dropped), so the server is killed when the test ends, pass or fail.
struct Fixture {
    server: S3Server,
    /// The model published on `server`; its MODEL_URI and loaded form.
    model: LoadedModel,
}

impl Fixture {
    fn new() -> Self {
        let server = S3Server::start();
        publish(&server.store("models"), &artifact()).expect("publish");
        let model = load_model(&server.uri("models/tiny"), &server.options()).expect("load");
        Self { server, model }
    }

    fn scorer(&self, part_size: usize) -> Scorer {
        let stores = Arc::new(Stores::new(self.server.options()));
        Scorer::new(
            Settings {
                id_columns: vec!["id".into()],
                ..Settings::default()
            },
            2,
            stores,
            part_size,
        )
        .expect("scorer")
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        self.server.store("").put(key, bytes).expect("put");
    }

    /// The object's bytes; `None` only when the server says it does not exist (any other
    /// error fails the test, so "must not exist" checks cannot pass on an unreachable server).
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.server.store("").get(key) {
            Ok(bytes) => Some(bytes),
            Err(model::StoreError::NotFound(_)) => None,
            Err(e) => panic!("get {key}: {e}"),
        }
    }
}

fn artifact() -> Artifact {
    let mut a = Artifact {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        name: "tiny".into(),
        created_at: model::artifact::now_rfc3339(),
        classes: vec!["cat".into(), "dog".into(), "eel".into()],
        feature_names: vec!["a".into(), "b".into()],
        scaler: Scaler {
            mean: vec![0.5, -0.5],
            scale: vec![2.0, 0.5],
        },
        coefficients: vec![vec![1.0, 0.2], vec![-0.3, 1.0], vec![-1.0, -1.0]],
        intercepts: vec![0.1, 0.0, -0.1],
        training: serde_json::Map::new(),
        metrics: serde_json::Map::new(),
        data_sha256: "0".repeat(64),
    };
    a.seal();
    a
}

fn s3(key: &str) -> Location {
    Location::S3 {
        bucket: BUCKET.into(),
        key: key.into(),
    }
}

fn job(input: &str, base: &str) -> Job {
    let (output, errors, manifest) = outputs_for(&s3(base), Format::Csv);
    Job {
        input: s3(input),
        condition: ReadCondition::default(),
        output,
        errors,
        manifest,
        format: None,
    }
}

/// `rows` rows `id,b,a`, with a bad row every 1000.
fn csv(rows: usize) -> Vec<u8> {
    let mut s = String::from("id,b,a,note\n");
    for i in 0..rows {
        if i % 1000 == 999 {
            s.push_str(&format!("r{i},x,1,bad\n"));
        } else {
            let a = (i % 97) as f64 * 0.1 - 3.0;
            let b = (i % 13) as f64 * 0.37 - 1.0;
            s.push_str(&format!("r{i},{b},{a},\"n, {i}\"\n"));
        }
    }
    s.into_bytes()
}

/// Every output row equals the model's own prediction for its input row.
fn check_output(input: &[u8], output: &[u8], m: &Model) -> usize {
    let input = String::from_utf8_lossy(input);
    let mut want = std::collections::HashMap::new();
    for l in input.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        if let (Ok(b), Ok(a)) = (f[1].parse::<f64>(), f[2].parse::<f64>()) {
            want.insert(f[0].to_string(), m.predict(&[a, b]).expect("predict"));
        }
    }
    let output = String::from_utf8_lossy(output);
    let mut lines = output.lines();
    assert_eq!(lines.next(), Some("id,label,proba_cat,proba_dog,proba_eel"));
    let mut n = 0;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let p = &want[f[0]];
        assert_eq!(f[1], m.label(p), "{l}");
        let got: Vec<f64> = f[2..].iter().map(|x| x.parse().expect("f64")).collect();
        assert_eq!(got, p.probabilities, "{l}");
        n += 1;
    }
    assert_eq!(n, want.len(), "every good row scored once");
    n
}

#[test]
fn a_large_file_is_scored_through_a_multipart_upload_and_matches_the_model() {
    let f = Fixture::new();
    let m = &f.model;
    let input = csv(120_000);
    f.put("in/big.csv", &input);
    let before = f.server.requests().len();
    let outcome = f
        .scorer(5 << 20)
        .run(m, &job("in/big.csv", "out/big.csv"))
        .expect("run");
    let Outcome::Scored(manifest) = outcome else {
        panic!("not scored: {outcome:?}")
    };
    assert_eq!(manifest.rows_refused, 120);
    assert_eq!(manifest.rows_scored, 120_000 - 120);
    assert_eq!(manifest.model.version, m.version);
    let out = f.get("out/big.csv.out.csv").expect("output");
    assert!(out.len() > 5 << 20, "output of {} bytes", out.len());
    assert_eq!(check_output(&input, &out, &m.model), 119_880);
    let errs = String::from_utf8(f.get("out/big.csv.errors.csv").expect("errors")).expect("utf8");
    assert_eq!(errs.lines().count(), 121);
    assert!(
        errs.contains("\n1001,b,\"not a number: \"\"x\"\"\"\n"),
        "{errs:.300}"
    );
    let man: serde_json::Value =
        serde_json::from_slice(&f.get("out/big.csv.manifest.json").expect("manifest"))
            .expect("json");
    assert_eq!(man["rows_scored"], 119_880);
    assert_eq!(
        man["model"]["model_id"],
        m.model.artifact().model_id.as_str()
    );
    assert_eq!(man["output"], format!("s3://{BUCKET}/out/big.csv.out.csv"));
    assert!(man["input_etag"].is_string());
    let ops: Vec<String> = f.server.requests()[before..]
        .iter()
        .filter(|(op, _, k)| k == "out/big.csv.out.csv" && op != "GetObject")
        .map(|(op, _, _)| op.clone())
        .collect();
    assert_eq!(
        ops.first().map(String::as_str),
        Some("CreateMultipartUpload"),
        "{ops:?}"
    );
    assert_eq!(
        ops.last().map(String::as_str),
        Some("CompleteMultipartUpload"),
        "{ops:?}"
    );
    assert!(
        ops.iter().filter(|o| *o == "UploadPart").count() >= 2,
        "{ops:?}"
    );

    // Redelivery: the same object scored again gives the same bytes.
    f.scorer(5 << 20)
        .run(m, &job("in/big.csv", "out/big.csv"))
        .expect("again");
    assert_eq!(f.get("out/big.csv.out.csv").expect("output"), out);
}

#[test]
fn a_corrupt_gzip_fails_and_publishes_nothing() {
    let f = Fixture::new();
    let m = &f.model;
    let input = csv(200_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&input).expect("gzip");
    let mut gz = gz.finish().expect("gzip");
    // A good gzip first: it scores.
    f.put("in/good.csv.gz", &gz);
    let Outcome::Scored(man) = f
        .scorer(5 << 20)
        .run(m, &job("in/good.csv.gz", "out/good.csv.gz"))
        .expect("good gzip")
    else {
        panic!("not scored")
    };
    assert!(man.gzip);
    assert_eq!(man.rows_scored, 200_000 - 200);
    check_output(
        &input,
        &f.get("out/good.csv.gz.out.csv").expect("output"),
        &m.model,
    );
    // Corrupt the stream well past the first part's worth of output.
    let at = gz.len() * 3 / 4;
    for b in &mut gz[at..at + 64] {
        *b ^= 0x5a;
    }
    f.put("in/bad.csv.gz", &gz);
    let before = f.server.requests().len();
    let err = f
        .scorer(5 << 20)
        .run(m, &job("in/bad.csv.gz", "out/bad.csv.gz"))
        .expect_err("a corrupt gzip must fail");
    let text = err.to_string();
    assert!(
        text.contains("in/bad.csv.gz") && text.contains("read failed"),
        "{text}"
    );
    for k in [
        "out/bad.csv.gz.out.csv",
        "out/bad.csv.gz.errors.csv",
        "out/bad.csv.gz.manifest.json",
    ] {
        assert!(f.get(k).is_none(), "{k} must not exist after a failure");
    }
    // Only the bad run's requests.
    let ops: Vec<String> = f.server.requests()[before..]
        .iter()
        .filter(|(_, _, k)| k.starts_with("out/bad.csv.gz"))
        .map(|(op, _, _)| op.clone())
        .collect();
    assert!(
        ops.iter().any(|o| o == "UploadPart"),
        "a part was sent first: {ops:?}"
    );
    assert!(ops.iter().any(|o| o == "AbortMultipartUpload"), "{ops:?}");
    assert!(
        !ops.iter().any(|o| o == "CompleteMultipartUpload"),
        "{ops:?}"
    );
}

#[test]
fn an_unreadable_file_fails_with_a_clear_error_and_writes_nothing() {
    let f = Fixture::new();
    let m = &f.model;
    f.put("in/nofeature.csv", b"id,a\nr1,1\n");
    let err = f
        .scorer(5 << 20)
        .run(m, &job("in/nofeature.csv", "out/nofeature.csv"))
        .expect_err("missing column");
    assert!(
        err.to_string()
            .contains("line 1: the header lacks 1 feature column(s): b"),
        "{err}"
    );
    assert!(f.get("out/nofeature.csv.out.csv").is_none());
    assert!(f.get("out/nofeature.csv.manifest.json").is_none());
}

#[test]
fn json_lines_are_scored_to_json_lines() {
    let f = Fixture::new();
    let m = &f.model;
    f.put(
        "in/rows.jsonl",
        b"{\"id\": 7, \"a\": 1.5, \"b\": -2}\n{\"id\": \"x\", \"a\": 1}\n",
    );
    let (output, errors, manifest) = outputs_for(&s3("out/rows.jsonl"), Format::Jsonl);
    let job = Job {
        input: s3("in/rows.jsonl"),
        condition: ReadCondition::default(),
        output,
        errors,
        manifest,
        format: None,
    };
    let Outcome::Scored(man) = f.scorer(5 << 20).run(m, &job).expect("run") else {
        panic!("not scored")
    };
    assert_eq!((man.rows_scored, man.rows_refused), (1, 1));
    let out = f.get("out/rows.jsonl.out.jsonl").expect("output");
    let row: serde_json::Value = serde_json::from_slice(&out).expect("json");
    let p = m.model.predict(&[1.5, -2.0]).expect("p");
    assert_eq!(row["id"], 7);
    assert_eq!(row["proba_eel"].as_f64(), Some(p.probabilities[2]));
    let errs =
        String::from_utf8(f.get("out/rows.jsonl.errors.csv").expect("errors")).expect("utf8");
    assert_eq!(errs, "line,column,reason\n2,b,missing\n");
}

// (A stale ETag, `If-Match`, is not tested here: s3s-fs 0.14.1 ignores the condition.)
#[test]
fn a_deleted_object_is_reported_missing_and_writes_nothing() {
    let f = Fixture::new();
    let m = &f.model;
    // The event arrives after the object is gone.
    f.put("in/never-there.csv", &csv(10));
    f.server
        .store("")
        .delete("in/never-there.csv")
        .expect("delete");
    let j = job("in/never-there.csv", "out/never-there.csv");
    assert_eq!(
        f.scorer(5 << 20).run(m, &j).expect("missing"),
        Outcome::Missing
    );
    assert!(f.get("out/never-there.csv.manifest.json").is_none());
    assert!(f.get("out/never-there.csv.out.csv").is_none());
}

fn event(records: &[(&str, &str)]) -> S3Event {
    let recs: Vec<serde_json::Value> = records
        .iter()
        .map(|(name, key)| {
            serde_json::json!({
                "eventSource": "aws:s3", "eventName": name,
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": recs })).expect("event")
}

#[test]
fn the_handler_scores_records_under_the_prefix_and_ignores_the_rest() {
    let f = Fixture::new();
    let m = &f.model;
    f.put("landing/a b.csv", b"id,a,b\nr1,1,2\n");
    f.put("landing/sub/c.csv", b"id,a,b\nr2,3,4\nr3,x,1\n");
    f.put("elsewhere/d.csv", b"id,a,b\nr4,1,2\n");
    let handler = Handler::new(
        f.scorer(5 << 20),
        Prefixes::new("landing", "scored").expect("prefixes"),
        m.clone(),
        0,
        f.server.options(),
    );
    let res = handler
        .handle(&event(&[
            ("ObjectCreated:Put", "landing/a+b.csv"),
            ("ObjectCreated:CompleteMultipartUpload", "landing/sub/c.csv"),
            ("ObjectCreated:Put", "elsewhere/d.csv"),
            ("ObjectRemoved:Delete", "landing/a+b.csv"),
        ]))
        .expect("handled");
    let status: Vec<&str> = res.records.iter().map(|r| r.status).collect();
    assert_eq!(status, ["scored", "scored", "ignored", "ignored"]);
    assert_eq!(res.records[1].rows_refused, Some(1));
    assert!(f.get("scored/a b.csv.out.csv").is_some());
    assert!(f.get("scored/sub/c.csv.manifest.json").is_some());
    assert!(f.get("scored/d.csv.out.csv").is_none());
    // One bad record fails the invocation (so Lambda retries it), the others still run.
    f.put("landing/broken.csv", b"id,a\n");
    let err = handler
        .handle(&event(&[
            ("ObjectCreated:Put", "landing/broken.csv"),
            ("ObjectCreated:Put", "landing/a+b.csv"),
        ]))
        .expect_err("a failed record fails the invocation");
    assert!(
        err.contains("1 of 2 records failed") && err.contains("landing/broken.csv"),
        "{err}"
    );
}
