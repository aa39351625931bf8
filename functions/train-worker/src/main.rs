//! `train-worker`: the Lambda function. Everything is in the library; this is the runtime
//! loop and one log line per task (start and end on the worker's clock, Unix ms).

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use train_worker::Worker;
use trainer::distributed::task::TaskResult;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .without_time()
        .init();
    let worker = Arc::new(Worker::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| {
            let worker = Arc::clone(&worker);
            async move { handle(worker, event.payload).await }
        },
    )))
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

async fn handle(worker: Arc<Worker>, payload: serde_json::Value) -> Result<TaskResult, Diagnostic> {
    let bytes = serde_json::to_vec(&payload).unwrap_or_default();
    let id = payload["id"].as_str().unwrap_or("?").to_string();
    let kind = payload["task"]
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default();
    let start = trainer::distributed::task::now_ms();
    tracing::info!("task {id:?} {kind} start_ms={start}");
    let out = tokio::task::spawn_blocking(move || worker.handle(&bytes))
        .await
        .map_err(|e| Diagnostic {
            error_type: "Failed".into(),
            error_message: format!("task {id:?}: the task thread failed: {e}"),
        })?;
    let end = trainer::distributed::task::now_ms();
    match out {
        Ok(r) => {
            tracing::info!(
                "task {id:?} {kind} start_ms={start} end_ms={end} loaded={} ok",
                r.loaded
            );
            Ok(r)
        }
        Err(e) => {
            tracing::warn!(
                "task {id:?} {kind} start_ms={start} end_ms={end} {}: {e}",
                e.kind()
            );
            Err(Diagnostic {
                error_type: e.kind().into(),
                error_message: e.to_string(),
            })
        }
    }
}
