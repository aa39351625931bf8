//! The training pipeline: prepare (load, split, standardise), select the penalty by k-fold
//! cross-validation, refit on all training rows, build the artifact and evaluate it on the
//! holdout through `model::Model`.
//!
//! Sequential mode never touches rayon. Parallel mode runs inside a rayon pool of its own
//! (one per thread count, kept for the life of the process): the folds x alphas fits run as
//! independent tasks (idle threads take their row chunks), and the refit has the pool to
//! itself: its other threads stay awake and share every pass.
//! Neither changes a single bit of the result (see `solver`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use model::{Artifact, Model};
use ndarray::{Array2, ArrayView2, Axis, Slice};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::data::{self, Dataset};
use crate::error::TrainError;
use crate::progress::Progress;
use crate::solver::{self, Labels, LinearModel, LogisticParams, Rows, SolverKind, Spread};

/// Chains each fold's penalty path is cut into (see `train_in`). One: the whole path is
/// warm-started, which needed the fewest evaluations (740 on digits with the old 359-row
/// holdout, against 868 with four chains); the pool stays busy because each fit also spreads
/// its row chunks.
pub const PATH_CHAINS: usize = 1;

/// `trainer fit`'s defaults, shared by the command line (`cli`) and the workflow's plan task
/// (`distributed::workflow`), so both train the same model from the same few inputs.
pub mod defaults {
    /// The penalty grid: 8 points, alpha = 1/C from 0.01 to 100 (C from 100 to 0.01).
    pub const ALPHAS: &str = "0.01,0.0373,0.139,0.518,1.93,7.20,26.8,100";
    /// Name of the label column.
    pub const LABEL: &str = "label";
    /// Fraction of rows held out when there is no holdout file.
    pub const TEST_FRACTION: f64 = 0.2;
    /// Seed of the split and the folds.
    pub const SEED: u64 = 42;
    /// Cross-validation folds.
    pub const FOLDS: usize = 5;
    /// Iteration limit of each fit.
    pub const MAX_ITER: u64 = 1000;
    /// Gradient tolerance of each fit.
    pub const TOL: f64 = 1e-4;
    /// Model name.
    pub const NAME: &str = "digits";
    /// Solver.
    pub const SOLVER: super::SolverKind = super::SolverKind::Lbfgs;

    /// [`ALPHAS`] as numbers.
    pub fn alphas() -> Vec<f64> {
        ALPHAS.split(',').filter_map(|a| a.parse().ok()).collect()
    }
}

/// How the work is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Everything on the calling thread; rayon is not used at all.
    Seq,
    /// rayon, over folds x alphas and over row chunks of large fits.
    Par,
    /// AWS Lambda: one task per fold on `train-worker`, the refit in this process or as
    /// rounds of gradient tasks over shards (`trainer fit --mode lambda --function NAME`).
    Lambda,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Seq => "seq",
            Self::Par => "par",
            Self::Lambda => "lambda",
        })
    }
}

/// What to train and how. Build it from the command line (see `cli`) or directly.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Training data: local path or `s3://` URI.
    pub data: String,
    /// Optional holdout file; without it a stratified split of `data` is used.
    pub test_data: Option<String>,
    /// Label column name.
    pub label: String,
    /// Fraction of rows held out when there is no `test_data`.
    pub test_fraction: f64,
    /// Cross-validation folds.
    pub folds: usize,
    /// Penalty grid (`alpha = 1 / C`); a single value skips cross-validation.
    pub alphas: Vec<f64>,
    /// Seed of the split and folds.
    pub seed: u64,
    /// Solver.
    pub solver: SolverKind,
    /// Iteration limit per fit.
    pub max_iter: u64,
    /// Gradient-norm tolerance per fit.
    pub tol: f64,
    /// Model name in the store.
    pub name: String,
}

