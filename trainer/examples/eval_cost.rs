//! Time one objective evaluation and one fit on the digits training rows:
//! `cargo run --release -p trainer --example eval_cost`.
use std::time::Instant;

use trainer::solver::{self, Labels, LogisticParams, Objective, Rows, Spread};
use trainer::train::{TrainConfig, prepare};

fn main() -> Result<(), trainer::TrainError> {
    let cfg = TrainConfig {
        data: "data/digits.csv".into(),
        test_data: None,
        label: "label".into(),
        test_fraction: 0.2,
        folds: 5,
        alphas: vec![1.0],
        seed: 42,
        solver: solver::SolverKind::Lbfgs,
        max_iter: 1000,
        tol: 1e-4,
        name: "digits".into(),
    };
    let p = prepare(&cfg)?;
    let y = &p.y[..p.n_train];
    let rows = Rows {
        x: p.train_x(),
        rows: None,
    };
    let labels = Labels {
        y,
        n_classes: p.classes.len(),
    };
    {
        // Yardstick: the two matrix products of one evaluation through ndarray
        // (matrixmultiply), on the same shapes.
        let x = p.train_x().to_owned();
        let w = ndarray::Array2::<f64>::from_elem((p.classes.len(), x.ncols()), 0.01);
        let d = ndarray::Array2::<f64>::from_elem((x.nrows(), p.classes.len()), 0.02);
        let mut best = f64::INFINITY;
        let mut acc = 0.0;
        for _ in 0..300 {
            let t = Instant::now();
            for _ in 0..5 {
                let s = x.dot(&w.t());
                let g = d.t().dot(&x);
                acc += s[[0, 0]] + g[[0, 0]];
            }
            best = best.min(t.elapsed().as_secs_f64() / 5.0 * 1e6);
        }
        println!("ndarray X.W^T + D^T.X: {best:.1} us ({acc:.3})");
    }
    for parallel in [false, true] {
        let obj = Objective::new(rows, labels, 1.0, parallel);
        let w: Vec<f64> = (0..obj.dim()).map(|i| (i % 7) as f64 * 0.01).collect();
        // The fastest of many short batches: robust to other work on a shared machine.
        let mut best = f64::INFINITY;
        let mut acc = 0.0;
        for _ in 0..300 {
            let t = Instant::now();
            for _ in 0..5 {
                acc += obj.eval(&w).0;
            }
            best = best.min(t.elapsed().as_secs_f64() / 5.0 * 1e6);
        }
        println!("eval parallel={parallel}: {best:.1} us (fastest batch; {acc:.3})");
        let mut best = f64::INFINITY;
        let mut evals = 0;
        for _ in 0..40 {
            let t = Instant::now();
            let m = solver::fit(
                &LogisticParams::default().spread(if parallel {
                    Spread::Dedicated
                } else {
                    Spread::Off
                }),
                rows,
                labels,
            )?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            evals = m.evaluations;
        }
        println!("fit parallel={parallel}: {best:.2} ms (fastest), {evals} evaluations");
    }
    Ok(())
}
