//! Drives the real `trainer` binary in temporary directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_trainer");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A command with a clean environment (no TRAINER_* leaking in), run in `dir`.
fn trainer(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("TRAINER_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run trainer")
}

fn ok(c: &mut Command) -> Output {
    let o = run(c);
    assert!(
        o.status.success(),
        "trainer failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    o
}

fn generate(dir: &Path, name: &str, rows: usize, features: usize, classes: usize) -> PathBuf {
    let out = dir.join(name);
    ok(trainer(dir)
        .args([
            "generate",
            "--rows",
            &rows.to_string(),
            "--features",
            &features.to_string(),
        ])
        .args(["--classes", &classes.to_string(), "--seed", "7", "--out"])
        .arg(&out));
    out
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read json")).expect("json")
}

fn artifact_of(dir: &Path, report: &Value) -> model::Artifact {
    let uri = report["model_uri"].as_str().expect("model_uri");
    let bytes = std::fs::read(dir.join(uri).join("model.json")).expect("model.json");
    model::Artifact::from_json(&bytes).expect("valid artifact")
}

#[test]
fn fit_publishes_a_valid_model_and_a_full_report() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let data = generate(d, "g.csv", 400, 5, 3);
    let o = ok(trainer(d).args(["fit", "--data"]).arg(&data).args([
        "--alphas",
        "0.1,1,10",
        "--folds",
        "3",
        "--store",
        "art",
        "--name",
        "toy",
        "--report",
        "out/r.json",
    ]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("holdout accuracy"), "{stdout}");
    let r = read_json(&d.join("out/r.json"));
    for key in [
        "mode",
        "threads",
        "accuracy",
        "fit_seconds",
        "model_id",
        "model_uri",
        "per_class",
        "confusion_matrix",
        "cv_scores",
    ] {
        assert!(!r[key].is_null(), "report lacks {key}: {r}");
    }
    assert_eq!(r["mode"], "par");
    assert_eq!(r["cv_scores"].as_array().map(Vec::len), Some(3));
    assert!(r["accuracy"].as_f64().unwrap_or(0.0) > 0.6, "{r}");
    let a = artifact_of(d, &r);
    assert_eq!(a.name, "toy");
    assert_eq!(a.classes, ["0", "1", "2"]);
    assert_eq!(a.coefficients.len(), 3);
    assert_eq!(a.metrics["accuracy"], r["accuracy"]);
    assert_eq!(a.training["seed"], 42);
    // `latest` points at it, and the store layout loads it.
    let store = model::store::LocalStore::new(d.join("art"));
    let (m, version) = model::store::load(&store, "toy", None).expect("load latest");
    assert_eq!(Some(version.as_str()), r["version"].as_str());
    assert_eq!(m.artifact().model_id, r["model_id"].as_str().unwrap_or(""));
}

#[test]
fn binary_problem_stores_one_coefficient_row_and_linfa_solver_agrees() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let data = generate(d, "b.csv", 300, 4, 2);
    let mut coefs = Vec::new();
    for solver in ["lbfgs", "linfa"] {
        let report = format!("{solver}.json");
        ok(trainer(d).args(["fit", "--data"]).arg(&data).args([
            "--alphas", "1", "--tol", "1e-9", "--store", "art", "--solver", solver, "--report",
            &report,
        ]));
        let a = artifact_of(d, &read_json(&d.join(&report)));
        assert_eq!(a.coefficients.len(), 1);
        coefs.push((a.coefficients[0].clone(), a.intercepts[0]));
    }
    for (x, y) in coefs[0].0.iter().zip(&coefs[1].0) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    assert!((coefs[0].1 - coefs[1].1).abs() < 1e-5);
}

