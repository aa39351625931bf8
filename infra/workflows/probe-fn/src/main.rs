//! `wf-probe`: a Lambda function (lambda_runtime, JSON events) that the workflow tests call
//! through moto's Step Functions interpreter and `cargo lambda watch`.
//!
//! Event fields, all optional:
//! - `key` (string) and `fail_first` (number): the first `fail_first` attempts for `key` fail
//!   (attempts are counted in files under `PROBE_STATE_DIR`, so they survive across the
//!   emulator's worker processes); later attempts succeed.
//! - `fail` (bool): every attempt fails.
//! - `sleep_ms` (number, at most 10,000): sleep before answering, to make overlap observable.
//! - `require_results` (array): fail, naming the first index, if any element is null. A
//!   finishing task checks its Distributed Map's results this way: moto 5.2.5 turns a failed
//!   iteration into a null result instead of failing the Map (AWS fails it).
//!
//! The answer echoes the event with the attempt number, the process id, the start and end
//! times in milliseconds since the Unix epoch, and `PROBE_TAG` from the environment (so a test
//! can see which configuration the function runs with).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

/// Longest sleep an event may ask for.
const MAX_SLEEP_MS: u64 = 10_000;
/// Longest `key` accepted (it names a file).
const MAX_KEY_LEN: usize = 64;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Records one more attempt for `key` and returns its number (1 for the first).
fn record_attempt(key: &str) -> Result<u64, Error> {
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("key {key:?}: 1 to {MAX_KEY_LEN} of [A-Za-z0-9_-]").into());
    }
    let dir = std::env::var_os("PROBE_STATE_DIR")
        .map(PathBuf::from)
        .ok_or("PROBE_STATE_DIR is not set (needed for key/fail_first)")?;
    let path = dir.join(format!("{key}.attempts"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{}", std::process::id()).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().count() as u64)
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let started_ms = now_ms();
    let payload = event.payload;
    let attempt = match payload.get("key").and_then(Value::as_str) {
        Some(key) => record_attempt(key)?,
        None => 1,
    };
    let sleep_ms = payload
        .get("sleep_ms")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(MAX_SLEEP_MS);
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    if let Some(results) = payload.get("require_results").and_then(Value::as_array)
        && let Some(missing) = results.iter().position(Value::is_null)
    {
        return Err(format!(
            "wf-probe: result {missing} of {} is missing (its map iteration failed)",
            results.len()
        )
        .into());
    }
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err(format!("wf-probe: asked to fail (attempt {attempt})").into());
    }
    let fail_first = payload
        .get("fail_first")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if attempt <= fail_first {
        return Err(format!("wf-probe: attempt {attempt} of {fail_first} planned failures").into());
    }
    Ok(json!({
        "echo": payload,
        "attempt": attempt,
        "pid": std::process::id(),
        "tag": std::env::var("PROBE_TAG").ok(),
        "started_ms": started_ms as u64,
        "ended_ms": now_ms() as u64,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
