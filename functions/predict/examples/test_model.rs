//! Publish a test model into a local store, for the Lambda suite and the benchmark when
//! the trainer is not available: a nearest-centroid linear model of `data/digits.csv`
//! built with the model crate alone (see `tests/support`).
//!
//! `cargo run -p predict --example test_model -- STORE_DIR` publishes `STORE_DIR/digits`.

#[path = "../tests/support/mod.rs"]
mod support;

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: test_model STORE_DIR");
        return std::process::ExitCode::FAILURE;
    };
    let (d, _, _) = support::digits_model();
    let all: Vec<usize> = (0..d.rows.len()).collect();
    let a = support::centroid_artifact(&d, &all, "digits");
    let store = model::store::LocalStore::new(&dir);
    match model::store::publish(&store, &a) {
        Ok(p) => {
            println!("{}", p.location);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("test_model: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