impl TrainConfig {
    /// Check the parameters that do not depend on the data.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.alphas.is_empty() {
            return Err(TrainError::param("--alphas", "give at least one value"));
        }
        if let Some(a) = self.alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return Err(TrainError::param(
                "--alphas",
                format!("{a} is not a finite positive number"),
            ));
        }
        if self.alphas.len() > 1 && self.folds < 2 {
            return Err(TrainError::param(
                "--folds",
                format!("{} folds cannot cross-validate; use at least 2", self.folds),
            ));
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(TrainError::param(
                "--test-fraction",
                format!("{} is not between 0 and 1", self.test_fraction),
            ));
        }
        model::artifact::check_name(&self.name).map_err(|r| TrainError::param("--name", r))?;
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(TrainError::param(
                "--tol",
                format!("{} is not a finite positive number", self.tol),
            ));
        }
        if self.max_iter == 0 {
            return Err(TrainError::param("--max-iter", "must be at least 1"));
        }
        Ok(())
    }
}

/// Data ready to train on: training rows first (standardised in place), then the holdout
/// rows (raw, as the predict function will see them), in one matrix.
#[derive(Debug)]
pub struct Prepared {
    /// `n_train` standardised rows, then the raw holdout rows.
    pub x: Array2<f64>,
    /// Number of training rows at the top of `x`.
    pub n_train: usize,
    /// Class of each row of `x`.
    pub y: Vec<usize>,
    /// Class labels.
    pub classes: Vec<String>,
    /// Feature names.
    pub feature_names: Vec<String>,
    /// Scaler fitted on the training rows.
    pub scaler: model::Scaler,
    /// SHA-256 of the training data file.
    pub data_sha256: String,
    /// Stratified validation positions (into the training rows) of each fold.
    pub folds: Vec<Vec<usize>>,
    /// Seconds spent loading and preparing.
    pub load_seconds: f64,
}

impl Prepared {
    /// The standardised training rows.
    pub fn train_x(&self) -> ArrayView2<'_, f64> {
        self.x.slice_axis(Axis(0), Slice::from(..self.n_train))
    }

    /// Number of holdout rows.
    pub fn n_test(&self) -> usize {
        self.x.nrows() - self.n_train
    }

    /// Bytes of the f64 feature matrix (the memory yardstick).
    pub fn matrix_bytes(&self) -> usize {
        self.x.len() * std::mem::size_of::<f64>()
    }
}

