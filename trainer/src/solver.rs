//! The solver: L2-penalised logistic regression (softmax for K > 2 classes, sigmoid for 2),
//! fitted by L-BFGS behind linfa's [`Fit`] trait: argmin's executor and More-Thuente line
//! search, with the two-loop recursion of `lbfgs.rs` (argmin's own `LBFGS`, step for step and
//! bit for bit, without its allocations; a test holds the two together).
//!
//! The objective is scikit-learn's, so `alpha = 1 / C`:
//!
//! ```text
//! f(W, b) = ( sum_i loss_i(W, b) + alpha/2 * ||W||^2 ) / n      (intercepts not penalised)
//! ```
//!
//! Loss and gradient are computed in one fused pass over *fixed* chunks of at most
//! [`CHUNK_ROWS`] rows. Chunk boundaries never depend on the thread count and the per-chunk
//! partial sums are added in chunk order, so the result is bit-for-bit the same on one
//! thread or many.
//!
//! linfa-logistic 0.8.1 stays available as a reference solver ([`SolverKind::Linfa`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use argmin::core::{
    CostFunction, Executor, Gradient, Solver, State, TerminationReason, TerminationStatus,
};
use linfa::dataset::{DatasetBase, Records};
use linfa::prelude::Fit;
use linfa::{Dataset, ParamGuard};
use ndarray::{Array1, Array2, ArrayView2, Axis, CowArray, Ix2};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::TrainError;
use crate::kernel;
use crate::lbfgs::{Iter, Lbfgs, TOL_COST};

/// Rows per chunk of the fused loss / gradient pass, at most. The chunks of `n` rows are an
/// even number of near-equal parts (see [`chunks`]); they depend on `n` only, never on
/// threads, because they decide the summation order.
pub const CHUNK_ROWS: usize = 256;

/// How many chunks `n` rows are cut into: the fewest parts of at most [`CHUNK_ROWS`] rows,
/// rounded up to an even count. Chunk `c` is rows `c·n/chunks .. (c+1)·n/chunks`, so sizes
/// differ by at most one row and two (or four, ...) threads get the same work: fixed 256-row
/// chunks left 768 of the 1437 digits rows to one thread and 669 to the other.
pub fn chunks(n: usize) -> usize {
    n.div_ceil(CHUNK_ROWS).next_multiple_of(2)
}

/// Most blocks a pass's chunks are summed in. Chunk sums are added within a block, then
/// the block sums in block order: a shape that depends on `n` alone, so a data-parallel
/// pass (one shard = a run of whole blocks, see `distributed`) adds the same numbers in the
/// same order as one machine. Up to this many chunks, a block is one chunk and the sum is
/// the plain chunk-order sum.
pub const MAX_BLOCKS: usize = 64;

/// Chunks per block for `n` rows: `ceil(chunks / MAX_BLOCKS)`, at least 1.
pub fn chunks_per_block(n: usize) -> usize {
    chunks(n).div_ceil(MAX_BLOCKS).max(1)
}

/// Blocks of a pass over `n` rows (at most [`MAX_BLOCKS`]).
pub fn blocks(n: usize) -> usize {
    chunks(n).div_ceil(chunks_per_block(n))
}

/// Rows `start..end` covered by blocks `first..last` of a pass over `n` rows.
pub fn block_rows(first: usize, last: usize, n: usize) -> std::ops::Range<usize> {
    let (c, g) = (chunks(n), chunks_per_block(n));
    let start = chunk_range((first * g).min(c), c, n).0;
    let end = if last * g >= c {
        n
    } else {
        chunk_range(last * g, c, n).0
    };
    start..end
}

/// Blocks `first..last` of shard `s` of `shards` over `n` rows: near-equal runs of whole
/// blocks. Every shard has at least one block when `shards <= blocks(n)`.
pub fn shard_blocks(s: usize, shards: usize, n: usize) -> std::ops::Range<usize> {
    let b = blocks(n);
    let at = |s: usize| (s * b).checked_div(shards).unwrap_or(0);
    at(s)..at(s + 1)
}

/// Sum chunk sums into block sums: within a block in chunk order, the first chunk's sums
/// taken as they are (so a block of one chunk is that chunk's sums, bit for bit).
pub fn sum_blocks(partials: Vec<kernel::ChunkSums>, per_block: usize) -> Vec<kernel::ChunkSums> {
    let mut out: Vec<kernel::ChunkSums> =
        Vec::with_capacity(partials.len().div_ceil(per_block.max(1)));
    for (i, p) in partials.into_iter().enumerate() {
        if i % per_block.max(1) == 0 {
            out.push(p);
        } else if let Some(acc) = out.last_mut() {
            acc.loss += p.loss;
            for (g, v) in acc.grad.iter_mut().zip(&p.grad) {
                *g += v;
            }
        }
    }
    out
}

