//! TrainWorkflow's two coordinating steps (issue 20), run as train-worker tasks so the
//! state machine holds no logic beyond wiring:
//!
//! - [`plan`]: load and prepare the data exactly as `trainer fit` does, stage the rows
//!   (as `--mode lambda` does), and write the CV task list (a JSON array of cv events, one
//!   per fold) for the workflow's Distributed Map to read;
//! - [`finish`]: gather the Map's results (a missing or failed one is refused, naming its
//!   task, before anything is written), prepare the data again (refused if the file changed
//!   since the plan), select the penalty by mean CV score, refit (here, or as rounds of
//!   gradient tasks over the plan's shards) and publish the artifact as `trainer fit` does.
//!
//! Both go through [`crate::train::train_distributed`], the function `trainer fit --mode
//! lambda` runs, with a [`Distributor`] that hands it the gathered CV results: the same
//! data, grid and seed give the model `trainer fit` gives in any mode, bit for bit.

use model::store::{Location, ModelUri, ObjectStore};

use crate::distributed::engine::{Engine, LambdaDistributor};
use crate::distributed::stage::{self, Staged};
use crate::distributed::task::{
    self, FinishTask, Outcome, Plan, Published, PublishedMetrics, S3Object, TrainSpec,
};
use crate::error::TrainError;
use crate::progress::Progress;
use crate::solver::BlockEval;
use crate::train::{self, Distributor, FoldPath, TrainConfig};

/// The fit `spec` describes, checked: S3 locations only (a Lambda function sees no local
/// files), and every parameter `trainer fit` checks.
pub fn config(spec: &TrainSpec) -> Result<TrainConfig, TrainError> {
    for (field, uri) in [
        ("data", Some(&spec.data)),
        ("test_data", spec.test_data.as_ref()),
    ] {
        if let Some(uri) = uri
            && !matches!(Location::parse(uri), Ok(Location::S3 { .. }))
        {
            return Err(TrainError::param(
                field,
                format!(
                    "{uri:?} is not s3://bucket/key: the workflow's tasks read their data from S3"
                ),
            ));
        }
    }
    store_root(spec)?;
    let cfg = TrainConfig {
        data: spec.data.clone(),
        test_data: spec.test_data.clone(),
        label: spec.label.clone(),
        test_fraction: spec.test_fraction,
        folds: spec.folds,
        alphas: spec.alphas.clone(),
        seed: spec.seed,
        solver: spec.solver,
        max_iter: spec.max_iter,
        tol: spec.tol,
        name: spec.name.clone(),
    };
    cfg.check().map_err(as_field)?;
    if spec.concurrency == Some(0) {
        return Err(TrainError::param("concurrency", "must be at least 1"));
    }
    Ok(cfg)
}

/// A parameter error named by the workflow input's field (`folds`), not `trainer fit`'s
/// flag (`--folds`), which is what the checks shared with the command line say.
fn as_field(e: TrainError) -> TrainError {
    match e {
        TrainError::Param { name, message } => TrainError::Param {
            name: match name {
                "--alphas" => "alphas",
                "--folds" => "folds",
                "--test-fraction" => "test_fraction",
                "--tol" => "tol",
                "--max-iter" => "max_iter",
                "--name" => "name",
                other => other,
            },
            message,
        },
        other => other,
    }
}

/// `spec.store` as an S3 location (bucket, prefix).
pub fn store_root(spec: &TrainSpec) -> Result<(String, String), TrainError> {
    match Location::parse(&spec.store) {
        Ok(Location::S3 { bucket, key }) => Ok((bucket, key)),
        _ => Err(TrainError::param(
            "store",
            format!(
                "{:?} is not s3://bucket/prefix: the workers read the staged rows from the store",
                spec.store
            ),
        )),
    }
}

