//! Time the default model selection (5 folds x 8 alphas + refit) on digits, seq and par
//! interleaved, many times: `cargo run --release -p trainer --example cv_cost [RUNS]`.
use std::time::Instant;

use trainer::progress::Progress;
use trainer::solver;
use trainer::train::{Mode, TrainConfig, prepare, train};

fn main() -> Result<(), trainer::TrainError> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let cfg = TrainConfig {
        data: "data/digits.csv".into(),
        test_data: None,
        label: "label".into(),
        test_fraction: 0.2,
        folds: 5,
        alphas: trainer::cli::DEFAULT_ALPHAS
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect(),
        seed: 42,
        solver: solver::SolverKind::Lbfgs,
        max_iter: 1000,
        tol: 1e-4,
        name: "digits".into(),
    };
    let p = prepare(&cfg)?;
    let progress = Progress::hidden();
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let mut seq = Vec::new();
    let mut par = Vec::new();
    for _ in 0..runs {
        for (mode, out) in [(Mode::Seq, &mut seq), (Mode::Par, &mut par)] {
            let t = Instant::now();
            let r = train(&p, &cfg, mode, threads, &progress)?;
            let wall = t.elapsed().as_secs_f64() * 1e3;
            println!(
                "{mode:?}: cv {:.1} ms refit {:.1} ms wall {wall:.1} ms",
                r.cv_seconds * 1e3,
                r.refit_seconds * 1e3
            );
            out.push(r.fit_seconds() * 1e3);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ms, mp) = (med(&mut seq), med(&mut par));
    println!(
        "median seq {ms:.1} ms, par {mp:.1} ms: {:.2}x; fastest {:.2}x",
        ms / mp,
        seq[0] / par[0]
    );
    Ok(())
}
