//! The S3 store against a real S3-compatible server (s3s-fs on loopback, started per test).
//! Each fault named in issue 4 is a test here: a clear error, and nothing lost.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use model::StoreError;
use model::store::{
    Location, ObjectStore, catalog, delete_version, latest_key, list_versions, load, model_key,
    promote, publish, read_latest, read_latest_if_changed,
};
use model::{Artifact, FORMAT_VERSION, Scaler};
use storage::testing::{BUCKET, S3Server};
use storage::{S3Options, S3Store, open_store_with, read_location_with};

/// A small valid binary model; `w` varies the weights (and so the model id).
fn artifact(name: &str, w: f64) -> Artifact {
    let mut a = Artifact {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        name: name.to_string(),
        created_at: "2026-11-27T03:00:00.000Z".into(),
        classes: vec!["no".into(), "yes".into()],
        feature_names: vec!["x".into(), "y".into()],
        scaler: Scaler {
            mean: vec![0.5, -1.0],
            scale: vec![2.0, 1.0],
        },
        coefficients: vec![vec![w, -0.5]],
        intercepts: vec![0.25],
        training: serde_json::Map::new(),
        metrics: serde_json::Map::new(),
        data_sha256: "0".repeat(64),
    };
    a.seal();
    a
}

fn err_text<T>(r: Result<T, StoreError>) -> (StoreError, String) {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let s = e.to_string();
            (e, s)
        }
    }
}

#[test]
fn publish_then_load_round_trips_with_two_objects_and_checksums() {
    let server = S3Server::start();
    let root = Location::parse(&server.uri("models/team")).expect("uri");
    let store = open_store_with(&root, &server.options()).expect("store");
    let a = artifact("digits", 1.5);
    let published = publish(store.as_ref(), &a).expect("publish");
    assert_eq!(
        published.location,
        format!(
            "s3://{BUCKET}/models/team/digits/{}/model.json",
            published.version
        )
    );

    let (model, version) = load(store.as_ref(), "digits", None).expect("load latest");
    assert_eq!(version, published.version);
    assert_eq!(model.artifact(), &a);
    let (model, _) = load(store.as_ref(), "digits", Some(&version)).expect("load version");
    assert_eq!(model.artifact().model_id, a.model_id);

    // Exactly the objects the layout needs, each carrying its SHA-256.
    let client = server.client();
    let listed = storage_block_on(async move {
        client
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list")
    });
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("models/team/{}", model_key("digits", &version)),
            format!("models/team/{}", latest_key("digits")),
        ]
    );
    for key in keys {
        let client = server.client();
        let head = storage_block_on(async move {
            client
                .head_object()
                .bucket(BUCKET)
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .expect("head")
        });
        assert!(head.checksum_sha256().is_some(), "no SHA-256 stored");
    }
}

#[test]
fn publish_costs_one_request_per_object() {
    let server = S3Server::start();
    let store = server.store("models");
    let before = server.requests().len();
    let p = publish(&store, &artifact("digits", 1.0)).expect("publish");
    let during: Vec<_> = server.requests().into_iter().skip(before).collect();
    let expected = vec![
        (
            "PutObject".to_string(),
            BUCKET.to_string(),
            format!("models/{}", model_key("digits", &p.version)),
        ),
        (
            "PutObject".to_string(),
            BUCKET.to_string(),
            format!("models/{}", latest_key("digits")),
        ),
    ];
    assert_eq!(during, expected);
}

#[test]
fn put_new_never_overwrites() {
    let server = S3Server::start();
    let store = server.store("p");
    store.put_new("a/b", b"first").expect("create");
    let (e, msg) = err_text(store.put_new("a/b", b"second"));
    assert!(matches!(e, StoreError::AlreadyExists(_)), "{e:?}");
    assert!(msg.contains("s3://artifacts/p/a/b"), "{msg}");
    assert_eq!(store.get("a/b").expect("get"), b"first");
    store.put("a/b", b"third").expect("replace");
    assert_eq!(store.get("a/b").expect("get"), b"third");
}

#[test]
fn wrong_credentials_are_named() {
    let server = S3Server::start();
    for creds in [
        ("test-access-key", "not-the-secret"),
        ("nobody", "test-secret-key-0123456789"),
    ] {
        let opts = S3Options {
            credentials: Some((creds.0.into(), creds.1.into())),
            ..server.options()
        };
        let store = S3Store::connect(BUCKET, "models", &opts).expect("store");
        let (_, msg) = err_text(load(&store, "digits", None));
        assert!(msg.contains("s3://artifacts/models/digits/latest"), "{msg}");
        assert!(msg.contains("refused the credentials"), "{msg}");
        assert!(msg.contains("AWS_SECRET_ACCESS_KEY"), "{msg}");
        let (_, msg) = err_text(publish(&store, &artifact("digits", 1.0)));
        assert!(msg.contains("refused the credentials"), "{msg}");
    }
}