/// The block sums of blocks `first..last` of a pass over `n` rows at weights `w`, from
/// the rows of those blocks only: `x` / `y` hold rows `block_rows(first, last, n)`. This
/// is what a gradient task computes on its shard; [`Objective`] adds the same sums.
pub fn shard_block_sums(
    x: ArrayView2<'_, f64>,
    y: &[usize],
    n: usize,
    blocks_range: std::ops::Range<usize>,
    n_classes: usize,
    w: &[f64],
) -> Result<Vec<kernel::ChunkSums>, TrainError> {
    let rows = block_rows(blocks_range.start, blocks_range.end, n);
    let k = if n_classes == 2 { 1 } else { n_classes };
    let f = x.ncols();
    if x.nrows() != rows.len() || y.len() != rows.len() {
        return Err(TrainError::param(
            "shard",
            format!(
                "blocks {}..{} of {n} rows are rows {}..{} ({} rows), but the shard has {} rows and {} labels",
                blocks_range.start,
                blocks_range.end,
                rows.start,
                rows.end,
                rows.len(),
                x.nrows(),
                y.len()
            ),
        ));
    }
    if w.len() != k * (f + 1) {
        return Err(TrainError::param(
            "weights",
            format!("{} weights for {k} x ({f} + 1) parameters", w.len()),
        ));
    }
    if let Some(&bad) = y.iter().find(|&&c| c >= n_classes) {
        return Err(TrainError::param(
            "labels",
            format!("class index {bad} with {n_classes} classes"),
        ));
    }
    let x = x.as_standard_layout();
    let mut buf = Vec::new();
    let wa = kernel::aligned_zeros(&mut buf, w.len());
    wa.copy_from_slice(w);
    let kw = kernel::Weights::new(wa, k, f);
    let (c_all, g) = (chunks(n), chunks_per_block(n));
    let first_chunk = (blocks_range.start * g).min(c_all);
    let last_chunk = (blocks_range.end * g).min(c_all);
    let partials: Vec<kernel::ChunkSums> = (first_chunk..last_chunk)
        .map(|c| {
            let (start, end) = chunk_range(c, c_all, n);
            let (a, b) = (start - rows.start, end - rows.start);
            let slices: Vec<&[f64]> = (a..b)
                .map(|i| x.index_axis(Axis(0), i).to_slice().unwrap_or(&[]))
                .collect();
            kernel::chunk(&slices, &y[a..b], &kw)
        })
        .collect();
    Ok(sum_blocks(partials, g))
}

/// Rows `start..end` of chunk `c` of `chunks` over `n` rows.
fn chunk_range(c: usize, chunks: usize, n: usize) -> (usize, usize) {
    let at = |c: usize| (c * n).checked_div(chunks).unwrap_or(0);
    (at(c), at(c + 1))
}

/// The cores this process may run on, read once: `available_parallelism` reads cgroup files
/// on every call, which cost about 80 µs, 2 % of a digits fit.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// How one fit spreads the row chunks of each pass over the current rayon pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Every chunk on the calling thread.
    Off,
    /// Chunks as rayon tasks, taken by threads that are idle: for fits that run beside
    /// other fits (cross-validation), where the pool has other work to do.
    Shared,
    /// The fit has the pool to itself: its other threads join for the whole fit and stay
    /// awake between passes (see [`Team`]), so no pass waits for a sleeping thread.
    Dedicated,
}

/// Which optimiser fits the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SolverKind {
    /// Our fused objective driven by argmin's L-BFGS (More-Thuente line search).
    Lbfgs,
    /// linfa-logistic 0.8.1, the reference solver (single-threaded, slower).
    Linfa,
}

impl std::fmt::Display for SolverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Lbfgs => "lbfgs",
            Self::Linfa => "linfa",
        })
    }
}

/// Checked hyper-parameters of a fit; build them through [`LogisticParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidLogisticParams {
    alpha: f64,
    max_iter: u64,
    tol: f64,
    spread: Spread,
    solver: SolverKind,
    warm_start: Option<Vec<f64>>,
}

impl ValidLogisticParams {
    /// L2 penalty strength (`1 / C` in scikit-learn's terms).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
}

/// Hyper-parameters of a fit, linfa style: set with the builder methods, checked by
/// [`ParamGuard::check`] (or implicitly by [`Fit::fit`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticParams(ValidLogisticParams);

impl Default for LogisticParams {
    fn default() -> Self {
        Self(ValidLogisticParams {
            alpha: 1.0,
            max_iter: 1000,
            tol: 1e-4,
            spread: Spread::Off,
            solver: SolverKind::Lbfgs,
            warm_start: None,
        })
    }
}

impl LogisticParams {
    /// L2 penalty strength, `1 / C` (default 1.0). Must be finite and non-negative.
    #[must_use]
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.0.alpha = alpha;
        self
    }

    /// Maximum L-BFGS iterations (default 1000, scikit-learn's value in the original).
    #[must_use]
    pub fn max_iter(mut self, max_iter: u64) -> Self {
        self.0.max_iter = max_iter;
        self
    }

    /// Stop when every component of the (mean) gradient is at most this in absolute value,
    /// scikit-learn's rule for lbfgs (default 1e-4).
    #[must_use]
    pub fn tol(mut self, tol: f64) -> Self {
        self.0.tol = tol;
        self
    }

    /// How the row chunks of each pass are spread over the current rayon pool (default
    /// [`Spread::Off`]). The result does not depend on it.
    #[must_use]
    pub fn spread(mut self, spread: Spread) -> Self {
        self.0.spread = spread;
        self
    }

    /// Start L-BFGS from this model instead of zeros (default none). Used along a path of
    /// penalties; ignored by the linfa solver and when the shape does not match.
    #[must_use]
    pub fn warm_start(mut self, from: Option<&LinearModel>) -> Self {
        self.0.warm_start = from.map(LinearModel::to_params);
        self
    }

    /// The optimiser (default [`SolverKind::Lbfgs`]).
    #[must_use]
    pub fn solver(mut self, solver: SolverKind) -> Self {
        self.0.solver = solver;
        self
    }
}

impl ParamGuard for LogisticParams {
    type Checked = ValidLogisticParams;
    type Error = TrainError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if !(p.alpha.is_finite() && p.alpha >= 0.0) {
            return Err(TrainError::param(
                "--alphas",
                format!("{} is not a finite non-negative number", p.alpha),
            ));
        }
        if !(p.tol.is_finite() && p.tol > 0.0) {
            return Err(TrainError::param(
                "--tol",
                format!("{} is not a finite positive number", p.tol),
            ));
        }
        if p.max_iter == 0 {
            return Err(TrainError::param("--max-iter", "must be at least 1"));
        }
        Ok(p)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// Training records for [`Fit`]: a standardised matrix and, optionally, the subset of its
/// rows to train on (a cross-validation fold), so folds never copy the data.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// Standardised features.
    pub x: ArrayView2<'a, f64>,
    /// Rows of `x` to use, in this order; `None` for all rows.
    pub rows: Option<&'a [usize]>,
}