#[test]
fn same_model_bit_for_bit_in_seq_and_par_at_1_2_3_8_threads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    // > 2 chunks of rows so the refit's row-chunk parallelism is exercised.
    let data = generate(d, "g.csv", 1600, 6, 3);
    let runs: [(&str, Option<&str>); 5] = [
        ("seq", None),
        ("par", Some("1")),
        ("par", Some("2")),
        ("par", Some("3")),
        ("par", Some("8")),
    ];
    let mut models = Vec::new();
    for (i, (mode, threads)) in runs.iter().enumerate() {
        let report = format!("r{i}.json");
        let mut c = trainer(d);
        c.args(["fit", "--data"])
            .arg(&data)
            .args(["--alphas", "0.3,3", "--folds", "3", "--store", "art"]);
        c.args(["--mode", mode, "--report", &report]);
        if let Some(t) = threads {
            c.args(["--threads", t]);
        }
        ok(&mut c);
        let r = read_json(&d.join(&report));
        assert_eq!(
            r["threads"].as_u64(),
            Some(threads.map_or(1, |t| t.parse().unwrap_or(0)))
        );
        let a = artifact_of(d, &r);
        models.push((a.coefficients, a.intercepts, r["cv_scores"].clone()));
    }
    for m in &models[1..] {
        assert_eq!(m.0, models[0].0, "coefficients differ");
        assert_eq!(m.1, models[0].1, "intercepts differ");
        assert_eq!(m.2, models[0].2, "cv scores differ");
    }
}

#[test]
fn every_flag_reads_its_environment_variable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let data = generate(d, "g.csv", 200, 3, 2);
    ok(trainer(d)
        .arg("fit")
        .env("TRAINER_DATA", &data)
        .env("TRAINER_MODE", "seq")
        .env("TRAINER_ALPHAS", "0.5,2")
        .env("TRAINER_FOLDS", "2")
        .env("TRAINER_SEED", "9")
        .env("TRAINER_STORE", "envstore")
        .env("TRAINER_NAME", "envmodel")
        .env("TRAINER_REPORT", "env.json"));
    let r = read_json(&d.join("env.json"));
    assert_eq!(r["mode"], "seq");
    assert_eq!(r["folds"], 2);
    assert_eq!(r["seed"], 9);
    assert!(
        r["model_uri"]
            .as_str()
            .unwrap_or("")
            .starts_with("envstore/envmodel/"),
        "{r}"
    );
}

#[test]
fn default_fit_trains_digits_accurately() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("art");
    let report = tmp.path().join("r.json");
    // Defaults (data/digits.csv, label, seed, split) with a single alpha to keep the test short.
    ok(trainer(&workspace())
        .args(["fit", "--alphas", "1", "--store"])
        .arg(&store)
        .arg("--report")
        .arg(&report));
    let r = read_json(&report);
    assert_eq!(r["n_features"], 64);
    assert_eq!(r["classes"].as_array().map(Vec::len), Some(10));
    assert!(r["accuracy"].as_f64().unwrap_or(0.0) > 0.95, "{r}");
    assert!(store.join("digits/latest").exists());
}

