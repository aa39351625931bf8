//! Reports: the JSON written by `--report` and the tables printed on stdout.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::TrainError;
use crate::train::{ClassMetrics, CvScore, Mode, Prepared, Trained};

/// What `trainer fit` reports.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// `seq` or `par`.
    pub mode: Mode,
    /// Threads used.
    pub threads: usize,
    /// Solver name.
    pub solver: String,
    /// Holdout accuracy.
    pub accuracy: f64,
    /// Holdout macro F1.
    pub macro_f1: f64,
    /// Seconds of cross-validation plus refit.
    pub fit_seconds: f64,
    /// Seconds of cross-validation.
    pub cv_seconds: f64,
    /// Seconds of the refit on all training rows.
    pub refit_seconds: f64,
    /// Seconds loading, splitting and standardising the data.
    pub load_seconds: f64,
    /// Model id (content hash).
    pub model_id: String,
    /// Where the model was published (`<store>/<name>/<version>`), if it was.
    pub model_uri: Option<String>,
    /// Published version, if any.
    pub version: Option<String>,
    /// Chosen penalty (`alpha = 1 / C`).
    pub alpha: f64,
    /// The grid.
    pub alphas: Vec<f64>,
    /// Folds (0 when cross-validation was skipped).
    pub folds: usize,
    /// Seed of split and folds.
    pub seed: u64,
    /// Cross-validation scores per alpha.
    pub cv_scores: Vec<CvScore>,
    /// Class labels.
    pub classes: Vec<String>,
    /// Holdout precision / recall / F1 per class.
    pub per_class: Vec<ClassMetrics>,
    /// Holdout confusion matrix, `[true][predicted]`.
    pub confusion_matrix: Vec<Vec<usize>>,
    /// Training rows.
    pub n_train: usize,
    /// Holdout rows.
    pub n_test: usize,
    /// Features.
    pub n_features: usize,
    /// L-BFGS iterations of the refit.
    pub iterations: u64,
    /// Loss / gradient evaluations of the refit.
    pub evaluations: usize,
    /// Loss / gradient evaluations of all cross-validation fits together.
    pub cv_evaluations: usize,
    /// Whether the refit met its tolerance.
    pub converged: bool,
    /// Bytes of the f64 feature matrix.
    pub feature_matrix_bytes: usize,
    /// Peak resident memory of the process so far (Linux `VmHWM`), if known.
    pub peak_rss_bytes: Option<u64>,
    /// `--mode lambda`: tasks, retries, invoke_seconds, rounds and per-task timings.
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub distributed: Option<crate::distributed::engine::EngineStats>,
}

impl FitReport {
    /// Assemble the report of a training run.
    pub fn new(
        t: &Trained,
        p: &Prepared,
        folds: usize,
        alphas: &[f64],
        seed: u64,
        published: Option<(String, String)>,
    ) -> Self {
        let (model_uri, version) = match published {
            Some((u, v)) => (Some(u), Some(v)),
            None => (None, None),
        };
        Self {
            mode: t.mode,
            threads: t.threads,
            solver: t
                .artifact
                .training
                .get("solver")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            accuracy: t.eval.accuracy,
            macro_f1: t.eval.macro_f1,
            fit_seconds: t.fit_seconds(),
            cv_seconds: t.cv_seconds,
            refit_seconds: t.refit_seconds,
            load_seconds: p.load_seconds,
            model_id: t.artifact.model_id.clone(),
            model_uri,
            version,
            alpha: t.alpha,
            alphas: alphas.to_vec(),
            folds: if t.cv.is_empty() { 0 } else { folds },
            seed,
            cv_scores: t.cv.clone(),
            classes: p.classes.clone(),
            per_class: t.eval.per_class.clone(),
            confusion_matrix: t.eval.confusion.clone(),
            n_train: p.n_train,
            n_test: p.n_test(),
            n_features: p.feature_names.len(),
            iterations: t.model.iterations,
            evaluations: t.model.evaluations,
            cv_evaluations: t.cv_evaluations,
            converged: t.model.converged,
            feature_matrix_bytes: p.matrix_bytes(),
            peak_rss_bytes: peak_rss_bytes(),
            distributed: None,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "trainer fit: {} mode, {} thread(s), solver {}",
            self.mode, self.threads, self.solver
        );
        let _ = writeln!(
            s,
            "data: {} training rows, {} holdout rows, {} features, {} classes",
            self.n_train,
            self.n_test,
            self.n_features,
            self.classes.len()
        );
        if let Some(d) = &self.distributed {
            let slowest = d
                .task_timings
                .iter()
                .map(|t| t.seconds)
                .fold(0.0_f64, f64::max);
            let _ = writeln!(
                s,
                "lambda: {} tasks ({} rounds of gradient tasks), {} retries, {:.3} s waiting on invocations, slowest task {slowest:.3} s",
                d.tasks, d.rounds, d.retries, d.invoke_seconds
            );
        }
        if !self.cv_scores.is_empty() {
            let _ = writeln!(
                s,
                "\n{:>12}  {:>8}  fold scores ({} folds)",
                "alpha", "cv mean", self.folds
            );
            for c in &self.cv_scores {
                let folds: Vec<String> = c.fold_scores.iter().map(|v| format!("{v:.4}")).collect();
                let mark = if c.alpha == self.alpha {
                    " <- chosen"
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "{:>12}  {:>8.4}  {}{mark}",
                    fmt_alpha(c.alpha),
                    c.mean,
                    folds.join(" ")
                );
            }
        }
        let _ = writeln!(
            s,
            "\n{:>10}  {:>9}  {:>6}  {:>6}  {:>7}",
            "class", "precision", "recall", "f1", "support"
        );
        for c in &self.per_class {
            let _ = writeln!(
                s,
                "{:>10}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
                c.class, c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(s, "\nconfusion matrix (rows: true, columns: predicted)");
        for (i, row) in self.confusion_matrix.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>4}")).collect();
            let _ = writeln!(
                s,
                "{:>10} {}",
                self.classes.get(i).map_or("", String::as_str),
                cells.join("")
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "{:<22}{:.4}", "holdout accuracy", self.accuracy);
        let _ = writeln!(s, "{:<22}{:.4}", "macro F1", self.macro_f1);
        let _ = writeln!(
            s,
            "{:<22}{} (C = {})",
            "alpha",
            fmt_alpha(self.alpha),
            fmt_alpha(1.0 / self.alpha)
        );
        let _ = writeln!(
            s,
            "{:<22}{:.3} s (cv {:.3} s + refit {:.3} s; load {:.3} s)",
            "fit time", self.fit_seconds, self.cv_seconds, self.refit_seconds, self.load_seconds
        );
        let _ = writeln!(
            s,
            "{:<22}{} iterations, converged: {}",
            "refit", self.iterations, self.converged
        );
        let _ = writeln!(s, "{:<22}{}", "model id", self.model_id);
        if let Some(u) = &self.model_uri {
            let _ = writeln!(s, "{:<22}{}", "model uri", u);
        }
        s
    }
}

fn fmt_alpha(a: f64) -> String {
    if (1e-3..1e4).contains(&a) {
        format!("{a}")
    } else {
        format!("{a:e}")
    }
}

/// Where a row of the `compare` table comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowSource {
    /// Quoted from the original's README: approximate times, the original's holdout.
    OriginalReadme,
    /// The original's code rerun by the reproduction DESIGN.md quotes: the original's holdout.
    Reproduction,
    /// Measured by this run, on this run's holdout.
    ThisRun,
}

