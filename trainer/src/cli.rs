//! The command line: `trainer fit | compare | generate | split | models`. Every flag can
//! also be set by the environment variable shown in `--help`; the defaults train
//! `data/digits.csv`.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use model::store::{Location, ModelUri};

use crate::data::{self, GenerateSpec};
use crate::distributed::engine::{self, Engine, EngineConfig, LambdaDistributor};
use crate::distributed::stage;
use crate::error::TrainError;
use crate::progress::Progress;
use crate::registry;
use crate::report::{self, CompareReport, CompareRow, FitReport, RowSource};
use crate::solver::SolverKind;
use crate::train::{self, Mode, TrainConfig};

/// The default penalty grid: 8 points, alpha = 1/C from 0.01 to 100 (C from 100 to 0.01).
pub const DEFAULT_ALPHAS: &str = train::defaults::ALPHAS;

/// Train, evaluate and publish L2 logistic-regression classifiers.
#[derive(Debug, Parser)]
#[command(name = "trainer", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train with cross-validation, evaluate on the holdout, publish the artifact, report.
    Fit(FitArgs),
    /// Run the same training sequentially and in parallel; print the original's results
    /// table (version, accuracy, time) with the speedup, and write it as JSON.
    Compare(CompareArgs),
    /// Write a synthetic classification data set (like scikit-learn's make_classification).
    Generate(GenerateArgs),
    /// Write the seeded stratified train / holdout split as two CSV files (for reference runs).
    Split(SplitArgs),
    /// Manage a model's versions in a store: list, show, promote (and roll back), prune.
    Models(ModelsArgs),
    /// Send empty tasks to the train-worker function one after another and print their
    /// round-trip times as JSON (the fixed cost of a task; `make bench-distributed`).
    Ping(PingArgs),
}

/// `trainer ping`.
#[derive(Debug, Clone, Args)]
pub struct PingArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub lambda: LambdaArgs,
    /// Empty tasks to send, one at a time.
    #[arg(long, env = "TRAINER_PING_COUNT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub count: u32,
}

/// `trainer models`.
#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// The registry verbs. A model is named `<store>/<name>`: a directory or `s3://bucket/prefix`,
/// then the model name (e.g. `artifacts/digits`, `s3://bucket/models/digits`).
#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCommand {
    /// List a model's versions, newest first: created_at, model_id, holdout accuracy, data
    /// sha256; `*` marks the version `latest` names. Each version is verified.
    List(ListArgs),
    /// Show one version's metadata and metrics (default: the one `latest` names).
    Show(ShowArgs),
    /// Verify a version, then make `latest` name it; to roll back, promote an older version.
    /// Prints what `latest` was and is. A version that fails verification changes nothing.
    Promote(PromoteArgs),
    /// Delete the oldest versions beyond the newest --keep, never the one `latest` names.
    Prune(PruneArgs),
}

/// `trainer models list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The model: <store>/<name>.
    pub model: String,
    /// Print JSON instead of a table.
    #[arg(long, env = "TRAINER_JSON")]
    pub json: bool,
}

/// `trainer models show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The model or one version: <store>/<name>[/<version>].
    pub model: String,
    /// Print JSON instead of a table.
    #[arg(long, env = "TRAINER_JSON")]
    pub json: bool,
}

/// `trainer models promote`.
#[derive(Debug, Clone, Args)]
pub struct PromoteArgs {
    /// The version to promote: <store>/<name>/<version>.
    pub version: String,
    /// Print JSON instead of text.
    #[arg(long, env = "TRAINER_JSON")]
    pub json: bool,
}