/// Prepare, stage and write the CV task list into `store` (the S3 store at `spec.store`).
pub fn plan(spec: &TrainSpec, store: &storage::S3Store) -> Result<Plan, TrainError> {
    let cfg = config(spec)?;
    let prep = train::prepare(&cfg).map_err(as_field)?;
    let staged = stage::stage(&prep, store, spec.shards)?;
    let folds = prep.folds.len();
    let order = train::path_order(&cfg.alphas);
    let events = task::cv_events(&staged.whole, &cfg, folds, &order);
    let bytes = serde_json::to_vec(&events)?;
    let sha = stage::sha256_hex(&bytes);
    let key = format!(
        "{}cv-{}.json",
        stage::staging_dir(&prep.data_sha256),
        sha.get(..32).unwrap_or(&sha)
    );
    store.put(&key, &bytes)?;
    let planned_at = model::artifact::new_version("")
        .trim_end_matches('-')
        .to_string();
    Ok(Plan {
        planned_at,
        spec: spec.clone(),
        tasks: S3Object {
            bucket: store.bucket().to_string(),
            key: store.object_key(&key),
        },
        folds,
        n_train: prep.n_train,
        data_sha256: prep.data_sha256,
        whole: staged.whole,
        shards: staged.shards,
    })
}

/// The Map's results as fold paths, in fold order; a missing, failed or foreign one is
/// refused, naming its task. Runs before anything is read or written.
pub fn gather(plan: &Plan, results: &[serde_json::Value]) -> Result<Vec<FoldPath>, TrainError> {
    let bad = |m: String| TrainError::param("results", m);
    if results.len() != plan.folds {
        return Err(bad(format!(
            "{} CV results for a plan of {} CV tasks",
            results.len(),
            plan.folds
        )));
    }
    let order = train::path_order(&plan.spec.alphas);
    let mut paths = Vec::with_capacity(results.len());
    for (f, r) in results.iter().enumerate() {
        let id = task::cv_id(f);
        if r.is_null() {
            return Err(bad(format!(
                "task {id:?} has no result: its Map item failed (after the workflow's retries)"
            )));
        }
        if let Some(err) = r.get("error") {
            let text = |k: &str| err.get(k).and_then(|v| v.as_str()).unwrap_or("?");
            return Err(bad(format!(
                "task {id:?} failed after the workflow's retries: {}: {}",
                text("Error"),
                text("Cause").chars().take(1000).collect::<String>()
            )));
        }
        let bytes = serde_json::to_vec(r)?;
        let result = task::parse_result(&bytes).map_err(|e| bad(format!("task {id:?}: {e}")))?;
        if result.id != id {
            return Err(bad(format!(
                "result {f} is for task {:?}, expected {id:?} (results must be in plan order)",
                result.id
            )));
        }
        let Outcome::Cv(path) = result.outcome else {
            return Err(bad(format!("task {id:?}: the result is not a CV result")));
        };
        let indices: Vec<usize> = path.scores.iter().map(|&(a, _)| a).collect();
        if indices != order {
            return Err(bad(format!(
                "task {id:?}: scores for alphas {indices:?}, the plan's path is {order:?}"
            )));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Hands `train_distributed` the gathered CV results (it checks their count against the
/// folds), and the refit to `refit` (or none).
struct Gathered<'a> {
    paths: Vec<FoldPath>,
    refit: Option<&'a dyn BlockEval>,
}

impl Distributor for Gathered<'_> {
    fn cv(
        &self,
        _folds: usize,
        _order: &[usize],
        _progress: &Progress,
    ) -> Result<Vec<FoldPath>, TrainError> {
        Ok(self.paths.clone())
    }

    fn refit(&self) -> Option<&dyn BlockEval> {
        self.refit
    }
}

/// Gather, check, select, refit and publish into `store` (opened on `spec.store`, as
/// `trainer fit` opens its store). `engine` sends the refit's gradient tasks when the plan
/// has shards (required then).
pub fn finish(
    t: &FinishTask,
    store: &dyn ObjectStore,
    engine: Option<&Engine>,
) -> Result<Published, TrainError> {
    let plan = &t.plan;
    let paths = gather(plan, &t.results)?;
    let cfg = config(&plan.spec)?;
    let prep = train::prepare(&cfg).map_err(as_field)?;
    if prep.data_sha256 != plan.data_sha256 {
        return Err(TrainError::data(
            &cfg.data,
            format!(
                "changed since the plan: its sha256 is now {}, the plan read {}; nothing published \
                 (start the workflow again to train on the new data)",
                prep.data_sha256, plan.data_sha256
            ),
        ));
    }
    if prep.n_train != plan.n_train || prep.folds.len() != plan.folds {
        return Err(TrainError::data(
            &cfg.data,
            format!(
                "prepares to {} training rows and {} folds, the plan had {} and {}",
                prep.n_train,
                prep.folds.len(),
                plan.n_train,
                plan.folds
            ),
        ));
    }
    let staged = Staged {
        whole: plan.whole.clone(),
        shards: plan.shards.clone(),
        uploaded: 0,
        uploaded_bytes: 0,
    };
    let remote = match (plan.shards.is_empty(), engine) {
        (true, _) => None,
        (false, Some(engine)) => Some(LambdaDistributor::new(
            engine,
            &staged,
            &cfg,
            prep.n_train,
            prep.classes.len(),
        )),
        (false, None) => {
            return Err(TrainError::param(
                "shards",
                "a sharded refit needs the worker function (TRAIN_WORKER_FUNCTION)",
            ));
        }
    };
    let gathered = Gathered {
        paths,
        refit: remote.as_ref().and_then(|d| d.refit()),
    };
    let trained = train::train_distributed(&prep, &cfg, &gathered, &Progress::hidden())?;
    let (version, published_now) = match already_published(store, plan, &trained.artifact)? {
        Some(version) => (version, false),
        None => (
            model::store::publish(store, &trained.artifact)?.version,
            true,
        ),
    };
    let root = Location::parse(&plan.spec.store)?;
    let uri = ModelUri {
        root,
        name: cfg.name.clone(),
        version: Some(version.clone()),
    }
    .to_string();
    Ok(Published {
        name: cfg.name.clone(),
        version,
        uri,
        model_id: trained.artifact.model_id.clone(),
        alpha: trained.alpha,
        metrics: PublishedMetrics {
            accuracy: trained.eval.accuracy,
            macro_f1: trained.eval.macro_f1,
            cv_accuracy: train::chosen_cv_mean(&trained.cv, trained.alpha),
            n_train: prep.n_train,
            n_test: prep.n_test(),
        },
        data_sha256: prep.data_sha256,
        refit: if plan.shards.is_empty() {
            "coordinator".into()
        } else {
            "shards".into()
        },
        rounds: engine.map_or(0, |e| e.stats().rounds),
        published_now,
    })
}

/// The version an earlier attempt of this finishing task published, if there is one: a
/// version of this model id named after the plan ran. (Another run on the same inputs that
/// published in the meantime published the same model; answering with it is right too.) If
/// that attempt wrote the version but not `latest`, `latest` is moved to it now, completing the
/// publish, unless it already names a newer version.
fn already_published(
    store: &dyn ObjectStore,
    plan: &Plan,
    artifact: &model::Artifact,
) -> Result<Option<String>, TrainError> {
    let name = &artifact.name;
    let catalog = match model::store::catalog(store, name) {
        Ok(c) => c,
        Err(model::StoreError::NoSuchModel { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let short = artifact.model_id.get(..12).unwrap_or(&artifact.model_id);
    let suffix = format!("-{short}");
    let Some(mine) = catalog
        .versions
        .iter()
        .rev()
        .find(|v| v.as_str() >= plan.planned_at.as_str() && v.ends_with(&suffix))
    else {
        return Ok(None);
    };
    match model::store::verify_version(store, name, mine) {
        Ok((model, _)) if model.artifact().model_id == artifact.model_id => {}
        // Another model whose id shares 12 hex digits, or an unreadable one: not ours.
        Ok(_) | Err(model::StoreError::Unverified { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let newer_or_same = catalog.latest.version().is_some_and(|v| v >= mine.as_str());
    if !newer_or_same {
        model::store::promote(store, name, mine)?;
    }
    Ok(Some(mine.clone()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::distributed::task::{StagedRef, TASK_VERSION, TaskResult};

    fn spec() -> TrainSpec {
        serde_json::from_value(json!({
            "data": "s3://b/data/digits.csv",
            "store": "s3://b/models",
            "alphas": [1.0, 0.1, 10.0]
        }))
        .expect("spec")
    }

    fn plan(folds: usize) -> Plan {
        let staged = StagedRef {
            uri: "s3://b/models/_staging/x/y.bin".into(),
            sha256: "00".into(),
        };
        Plan {
            spec: spec(),
            tasks: S3Object {
                bucket: "b".into(),
                key: "models/_staging/x/cv.json".into(),
            },
            folds,
            n_train: 100,
            data_sha256: "ab".into(),
            whole: staged,
            shards: Vec::new(),
            planned_at: "20261201T000000.000Z".into(),
        }
    }

    fn result(f: usize, order: &[usize]) -> serde_json::Value {
        serde_json::to_value(TaskResult {
            version: TASK_VERSION,
            id: task::cv_id(f),
            outcome: Outcome::Cv(FoldPath {
                scores: order.iter().map(|&a| (a, 0.5)).collect(),
                evaluations: 3,
            }),
            started_ms: 1,
            ended_ms: 2,
            loaded: true,
            peak_rss_bytes: None,
        })
        .expect("json")
    }

    #[test]
    fn a_spec_takes_trainer_fits_defaults_and_refuses_what_it_does_not_know() {
        let s = spec();
        assert_eq!(
            (s.name.as_str(), s.folds, s.seed, s.shards, s.label.as_str()),
            ("digits", 5, 42, 0, "label")
        );
        let d: TrainSpec =
            serde_json::from_value(json!({"data": "s3://b/d.csv", "store": "s3://b/m"}))
                .expect("spec");
        assert_eq!(d.alphas, crate::train::defaults::alphas());
        assert_eq!(d.alphas.len(), 8);
        let e = serde_json::from_value::<TrainSpec>(
            json!({"data": "s3://b/d.csv", "store": "s3://b/m", "fold": 3}),
        )
        .expect_err("typo");
        assert!(e.to_string().contains("unknown field `fold`"), "{e}");
        let mut local = spec();
        local.data = "data/digits.csv".into();
        let e = config(&local).expect_err("local data").to_string();
        assert!(e.contains("data") && e.contains("not s3://"), "{e}");
        let mut local = spec();
        local.store = "artifacts".into();
        let e = config(&local).expect_err("local store").to_string();
        assert!(e.contains("store"), "{e}");
        let mut bad = spec();
        bad.folds = 1;
        let e = config(&bad).expect_err("1 fold").to_string();
        assert!(e.starts_with("invalid parameter folds:"), "{e}");
    }

    #[test]
    fn gather_takes_results_in_plan_order_and_refuses_a_missing_or_failed_one_by_name() {
        let p = plan(3);
        let order = train::path_order(&p.spec.alphas);
        assert_eq!(order, [2, 0, 1]);
        let ok: Vec<_> = (0..3).map(|f| result(f, &order)).collect();
        let paths = gather(&p, &ok).expect("gather");
        assert_eq!(paths.len(), 3);
        assert_eq!(paths[2].scores[0], (2, 0.5));

        let mut missing = ok.clone();
        missing[1] = serde_json::Value::Null;
        let e = gather(&p, &missing).expect_err("null").to_string();
        assert!(
            e.contains("\"cv fold 1\"") && e.contains("no result"),
            "{e}"
        );

        let mut caught = ok.clone();
        caught[2] = json!({"version": 1, "id": "cv fold 2", "task": {},
            "error": {"Error": "Failed", "Cause": "{\"errorMessage\": \"s3 down\"}"}});
        let e = gather(&p, &caught).expect_err("caught").to_string();
        assert!(
            e.contains("\"cv fold 2\"") && e.contains("Failed") && e.contains("s3 down"),
            "{e}"
        );

        let swapped = vec![ok[1].clone(), ok[0].clone(), ok[2].clone()];
        let e = gather(&p, &swapped).expect_err("order").to_string();
        assert!(e.contains("expected \"cv fold 0\""), "{e}");

        let e = gather(&p, &ok[..2]).expect_err("count").to_string();
        assert!(e.contains("2 CV results for a plan of 3"), "{e}");

        let mut other_grid = ok;
        other_grid[0] = result(0, &[0, 1, 2]);
        let e = gather(&p, &other_grid).expect_err("grid").to_string();
        assert!(e.contains("\"cv fold 0\"") && e.contains("path"), "{e}");
    }
}