#[test]
fn missing_bucket_is_named() {
    let server = S3Server::start();
    let store = S3Store::connect("no-such-bucket", "models", &server.options()).expect("store");
    let (_, msg) = err_text(load(&store, "digits", None));
    assert!(
        msg.contains("bucket \"no-such-bucket\" does not exist"),
        "{msg}"
    );
    assert!(
        msg.contains("s3://no-such-bucket/models/digits/latest"),
        "{msg}"
    );
}

#[test]
fn missing_model_is_not_found() {
    let server = S3Server::start();
    let store = server.store("models");
    let (e, msg) = err_text(load(&store, "digits", None));
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert!(msg.contains("s3://artifacts/models/digits/latest"), "{msg}");
    let (e, _) = err_text(load(
        &store,
        "digits",
        Some("20261127T033150.123Z-0123456789ab"),
    ));
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
}

#[test]
fn latest_naming_an_absent_version_is_refused() {
    let server = S3Server::start();
    let store = server.store("models");
    let p = publish(&store, &artifact("digits", 1.0)).expect("publish");
    let client = server.client();
    let key = format!("models/{}", model_key("digits", &p.version));
    storage_block_on(async move {
        client
            .delete_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .expect("delete")
    });
    let (e, msg) = err_text(load(&store, "digits", None));
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert!(msg.contains(&p.version), "{msg}");
    assert!(
        msg.contains("named by s3://artifacts/models/digits/latest"),
        "{msg}"
    );
}

#[test]
fn an_object_changed_on_the_server_is_refused() {
    let server = S3Server::start();
    let store = server.store("models");
    let p = publish(&store, &artifact("digits", 1.0)).expect("publish");
    let key = model_key("digits", &p.version);

    // Behind S3's back: the bytes change, the stored checksum does not.
    let file = server.object_path(&format!("models/{key}"));
    let mut bytes = std::fs::read(&file).expect("object file");
    let at = bytes
        .iter()
        .position(|b| *b == b'5')
        .expect("a digit to change");
    bytes[at] = b'6';
    std::fs::write(&file, &bytes).expect("rewrite object file");

    let (e, msg) = err_text(store.get(&key));
    assert!(matches!(e, StoreError::Checksum { .. }), "{e:?}");
    assert!(
        msg.contains(&format!("s3://artifacts/models/{key}")),
        "{msg}"
    );
    let (e, _) = err_text(load(&store, "digits", Some(&p.version)));
    assert!(matches!(e, StoreError::Checksum { .. }), "{e:?}");
    let (e, _) = err_text(load(&store, "digits", None));
    assert!(matches!(e, StoreError::Checksum { .. }), "{e:?}");
}

#[test]
fn an_object_replaced_through_s3_is_refused_by_latest() {
    let server = S3Server::start();
    let store = server.store("models");
    let p = publish(&store, &artifact("digits", 1.0)).expect("publish");
    // A consistent replacement (new bytes, new checksum) that `latest` did not name.
    store
        .put(
            &model_key("digits", &p.version),
            &artifact("digits", 9.0).to_json(),
        )
        .expect("raw overwrite");
    let (e, _) = err_text(load(&store, "digits", None));
    assert!(matches!(e, StoreError::Checksum { .. }), "{e:?}");
}

#[test]
fn server_down_at_cold_start_fails_clearly_within_ten_seconds() {
    let mut server = S3Server::start();
    server.stop(); // the port is now known to be closed
    let started = Instant::now();
    let store = open_store_with(
        &Location::parse(&server.uri("models")).expect("uri"),
        &server.options(),
    )
    .expect("building the client makes no request");
    let (_, msg) = err_text(load(store.as_ref(), "digits", None));
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    assert!(msg.contains("cannot reach the S3 server"), "{msg}");
    assert!(msg.contains(&server.endpoint()), "{msg}");
    assert!(msg.contains("s3://artifacts/models/digits/latest"), "{msg}");
}

