//! The `score` binary on local files: outputs published by rename, errors file, manifest,
//! a clear failure (and nothing written) for an unreadable file, flags as env vars.

use std::path::Path;
use std::process::Command;

use model::store::{LocalStore, publish};
use model::{Artifact, FORMAT_VERSION, Model, Scaler};

fn artifact() -> Artifact {
    let mut a = Artifact {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        name: "bin".into(),
        created_at: model::artifact::now_rfc3339(),
        classes: vec!["no".into(), "yes".into()],
        feature_names: vec!["x".into(), "y".into()],
        scaler: Scaler {
            mean: vec![1.0, 2.0],
            scale: vec![3.0, 4.0],
        },
        coefficients: vec![vec![0.7, -1.3]],
        intercepts: vec![0.25],
        training: serde_json::Map::new(),
        metrics: serde_json::Map::new(),
        data_sha256: "0".repeat(64),
    };
    a.seal();
    a
}

fn score(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_score"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .current_dir(dir)
        .output()
        .expect("run score")
}

#[test]
fn scores_a_local_file_and_refuses_an_unreadable_one() {
    let dir = tempfile::tempdir().expect("tmp");
    publish(&LocalStore::new(dir.path().join("store")), &artifact()).expect("publish");
    std::fs::write(
        dir.path().join("in.csv"),
        "y,x,key\n1,2,a\n-1,0.5,b\nnan,1,c\n3,4,d\n",
    )
    .expect("write");
    let out = score(
        dir.path(),
        &["--input", "in.csv", "--output", "res/in.out.csv"],
        &[("MODEL_URI", "store/bin"), ("ID_COLUMNS", "key")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("manifest on stdout");
    assert_eq!(manifest["rows_scored"], 3);
    assert_eq!(manifest["rows_refused"], 1);
    let text = std::fs::read_to_string(dir.path().join("res/in.out.csv")).expect("output");
    let m = Model::new(artifact()).expect("model");
    let p = m.predict(&[2.0, 1.0]).expect("p");
    let first = text.lines().nth(1).expect("row");
    assert_eq!(
        first,
        format!(
            "a,{},{},{}",
            m.label(&p),
            ryu::Buffer::new().format(p.probabilities[0]),
            ryu::Buffer::new().format(p.probabilities[1])
        )
    );
    assert_eq!(text.lines().next(), Some("key,label,proba_no,proba_yes"));
    let errs = std::fs::read_to_string(dir.path().join("res/in.errors.csv")).expect("errors");
    assert_eq!(
        errs,
        "line,column,reason\n4,y,\"not finite: \"\"nan\"\"\"\n"
    );
    assert!(dir.path().join("res/in.manifest.json").is_file());

    // No header naming the features: a clear error, exit 1, nothing written.
    std::fs::write(dir.path().join("bad.csv"), "a,b\n1,2\n").expect("write");
    let out = score(
        dir.path(),
        &[
            "--model",
            "store/bin",
            "--input",
            "bad.csv",
            "--output",
            "res/bad.out.csv",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv: line 1: the header lacks 2 feature column(s): x, y"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("res"))
        .expect("res")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("bad") || n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "nothing may be left behind: {left:?}");

    // The output would overwrite the input: refused.
    let out = score(
        dir.path(),
        &[
            "--model",
            "store/bin",
            "--input",
            "in.csv",
            "--output",
            "in.csv",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overwrite the input"));
}

#[test]
fn under_lambda_an_output_prefix_inside_the_input_prefix_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("tmp");
    publish(&LocalStore::new(dir.path().join("store")), &artifact()).expect("publish");
    // The runtime API address is never reached: the settings are checked first.
    let run = |input: &str, output: &str| {
        Command::new(env!("CARGO_BIN_EXE_score"))
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("MODEL_URI", "store/bin")
            .env("INPUT_PREFIX", input)
            .env("OUTPUT_PREFIX", output)
            .current_dir(dir.path())
            .output()
            .expect("run score")
    };
    let out = run("incoming/", "incoming/scored/");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OUTPUT_PREFIX \"incoming/scored/\" is inside INPUT_PREFIX \"incoming/\""),
        "{err}"
    );
    let out = run("incoming", "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("OUTPUT_PREFIX must be a non-empty key prefix")
    );
}