impl RowSource {
    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::OriginalReadme => "the original's README",
            Self::Reproduction => "a reproduction (DESIGN.md)",
            Self::ThisRun => "this run (median)",
        }
    }
}

/// One row of the `compare` table.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    /// What ran.
    pub version: String,
    /// Holdout accuracy.
    pub accuracy: f64,
    /// Seconds of training work (CV + refit).
    pub seconds: f64,
    /// Whether this row was measured by this run (false: figures quoted from the original).
    pub measured: bool,
    /// Where the figures come from.
    pub source: RowSource,
}

/// What `trainer compare` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// The rows, the original's first.
    pub rows: Vec<CompareRow>,
    /// Median sequential seconds over median parallel seconds.
    pub speedup: f64,
    /// Threads of the parallel run.
    pub threads: usize,
    /// True when every run, seq and par, produced bit-identical coefficients and intercepts.
    pub identical: bool,
    /// Rounds of seq and par (interleaved).
    pub rounds: u32,
    /// Fit seconds (cross-validation + refit) of every sequential run, in order.
    pub seq_seconds: Vec<f64>,
    /// Fit seconds of every parallel run, in order.
    pub par_seconds: Vec<f64>,
    /// Full report of the first sequential run.
    pub seq: FitReport,
    /// Full report of the first parallel run.
    pub par: FitReport,
}

impl CompareReport {
    /// The original's results table plus the speedup.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<36} {:>9} {:>9}  source",
            "version", "accuracy", "time (s)"
        );
        for r in &self.rows {
            // The original's README gives its times as round figures ("~0.4 s").
            let time = if r.source == RowSource::OriginalReadme {
                format!("~{:.1}", r.seconds)
            } else {
                format!("{:.3}", r.seconds)
            };
            let _ = writeln!(
                s,
                "{:<36} {:>9.4} {:>9}  {}",
                r.version,
                r.accuracy,
                time,
                r.source.label()
            );
        }
        let _ = writeln!(
            s,
            "\nThe original's rows are one fit (no model selection) scored on its own holdout\n\
             (train_test_split(test_size=0.2, random_state=42)); ours are cross-validation +\n\
             refit scored on this run's holdout ({} rows). Not the same test, so the\n\
             accuracies do not compare directly.",
            self.seq.n_test
        );
        let _ = writeln!(
            s,
            "\nspeedup par/seq: {:.2}x on {} threads (medians of {} interleaved rounds)",
            self.speedup, self.threads, self.rounds
        );
        let _ = writeln!(
            s,
            "bit-identical model in seq and par: {}",
            if self.identical { "yes" } else { "NO" }
        );
        s
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), if available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Write `value` as pretty JSON to `path` (through a temporary file and a rename, creating
/// the parent directory).
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let bytes = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &bytes)
}

/// Write bytes to `path` whole: temporary file beside it, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::io("create directory", dir.display(), e))?;
    }
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io("write", tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io("rename", path.display(), e)
    })
}

/// A temporary name beside `path`.
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