impl Records for Rows<'_> {
    type Elem = f64;

    fn nsamples(&self) -> usize {
        self.rows.map_or(self.x.nrows(), <[usize]>::len)
    }

    fn nfeatures(&self) -> usize {
        self.x.ncols()
    }
}

/// Targets for [`Fit`]: a class index for every row of [`Rows::x`].
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// Class index of each row of the full matrix.
    pub y: &'a [usize],
    /// Number of classes (at least 2).
    pub n_classes: usize,
}

/// A fitted linear model on standardised features.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    /// Coefficients: one row per class, or a single row (positive class 1) for two classes.
    pub coef: Array2<f64>,
    /// One intercept per coefficient row.
    pub intercept: Array1<f64>,
    /// Solver iterations.
    pub iterations: u64,
    /// Loss / gradient evaluations.
    pub evaluations: usize,
    /// True when the solver met its tolerance (not the iteration limit).
    pub converged: bool,
    /// Why the solver stopped.
    pub termination: String,
}

impl LinearModel {
    /// The flat parameter vector: coefficient rows, then intercepts.
    pub fn to_params(&self) -> Vec<f64> {
        self.coef
            .iter()
            .chain(self.intercept.iter())
            .copied()
            .collect()
    }

    /// Predicted class of each listed row of standardised `x` (argmax of the scores, first
    /// on ties, as `model::Model` does).
    pub fn predict_rows(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Vec<usize> {
        rows.iter()
            .map(|&i| {
                let xi = x.row(i);
                let scores: Vec<f64> = self
                    .coef
                    .rows()
                    .into_iter()
                    .zip(&self.intercept)
                    .map(|(w, b)| b + w.dot(&xi))
                    .collect();
                if scores.len() == 1 {
                    usize::from(scores[0] > 0.0)
                } else {
                    model::classifier::argmax(&scores)
                }
            })
            .collect()
    }
}

/// The fused objective over a (subset of a) standardised matrix.
pub struct Objective<'a> {
    x: CowArray<'a, f64, Ix2>,
    rows: Option<&'a [usize]>,
    y: &'a [usize],
    /// Coefficient rows: 1 for two classes, else the number of classes.
    k: usize,
    alpha: f64,
    /// Chunks of a pass as rayon tasks ([`Spread::Shared`]).
    shared: bool,
}

impl<'a> Objective<'a> {
    /// The objective for `records` / `labels` with penalty `alpha`; `shared` spreads each
    /// pass's chunks over the current rayon pool as tasks.
    pub fn new(records: Rows<'a>, labels: Labels<'a>, alpha: f64, shared: bool) -> Self {
        Self {
            // Rows are read in place as contiguous slices; any row stride will do, so only
            // a matrix whose rows are not contiguous is copied.
            x: if records.x.ncols() <= 1 || records.x.strides()[1] == 1 {
                CowArray::from(records.x)
            } else {
                CowArray::from(records.x.as_standard_layout().into_owned())
            },
            rows: records.rows,
            y: labels.y,
            k: if labels.n_classes == 2 {
                1
            } else {
                labels.n_classes
            },
            alpha,
            shared,
        }
    }

    fn n(&self) -> usize {
        self.rows.map_or(self.x.nrows(), <[usize]>::len)
    }

    /// Length of the parameter vector: `k * features` weights, then `k` intercepts.
    pub fn dim(&self) -> usize {
        self.k * (self.x.ncols() + 1)
    }

    /// Loss and gradient at `w` in one pass.
    pub fn eval(&self, w: &[f64]) -> (f64, Vec<f64>) {
        let kw = self.weights(w);
        let n_chunks = chunks(self.n());
        let partials: Vec<kernel::ChunkSums> = if self.shared && n_chunks > 1 {
            (0..n_chunks)
                .into_par_iter()
                .with_max_len(1)
                .map(|c| self.chunk(c, n_chunks, &kw))
                .collect()
        } else {
            (0..n_chunks)
                .map(|c| self.chunk(c, n_chunks, &kw))
                .collect()
        };
        self.total(w, partials)
    }

    fn weights<'w>(&self, w: &'w [f64]) -> kernel::Weights<'w> {
        kernel::Weights::new(w, self.k, self.x.ncols())
    }

    /// Loss and gradient from the chunks' sums, added in chunk order (the same sums in the
    /// same order on any thread count), plus the penalty, averaged over the rows.
    fn total(&self, w: &[f64], partials: Vec<kernel::ChunkSums>) -> (f64, Vec<f64>) {
        self.total_blocks(w, &sum_blocks(partials, chunks_per_block(self.n())))
    }

    /// Loss and gradient from the block sums of a whole pass (see [`MAX_BLOCKS`]), added in
    /// block order, plus the penalty, averaged over the rows: the last step of every pass,
    /// local or data-parallel.
    pub fn total_blocks(&self, w: &[f64], partials: &[kernel::ChunkSums]) -> (f64, Vec<f64>) {
        let mut loss = 0.0;
        let mut grad = vec![0.0; self.dim()];
        for p in partials {
            loss += p.loss;
            for (g, v) in grad.iter_mut().zip(&p.grad) {
                *g += v;
            }
        }
        let kf = self.k * self.x.ncols();
        let mut penalty = 0.0;
        for (g, wi) in grad[..kf].iter_mut().zip(&w[..kf]) {
            penalty += wi * wi;
            *g += self.alpha * wi;
        }
        #[allow(clippy::cast_precision_loss)]
        let inv_n = 1.0 / self.n().max(1) as f64;
        for g in &mut grad {
            *g *= inv_n;
        }
        ((loss + 0.5 * self.alpha * penalty) * inv_n, grad)
    }

    fn chunk(&self, c: usize, n_chunks: usize, kw: &kernel::Weights<'_>) -> kernel::ChunkSums {
        let (start, end) = chunk_range(c, n_chunks, self.n());
        let x = self.x.view();
        let row = |i: usize| {
            if i < x.nrows() {
                x.index_axis_move(Axis(0), i).to_slice().unwrap_or(&[])
            } else {
                &[]
            }
        };
        let (rows, y): (Vec<&[f64]>, Vec<usize>) = match self.rows {
            None => (start..end).map(|i| (row(i), self.y[i])).unzip(),
            Some(idx) => idx[start..end].iter().map(|&i| (row(i), self.y[i])).unzip(),
        };
        kernel::chunk(&rows, &y, kw)
    }
}

