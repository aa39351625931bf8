//! `trainer`: see `trainer --help`. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = trainer::cli::Cli::parse();
    match trainer::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