/// Load, split, check and standardise. Everything that can be wrong with the data is
/// found here, before any work or any write.
pub fn prepare(cfg: &TrainConfig) -> Result<Prepared, TrainError> {
    cfg.check()?;
    let started = Instant::now();
    let d = data::load(&cfg.data, &cfg.label)?;
    data::check_classes(&d, &cfg.label)?;
    let Dataset {
        mut x,
        y,
        classes,
        feature_names,
        sha256,
        ..
    } = d;
    let (mut x, y, n_train) = match &cfg.test_data {
        None => {
            let split = holdout_split(&cfg.data, &y, classes.len(), cfg.test_fraction, cfg.seed)?;
            let n_train = split.train.len();
            let mut perm = data::training_order(split.train, cfg.seed);
            perm.extend_from_slice(&split.test);
            data::permute_rows(&mut x, &perm);
            let y = perm.iter().map(|&i| y[i]).collect();
            (x, y, n_train)
        }
        Some(test_uri) => {
            let t = data::load(test_uri, &cfg.label)?;
            if t.feature_names != feature_names {
                return Err(TrainError::data(
                    test_uri,
                    format!(
                        "columns differ from the training data {} (same names in the same order expected)",
                        cfg.data
                    ),
                ));
            }
            let mut map = Vec::with_capacity(t.classes.len());
            for c in &t.classes {
                let i = classes.iter().position(|k| k == c).ok_or_else(|| {
                    TrainError::data(
                        test_uri,
                        format!("label {c:?} does not occur in the training data"),
                    )
                })?;
                map.push(i);
            }
            let perm = data::training_order((0..x.nrows()).collect(), cfg.seed);
            data::permute_rows(&mut x, &perm);
            let n_train = x.nrows();
            let mut y: Vec<usize> = perm.iter().map(|&i| y[i]).collect();
            y.extend(t.y.iter().map(|&c| map[c]));
            let (mut flat, off) = x.into_raw_vec_and_offset();
            flat.drain(..off.unwrap_or(0));
            flat.truncate(n_train * feature_names.len());
            flat.extend(t.x.iter().copied());
            let rows = n_train + t.x.nrows();
            let x = data::aligned_matrix(flat, rows, feature_names.len());
            (x, y, n_train)
        }
    };
    // Each class must be present in every fold's training rows.
    let mut counts = vec![0usize; classes.len()];
    for &c in &y[..n_train] {
        counts[c] += 1;
    }
    for (c, &n) in counts.iter().enumerate() {
        if n == 0 {
            return Err(TrainError::data(
                &cfg.data,
                format!("class {:?} has no training rows", classes[c]),
            ));
        }
        if cfg.alphas.len() > 1 && n < cfg.folds {
            return Err(TrainError::param(
                "--folds",
                format!(
                    "{} folds but class {:?} has only {n} training rows; use at most {n} folds or more data",
                    cfg.folds, classes[c]
                ),
            ));
        }
    }
    let scaler = data::fit_scaler(x.slice_axis(Axis(0), Slice::from(..n_train))).map_err(|j| {
        TrainError::data(
            &cfg.data,
            format!(
                "column {} ({:?}): values too large to standardise (their mean or variance overflows f64)",
                j + 1,
                feature_names[j]
            ),
        )
    })?;
    data::apply_scaler(x.slice_axis_mut(Axis(0), Slice::from(..n_train)), &scaler);
    let folds = if cfg.alphas.len() > 1 {
        data::stratified_folds(&y[..n_train], classes.len(), cfg.folds)
    } else {
        Vec::new()
    };
    Ok(Prepared {
        x,
        n_train,
        y,
        classes,
        feature_names,
        scaler,
        data_sha256: sha256,
        folds,
        load_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Cross-validation result of one alpha.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CvScore {
    /// The penalty.
    pub alpha: f64,
    /// Validation accuracy of each fold.
    pub fold_scores: Vec<f64>,
    /// Mean over folds.
    pub mean: f64,
}

/// A trained, evaluated model.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The sealed artifact, metrics included.
    pub artifact: Artifact,
    /// The refit model on standardised features.
    pub model: LinearModel,
    /// Chosen penalty.
    pub alpha: f64,
    /// Cross-validation scores, one per alpha (empty when a single alpha was given).
    pub cv: Vec<CvScore>,
    /// Holdout evaluation.
    pub eval: Evaluation,
    /// Seconds of cross-validation.
    pub cv_seconds: f64,
    /// Loss / gradient evaluations of all cross-validation fits together.
    pub cv_evaluations: usize,
    /// Seconds of the refit.
    pub refit_seconds: f64,
    /// Threads used (1 in seq mode).
    pub threads: usize,
    /// The mode.
    pub mode: Mode,
}

impl Trained {
    /// Seconds of model selection and refit: the training work proper.
    pub fn fit_seconds(&self) -> f64 {
        self.cv_seconds + self.refit_seconds
    }
}

/// Per-class holdout metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Class label.
    pub class: String,
    /// Precision (0 when nothing was predicted as this class).
    pub precision: f64,
    /// Recall (0 when the class has no holdout rows).
    pub recall: f64,
    /// F1 score.
    pub f1: f64,
    /// Holdout rows of the class.
    pub support: usize,
}

/// Holdout evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Fraction of holdout rows predicted right.
    pub accuracy: f64,
    /// Unweighted mean F1 over classes.
    pub macro_f1: f64,
    /// Per-class precision, recall, F1.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Train in `mode` with `threads` (ignored in seq mode): CV over the grid, refit, build and
/// evaluate the artifact. `progress` reports each finished fit.
pub fn train(
    p: &Prepared,
    cfg: &TrainConfig,
    mode: Mode,
    threads: usize,
    progress: &Progress,
) -> Result<Trained, TrainError> {
    match mode {
        Mode::Seq => train_in(p, cfg, Mode::Seq, 1, progress),
        Mode::Par => pool(threads)?.install(|| train_in(p, cfg, Mode::Par, threads, progress)),
        Mode::Lambda => Err(TrainError::param(
            "--mode",
            "lambda needs a worker function (--function NAME) and an S3 store; see `distributed`",
        )),
    }
}

/// Runs the work of a fit somewhere else: the Lambda engine of `distributed`, or a test's.
pub trait Distributor: Sync {
    /// One penalty path per fold, `order` (indices into the grid, see [`path_order`]) on
    /// each; the results in fold order.
    fn cv(
        &self,
        folds: usize,
        order: &[usize],
        progress: &Progress,
    ) -> Result<Vec<FoldPath>, TrainError>;
    /// The evaluator of a data-parallel refit, or `None` to refit in this process.
    fn refit(&self) -> Option<&dyn solver::BlockEval>;
}

/// Train with `d` running the cross-validation (one task per fold) and, if it says so,
/// the refit's passes: the same split, folds, grid and model as [`train`] in any mode.
pub fn train_distributed(
    p: &Prepared,
    cfg: &TrainConfig,
    d: &dyn Distributor,
    progress: &Progress,
) -> Result<Trained, TrainError> {
    train_with(p, cfg, Mode::Lambda, 1, progress, Some(d))
}

/// The order a fold's penalty path runs in: strongest penalty first (each fit
/// warm-starts the next), as indices into `alphas`.
pub fn path_order(alphas: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..alphas.len()).collect();
    order.sort_by(|&a, &b| alphas[b].total_cmp(&alphas[a]));
    order
}

