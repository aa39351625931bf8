//! `score`: the S3-event Lambda when `AWS_LAMBDA_RUNTIME_API` is set, the command
//! otherwise. All logic lives in the library.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use score::{Args, Outcome};

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().flatten_event(true).try_init();
    } else {
        let _ = builder.with_ansi(false).try_init();
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("score: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    init_tracing(lambda);
    if lambda {
        let handler = Arc::new(args.lambda_handler()?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        rt.block_on(score::lambda::run(handler))
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    match args.run_command()? {
        Outcome::Scored(m) => {
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Missing | Outcome::Superseded => {
            anyhow::bail!("the input does not exist")
        }
    }
}