/// The threads of a pool working on one fit's passes together ([`Spread::Dedicated`]).
///
/// The fit's thread (the leader) publishes the weights of each pass and claims chunks like
/// the helpers do; the helpers stay awake between passes, spinning, instead of going to
/// sleep as idle rayon threads do and being woken for each pass (on the 2-core VM that
/// wake-up cost about 10 µs of a 70 µs digits pass). Chunks and the order their sums are
/// added in are the same as in every other mode, so the model is the same bits.
struct Team<'o, 'a> {
    obj: &'o Objective<'a>,
    n_chunks: usize,
    /// Pass number (high 32 bits) and the next chunk to claim (low 32 bits): a claim is a
    /// compare-and-swap of both, so it can only take a chunk of the pass it read.
    claim: AtomicU64,
    /// Chunks of the current pass finished.
    done: AtomicUsize,
    stop: AtomicBool,
    /// The current pass's weights, on a 32-byte boundary (`kernel::aligned_zeros`).
    weights: RwLock<Vec<f64>>,
    sums: Vec<Mutex<Option<kernel::ChunkSums>>>,
}

/// Low bits of [`Team::claim`]: the next chunk.
const CHUNK_MASK: u64 = (1 << 32) - 1;

/// Idle rounds a helper spins before it starts yielding its core (about a millisecond).
const SPINS: u32 = 1 << 15;

impl<'o, 'a> Team<'o, 'a> {
    fn new(obj: &'o Objective<'a>, n_chunks: usize) -> Self {
        Self {
            obj,
            n_chunks,
            // Pass 0 has no chunk left to claim.
            claim: AtomicU64::new(n_chunks as u64),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            weights: RwLock::new(Vec::new()),
            sums: (0..n_chunks).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// One pass at `w`, computed by the leader and whichever helpers are awake.
    fn eval(&self, w: &[f64]) -> (f64, Vec<f64>) {
        {
            let mut buf = self.weights.write().unwrap_or_else(PoisonError::into_inner);
            kernel::aligned_zeros(&mut buf, w.len()).copy_from_slice(w);
        }
        self.done.store(0, Ordering::Relaxed);
        let pass = (self.claim.load(Ordering::Relaxed) >> 32) + 1;
        self.claim.store(pass << 32, Ordering::Release);
        while self.work() {}
        while self.done.load(Ordering::Acquire) < self.n_chunks {
            std::hint::spin_loop();
        }
        let partials: Vec<kernel::ChunkSums> = self
            .sums
            .iter()
            .enumerate()
            .map(|(c, slot)| {
                let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                // Every chunk was stored before `done` counted it; recomputing a missing
                // one (not expected) keeps the result right all the same.
                taken.unwrap_or_else(|| self.obj.chunk(c, self.n_chunks, &self.obj.weights(w)))
            })
            .collect();
        self.obj.total(w, partials)
    }

    /// Claim and compute one chunk of the current pass; false when none is left.
    fn work(&self) -> bool {
        let v = self.claim.load(Ordering::Acquire);
        let c = usize::try_from(v & CHUNK_MASK).unwrap_or(usize::MAX);
        if c >= self.n_chunks {
            return false;
        }
        if self
            .claim
            .compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return true;
        }
        let sums = {
            let buf = self.weights.read().unwrap_or_else(PoisonError::into_inner);
            let w = kernel::aligned_view(&buf, self.obj.dim());
            self.obj.chunk(c, self.n_chunks, &self.obj.weights(w))
        };
        *self.sums[c].lock().unwrap_or_else(PoisonError::into_inner) = Some(sums);
        self.done.fetch_add(1, Ordering::Release);
        true
    }

    /// A helper's loop: take chunks as passes are published, until the fit ends.
    fn help(&self) {
        let mut idle = 0;
        while !self.stop.load(Ordering::Acquire) {
            if self.work() {
                idle = 0;
            } else if idle < SPINS {
                idle += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Ends a team's fit when dropped, also if the fit fails or panics, so no helper is left
/// spinning and the enclosing `rayon::scope` returns.
struct EndTeam<'t, 'o, 'a>(&'t Team<'o, 'a>);

impl Drop for EndTeam<'_, '_, '_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

/// Computes the block sums of a whole pass elsewhere: a data-parallel refit's shards
/// (`distributed`). The blocks come back in block order, all of them.
pub trait BlockEval: Sync {
    /// Block sums of every block of the pass at `w` (the parameter layout of [`Objective`]).
    fn block_sums(&self, w: &[f64]) -> Result<Vec<kernel::ChunkSums>, TrainError>;
}

/// A point, its cost and its gradient.
type Evaluated = (Array1<f64>, f64, Array1<f64>);

/// argmin's view of the objective; caches the last evaluation because L-BFGS and the line
/// search ask for cost and gradient at the same point separately.
struct Problem<'p, 'a> {
    obj: &'p Objective<'a>,
    team: Option<&'p Team<'p, 'a>>,
    remote: Option<&'p dyn BlockEval>,
    /// Why a remote pass failed: argmin only carries a message, the fit returns this.
    failure: Arc<Mutex<Option<TrainError>>>,
    cache: Mutex<Option<Evaluated>>,
    /// Evaluations so far. Outside the problem: a failed line search ends the fit with the
    /// problem inside its own run, and the count must survive it.
    evals: Arc<AtomicUsize>,
}

impl Problem<'_, '_> {
    /// Loss and gradient at `p`, from the cache when `p` was the last point. A NaN is an
    /// error: argmin's line search does not stop on one (a NaN in the data once kept a fit
    /// running for minutes), so the fit fails with this error instead.
    fn eval(&self, p: &Array1<f64>) -> Result<(f64, Array1<f64>), argmin::core::Error> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cp, c, g)) = cache.as_ref()
            && cp == p
        {
            return Ok((*c, g.clone()));
        }
        self.evals.fetch_add(1, Ordering::Relaxed);
        let (c, g) = if let Some(remote) = self.remote {
            let w = p.to_vec();
            let blocks = remote.block_sums(&w).map_err(|e| {
                let msg = e.to_string();
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                argmin::core::Error::msg(msg)
            })?;
            if blocks.len() != blocks_of(self.obj) {
                let e = TrainError::Solver(format!(
                    "a data-parallel pass returned {} block sums, expected {}",
                    blocks.len(),
                    blocks_of(self.obj)
                ));
                let msg = e.to_string();
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                return Err(argmin::core::Error::msg(msg));
            }
            self.obj.total_blocks(&w, &blocks)
        } else if let Some(team) = self.team {
            match p.as_slice() {
                Some(w) => team.eval(w),
                None => team.eval(&p.to_vec()),
            }
        } else {
            // The kernel streams the weights as whole vectors: copy them to an aligned place.
            let mut buf = Vec::new();
            let w = kernel::aligned_zeros(&mut buf, p.len());
            for (d, s) in w.iter_mut().zip(p) {
                *d = *s;
            }
            self.obj.eval(w)
        };
        if c.is_nan() || g.iter().any(|v| v.is_nan()) {
            return Err(argmin::core::Error::msg(
                "the loss or its gradient is NaN (non-finite values in the standardised data?)",
            ));
        }
        let g = Array1::from(g);
        *cache = Some((p.clone(), c, g.clone()));
        Ok((c, g))
    }
}

fn blocks_of(obj: &Objective<'_>) -> usize {
    blocks(obj.n())
}

impl CostFunction for Problem<'_, '_> {
    type Param = Array1<f64>;
    type Output = f64;