/// The training positions of each fold: every position not in its validation set.
pub fn fold_train_rows(folds: &[Vec<usize>], n_train: usize) -> Vec<Vec<usize>> {
    folds
        .iter()
        .map(|val| {
            let mut is_val = vec![false; n_train];
            for &i in val {
                if let Some(v) = is_val.get_mut(i) {
                    *v = true;
                }
            }
            (0..n_train).filter(|&i| !is_val[i]).collect()
        })
        .collect()
}

/// What one fold's penalty path gives: the validation accuracy of each alpha run
/// (`(index into the grid, score)`, in path order) and the solver's evaluations.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FoldPath {
    /// `(alpha index, validation accuracy)` per fit.
    pub scores: Vec<(usize, f64)>,
    /// Loss / gradient evaluations of the fits together.
    pub evaluations: usize,
}

/// The settings of every fit of a penalty path.
#[derive(Debug, Clone, Copy)]
pub struct PathParams<'c> {
    /// The grid.
    pub alphas: &'c [f64],
    /// Iteration limit per fit.
    pub max_iter: u64,
    /// Gradient tolerance per fit.
    pub tol: f64,
    /// Solver.
    pub solver: SolverKind,
}

/// One fold's warm-started penalty path over `chain` (indices into the grid): fit on the
/// `train` positions of `x` / `y`, score on the `val` positions. `on_fit` is called after
/// each fit. Local CV and the Lambda worker both run exactly this.
#[allow(clippy::too_many_arguments)]
pub fn fold_path(
    x: ArrayView2<'_, f64>,
    y: &[usize],
    n_classes: usize,
    train: &[usize],
    val: &[usize],
    chain: &[usize],
    pp: PathParams<'_>,
    spread: Spread,
    on_fit: &(dyn Fn() + Sync),
) -> Result<FoldPath, TrainError> {
    let mut prev: Option<LinearModel> = None;
    let mut out = FoldPath {
        scores: Vec::with_capacity(chain.len()),
        evaluations: 0,
    };
    for &a in chain {
        let alpha = *pp.alphas.get(a).ok_or_else(|| {
            TrainError::param(
                "alphas",
                format!("alpha index {a} with {} alphas", pp.alphas.len()),
            )
        })?;
        let params = LogisticParams::default()
            .alpha(alpha)
            .max_iter(pp.max_iter)
            .tol(pp.tol)
            .solver(pp.solver)
            .spread(spread)
            .warm_start(prev.as_ref());
        let m = solver::fit(
            &params,
            Rows {
                x: x.view(),
                rows: Some(train),
            },
            Labels { y, n_classes },
        )?;
        let pred = m.predict_rows(x, val);
        let right = pred
            .iter()
            .zip(val)
            .filter(|(pr, i)| **pr == y[**i])
            .count();
        on_fit();
        out.evaluations += m.evaluations;
        #[allow(clippy::cast_precision_loss)]
        out.scores.push((a, right as f64 / val.len().max(1) as f64));
        prev = Some(m);
    }
    Ok(out)
}