/// `trainer models prune`.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// The model: <store>/<name>.
    pub model: String,
    /// Versions to keep, newest first; the one `latest` names is kept besides them.
    #[arg(long, env = "TRAINER_PRUNE_KEEP")]
    pub keep: usize,
    /// Print what would be deleted; delete nothing.
    #[arg(long, env = "TRAINER_PRUNE_DRY_RUN")]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long, env = "TRAINER_JSON")]
    pub json: bool,
}

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Training data: a CSV file (header row; numeric features) or s3://bucket/key.
    #[arg(long, env = "TRAINER_DATA", default_value = "data/digits.csv")]
    pub data: String,
    /// Holdout CSV with the same columns; without it a stratified split of --data is held out.
    #[arg(long, env = "TRAINER_TEST_DATA")]
    pub test_data: Option<String>,
    /// Name of the label column.
    #[arg(long, env = "TRAINER_LABEL", default_value = train::defaults::LABEL)]
    pub label: String,
    /// Fraction of rows held out when there is no --test-data.
    #[arg(long, env = "TRAINER_TEST_FRACTION", default_value_t = train::defaults::TEST_FRACTION)]
    pub test_fraction: f64,
    /// Seed of the split and the folds.
    #[arg(long, env = "TRAINER_SEED", default_value_t = train::defaults::SEED)]
    pub seed: u64,
}

/// How the model is selected and fitted.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Cross-validation folds (stratified).
    #[arg(long, env = "TRAINER_FOLDS", default_value_t = train::defaults::FOLDS)]
    pub folds: usize,
    /// L2 penalties to cross-validate, comma-separated; alpha = 1/C in scikit-learn's terms.
    /// A single value skips cross-validation.
    #[arg(long, env = "TRAINER_ALPHAS", value_delimiter = ',', default_value = DEFAULT_ALPHAS, value_parser = parse_alpha)]
    pub alphas: Vec<f64>,
    /// Optimiser: lbfgs (ours, fused objective) or linfa (linfa-logistic, the reference).
    #[arg(long, env = "TRAINER_SOLVER", value_enum, default_value_t = train::defaults::SOLVER)]
    pub solver: SolverKind,
    /// Iteration limit of each fit.
    #[arg(long, env = "TRAINER_MAX_ITER", default_value_t = train::defaults::MAX_ITER)]
    pub max_iter: u64,
    /// Stop a fit when every component of the mean gradient is at most this in absolute
    /// value (scikit-learn's `tol` for lbfgs).
    #[arg(long, env = "TRAINER_TOL", default_value_t = train::defaults::TOL)]
    pub tol: f64,
    /// Threads for --mode par [default: all cores].
    #[arg(long, env = "TRAINER_THREADS", value_parser = parse_threads)]
    pub threads: Option<usize>,
}

/// `trainer fit`.
#[derive(Debug, Clone, Args)]
pub struct FitArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data: DataArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub model: ModelArgs,
    /// seq: one thread, no rayon; par: rayon over folds x alphas and row chunks; lambda:
    /// one AWS Lambda task per fold on --function, the refit here or over --shards.
    #[arg(long, env = "TRAINER_MODE", value_enum, default_value_t = Mode::Par)]
    pub mode: Mode,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub lambda: LambdaArgs,
    /// Store root the model is published under: a directory or s3://bucket/prefix.
    #[arg(long, env = "TRAINER_STORE", default_value = "artifacts")]
    pub store: String,
    /// Model name (directory under the store root).
    #[arg(long, env = "TRAINER_NAME", default_value = train::defaults::NAME)]
    pub name: String,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "TRAINER_REPORT")]
    pub report: Option<PathBuf>,
}

/// `--mode lambda`: where the tasks go and how many at once.
#[derive(Debug, Clone, Args)]
pub struct LambdaArgs {
    /// The train-worker function's name or ARN (--mode lambda).
    #[arg(long, env = "TRAINER_FUNCTION")]
    pub function: Option<String>,
    /// Invocations in flight at most (--mode lambda).
    #[arg(long, env = "TRAINER_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,
    /// Data-parallel refit over this many shards (every L-BFGS evaluation is one round of
    /// this many gradient tasks); 0 refits in this process (--mode lambda).
    #[arg(long, env = "TRAINER_SHARDS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub shards: u32,
    /// Retries of a failed task before the fit stops (--mode lambda).
    #[arg(long, env = "TRAINER_RETRIES", default_value_t = engine::DEFAULT_RETRIES, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,
    /// Seconds allowed for one invocation (Lambda's own limit is 900) (--mode lambda).
    #[arg(long, env = "TRAINER_TASK_TIMEOUT", default_value_t = engine::DEFAULT_TASK_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub task_timeout: u64,
}

