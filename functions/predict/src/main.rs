//! `predict`: serve the model under AWS Lambda (when `AWS_LAMBDA_RUNTIME_API` is set) or
//! over plain HTTP on `HOST:PORT`; `predict --check` health-checks a running server.
//! The logic lives in the library; this file only wires it up.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use predict::{AppState, Config, ServerLimits, StartupError};

/// How a run failed: during start-up (under Lambda, reported to the Runtime API as an
/// init error) or afterwards.
enum Failure {
    Init {
        error_type: &'static str,
        error: anyhow::Error,
    },
    Run(anyhow::Error),
}

impl Failure {
    fn init(error_type: &'static str, error: impl Into<anyhow::Error>) -> Self {
        Self::Init {
            error_type,
            error: error.into(),
        }
    }
}

impl From<StartupError> for Failure {
    fn from(e: StartupError) -> Self {
        // Its message already ends with its source's: keep it as one message, so the
        // `{:#}` chain does not say it twice.
        Self::init(e.lambda_error_type(), anyhow::Error::msg(e.to_string()))
    }
}

fn main() -> ExitCode {
    let lambda_api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|v| !v.trim().is_empty());
    match run(lambda_api.as_deref()) {
        Ok(code) => code,
        Err(Failure::Run(e)) => {
            tracing::error!(error = format!("{e:#}"), "failed");
            eprintln!("predict: error: {e:#}");
            ExitCode::FAILURE
        }
        Err(Failure::Init { error_type, error }) => {
            let message = format!("{error:#}");
            tracing::error!(error = %message, error_type, "start-up failed");
            eprintln!("predict: error: {message}");
            if let Some(api) = &lambda_api {
                report_init_error(api, error_type, &message);
            }
            ExitCode::FAILURE
        }
    }
}

/// Tell Lambda why start-up failed, so the invocation that started this instance gets the
/// reason rather than a bare "Runtime exited". A report that fails is logged, not fatal:
/// the process exits non-zero either way.
fn report_init_error(api: &str, error_type: &str, message: &str) {
    let timeout = predict::init_error::REPORT_TIMEOUT;
    match predict::init_error::report_init_error(api, error_type, message, timeout) {
        Ok(status) => tracing::info!(status, error_type, "init error reported"),
        Err(e) => {
            tracing::error!(error = %e, "cannot report the init error");
            eprintln!("predict: cannot report the init error to {api}: {e}");
        }
    }
}

fn run(lambda_api: Option<&str>) -> Result<ExitCode, Failure> {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // A bad flag or variable is an init error under Lambda; --help and --version
            // are not errors. Either way clap prints and exits as usual (2 on an error).
            if let Some(api) = lambda_api.filter(|_| e.use_stderr()) {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("invalid configuration");
                let message = first.strip_prefix("error: ").unwrap_or(first);
                report_init_error(api, "Runtime.InvalidConfig", message);
            }
            e.exit()
        }
    };
    let lambda = lambda_api.is_some();
    if config.check {
        let ok = predict::check_health(config.port, Duration::from_secs(2));
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let json = match config.log_format.as_deref() {
        None => lambda,
        Some("json") => true,
        Some("text") => false,
        Some(other) => {
            return Err(Failure::init(
                "Runtime.InvalidConfig",
                anyhow::anyhow!("LOG_FORMAT must be `text` or `json`, not {other:?}"),
            ));
        }
    };
    predict::init_tracing(json);

    // The plain server's connection limits, checked before the model is loaded.
    let limits = if lambda {
        None
    } else {
        Some(ServerLimits::from_config(&config)?)
    };

    // Load before any runtime exists: the store API is synchronous, and a bad model must
    // stop start-up before a single request is accepted.
    let started = Instant::now();
    let state = AppState::load_for(&config, lambda)?;
    let served = state.served();
    let a = served.artifact();
    tracing::info!(
        model = %config.model_uri,
        name = %a.name,
        version = served.version(),
        model_id = %a.model_id,
        load_ms = started.elapsed().as_secs_f64() * 1e3,
        "model loaded"
    );

    if lambda {
        // One event at a time per instance: a single-threaded runtime is all Lambda needs.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .map_err(|e| Failure::init("Runtime.InitError", e))?;
        rt.block_on(predict::run_lambda(state))
            .map_err(|e| Failure::Run(anyhow::anyhow!("lambda runtime: {e}")))?;
    } else if let Some(limits) = limits {
        // Worker threads default to the number of cores (TOKIO_WORKER_THREADS overrides).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .map_err(Failure::Run)?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
            let addr = listener.local_addr().context("reading the bound address")?;
            tracing::info!(%addr, "listening");
            tokio::spawn(state.clone().run_refresh());
            predict::serve(listener, state, limits)
                .await
                .context("serving")
        })
        .map_err(Failure::Run)?;
        tracing::info!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}