#[test]
fn a_server_that_hangs_fails_clearly_within_ten_seconds() {
    // Accepts connections, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let opts = S3Options {
        endpoint: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        credentials: Some(("k".into(), "s".into())),
    };
    let store = S3Store::connect(BUCKET, "models", &opts).expect("store");
    let started = Instant::now();
    let (_, msg) = err_text(load(&store, "digits", None));
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_secs(10), "took {elapsed:?}");
    assert!(msg.contains("did not answer within"), "{msg}");
    assert!(msg.contains(&endpoint), "{msg}");
    drop(listener);
}

/// A store that kills the server between the version upload and the `latest` update.
struct KillBeforeLatest<'a> {
    inner: S3Store,
    server: &'a Mutex<S3Server>,
}

impl ObjectStore for KillBeforeLatest<'_> {
    fn describe(&self, key: &str) -> String {
        self.inner.describe(key)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.inner.get(key)
    }
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_new(key, bytes)
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.server.lock().expect("lock").stop();
        self.inner.put(key, bytes)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
}

#[test]
fn server_killed_mid_publish_leaves_latest_on_the_previous_version() {
    let server = Mutex::new(S3Server::start());
    let store = server.lock().expect("lock").store("models");
    let first = publish(&store, &artifact("digits", 1.0)).expect("first publish");

    let dying = KillBeforeLatest {
        inner: store.clone(),
        server: &server,
    };
    let (_, msg) = err_text(publish(&dying, &artifact("digits", 2.0)));
    assert!(msg.contains("s3://artifacts/models/digits/latest"), "{msg}");

    server.lock().expect("lock").restart();
    let (model, version) = load(&store, "digits", None).expect("load after restart");
    assert_eq!(version, first.version);
    assert_eq!(model.artifact(), &artifact("digits", 1.0));
}

#[test]
fn two_publishers_at_once_both_complete_and_latest_names_one() {
    let server = S3Server::start();
    let (a, b) = (artifact("digits", 1.0), artifact("digits", 2.0));
    let (pa, pb) = std::thread::scope(|s| {
        let ta = s.spawn(|| publish(&server.store("models"), &a));
        let tb = s.spawn(|| publish(&server.store("models"), &b));
        (ta.join().expect("thread a"), tb.join().expect("thread b"))
    });
    let (pa, pb) = (pa.expect("publish a"), pb.expect("publish b"));
    assert_ne!(pa.version, pb.version);
    let store = server.store("models");
    for (p, art) in [(&pa, &a), (&pb, &b)] {
        let (m, _) = load(&store, "digits", Some(&p.version)).expect("each version loads");
        assert_eq!(m.artifact(), art);
    }
    // Real S3 replaces an object atomically, so `latest` names one of the two. s3s-fs
    // 0.14 does not: its PutObject renames the body into place and writes the stored
    // checksum afterwards in a second file, so two PUTs of one key can interleave as
    // body A, body B, checksum B, checksum A. The reader must then refuse `latest` as
    // torn (checksum error naming it); it must never hand out a model it did not check.
    match load(&store, "digits", None) {
        Ok((m, v)) => {
            assert!(v == pa.version || v == pb.version, "latest names {v}");
            let latest = read_latest(&store, "digits").expect("latest");
            assert_eq!(latest.version, v);
            assert_eq!(m.artifact().model_id, latest.model_id);
        }
        Err(StoreError::Checksum { key, .. }) => {
            assert_eq!(key, server.uri("models/digits/latest"));
        }
        Err(e) => panic!("latest neither loads nor is refused as torn: {e}"),
    }
    // Either way the next publish leaves a `latest` that loads whole.
    let c = artifact("digits", 3.0);
    let pc = publish(&store, &c).expect("publish c");
    let (m, v) = load(&store, "digits", None).expect("latest loads after the next publish");
    assert_eq!((v, m.artifact()), (pc.version, &c));
}

/// The torn state above on demand: a `latest` whose body and stored checksum disagree is
/// refused with an error naming the key, and no model is returned.
#[test]
fn a_latest_whose_checksum_does_not_match_is_refused() {
    let server = S3Server::start();
    let store = server.store("models");
    let pa = publish(&store, &artifact("digits", 1.0)).expect("publish a");
    let _pb = publish(&store, &artifact("digits", 2.0)).expect("publish b");
    let stored = server.object_path(&format!("models/{}", latest_key("digits")));
    let body = std::fs::read(&stored).expect("latest on disk");
    let text = String::from_utf8(body).expect("utf-8");
    let prior = read_latest(&store, "digits").expect("latest").version;
    std::fs::write(&stored, text.replace(&prior, &pa.version)).expect("tamper");
    let (e, msg) = err_text(load(&store, "digits", None));
    assert!(matches!(e, StoreError::Checksum { .. }), "{e:?}");
    assert!(msg.contains("s3://artifacts/models/digits/latest"), "{msg}");
}