    fn cost(&self, p: &Self::Param) -> Result<Self::Output, argmin::core::Error> {
        Ok(self.eval(p)?.0)
    }
}

impl Gradient for Problem<'_, '_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;

    fn gradient(&self, p: &Self::Param) -> Result<Self::Gradient, argmin::core::Error> {
        Ok(self.eval(p)?.1)
    }
}

impl<'a> Fit<Rows<'a>, Labels<'a>, TrainError> for ValidLogisticParams {
    type Object = LinearModel;

    fn fit(&self, data: &DatasetBase<Rows<'a>, Labels<'a>>) -> Result<LinearModel, TrainError> {
        let records = data.records;
        let labels = data.targets;
        if labels.n_classes < 2 {
            return Err(TrainError::param("classes", "need at least 2 classes"));
        }
        if records.nsamples() == 0 {
            return Err(TrainError::param("rows", "no training rows"));
        }
        match self.solver {
            SolverKind::Lbfgs => self.fit_lbfgs(records, labels),
            SolverKind::Linfa => self.fit_linfa(records, labels),
        }
    }
}

impl ValidLogisticParams {
    fn fit_lbfgs<'a>(
        &self,
        records: Rows<'a>,
        labels: Labels<'a>,
    ) -> Result<LinearModel, TrainError> {
        let obj = Objective::new(records, labels, self.alpha, self.spread == Spread::Shared);
        let n_chunks = chunks(obj.n());
        // Helpers only for threads that have a core of their own: a spinning helper on a
        // shared core would take time from the leader.
        let cores = cores();
        let helpers = rayon::current_num_threads().min(cores).saturating_sub(1);
        if self.spread != Spread::Dedicated || helpers == 0 || n_chunks < 2 {
            return self.lbfgs(&obj, None);
        }
        let team = Team::new(&obj, n_chunks);
        rayon::scope(|s| {
            for _ in 0..helpers {
                s.spawn(|_| team.help());
            }
            let _end = EndTeam(&team);
            self.lbfgs(&obj, Some(&team))
        })
    }

    /// L-BFGS ([`Lbfgs`], argmin's line search and executor) on `obj`, each pass computed
    /// by `team` when there is one.
    fn lbfgs<'p, 'a>(
        &self,
        obj: &'p Objective<'a>,
        team: Option<&'p Team<'p, 'a>>,
    ) -> Result<LinearModel, TrainError> {
        self.run(obj, team, None, Lbfgs::new(10, self.tol, TOL_COST))
    }

    /// The L-BFGS fit with every pass computed by `remote` (data-parallel shards); the
    /// same numbers in the same order as a local fit, so the same model bit for bit.
    pub fn fit_remote<'a>(
        &self,
        records: Rows<'a>,
        labels: Labels<'a>,
        remote: &dyn BlockEval,
    ) -> Result<LinearModel, TrainError> {
        if self.solver != SolverKind::Lbfgs {
            return Err(TrainError::param(
                "--solver",
                "a data-parallel fit (--shards) needs the lbfgs solver",
            ));
        }
        if labels.n_classes < 2 {
            return Err(TrainError::param("classes", "need at least 2 classes"));
        }
        if records.nsamples() == 0 {
            return Err(TrainError::param("rows", "no training rows"));
        }
        let obj = Objective::new(records, labels, self.alpha, false);
        self.run(&obj, None, Some(remote), Lbfgs::new(10, self.tol, TOL_COST))
    }

    /// `solver` from the start point (zeros or the warm start) to its end, as a model.
    fn run<'p, 'a, S>(
        &self,
        obj: &'p Objective<'a>,
        team: Option<&'p Team<'p, 'a>>,
        remote: Option<&'p dyn BlockEval>,
        solver: S,
    ) -> Result<LinearModel, TrainError>
    where
        S: Solver<Problem<'p, 'a>, Iter>,
    {
        let (k, f) = (obj.k, obj.x.ncols());
        let dim = obj.dim();
        let evals = Arc::new(AtomicUsize::new(0));
        let failure = Arc::new(Mutex::new(None));
        let problem = Problem {
            obj,
            team,
            remote,
            failure: Arc::clone(&failure),
            cache: Mutex::new(None),
            evals: Arc::clone(&evals),
        };
        let res = Executor::new(problem, solver)
            .configure(|st| {
                let init = match &self.warm_start {
                    Some(w) if w.len() == dim => Array1::from(w.clone()),
                    _ => Array1::zeros(dim),
                };
                st.param(init).max_iters(self.max_iter)
            })
            .ctrlc(false)
            .timer(false)
            .run();
        // A failed remote pass is an error even when argmin carried on: its line search
        // can swallow an evaluation's error and end the run "successfully" at the last
        // good point, which must never be published as the model.
        if let Some(e) = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        let res = res.map_err(|e| TrainError::Solver(e.to_string()))?;
        let state = res.state();
        let iterations = state.get_iter();
        let status = state.get_termination_status().clone();
        let converged = matches!(
            status,
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        );
        let termination = status.to_string();
        let evaluations = evals.load(Ordering::Relaxed);
        let params = state
            .get_best_param()
            .or_else(|| state.get_param())
            .cloned()
            .unwrap_or_else(|| Array1::zeros(dim));
        let flat = params.to_vec();
        let coef = Array2::from_shape_vec((k, f), flat[..k * f].to_vec())
            .map_err(|e| TrainError::Solver(e.to_string()))?;
        let intercept = Array1::from(flat[k * f..].to_vec());
        if coef.iter().chain(intercept.iter()).any(|v| !v.is_finite()) {
            return Err(TrainError::Solver(
                "the fit diverged (non-finite coefficients)".into(),
            ));
        }
        Ok(LinearModel {
            coef,
            intercept,
            iterations,
            evaluations,
            converged,
            termination,
        })
    }

    fn fit_linfa<'a>(
        &self,
        records: Rows<'a>,
        labels: Labels<'a>,
    ) -> Result<LinearModel, TrainError> {
        let f = records.x.ncols();
        let idx: Vec<usize> = records
            .rows
            .map_or_else(|| (0..records.x.nrows()).collect(), <[usize]>::to_vec);
        let x = records.x.select(Axis(0), &idx);
        let y: Array1<usize> = idx.iter().map(|&i| labels.y[i]).collect();
        // linfa's objective is the *sum* of losses, so its gradient is n times ours.
        #[allow(clippy::cast_precision_loss)]
        let tol = self.tol * idx.len() as f64;
        let ds = Dataset::new(x, y);
        if labels.n_classes == 2 {
            let fitted = linfa_logistic::LogisticRegression::default()
                .alpha(self.alpha)
                .max_iterations(self.max_iter)
                .gradient_tolerance(tol)
                .fit(&ds)?;
            // linfa's positive class is the more frequent one; ours is class 1.
            let sign = if fitted.labels().pos.class == 1 {
                1.0
            } else {
                -1.0
            };
            let coef = fitted
                .params()
                .mapv(|v| sign * v)
                .into_shape_with_order((1, f))
                .map_err(|e| TrainError::Solver(e.to_string()))?;
            Ok(LinearModel {
                coef,
                intercept: Array1::from(vec![sign * fitted.intercept()]),
                iterations: 0,
                evaluations: 0,
                converged: true,
                termination: "linfa-logistic".into(),
            })
        } else {
            let fitted = linfa_logistic::MultiLogisticRegression::default()
                .alpha(self.alpha)
                .max_iterations(self.max_iter)
                .gradient_tolerance(tol)
                .fit(&ds)?;
            if fitted.classes() != (0..labels.n_classes).collect::<Vec<_>>().as_slice() {
                return Err(TrainError::Solver(
                    "linfa-logistic: some class has no training rows".into(),
                ));
            }
            Ok(LinearModel {
                coef: fitted.params().t().to_owned(),
                intercept: fitted.intercept().clone(),
                iterations: 0,
                evaluations: 0,
                converged: true,
                termination: "linfa-logistic".into(),
            })
        }
    }
}