/// `trainer compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data: DataArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub model: ModelArgs,
    /// Write the comparison as JSON to this file.
    #[arg(
        long,
        env = "TRAINER_COMPARE_REPORT",
        default_value = "reports/compare.json"
    )]
    pub report: PathBuf,
    /// Rounds of seq and par, interleaved (the order alternates each round); the table
    /// shows the median of each. One run of a tenth of a second is at the mercy of whatever
    /// else the machine does; the median of several, side by side, is not.
    #[arg(long, env = "TRAINER_COMPARE_ROUNDS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
}

/// `trainer generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Rows to write.
    #[arg(long, env = "TRAINER_GEN_ROWS", default_value_t = 100_000)]
    pub rows: usize,
    /// Feature columns.
    #[arg(long, env = "TRAINER_GEN_FEATURES", default_value_t = 50)]
    pub features: usize,
    /// Classes (labels 0..K).
    #[arg(long, env = "TRAINER_GEN_CLASSES", default_value_t = 2)]
    pub classes: usize,
    /// Seed.
    #[arg(long, env = "TRAINER_GEN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Output CSV file.
    #[arg(long, env = "TRAINER_GEN_OUT")]
    pub out: PathBuf,
}

/// `trainer split`.
#[derive(Debug, Clone, Args)]
pub struct SplitArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data: DataArgs,
    /// Output CSV of the training rows.
    #[arg(long)]
    pub train_out: PathBuf,
    /// Output CSV of the holdout rows.
    #[arg(long)]
    pub test_out: PathBuf,
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s:?} must be a finite number above 0"))
    }
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a thread count from 1 to 4096")),
    }
}

fn config(d: &DataArgs, m: &ModelArgs, name: &str) -> TrainConfig {
    TrainConfig {
        data: d.data.clone(),
        test_data: d.test_data.clone(),
        label: d.label.clone(),
        test_fraction: d.test_fraction,
        folds: m.folds,
        alphas: m.alphas.clone(),
        seed: d.seed,
        solver: m.solver,
        max_iter: m.max_iter,
        tol: m.tol,
        name: name.to_string(),
    }
}

/// All cores, or the requested number.
pub fn resolve_threads(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// Median of `v` (mean of the middle two for an even count); 0 for none.
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    }
}

/// Run a parsed command line; output goes to stdout, progress to stderr.
pub fn run(cli: Cli) -> Result<(), TrainError> {
    match cli.command {
        Command::Fit(a) => {
            let r = fit(&a, &Progress::auto())?;
            print!("{}", r.table());
            Ok(())
        }
        Command::Compare(a) => {
            let r = compare(&a, &Progress::auto_per_run())?;
            print!("{}", r.table());
            println!("report: {}", a.report.display());
            Ok(())
        }
        Command::Generate(a) => generate(&a),
        Command::Split(a) => split(&a),
        Command::Models(a) => {
            print!("{}", models(&a.command)?);
            Ok(())
        }
        Command::Ping(a) => {
            println!("{}", serde_json::to_string_pretty(&ping(&a)?)?);
            Ok(())
        }
    }
}

/// Open the store of a `<store>/<name>[/<version>]` argument.
fn open_model(arg: &str) -> Result<(ModelUri, Box<dyn model::store::ObjectStore>), TrainError> {
    let uri = ModelUri::parse(arg)?;
    let store = storage::open_store(&uri.root)?;
    Ok((uri, store))
}

fn output<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<String, TrainError> {
    if json {
        let mut s = serde_json::to_string_pretty(value)?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(text(value))
    }
}