#[test]
fn data_files_are_read_from_s3() {
    let server = S3Server::start();
    let csv = b"x,y,label\n1,2,a\n3,4,b\n";
    server.store("").put("data/train.csv", csv).expect("upload");
    let loc = Location::parse(&server.uri("data/train.csv")).expect("uri");
    assert_eq!(
        read_location_with(&loc, &server.options()).expect("read"),
        csv
    );
    let missing = Location::parse(&server.uri("data/nope.csv")).expect("uri");
    let (e, msg) = err_text(read_location_with(&missing, &server.options()));
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert!(msg.contains("s3://artifacts/data/nope.csv"), "{msg}");
}

#[test]
fn callable_from_inside_a_tokio_runtime() {
    let server = S3Server::start();
    let store = server.store("models");
    publish(&store, &artifact("digits", 1.0)).expect("publish");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let loaded = rt.block_on(async { load(&server.store("models"), "digits", None) });
    assert!(loaded.is_ok(), "{:?}", loaded.err());
    // Dropping a store inside async code must not panic either.
    rt.block_on(async { drop(server.store("models")) });
}

/// The default chain reads `AWS_ENDPOINT_URL` and friends: checked in a child process,
/// since tests in this process run in parallel and must not share environment variables.
#[test]
fn default_chain_reads_the_environment() {
    let server = S3Server::start();
    publish(&server.store("models"), &artifact("digits", 1.0)).expect("publish");
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", "child_loads_through_the_default_chain"])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .envs(server.env())
        .env("STORAGE_TEST_MODEL_ROOT", server.uri("models"))
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run as a child process by default_chain_reads_the_environment"]
fn child_loads_through_the_default_chain() {
    let root = std::env::var("STORAGE_TEST_MODEL_ROOT").expect("STORAGE_TEST_MODEL_ROOT");
    let store = storage::open_store(&Location::parse(&root).expect("uri")).expect("store");
    let (model, _) = load(store.as_ref(), "digits", None).expect("load via env");
    assert_eq!(model.artifact().name, "digits");
}

/// Publish `n` versions of `name`, a few milliseconds apart; their names, oldest first.
fn publish_n(store: &dyn ObjectStore, name: &str, n: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            let v = publish(store, &artifact(name, 1.0 + f64::from(i)))
                .expect("publish")
                .version;
            std::thread::sleep(Duration::from_millis(3));
            v
        })
        .collect()
}

#[test]
fn versions_are_listed_page_by_page_and_only_under_the_prefix() {
    let server = S3Server::start();
    let store = server.store("models").with_list_page_size(2);
    let published = publish_n(&store, "digits", 5);
    // Neighbours that a careless prefix would match.
    server
        .store("models-old")
        .put("digits/x/model.json", b"{}")
        .expect("put");
    publish_n(&store, "digits2", 1);

    let before = server.requests().len();
    assert_eq!(list_versions(&store, "digits").expect("list"), published);
    let lists = server
        .requests()
        .into_iter()
        .skip(before)
        .filter(|(op, _, _)| op == "ListObjectsV2")
        .count();
    // 5 versions + latest = 6 keys, 2 per page.
    assert_eq!(lists, 3);
    let c = catalog(&store, "digits").expect("catalog");
    assert_eq!(c.latest.version(), published.last().map(String::as_str));
}

#[test]
fn polling_latest_is_one_small_get_and_sees_changes() {
    let server = S3Server::start();
    let store = server.store("models");
    let v = publish_n(&store, "digits", 2);
    let (l, tag) = read_latest_if_changed(&store, "digits", None)
        .expect("poll")
        .expect("first poll sees the pointer");
    assert_eq!(l.version, v[1]);

    let before = server.requests().len();
    for _ in 0..3 {
        assert_eq!(
            read_latest_if_changed(&store, "digits", Some(&tag)).expect("poll"),
            None
        );
    }
    let during: Vec<_> = server.requests().into_iter().skip(before).collect();
    let latest = format!("models/{}", latest_key("digits"));
    assert_eq!(
        during,
        vec![("GetObject".to_string(), BUCKET.to_string(), latest); 3],
        "one GET of the pointer per poll, never the model"
    );

    let p = promote(&store, "digits", &v[0]).expect("rollback");
    assert_eq!(p.previous.version(), Some(v[1].as_str()));
    let (l, new_tag) = read_latest_if_changed(&store, "digits", Some(&tag))
        .expect("poll")
        .expect("changed");
    assert_eq!(l.version, v[0]);
    assert_ne!(new_tag, tag);
    let (e, _) = err_text(read_latest_if_changed(&store, "absent", None));
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
}

