//! `predict`: serve the model under AWS Lambda (when `AWS_LAMBDA_RUNTIME_API` is set) or
//! over plain HTTP on `HOST:PORT`; `predict --check` health-checks a running server.
//! The logic lives in the library; this file only wires it up.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use predict::{AppState, Config};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            eprintln!("predict: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let config = Config::parse();
    if config.check {
        let ok = predict::check_health(config.port, Duration::from_secs(2));
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let json = match config.log_format.as_deref() {
        None => lambda,
        Some("json") => true,
        Some("text") => false,
        Some(other) => anyhow::bail!("LOG_FORMAT must be `text` or `json`, not {other:?}"),
    };
    predict::init_tracing(json);

    // Load before any runtime exists: the store API is synchronous, and a bad model must
    // stop start-up before a single request is accepted.
    let started = Instant::now();
    let state = AppState::load(&config)?;
    let a = state.model().artifact();
    tracing::info!(
        model = %config.model_uri,
        name = %a.name,
        version = state.version(),
        model_id = %a.model_id,
        load_ms = started.elapsed().as_secs_f64() * 1e3,
        "model loaded"
    );

    if lambda {
        // One event at a time per instance: a single-threaded runtime is all Lambda needs.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        rt.block_on(predict::run_lambda(state))
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))?;
    } else {
        // Worker threads default to the number of cores (TOKIO_WORKER_THREADS overrides).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
            let addr = listener.local_addr().context("reading the bound address")?;
            tracing::info!(%addr, "listening");
            predict::serve(listener, state).await.context("serving")
        })?;
        tracing::info!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}