/// The seeded stratified split of `file`'s rows ([`data::stratified_split`]); an error when it
/// leaves no holdout row (every class keeps one training row, so a class of one row gives none),
/// since an empty holdout would report an accuracy of nothing.
pub fn holdout_split(
    file: &str,
    y: &[usize],
    n_classes: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<data::Split, TrainError> {
    let split = data::stratified_split(y, n_classes, test_fraction, seed);
    if split.test.is_empty() {
        return Err(TrainError::data(
            file,
            format!(
                "no rows left to hold out: {} rows at --test-fraction {test_fraction}, and every \
                 class keeps at least one training row; give more rows, a larger \
                 --test-fraction or a --test-data file",
                y.len()
            ),
        ));
    }
    Ok(split)
}

/// The process's rayon pool of `threads` threads, built on first use and kept.
///
/// A pool per call was slower: in `trainer compare`, whose rounds run par right after par
/// every other round, the digits single fit took 7-10 ms instead of 3.5 in 5 of 21 rounds,
/// all of them in a pool built just after the last one was dropped (a 50 ms pause before
/// each run made that tail go away). A kept pool's threads sleep between trainings.
fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, TrainError> {
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?,
    );
    pools.push((threads, Arc::clone(&pool)));
    Ok(pool)
}

fn train_in(
    p: &Prepared,
    cfg: &TrainConfig,
    mode: Mode,
    threads: usize,
    progress: &Progress,
) -> Result<Trained, TrainError> {
    train_with(p, cfg, mode, threads, progress, None)
}

