//! L-BFGS for argmin's [`Executor`](argmin::core::Executor), without its per-iteration
//! allocations.
//!
//! argmin 0.11's `LBFGS` builds every vector of its two-loop recursion anew (`q - y·a`, `s·b`,
//! ...: about 60 vectors of `dim` per iteration) and recomputes each stored pair's `y·s` on
//! every iteration. On digits that bookkeeping was a tenth of a sequential fit and a fifth of a
//! two-core one. This solver keeps the history in place (a ring of preallocated pairs with
//! their `y·s` computed once) and works in one scratch vector, and otherwise does the
//! same arithmetic in the same order: the same dot products (ndarray's `dot`), the same
//! separately rounded products and differences, argmin's own More-Thuente line search, run
//! the way argmin's `LBFGS` runs it. A fit therefore takes the same steps and ends on the same
//! bits as with argmin's `LBFGS`; a test checks that on several problems.
//!
//! Its stopping rule is scikit-learn's: converged when every component of the gradient is at
//! most `tol` in absolute value (scipy's `pgtol`), or when the cost changes by less than
//! `tol_cost` in one iteration.

use argmin::core::{
    CostFunction, Executor, Gradient, IterState, KV, LineSearch, Problem, Solver, State,
    TerminationReason, TerminationStatus,
};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use ndarray::Array1;

/// The state argmin keeps for this solver.
pub(crate) type Iter = IterState<Array1<f64>, Array1<f64>, (), (), (), f64>;

/// The cost-change test every fit uses: converged when one iteration moves the cost by less
/// than this.
pub(crate) const TOL_COST: f64 = 64.0 * f64::EPSILON;

/// scikit-learn's gradient test (scipy's `pgtol`): every component of the gradient in `state`
/// is at most `tol` in absolute value.
pub(crate) fn gradient_within(state: &Iter, tol: f64) -> bool {
    state
        .get_gradient()
        .is_some_and(|g| g.iter().all(|v| v.abs() <= tol))
}

/// One stored correction pair: `s = x_{k+1} - x_k`, `y = g_{k+1} - g_k`, and `y·s`.
struct Pair {
    s: Array1<f64>,
    y: Array1<f64>,
    ys: f64,
}

/// Limited-memory BFGS with a More-Thuente line search and scikit-learn's stopping rule.
pub(crate) struct Lbfgs {
    /// Pairs kept (scikit-learn and scipy: 10).
    m: usize,
    tol: f64,
    tol_cost: f64,
    linesearch: MoreThuenteLineSearch<Array1<f64>, Array1<f64>, f64>,
    /// The newest pair last; at most `m`.
    pairs: std::collections::VecDeque<Pair>,
    /// The two-loop recursion's `a_i` for each stored pair, oldest first.
    alpha: Vec<f64>,
    /// Scratch for the direction (`q`, then `r`).
    q: Array1<f64>,
}

impl Lbfgs {
    /// `m` pairs; converged when `max |g_i| <= tol` or the cost moves by less than
    /// `tol_cost`.
    pub(crate) fn new(m: usize, tol: f64, tol_cost: f64) -> Self {
        let m = m.max(1);
        Self {
            m,
            tol,
            tol_cost,
            linesearch: MoreThuenteLineSearch::new(),
            pairs: std::collections::VecDeque::with_capacity(m),
            alpha: Vec::with_capacity(m),
            q: Array1::zeros(0),
        }
    }

    /// The search direction `-H g` by the two-loop recursion, into `self.q`.
    fn direction(&mut self, grad: &Array1<f64>) {
        if self.q.len() == grad.len() {
            self.q.assign(grad);
        } else {
            self.q = grad.clone();
        }
        let gamma = self
            .pairs
            .back()
            .map_or(1.0, |p| p.s.dot(&p.y) / p.y.dot(&p.y));
        self.alpha.clear();
        self.alpha.resize(self.pairs.len(), 0.0);
        for (i, p) in self.pairs.iter().enumerate().rev() {
            let a = p.s.dot(&self.q) * (1.0 / p.ys);
            self.q.zip_mut_with(&p.y, |q, y| *q -= y * a);
            self.alpha[i] = a;
        }
        self.q.mapv_inplace(|q| q * gamma);
        for (p, &a) in self.pairs.iter().zip(&self.alpha) {
            let b = p.y.dot(&self.q) * (1.0 / p.ys);
            self.q.zip_mut_with(&p.s, |r, s| *r += s * (a - b));
        }
        self.q.mapv_inplace(|r| -r);
    }

