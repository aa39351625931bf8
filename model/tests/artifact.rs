//! The artifact contract: round trips, validation, inference errors, and the store layout.

use model::store::{self, LocalStore, ObjectStore};
use model::{Artifact, Model, ModelError, Scaler, StoreError};

fn artifact(classes: usize) -> Artifact {
    let f = 3;
    let rows = if classes == 2 { 1 } else { classes };
    let mut a = Artifact {
        format_version: model::FORMAT_VERSION,
        model_id: String::new(),
        name: "toy".into(),
        created_at: "2026-11-27T00:00:00.000Z".into(),
        classes: (0..classes).map(|c| c.to_string()).collect(),
        feature_names: (0..f).map(|i| format!("x{i}")).collect(),
        scaler: Scaler {
            mean: vec![1.0, 2.0, 3.0],
            scale: vec![1.0, 0.5, 2.0],
        },
        coefficients: (0..rows)
            .map(|r| (0..f).map(|j| (r * f + j) as f64 * 0.1 - 0.3).collect())
            .collect(),
        intercepts: (0..rows).map(|r| r as f64 * 0.01).collect(),
        training: Default::default(),
        metrics: Default::default(),
        data_sha256: "0".repeat(64),
    };
    a.seal();
    a
}

#[test]
fn round_trip_is_exact() {
    let a = artifact(4);
    let back = Artifact::from_json(&a.to_json()).expect("valid");
    assert_eq!(a, back);
    assert_eq!(back.compute_id(), a.model_id);
}

#[test]
fn id_ignores_creation_time_but_not_weights() {
    let a = artifact(3);
    let mut b = a.clone();
    b.created_at = "2030-01-01T00:00:00.000Z".into();
    assert_eq!(a.compute_id(), b.compute_id());
    b.coefficients[0][0] += 1e-12;
    assert_ne!(a.compute_id(), b.compute_id());
}

fn invalid_field(bytes: &[u8]) -> String {
    match Artifact::from_json(bytes) {
        Err(ModelError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn validation_names_the_field() {
    let mut a = artifact(3);
    a.coefficients[1].pop();
    assert_eq!(invalid_field(&a.to_json()), "coefficients[1]");

    let mut a = artifact(3);
    a.scaler.scale[2] = 0.0;
    a.seal();
    assert_eq!(invalid_field(&a.to_json()), "scaler.scale[2]");

    let mut a = artifact(2);
    a.coefficients.push(vec![0.0; 3]);
    assert_eq!(invalid_field(&a.to_json()), "coefficients");

    let mut a = artifact(3);
    a.classes[2] = "0".into();
    assert_eq!(invalid_field(&a.to_json()), "classes[2]");

    // Tampering without resealing is caught by the id check.
    let mut a = artifact(3);
    a.intercepts[0] = 5.0;
    assert_eq!(invalid_field(&a.to_json()), "model_id");
}

#[test]
fn unknown_versions_and_garbage_are_refused() {
    let mut a = artifact(3);
    a.format_version = 99;
    assert!(matches!(
        Artifact::from_json(&a.to_json()),
        Err(ModelError::Version { found: 99, .. })
    ));
    assert!(matches!(
        Artifact::from_json(b"{not json"),
        Err(ModelError::Json(_))
    ));
    assert!(matches!(
        Artifact::from_json(b"{}"),
        Err(ModelError::Invalid { .. })
    ));
    // JSON has no NaN, so a non-finite weight can only arrive as a huge literal.
    let text = String::from_utf8(artifact(3).to_json()).expect("utf8");
    let text = text.replacen(
        "\"intercepts\": [\n    0.0",
        "\"intercepts\": [\n    1e999",
        1,
    );
    assert!(Artifact::from_json(text.as_bytes()).is_err());
}

#[test]
fn probabilities_sum_to_one_and_match_a_hand_computation() {
    let m = Model::new(artifact(3)).expect("valid");
    let row = [2.0, 2.5, 1.0];
    let p = m.predict_proba(&row).expect("ok");
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // By hand: z = (x - mean) / scale, scores = W z + b, softmax.
    let a = m.artifact();
    let z: Vec<f64> = (0..3)
        .map(|j| (row[j] - a.scaler.mean[j]) / a.scaler.scale[j])
        .collect();
    let s: Vec<f64> = (0..3)
        .map(|r| a.intercepts[r] + (0..3).map(|j| a.coefficients[r][j] * z[j]).sum::<f64>())
        .collect();
    let e: Vec<f64> = s.iter().map(|v| v.exp()).collect();
    let total: f64 = e.iter().sum();
    for r in 0..3 {
        assert!((p[r] - e[r] / total).abs() < 1e-12);
    }
    let pred = m.predict(&row).expect("ok");
    assert_eq!(m.label(&pred), a.classes[pred.class_index]);
}

#[test]
fn binary_models_use_one_row() {
    let m = Model::new(artifact(2)).expect("valid");
    let p = m.predict_proba(&[0.0, 0.0, 0.0]).expect("ok");
    assert_eq!(p.len(), 2);
    assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
}

#[test]
fn bad_rows_are_errors_that_name_the_place() {
    let m = Model::new(artifact(3)).expect("valid");
    let e = m.predict(&[1.0, 2.0]).expect_err("short row");
    assert_eq!(e.to_string(), "expected 3 features, got 2");
    let e = m.predict(&[1.0, f64::NAN, 2.0]).expect_err("nan");
    assert_eq!(e.to_string(), "feature 1 is not a finite number");
    let rows = vec![vec![1.0, 2.0, 3.0], vec![1.0, 2.0, f64::INFINITY]];
    let e = m.predict_batch(&rows).expect_err("bad batch");
    assert_eq!(e.to_string(), "row 1: feature 2 is not a finite number");
    assert!(e.is_input_error());
}

#[test]
fn publish_then_load_follows_latest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = LocalStore::new(dir.path());
    let first = artifact(3);
    let p1 = store::publish(&s, &first).expect("publish");
    let mut second = artifact(4);
    second.name = "toy".into();
    second.seal();
    let p2 = store::publish(&s, &second).expect("publish");
    assert_ne!(p1.version, p2.version);

    let (m, v) = store::load(&s, "toy", None).expect("load latest");
    assert_eq!(v, p2.version);
    assert_eq!(m.artifact().model_id, second.model_id);
    let (m, _) = store::load(&s, "toy", Some(&p1.version)).expect("load version");
    assert_eq!(m.artifact().model_id, first.model_id);

    // Versions are never overwritten.
    let key = store::model_key("toy", &p1.version);
    assert!(matches!(
        s.put_new(&key, b"x"),
        Err(StoreError::AlreadyExists(_))
    ));
    // No temporary files are left behind.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn load_refuses_a_changed_version_and_a_dangling_pointer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = LocalStore::new(dir.path());
    let p = store::publish(&s, &artifact(3)).expect("publish");
    let path = dir.path().join(store::model_key("toy", &p.version));

    // Same content re-serialised differently: the pointer's checksum no longer matches.
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("  ", " ")).expect("write");
    assert!(matches!(
        store::load(&s, "toy", None),
        Err(StoreError::Checksum { .. })
    ));

    std::fs::remove_dir_all(path.parent().expect("dir")).expect("rm");
    match store::load(&s, "toy", None) {
        Err(StoreError::NotFound(msg)) => assert!(msg.contains("latest"), "{msg}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        store::load(&s, "absent", None),
        Err(StoreError::NotFound(_))
    ));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