fn train_with(
    p: &Prepared,
    cfg: &TrainConfig,
    mode: Mode,
    threads: usize,
    progress: &Progress,
    remote: Option<&dyn Distributor>,
) -> Result<Trained, TrainError> {
    let par = mode == Mode::Par;
    let n_classes = p.classes.len();
    let x = p.train_x();
    let y = &p.y[..p.n_train];
    let params = |alpha: f64, spread: Spread| {
        LogisticParams::default()
            .alpha(alpha)
            .max_iter(cfg.max_iter)
            .tol(cfg.tol)
            .solver(cfg.solver)
            .spread(spread)
    };
    let labels = Labels { y, n_classes };

    let cv_started = Instant::now();
    let mut cv = Vec::new();
    let cv_evals = AtomicUsize::new(0);
    let alpha = if cfg.alphas.len() == 1 {
        cfg.alphas[0]
    } else {
        let k = p.folds.len();
        let train_rows = fold_train_rows(&p.folds, p.n_train);
        // Warm starts along the penalty path, as scikit-learn's LogisticRegressionCV does:
        // within a fold, alphas run from the strongest penalty down, each fit starting from
        // the previous solution. Each fold's path may be cut into PATH_CHAINS fixed chains;
        // the cut never depends on threads.
        let order = path_order(&cfg.alphas);
        let per_chain = order.len().div_ceil(PATH_CHAINS).max(1);
        let chains: Vec<&[usize]> = order.chunks(per_chain).collect();
        // Weakest-penalty chains (the slowest fits) first, so the pool ends on short tasks.
        let tasks: Vec<(usize, &[usize])> = chains
            .iter()
            .rev()
            .flat_map(|c| (0..k).map(move |f| (f, *c)))
            .collect();
        let done = AtomicUsize::new(0);
        progress.start("cross-validation", cfg.alphas.len() * k + 1);
        let pp = PathParams {
            alphas: &cfg.alphas,
            max_iter: cfg.max_iter,
            tol: cfg.tol,
            solver: cfg.solver,
        };
        let on_fit = || progress.tick(done.fetch_add(1, Ordering::Relaxed) + 1);
        let run = |&(f, chain): &(usize, &[usize]),
                   spread: Spread|
         -> Result<Vec<(usize, f64)>, TrainError> {
            let r = fold_path(
                x,
                y,
                n_classes,
                &train_rows[f],
                &p.folds[f],
                chain,
                pp,
                spread,
                &on_fit,
            )?;
            cv_evals.fetch_add(r.evaluations, Ordering::Relaxed);
            Ok(r.scores)
        };
        // A distributor runs one task per fold: the whole path (PATH_CHAINS is 1).
        let tasks: Vec<(usize, &[usize])> = if remote.is_some() {
            (0..k).map(|f| (f, order.as_slice())).collect()
        } else {
            tasks
        };
        let results: Vec<Vec<(usize, f64)>> = if let Some(d) = remote {
            let paths = d.cv(k, &order, progress)?;
            if paths.len() != k {
                return Err(TrainError::Solver(format!(
                    "{} fold results for {k} folds",
                    paths.len()
                )));
            }
            paths
                .into_iter()
                .map(|r| {
                    cv_evals.fetch_add(r.evaluations, Ordering::Relaxed);
                    r.scores
                })
                .collect()
        } else if par {
            // Whole rounds of one task per thread run side by side (a thread that runs out
            // of tasks takes row chunks of the others' fits); the tasks left over, fewer than
            // the threads, run one at a time with the whole pool on each pass, as the refit
            // does. Digits, 5 folds on 2 threads: 2 rounds of 2, then 1 task alone, instead
            // of a last task on one thread while the other waits to be woken for chunks.
            let side_by_side = tasks.len() / threads.max(1) * threads.max(1);
            let (together, alone) = tasks.split_at(side_by_side);
            let mut results: Vec<_> = together
                .par_iter()
                .with_max_len(1)
                .map(|t| run(t, Spread::Shared))
                .collect::<Result<_, _>>()?;
            for t in alone {
                results.push(run(t, Spread::Dedicated)?);
            }
            results
        } else {
            tasks
                .iter()
                .map(|t| run(t, Spread::Off))
                .collect::<Result<_, _>>()?
        };
        let mut scores = vec![0.0; cfg.alphas.len() * k];
        for ((f, _), r) in tasks.iter().zip(&results) {
            for &(a, score) in r {
                if let Some(s) = scores.get_mut(a * k + f) {
                    *s = score;
                }
            }
        }
        for (a, &alpha) in cfg.alphas.iter().enumerate() {
            let fold_scores = scores[a * k..(a + 1) * k].to_vec();
            #[allow(clippy::cast_precision_loss)]
            let mean = fold_scores.iter().sum::<f64>() / k as f64;
            cv.push(CvScore {
                alpha,
                fold_scores,
                mean,
            });
        }
        // Best mean score; ties go to the stronger penalty (the simpler model).
        let mut best = &cv[0];
        for c in &cv[1..] {
            if c.mean > best.mean || (c.mean == best.mean && c.alpha > best.alpha) {
                best = c;
            }
        }
        best.alpha
    };
    let cv_seconds = cv_started.elapsed().as_secs_f64();

    let refit_started = Instant::now();
    if cv.is_empty() {
        progress.start("fit", 1);
    }
    // The refit starts from zeros, like a single fit: `--alphas A` alone and a
    // cross-validation that picks A give the same model, bit for bit.
    // The refit has the pool to itself: its helpers stay awake between passes.
    let spread = if par { Spread::Dedicated } else { Spread::Off };
    let model = match remote.and_then(Distributor::refit) {
        Some(eval) => {
            use linfa::ParamGuard;
            params(alpha, Spread::Off)
                .check()?
                .fit_remote(Rows { x, rows: None }, labels, eval)?
        }
        None => solver::fit(&params(alpha, spread), Rows { x, rows: None }, labels)?,
    };
    let refit_seconds = refit_started.elapsed().as_secs_f64();
    progress.finish();

    let mut artifact = build_artifact(p, cfg, &model, alpha, &cv);
    artifact.seal();
    let eval = evaluate(&Model::new(artifact.clone())?, p)?;
    let m = &mut artifact.metrics;
    m.insert("accuracy".into(), json!(eval.accuracy));
    m.insert("macro_f1".into(), json!(eval.macro_f1));
    m.insert("n_test".into(), json!(p.n_test()));
    m.insert("confusion_matrix".into(), json!(eval.confusion));
    m.insert("per_class".into(), serde_json::to_value(&eval.per_class)?);
    artifact.seal();
    Ok(Trained {
        artifact,
        model,
        alpha,
        cv,
        eval,
        cv_seconds,
        cv_evaluations: cv_evals.load(Ordering::Relaxed),
        refit_seconds,
        threads,
        mode,
    })
}