/// Fit `params` on `records` / `labels` (a shorthand for building a linfa dataset).
pub fn fit<'a>(
    params: &LogisticParams,
    records: Rows<'a>,
    labels: Labels<'a>,
) -> Result<LinearModel, TrainError> {
    params.fit(&DatasetBase::new(records, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{GenerateSpec, apply_scaler, fit_scaler, generate, parse};
    use argmin::core::{KV, Problem as ArgminProblem};
    use argmin::solver::linesearch::MoreThuenteLineSearch;
    use argmin::solver::quasinewton::LBFGS;

    fn toy(classes: usize, rows: usize) -> (Array2<f64>, Vec<usize>) {
        let mut buf = Vec::new();
        generate(
            &GenerateSpec {
                rows,
                features: 6,
                classes,
                seed: 3,
            },
            &mut buf,
        )
        .expect("gen");
        let mut d = parse(buf.as_slice(), "toy", "label").expect("parse");
        let s = fit_scaler(d.x.view()).expect("finite");
        apply_scaler(d.x.view_mut(), &s);
        (d.x, d.y)
    }

    fn numeric_grad(obj: &Objective<'_>, w: &[f64]) -> Vec<f64> {
        let h = 1e-6;
        (0..w.len())
            .map(|i| {
                let mut a = w.to_vec();
                let mut b = w.to_vec();
                a[i] += h;
                b[i] -= h;
                (obj.eval(&a).0 - obj.eval(&b).0) / (2.0 * h)
            })
            .collect()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for classes in [2, 3] {
            let (x, y) = toy(classes, 1100); // 3 chunks
            let rows: Vec<usize> = (0..1100).rev().step_by(2).collect();
            for subset in [None, Some(rows.as_slice())] {
                let obj = Objective::new(
                    Rows {
                        x: x.view(),
                        rows: subset,
                    },
                    Labels {
                        y: &y,
                        n_classes: classes,
                    },
                    0.7,
                    false,
                );
                let w: Vec<f64> = (0..obj.dim())
                    .map(|i| ((i * 7 % 11) as f64 - 5.0) / 10.0)
                    .collect();
                let (_, g) = obj.eval(&w);
                for (a, b) in g.iter().zip(numeric_grad(&obj, &w)) {
                    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
                }
            }
        }
    }

    /// argmin's own `LBFGS` with scikit-learn's stopping rule added: what [`Lbfgs`] replaced,
    /// kept as the reference it must match bit for bit.
    struct MaxAbsGrad<S> {
        inner: S,
        tol: f64,
    }

    impl<O, S: Solver<O, Iter>> Solver<O, Iter> for MaxAbsGrad<S> {
        fn name(&self) -> &str {
            "L-BFGS (max-abs gradient test)"
        }

        fn init(
            &mut self,
            problem: &mut ArgminProblem<O>,
            state: Iter,
        ) -> Result<(Iter, Option<KV>), argmin::core::Error> {
            self.inner.init(problem, state)
        }

        fn next_iter(
            &mut self,
            problem: &mut ArgminProblem<O>,
            state: Iter,
        ) -> Result<(Iter, Option<KV>), argmin::core::Error> {
            self.inner.next_iter(problem, state)
        }

        fn terminate(&mut self, state: &Iter) -> TerminationStatus {
            if crate::lbfgs::gradient_within(state, self.tol) {
                return TerminationStatus::Terminated(TerminationReason::SolverConverged);
            }
            self.inner.terminate(state)
        }
    }

    /// Evaluates as many distinct points as it holds, then does what [`Lbfgs`] does after a
    /// failed line search: the problem has gone into the line search's own run and is
    /// dropped with it, and the fit ends.
    struct LosesTheProblem(usize);

    impl<O> Solver<O, Iter> for LosesTheProblem
    where
        O: CostFunction<Param = Array1<f64>, Output = f64>,
    {
        fn name(&self) -> &str {
            "loses the problem"
        }

        fn next_iter(
            &mut self,
            problem: &mut ArgminProblem<O>,
            state: Iter,
        ) -> Result<(Iter, Option<KV>), argmin::core::Error> {
            let p = state
                .get_param()
                .cloned()
                .ok_or_else(|| argmin::core::Error::msg("no start"))?;
            for i in 0..self.0 {
                #[allow(clippy::cast_precision_loss)]
                problem.cost(&p.mapv(|v| v + i as f64))?;
            }
            drop(problem.take_problem());
            Ok((
                state.terminate_with(TerminationReason::SolverExit("lost".into())),
                None,
            ))
        }
    }

    /// The report's evaluation count survives a fit whose last line search failed (it read
    /// 0 when the count lived in the lost problem).
    #[test]
    fn evaluations_are_counted_when_the_problem_is_lost() {
        let (x, y) = toy(3, 300);
        let labels = Labels {
            y: &y,
            n_classes: 3,
        };
        let rows = Rows {
            x: x.view(),
            rows: None,
        };
        let p = LogisticParams::default().check().expect("params");
        let obj = Objective::new(rows, labels, p.alpha, false);
        let m = p.run(&obj, None, None, LosesTheProblem(5)).expect("ends");
        assert_eq!(m.evaluations, 5);
        assert!(!m.converged);
        assert!(m.termination.contains("lost"), "{}", m.termination);
    }

    /// The same fit through argmin's `LBFGS` (reference) and through [`Lbfgs`].
    fn both_solvers<'a>(
        p: &ValidLogisticParams,
        rows: Rows<'a>,
        labels: Labels<'a>,
    ) -> (LinearModel, LinearModel) {
        let obj = Objective::new(rows, labels, p.alpha, false);
        let ours = p.lbfgs(&obj, None).expect("ours");
        let argmin = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(0.0)
            .and_then(|s| s.with_tolerance_cost(TOL_COST))
            .expect("argmin lbfgs");
        let reference = p
            .run(
                &obj,
                None,
                None,
                MaxAbsGrad {
                    inner: argmin,
                    tol: p.tol,
                },
            )
            .expect("argmin");
        (ours, reference)
    }

    #[test]
    fn lean_lbfgs_takes_argmins_steps_bit_for_bit() {
        let bits = |m: &LinearModel| -> Vec<u64> {
            m.coef
                .iter()
                .chain(m.intercept.iter())
                .map(|v| v.to_bits())
                .collect()
        };
        for (classes, rows) in [(2, 400), (3, 900), (7, 2000)] {
            let (x, y) = toy(classes, rows);
            let labels = Labels {
                y: &y,
                n_classes: classes,
            };
            let all = Rows {
                x: x.view(),
                rows: None,
            };
            let fold: Vec<usize> = (0..rows).filter(|i| i % 5 != 2).collect();
            let part = Rows {
                x: x.view(),
                rows: Some(&fold),
            };
            let mut previous: Option<LinearModel> = None;
            // A penalty path with warm starts (as in cross-validation), a tight tolerance
            // (past 10 pairs, so the history wraps), and an iteration cap that stops early.
            for (alpha, tol, max_iter, r) in [
                (10.0, 1e-4, 1000, part),
                (1.0, 1e-4, 1000, part),
                (0.01, 1e-10, 1000, all),
                (0.1, 1e-10, 7, all),
            ] {
                let p = LogisticParams::default()
                    .alpha(alpha)
                    .tol(tol)
                    .max_iter(max_iter)
                    .warm_start(previous.as_ref())
                    .check()
                    .expect("params");
                let (ours, reference) = both_solvers(&p, r, labels);
                assert_eq!(
                    bits(&ours),
                    bits(&reference),
                    "{classes} classes, alpha {alpha}"
                );
                assert_eq!(ours.iterations, reference.iterations);
                assert_eq!(ours.evaluations, reference.evaluations);
                assert_eq!(ours.converged, reference.converged);
                previous = Some(ours);
            }
            assert!(previous.is_some_and(|m| m.iterations == 7 && !m.converged));
        }
    }

    #[test]
    fn parallel_chunks_are_bit_identical() {
        let (x, y) = toy(3, 3000);
        let labels = Labels {
            y: &y,
            n_classes: 3,
        };
        let seq = fit(
            &LogisticParams::default(),
            Rows {
                x: x.view(),
                rows: None,
            },
            labels,
        )
        .expect("fit");
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            for spread in [Spread::Shared, Spread::Dedicated] {
                let par = pool
                    .install(|| {
                        fit(
                            &LogisticParams::default().spread(spread),
                            Rows {
                                x: x.view(),
                                rows: None,
                            },
                            labels,
                        )
                    })
                    .expect("fit");
                assert_eq!(seq, par, "{spread:?} on {threads} threads");
            }
        }
        assert!(seq.converged, "{}", seq.termination);
    }

    #[test]
    fn both_solvers_agree_on_a_binary_problem() {
        let (x, y) = toy(2, 400);
        let r = Rows {
            x: x.view(),
            rows: None,
        };
        let l = Labels {
            y: &y,
            n_classes: 2,
        };
        let p = LogisticParams::default().alpha(1.0).tol(1e-9);
        let ours = fit(&p, r, l).expect("ours");
        let theirs = fit(&p.clone().solver(SolverKind::Linfa), r, l).expect("linfa");
        for (a, b) in ours
            .coef
            .iter()
            .chain(&ours.intercept)
            .zip(theirs.coef.iter().chain(&theirs.intercept))
        {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let all: Vec<usize> = (0..y.len()).collect();
        assert_eq!(
            ours.predict_rows(x.view(), &all),
            theirs.predict_rows(x.view(), &all)
        );
    }

    #[test]
    fn chunks_are_even_in_number_near_equal_in_size_and_cover_every_row() {
        assert_eq!(chunks(0), 0);
        assert_eq!(chunks(1437), 6);
        for n in [1, 2, 3, 255, 256, 257, 512, 513, 1149, 1437, 100_000] {
            let k = chunks(n);
            assert_eq!(k % 2, 0, "{n}");
            let ranges: Vec<(usize, usize)> = (0..k).map(|c| chunk_range(c, k, n)).collect();
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges[k - 1].1, n);
            for w in ranges.windows(2) {
                assert_eq!(w[0].1, w[1].0, "{n}: contiguous");
            }
            let sizes: Vec<usize> = ranges.iter().map(|(a, b)| b - a).collect();
            let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
            assert!(hi <= Some(&CHUNK_ROWS), "{n}");
            assert!(
                hi.zip(lo).is_some_and(|(h, l)| h - l <= 1),
                "{n}: {sizes:?}"
            );
        }
    }

    /// A NaN in the data (which `prepare` refuses, but a caller of the library may not)
    /// ends the fit with an error instead of keeping argmin's line search going forever.
    #[test]
    fn a_nan_in_the_data_is_an_error_not_a_hang() {
        let (mut x, y) = toy(3, 600);
        x[[7, 2]] = f64::NAN;
        for spread in [Spread::Off, Spread::Dedicated] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("pool");
            let r = pool.install(|| {
                fit(
                    &LogisticParams::default().spread(spread),
                    Rows {
                        x: x.view(),
                        rows: None,
                    },
                    Labels {
                        y: &y,
                        n_classes: 3,
                    },
                )
            });
            let e = r.expect_err("a NaN cannot be fitted").to_string();
            assert!(e.contains("NaN"), "{e}");
        }
    }

    #[test]
    fn bad_params_are_errors() {
        let (x, y) = toy(2, 20);
        let r = Rows {
            x: x.view(),
            rows: None,
        };
        let l = Labels {
            y: &y,
            n_classes: 2,
        };
        assert!(fit(&LogisticParams::default().alpha(f64::NAN), r, l).is_err());
        assert!(fit(&LogisticParams::default().tol(0.0), r, l).is_err());
        assert!(fit(&LogisticParams::default().max_iter(0), r, l).is_err());
    }
}