/// `trainer models ...`: run a registry verb; returns what it prints.
pub fn models(command: &ModelsCommand) -> Result<String, TrainError> {
    match command {
        ModelsCommand::List(a) => {
            let (uri, store) = open_model(&a.model)?;
            output(
                a.json,
                &registry::list(store.as_ref(), &uri)?,
                registry::Listing::table,
            )
        }
        ModelsCommand::Show(a) => {
            let (uri, store) = open_model(&a.model)?;
            output(
                a.json,
                &registry::show(store.as_ref(), &uri)?,
                registry::Shown::table,
            )
        }
        ModelsCommand::Promote(a) => {
            let (uri, store) = open_model(&a.version)?;
            output(
                a.json,
                &registry::promote(store.as_ref(), &uri)?,
                registry::Promoted::text,
            )
        }
        ModelsCommand::Prune(a) => {
            let (uri, store) = open_model(&a.model)?;
            let pruned = registry::prune(store.as_ref(), &uri, a.keep, a.dry_run)?;
            output(a.json, &pruned, registry::Pruned::text)
        }
    }
}

/// `trainer fit`: returns the report (also written to `--report`).
pub fn fit(a: &FitArgs, progress: &Progress) -> Result<FitReport, TrainError> {
    let cfg = config(&a.data, &a.model, &a.name);
    cfg.check()?;
    let root = Location::parse(&a.store)?;
    let store = storage::open_store(&root)?;
    let threads = match a.mode {
        Mode::Seq | Mode::Lambda => 1,
        Mode::Par => resolve_threads(a.model.threads),
    };
    let engine = match a.mode {
        Mode::Lambda => Some(lambda_engine(&a.lambda, &root)?),
        _ => None,
    };
    let prep = train::prepare(&cfg)?;
    let (t, stats) = match &engine {
        Some(engine) => {
            let s3 = match &root {
                Location::S3 { bucket, key } => {
                    storage::S3Store::connect(bucket, key, &storage::S3Options::default())?
                }
                Location::Local(_) => {
                    return Err(TrainError::param(
                        "--store",
                        "--mode lambda needs an S3 store",
                    ));
                }
            };
            let staged = stage::stage(&prep, &s3, a.lambda.shards as usize)?;
            if staged.uploaded > 0 {
                eprintln!(
                    "trainer: staged {} object(s), {} bytes, under {}",
                    staged.uploaded,
                    staged.uploaded_bytes,
                    store.describe(stage::STAGING)
                );
            } else {
                eprintln!(
                    "trainer: staged data found under {}",
                    store.describe(stage::STAGING)
                );
            }
            let d = LambdaDistributor::new(engine, &staged, &cfg, prep.n_train, prep.classes.len());
            let t = train::train_distributed(&prep, &cfg, &d, progress)?;
            (t, Some(engine.stats()))
        }
        None => (train::train(&prep, &cfg, a.mode, threads, progress)?, None),
    };
    let published = model::store::publish(store.as_ref(), &t.artifact)?;
    let uri = ModelUri {
        root,
        name: published.name.clone(),
        version: Some(published.version.clone()),
    }
    .to_string();
    let r = FitReport::new(
        &t,
        &prep,
        cfg.folds,
        &cfg.alphas,
        cfg.seed,
        Some((uri, published.version)),
    );
    let mut r = r;
    r.distributed = stats;
    if let Some(path) = &a.report {
        report::write_json(path, &r)?;
    }
    Ok(r)
}