/// The mean CV accuracy of the chosen `alpha` (none without cross-validation).
pub fn chosen_cv_mean(cv: &[CvScore], alpha: f64) -> Option<f64> {
    cv.iter().find(|c| c.alpha == alpha).map(|c| c.mean)
}

fn build_artifact(
    p: &Prepared,
    cfg: &TrainConfig,
    m: &LinearModel,
    alpha: f64,
    cv: &[CvScore],
) -> Artifact {
    let mut training = Map::new();
    let mut put = |k: &str, v: Value| {
        training.insert(k.to_string(), v);
    };
    put("solver", json!(cfg.solver.to_string()));
    put("penalty", json!("l2"));
    put("alpha", json!(alpha));
    put("C", json!(1.0 / alpha));
    put("alphas", json!(cfg.alphas));
    put("folds", json!(if cv.is_empty() { 0 } else { cfg.folds }));
    put("seed", json!(cfg.seed));
    put("max_iter", json!(cfg.max_iter));
    put("tol", json!(cfg.tol));
    put("iterations", json!(m.iterations));
    put("converged", json!(m.converged));
    put("label", json!(cfg.label));
    put("data", json!(cfg.data));
    match &cfg.test_data {
        Some(t) => put("test_data", json!(t)),
        None => put("test_fraction", json!(cfg.test_fraction)),
    }
    put("n_train", json!(p.n_train));
    let mut metrics = Map::new();
    if !cv.is_empty() {
        metrics.insert(
            "cv_scores".into(),
            serde_json::to_value(cv).unwrap_or(Value::Null),
        );
        let best = chosen_cv_mean(cv, alpha).unwrap_or(0.0);
        metrics.insert("cv_accuracy".into(), json!(best));
    }
    Artifact {
        format_version: model::FORMAT_VERSION,
        model_id: String::new(),
        name: cfg.name.clone(),
        created_at: model::artifact::now_rfc3339(),
        classes: p.classes.clone(),
        feature_names: p.feature_names.clone(),
        scaler: p.scaler.clone(),
        coefficients: m.coef.rows().into_iter().map(|r| r.to_vec()).collect(),
        intercepts: m.intercept.to_vec(),
        training,
        metrics,
        data_sha256: p.data_sha256.clone(),
    }
}