    /// Store the pair from `x0, g0` to `x1, g1`, reusing the oldest pair's vectors when the
    /// history is full.
    fn push(&mut self, x0: &Array1<f64>, g0: &Array1<f64>, x1: &Array1<f64>, g1: &Array1<f64>) {
        let mut pair = if self.pairs.len() >= self.m {
            self.pairs.pop_front()
        } else {
            None
        }
        .unwrap_or_else(|| Pair {
            s: Array1::zeros(x1.len()),
            y: Array1::zeros(g1.len()),
            ys: 0.0,
        });
        ndarray::Zip::from(&mut pair.s)
            .and(x1)
            .and(x0)
            .for_each(|s, a, b| *s = a - b);
        ndarray::Zip::from(&mut pair.y)
            .and(g1)
            .and(g0)
            .for_each(|y, a, b| *y = a - b);
        pair.ys = pair.y.dot(&pair.s);
        self.pairs.push_back(pair);
    }
}

impl<O> Solver<O, Iter> for Lbfgs
where
    O: CostFunction<Param = Array1<f64>, Output = f64>
        + Gradient<Param = Array1<f64>, Gradient = Array1<f64>>,
{
    fn name(&self) -> &str {
        "L-BFGS (max-abs gradient test)"
    }

    fn init(
        &mut self,
        problem: &mut Problem<O>,
        mut state: Iter,
    ) -> Result<(Iter, Option<KV>), argmin::core::Error> {
        let param = state
            .take_param()
            .ok_or_else(|| argmin::core::Error::msg("L-BFGS needs a starting point"))?;
        let cost = if state.get_cost().is_infinite() {
            problem.cost(&param)?
        } else {
            state.get_cost()
        };
        let grad = match state.take_gradient() {
            Some(g) => g,
            None => problem.gradient(&param)?,
        };
        Ok((state.param(param).cost(cost).gradient(grad), None))
    }

    fn next_iter(
        &mut self,
        problem: &mut Problem<O>,
        mut state: Iter,
    ) -> Result<(Iter, Option<KV>), argmin::core::Error> {
        let param = state
            .take_param()
            .ok_or_else(|| argmin::core::Error::msg("L-BFGS: no current point"))?;
        let prev_grad = state
            .take_gradient()
            .ok_or_else(|| argmin::core::Error::msg("L-BFGS: no current gradient"))?;
        let cur_cost = state.get_cost();
        self.direction(&prev_grad);
        let mut linesearch = self.linesearch.clone();
        linesearch.search_direction(self.q.clone());
        let inner = problem
            .take_problem()
            .ok_or_else(|| argmin::core::Error::msg("L-BFGS: the problem is gone"))?;
        let searched = Executor::new(inner, linesearch)
            .configure(|c| {
                c.param(param.clone())
                    .gradient(prev_grad.clone())
                    .cost(cur_cost)
            })
            .ctrlc(false)
            .timer(false)
            .run();
        let mut res = match searched {
            Ok(res) => res,
            // As argmin's LBFGS: a failed line search ends the fit at the best point so far
            // (the problem went into the failed run and is not needed again).
            Err(e) => {
                return Ok((
                    state.terminate_with(TerminationReason::SolverExit(format!(
                        "Line search terminated with: '{e}'"
                    ))),
                    None,
                ));
            }
        };
        let next_cost = res.state.get_cost();
        let xk1 = res.state.take_param().ok_or_else(|| {
            argmin::core::Error::msg("L-BFGS: the line search ended with no point")
        })?;
        problem.problem = res.problem.take_problem();
        problem.consume_func_counts(res.problem);
        let grad = problem.gradient(&xk1)?;
        self.push(&param, &prev_grad, &xk1, &grad);
        Ok((state.param(xk1).cost(next_cost).gradient(grad), None))
    }

    fn terminate(&mut self, state: &Iter) -> TerminationStatus {
        if gradient_within(state, self.tol) {
            return TerminationStatus::Terminated(TerminationReason::SolverConverged);
        }
        if (state.get_prev_cost() - state.get_cost()).abs() < self.tol_cost {
            return TerminationStatus::Terminated(TerminationReason::SolverConverged);
        }
        TerminationStatus::NotTerminated
    }
}