/// `trainer ping`: round trips of empty tasks, in milliseconds (first = cold if the
/// function was), with their median.
pub fn ping(a: &PingArgs) -> Result<serde_json::Value, TrainError> {
    let function = a.lambda.function.clone().ok_or_else(|| {
        TrainError::param(
            "--function",
            "name the worker function (--function or TRAINER_FUNCTION)",
        )
    })?;
    let engine = Engine::connect(EngineConfig {
        function,
        concurrency: 1,
        retries: a.lambda.retries,
        task_timeout: std::time::Duration::from_secs(a.lambda.task_timeout),
        backoff: engine::FIRST_BACKOFF,
    })?;
    let mut ms = Vec::with_capacity(a.count as usize);
    for i in 0..a.count {
        let started = std::time::Instant::now();
        engine.run(
            &[crate::distributed::task::Event {
                version: crate::distributed::task::TASK_VERSION,
                id: format!("ping {i}"),
                task: crate::distributed::task::Task::Ping {},
            }],
            &|| {},
        )?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let warm = ms.get(1..).unwrap_or(&[]);
    Ok(serde_json::json!({
        "function": engine.function(),
        "count": a.count,
        "first_ms": ms.first(),
        "median_ms": median(warm),
        "min_ms": warm.iter().copied().reduce(f64::min),
        "max_ms": warm.iter().copied().reduce(f64::max),
        "round_trips_ms": ms,
    }))
}

/// The Lambda engine for `--mode lambda`; refused with a local store, which the workers
/// cannot read.
fn lambda_engine(l: &LambdaArgs, root: &Location) -> Result<Engine, TrainError> {
    let Some(function) = l.function.clone() else {
        return Err(TrainError::param(
            "--function",
            "--mode lambda needs the worker function's name (--function or TRAINER_FUNCTION)",
        ));
    };
    if let Location::Local(p) = root {
        return Err(TrainError::param(
            "--store",
            format!(
                "--mode lambda needs an S3 store (--store s3://bucket/prefix): the workers read \
                 the staged training rows from <store>/{}/, and cannot see the local directory {}",
                stage::STAGING,
                p.display()
            ),
        ));
    }
    Engine::connect(EngineConfig {
        function,
        concurrency: l.concurrency as usize,
        retries: l.retries,
        task_timeout: std::time::Duration::from_secs(l.task_timeout),
        backoff: engine::FIRST_BACKOFF,
    })
}

/// The Python original's figures: accuracy and seconds of one `LogisticRegression` fit
/// (no model selection), sequential and inside one Ray task, each as the original's README
/// reports it and as a reproduction measured it (DESIGN.md). The accuracies are on the
/// original's own holdout, not on ours.
pub const ORIGINAL: [(&str, RowSource, f64, f64); 4] = [
    (
        "original: scikit-learn, sequential",
        RowSource::OriginalReadme,
        0.9759,
        0.4,
    ),
    (
        "original: scikit-learn, sequential",
        RowSource::Reproduction,
        0.9750,
        0.090,
    ),
    (
        "original: scikit-learn in Ray",
        RowSource::OriginalReadme,
        0.9750,
        2.4,
    ),
    (
        "original: scikit-learn in Ray",
        RowSource::Reproduction,
        0.9750,
        7.6,
    ),
];

/// `trainer compare`: the same work seq and par, `--rounds` times each, interleaved;
/// nothing is published.
pub fn compare(a: &CompareArgs, progress: &Progress) -> Result<CompareReport, TrainError> {
    let cfg = config(&a.data, &a.model, "compare");
    let threads = resolve_threads(a.model.threads);
    let prep = train::prepare(&cfg)?;
    let mut seq_runs = Vec::new();
    let mut par_runs = Vec::new();
    for round in 0..a.rounds {
        // Alternate which mode goes first, so neither always runs on a warmer machine.
        let order = if round % 2 == 0 {
            [Mode::Seq, Mode::Par]
        } else {
            [Mode::Par, Mode::Seq]
        };
        for mode in order {
            let t = train::train(&prep, &cfg, mode, threads, progress)?;
            let what = match mode {
                Mode::Seq => "seq (1 thread)".to_string(),
                Mode::Par | Mode::Lambda => format!("par ({threads} threads)"),
            };
            progress.run_done(format_args!(
                "compare round {}/{}: {what} {:.3} s",
                round + 1,
                a.rounds,
                t.fit_seconds()
            ));
            match mode {
                Mode::Seq => seq_runs.push(t),
                Mode::Par | Mode::Lambda => par_runs.push(t),
            }
        }
    }
    let seq_seconds: Vec<f64> = seq_runs.iter().map(train::Trained::fit_seconds).collect();
    let par_seconds: Vec<f64> = par_runs.iter().map(train::Trained::fit_seconds).collect();
    let (seq_median, par_median) = (median(&seq_seconds), median(&par_seconds));
    let (Some(seq), Some(par)) = (seq_runs.first(), par_runs.first()) else {
        return Err(TrainError::Param {
            name: "--rounds",
            message: "must be at least 1".into(),
        });
    };
    let identical = seq_runs
        .iter()
        .chain(&par_runs)
        .all(|t| t.model.coef == seq.model.coef && t.model.intercept == seq.model.intercept);
    let mut rows: Vec<CompareRow> = ORIGINAL
        .iter()
        .map(|&(v, source, accuracy, seconds)| CompareRow {
            version: v.to_string(),
            accuracy,
            seconds,
            measured: false,
            source,
        })
        .collect();
    rows.push(CompareRow {
        version: "rust: seq (1 thread)".into(),
        accuracy: seq.eval.accuracy,
        seconds: seq_median,
        measured: true,
        source: RowSource::ThisRun,
    });
    rows.push(CompareRow {
        version: format!("rust: par ({threads} threads)"),
        accuracy: par.eval.accuracy,
        seconds: par_median,
        measured: true,
        source: RowSource::ThisRun,
    });
    let r = CompareReport {
        rows,
        speedup: seq_median / par_median.max(1e-12),
        threads,
        identical,
        rounds: a.rounds,
        seq_seconds,
        par_seconds,
        seq: FitReport::new(seq, &prep, cfg.folds, &cfg.alphas, cfg.seed, None),
        par: FitReport::new(par, &prep, cfg.folds, &cfg.alphas, cfg.seed, None),
    };
    report::write_json(&a.report, &r)?;
    Ok(r)
}

/// `trainer generate`.
pub fn generate(a: &GenerateArgs) -> Result<(), TrainError> {
    if a.classes < 2 {
        return Err(TrainError::param("--classes", "need at least 2 classes"));
    }
    if a.features == 0 {
        return Err(TrainError::param("--features", "need at least 1 feature"));
    }
    if a.rows < a.classes {
        return Err(TrainError::param(
            "--rows",
            format!("need at least one row per class ({})", a.classes),
        ));
    }
    let spec = GenerateSpec {
        rows: a.rows,
        features: a.features,
        classes: a.classes,
        seed: a.seed,
    };
    write_with(&a.out, |w| data::generate(&spec, w))
}

fn write_with(
    path: &Path,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), TrainError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::io("create directory", dir.display(), e))?;
    }
    let tmp = report::tmp_path(path);
    let file =
        std::fs::File::create(&tmp).map_err(|e| TrainError::io("create", tmp.display(), e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let done = f(&mut w).and_then(|()| std::io::Write::flush(&mut w));
    drop(w);
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::io("write", path.display(), e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io("rename", path.display(), e)
    })
}

/// `trainer split`.
pub fn split(a: &SplitArgs) -> Result<(), TrainError> {
    if !(a.data.test_fraction > 0.0 && a.data.test_fraction < 1.0) {
        return Err(TrainError::param(
            "--test-fraction",
            "must be between 0 and 1",
        ));
    }
    let d = data::load(&a.data.data, &a.data.label)?;
    data::check_classes(&d, &a.data.label)?;
    let s = train::holdout_split(
        &a.data.data,
        &d.y,
        d.classes.len(),
        a.data.test_fraction,
        a.data.seed,
    )?;
    for (path, rows) in [(&a.train_out, &s.train), (&a.test_out, &s.test)] {
        write_with(path, |w| {
            use std::io::Write as _;
            writeln!(w, "{},{}", d.feature_names.join(","), a.data.label)?;
            for &i in rows {
                let mut line = String::new();
                for v in d.x.row(i) {
                    line.push_str(&v.to_string());
                    line.push(',');
                }
                line.push_str(&d.classes[d.y[i]]);
                writeln!(w, "{line}")?;
            }
            Ok(())
        })?;
    }
    Ok(())
}