/// Predict every holdout row with `model` (raw features, exactly as at serve time) and
/// score the predictions.
pub fn evaluate(model: &Model, p: &Prepared) -> Result<Evaluation, TrainError> {
    let k = p.classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (row, &truth) in
        p.x.slice_axis(Axis(0), Slice::from(p.n_train..))
            .rows()
            .into_iter()
            .zip(&p.y[p.n_train..])
    {
        let pred = match row.as_slice() {
            Some(r) => model.predict(r)?,
            None => model.predict(&row.to_vec())?,
        };
        confusion[truth][pred.class_index] += 1;
    }
    Ok(score(&confusion, &p.classes))
}

/// Accuracy, per-class precision / recall / F1 and macro F1 from a confusion matrix.
pub fn score(confusion: &[Vec<usize>], classes: &[String]) -> Evaluation {
    let total: usize = confusion.iter().flatten().sum();
    let right: usize = (0..confusion.len()).map(|i| confusion[i][i]).sum();
    #[allow(clippy::cast_precision_loss)]
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassMetrics> = classes
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let tp = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|r| r[c]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                class: name.clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let macro_f1 = per_class.iter().map(|c| c.f1).sum::<f64>() / per_class.len().max(1) as f64;
    Evaluation {
        accuracy: ratio(right, total),
        macro_f1,
        per_class,
        confusion: confusion.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_from_confusion() {
        let e = score(&[vec![3, 1], vec![0, 4]], &["a".into(), "b".into()]);
        assert!((e.accuracy - 7.0 / 8.0).abs() < 1e-12);
        assert!((e.per_class[0].precision - 1.0).abs() < 1e-12);
        assert!((e.per_class[0].recall - 0.75).abs() < 1e-12);
        assert!((e.per_class[1].precision - 0.8).abs() < 1e-12);
        assert_eq!(e.per_class[1].support, 4);
    }

    #[test]
    fn a_holdout_file_is_appended_raw_and_the_matrix_stays_aligned() {
        let tmp = tempfile::tempdir().expect("tmp");
        let csv = |name: &str, rows: &[[f64; 3]]| {
            let mut s = String::from("a,b,label\n");
            for r in rows {
                s.push_str(&format!("{},{},{}\n", r[0], r[1], r[2]));
            }
            let p = tmp.path().join(name);
            std::fs::write(&p, s).expect("write");
            p.to_string_lossy().into_owned()
        };
        let train: Vec<[f64; 3]> = (0..23)
            .map(|i| [f64::from(i), f64::from(i * i % 7), f64::from(i % 2)])
            .collect();
        let test = [[1.5, -2.0, 1.0], [0.25, 8.0, 0.0], [7.0, 7.0, 1.0]];
        let cfg = TrainConfig {
            data: csv("train.csv", &train),
            test_data: Some(csv("test.csv", &test)),
            label: "label".into(),
            test_fraction: 0.2,
            folds: 2,
            alphas: vec![1.0],
            seed: 3,
            solver: SolverKind::Lbfgs,
            max_iter: 10,
            tol: 1e-4,
            name: "t".into(),
        };
        let p = prepare(&cfg).expect("prepare");
        assert_eq!((p.n_train, p.n_test(), p.x.ncols()), (23, 3, 2));
        assert_eq!(p.x.as_ptr().addr() % 64, 0);
        for (i, r) in test.iter().enumerate() {
            assert_eq!(p.x.row(23 + i).to_vec(), r[..2].to_vec());
            assert_eq!(p.y[23 + i], usize::from(r[2] == 1.0));
        }
        // Training rows are standardised: every column has mean 0.
        for c in p.train_x().columns() {
            assert!(c.sum().abs() < 1e-9);
        }
    }
}
