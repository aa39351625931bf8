//! `trainer fit` against a real S3-compatible server (s3s-fs on loopback, started by
//! `storage::testing`): `--data s3://...` reads, `--store s3://...` publishes. The binary
//! finds the server through the environment only, as it would in production.

use std::path::Path;
use std::process::{Command, Output};

use model::store::{ObjectStore, load, read_latest};
use storage::testing::S3Server;

const BIN: &str = env!("CARGO_BIN_EXE_trainer");

/// A small, separable two-feature, three-class data set.
fn csv() -> Vec<u8> {
    let mut s = String::from("f0,f1,label\n");
    for i in 0..90u32 {
        let class = i % 3;
        let jitter = f64::from(i % 7) * 0.05;
        let (x, y) = match class {
            0 => (0.0 + jitter, 0.0 - jitter),
            1 => (3.0 - jitter, 0.5 + jitter),
            _ => (1.5 + jitter, 3.0 - jitter),
        };
        s.push_str(&format!("{x},{y},{class}\n"));
    }
    s.into_bytes()
}

/// The trainer with the server's environment and nothing else that could steer it.
fn trainer(dir: &Path, server: &S3Server) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir).env_clear().envs(server.env());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run trainer")
}

#[test]
fn fit_reads_data_from_s3_and_publishes_to_s3() {
    let server = S3Server::start();
    let data = csv();
    server
        .store("")
        .put("data/train.csv", &data)
        .expect("upload data");
    let tmp = tempfile::tempdir().expect("tmp");
    let o = run(trainer(tmp.path(), &server)
        .args(["fit", "--data", &server.uri("data/train.csv")])
        .args(["--store", &server.uri("models/team"), "--name", "toy"])
        .args(["--alphas", "1", "--mode", "seq", "--report", "r.json"]));
    assert!(
        o.status.success(),
        "trainer failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("r.json")).expect("report"))
            .expect("json");
    let version = report["version"].as_str().expect("version").to_string();
    assert_eq!(
        report["model_uri"].as_str(),
        Some(format!("s3://artifacts/models/team/toy/{version}").as_str())
    );

    let store = server.store("models/team");
    assert_eq!(read_latest(&store, "toy").expect("latest").version, version);
    let (m, v) = load(&store, "toy", None).expect("the published model loads");
    assert_eq!(v, version);
    assert_eq!(m.artifact().data_sha256, model::artifact::sha256_hex(&data));
    assert_eq!(m.artifact().classes, ["0", "1", "2"]);
}

#[test]
fn missing_data_object_is_a_clear_error() {
    let server = S3Server::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let o = run(trainer(tmp.path(), &server)
        .args(["fit", "--data", &server.uri("data/absent.csv")])
        .args(["--store", &server.uri("models"), "--alphas", "1"]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("s3://artifacts/data/absent.csv"), "{err}");
    // Nothing was published.
    assert!(load(&server.store("models"), "digits", None).is_err());
}