#[test]
fn promote_and_delete_on_s3() {
    let server = S3Server::start();
    let store = server.store("models");
    let v = publish_n(&store, "digits", 3);
    promote(&store, "digits", &v[1]).expect("promote");
    assert_eq!(load(&store, "digits", None).expect("load").1, v[1]);

    let (e, _) = err_text(delete_version(&store, "digits", &v[1]));
    assert!(matches!(e, StoreError::InUse { .. }), "{e:?}");
    delete_version(&store, "digits", &v[0]).expect("delete");
    assert_eq!(
        list_versions(&store, "digits").expect("list"),
        [v[1].clone(), v[2].clone()]
    );
    let (e, msg) = err_text(promote(&store, "digits", &v[0]));
    assert!(matches!(e, StoreError::NoSuchVersion { .. }), "{e:?}");
    assert!(
        msg.contains(&format!("s3://artifacts/models/digits/{}", v[0])),
        "{msg}"
    );
    let (e, _) = err_text(promote(&store, "nothing", &v[0]));
    assert!(matches!(e, StoreError::NoSuchModel { .. }), "{e:?}");

    // Changed behind S3's back: the stored checksum catches it; latest stays put.
    let file = server.object_path(&format!("models/{}", model_key("digits", &v[2])));
    let text = std::fs::read_to_string(&file).expect("object file");
    std::fs::write(&file, text.replacen("-0.5", "-0.25", 1)).expect("rewrite");
    let (e, msg) = err_text(promote(&store, "digits", &v[2]));
    assert!(matches!(e, StoreError::Unverified { .. }), "{e:?}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert_eq!(read_latest(&store, "digits").expect("latest").version, v[1]);

    let other = S3Store::connect("no-such-bucket", "models", &server.options()).expect("store");
    let (e, msg) = err_text(catalog(&other, "digits"));
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e:?}");
    assert!(
        msg.contains("bucket \"no-such-bucket\" does not exist"),
        "{msg}"
    );
}

#[test]
fn s3s_fs_ignores_if_none_match_so_the_etag_is_compared() {
    // What the poll above relies on, pinned: s3s-fs 0.14.1 answers a GET whose
    // If-None-Match matches with 200 and the whole object (AWS answers 304, no body).
    // Should a newer s3s-fs answer 304, this fails: then the 304 path runs in the tests
    // above too, and docs/trainer.md's note on s3s-fs should change.
    let server = S3Server::start();
    let store = server.store("");
    store.put("k", b"pointer").expect("put");
    let client = server.client();
    let etag = storage_block_on(async move {
        let first = client.get_object().bucket(BUCKET).key("k").send().await;
        let etag = first.expect("get").e_tag().expect("etag").to_string();
        let again = client
            .get_object()
            .bucket(BUCKET)
            .key("k")
            .if_none_match(&etag)
            .send()
            .await;
        assert!(again.is_ok(), "s3s-fs now honours If-None-Match: {again:?}");
        etag
    });
    assert_eq!(store.get_if_changed("k", Some(&etag)).expect("poll"), None);
}

/// A loopback HTTP server that answers every request with `response`, and hands back the
/// request heads it received.
fn canned_server(response: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let _ = tx.send(head);
            let _ = conn.write_all(response.as_bytes());
        }
    });
    (endpoint, rx)
}

#[test]
fn a_304_answer_means_unchanged_without_a_body() {
    // AWS's own answer to a matching If-None-Match, which s3s-fs does not give.
    let (endpoint, heads) =
        canned_server("HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\nContent-Length: 0\r\n\r\n");
    let opts = S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        credentials: Some(("k".into(), "s".into())),
    };
    let store = S3Store::connect(BUCKET, "models", &opts).expect("store");
    let got = read_latest_if_changed(&store, "digits", Some("\"abc\"")).expect("poll");
    assert_eq!(got, None);
    let head = heads
        .recv_timeout(Duration::from_secs(5))
        .expect("a request");
    assert!(
        head.starts_with("GET /artifacts/models/digits/latest"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("if-none-match: \"abc\""),
        "{head}"
    );
    // Only one request: a 304 is an answer, not a failure to retry.
    assert!(heads.recv_timeout(Duration::from_millis(300)).is_err());
}

/// Run a raw SDK future (test plumbing only).
fn storage_block_on<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