#[test]
fn compare_reports_speedup_and_identical_models() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let data = generate(d, "g.csv", 300, 4, 3);
    let o = ok(trainer(d).args(["compare", "--data"]).arg(&data).args([
        "--alphas",
        "0.5,5",
        "--folds",
        "2",
        "--threads",
        "2",
        "--rounds",
        "3",
        "--report",
        "c.json",
    ]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("speedup") && out.contains("original"), "{out}");
    assert!(out.contains("medians of 3 interleaved rounds"), "{out}");
    // The original's figures say where they come from: its README (round times) or the
    // reproduction; and that its accuracy is on another holdout than ours.
    for line in [
        "original: scikit-learn, sequential      0.9759      ~0.4  the original's README",
        "original: scikit-learn, sequential      0.9750     0.090  a reproduction (DESIGN.md)",
        "original: scikit-learn in Ray           0.9750      ~2.4  the original's README",
        "original: scikit-learn in Ray           0.9750     7.600  a reproduction (DESIGN.md)",
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
    assert!(out.contains("scored on its own holdout"), "{out}");
    assert!(!out.contains("as reported"), "{out}");
    // Off a terminal, one progress line per run: 3 rounds of seq and par.
    let err = String::from_utf8_lossy(&o.stderr);
    let runs: Vec<&str> = err.lines().filter(|l| l.starts_with("trainer: ")).collect();
    assert_eq!(runs.len(), 6, "{err}");
    assert!(
        runs.iter()
            .all(|l| l.starts_with("trainer: compare round ")),
        "{err}"
    );
    let r = read_json(&d.join("c.json"));
    assert_eq!(r["identical"], true);
    assert_eq!(r["rounds"], 3);
    let times = |k: &str| -> Vec<f64> {
        r[k].as_array()
            .map(|v| v.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (seq, par) = (times("seq_seconds"), times("par_seconds"));
    assert_eq!((seq.len(), par.len()), (3, 3), "{r}");
    // The table's times are the medians of the rounds.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[1]
    };
    let table = r["rows"].as_array().expect("rows");
    let sources: Vec<&str> = table.iter().filter_map(|t| t["source"].as_str()).collect();
    assert_eq!(
        sources,
        [
            "original_readme",
            "reproduction",
            "original_readme",
            "reproduction",
            "this_run",
            "this_run"
        ]
    );
    assert_eq!(table[4]["seconds"].as_f64(), Some(median(seq.clone())));
    assert_eq!(table[5]["seconds"].as_f64(), Some(median(par.clone())));
    assert_eq!(r["speedup"].as_f64(), Some(median(seq) / median(par)));
    let bad = trainer(d)
        .args(["compare", "--data"])
        .arg(&data)
        .args(["--rounds", "0"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rounds"));
    assert!(!d.join("artifacts").exists(), "compare must not publish");
}

#[test]
fn split_writes_train_and_test_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let data = generate(d, "g.csv", 100, 3, 2);
    ok(trainer(d).args(["split", "--data"]).arg(&data).args([
        "--train-out",
        "tr.csv",
        "--test-out",
        "te.csv",
    ]));
    let lines = |p: &str| {
        std::fs::read_to_string(d.join(p))
            .expect("read")
            .lines()
            .count()
    };
    assert_eq!(lines("tr.csv") + lines("te.csv"), 102);
    assert_eq!(lines("te.csv"), 21);
    // The pair trains the model that a fit on the whole file trains (same rows, same
    // order, same folds), coefficient for coefficient.
    let fit = |data_args: &[&str], store: &str| -> serde_json::Value {
        let report = format!("{store}.json");
        ok(trainer(d)
            .arg("fit")
            .args(data_args)
            .args([
                "--alphas", "0.1,1,10", "--folds", "3", "--name", "g", "--store", store,
            ])
            .args(["--report", &report]));
        let uri = read_json(&d.join(&report))["model_uri"]
            .as_str()
            .expect("model_uri")
            .to_string();
        read_json(&d.join(uri).join("model.json"))
    };
    let whole = fit(&["--data", "g.csv"], "art1");
    let pair = fit(&["--data", "tr.csv", "--test-data", "te.csv"], "art2");
    for key in ["coefficients", "intercepts", "scaler"] {
        assert_eq!(whole[key], pair[key], "{key}");
    }
    assert_eq!(whole["metrics"], pair["metrics"]);
}

/// Run `fit` on `csv` with extra args; expect failure whose stderr contains `needles`,
/// and nothing written.
fn fails(csv: Option<&str>, extra: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let mut c = trainer(d);
    c.args(["fit", "--report", "r.json"]);
    if !extra.contains(&"--store") {
        c.args(["--store", "art"]);
    }
    if !extra.iter().any(|a| a.starts_with("--alphas")) {
        c.args(["--alphas", "0.5,2"]);
    }
    if !extra.contains(&"--folds") {
        c.args(["--folds", "2"]);
    }
    if let Some(text) = csv {
        std::fs::write(d.join("in.csv"), text).expect("write");
        c.args(["--data", "in.csv"]);
    }
    c.args(extra);
    let o = run(&mut c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected failure for {csv:?} {extra:?}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!d.join("art").exists(), "store written on error");
    assert!(!d.join("r.json").exists(), "report written on error");
}

const GOOD: &str = "a,b,label\n1,2,x\n2,1,y\n3,3,x\n4,0,y\n5,1,x\n0,4,y\n";

#[test]
fn missing_file() {
    fails(None, &["--data", "nope.csv"], &["nope.csv", "no such file"]);
}

#[test]
fn empty_file() {
    fails(Some(""), &[], &["in.csv", "empty file"]);
}

#[test]
fn no_header() {
    fails(
        Some("1,2,0\n3,4,1\n"),
        &[],
        &["in.csv: line 1", "no header"],
    );
}

#[test]
fn no_label_column() {
    fails(
        Some("a,b,c\n1,2,0\n3,4,1\n"),
        &[],
        &["in.csv: line 1", "no label column `label`"],
    );
    fails(
        Some(GOOD),
        &["--label", "target"],
        &["no label column `target`"],
    );
}

#[test]
fn ragged_row() {
    fails(
        Some("a,b,label\n1,2,0\n3,1\n"),
        &[],
        &[
            "in.csv: line 3",
            "ragged row",
            "expected 3 fields",
            "found 2",
        ],
    );
}

#[test]
fn non_numeric_value() {
    fails(
        Some("a,b,label\n1,2,0\n3,four,1\n"),
        &[],
        &["in.csv: line 3, column 2 (b)", "non-numeric value \"four\""],
    );
}

#[test]
fn missing_value() {
    fails(
        Some("a,b,label\n1,2,0\n,4,1\n"),
        &[],
        &["in.csv: line 3, column 1 (a)", "missing value"],
    );
    fails(
        Some("a,b,label\n1,2,0\n3,4,\n"),
        &[],
        &["line 3, column 3 (label)", "missing label"],
    );
}

#[test]
fn single_class() {
    fails(
        Some("a,b,label\n1,2,7\n3,4,7\n5,6,7\n"),
        &[],
        &["in.csv", "single class", "\"7\""],
    );
}

/// Finite values whose mean overflows f64 once made the fit run forever on infinities.
#[test]
fn values_too_large_to_standardise() {
    fails(
        Some("a,b,label\n1,1e308,x\n2,1.7e308,y\n3,1.5e308,x\n4,1e308,y\n5,1.2e308,x\n0,1e308,y\n"),
        &[],
        &["in.csv", "column 2 (\"b\")", "too large to standardise"],
    );
}

#[test]
fn no_rows_left_to_hold_out() {
    // Two classes of one row each: both rows must train, so nothing is left for the holdout.
    fails(
        Some("a,b,label\n1,2,x\n2,1,y\n"),
        &["--alphas", "1"],
        &["in.csv", "no rows left to hold out", "--test-data"],
    );
}

#[test]
fn more_folds_than_rows_of_a_class() {
    fails(
        Some(GOOD),
        &["--folds", "5"],
        &["--folds", "5 folds", "only"],
    );
}

#[test]
fn unknown_flag_values() {
    fails(
        Some(GOOD),
        &["--mode", "fast"],
        &["invalid value 'fast'", "--mode"],
    );
    fails(Some(GOOD), &["--solver", "sgd"], &["invalid value 'sgd'"]);
    fails(
        Some(GOOD),
        &["--alphas", "1,abc"],
        &["\"abc\" is not a number"],
    );
    fails(Some(GOOD), &["--alphas=-1"], &["above 0"]);
    fails(Some(GOOD), &["--threads", "0"], &["thread count"]);
    fails(
        Some(GOOD),
        &["--test-fraction", "1.5"],
        &["--test-fraction"],
    );
    fails(Some(GOOD), &["--name", "a/b"], &["--name"]);
    fails(Some(GOOD), &["--store", "ftp://x"], &["ftp://x"]);
}

#[test]
fn holdout_with_unknown_label_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    std::fs::write(d.join("tr.csv"), GOOD).expect("write");
    std::fs::write(d.join("te.csv"), "a,b,label\n1,2,z\n").expect("write");
    let o = run(trainer(d).args([
        "fit",
        "--data",
        "tr.csv",
        "--test-data",
        "te.csv",
        "--alphas",
        "1",
        "--store",
        "art",
    ]));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"z\" does not occur"));
    assert!(!d.join("art").exists());
}
