//! A small process-wide tokio runtime that runs the S3 SDK's futures for synchronous
//! callers.
//!
//! `block_on` must not run on a thread that is already inside a runtime (tokio panics), so
//! from such a thread the future is driven on a scoped helper thread instead. Callers may
//! therefore be plain threads, rayon workers, or async code (a blocking call there is the
//! caller's choice, e.g. the predict function loading its model at start-up).

use std::future::Future;
use std::sync::OnceLock;

use model::StoreError;
use tokio::runtime::{Builder, Handle, Runtime};

/// The runtime; built on first use. Never dropped, so a store dropped inside async code
/// cannot trip tokio's "drop a runtime in an async context" panic.
static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime, StoreError> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                // One worker drives connection tasks between calls; the futures themselves
                // run on the calling thread inside `block_on`.
                .worker_threads(1)
                .thread_name("storage-s3")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| StoreError::Backend(format!("cannot start the S3 client runtime: {e}")))
}

/// Run `fut` to completion from synchronous code, whatever the calling context.
pub(crate) fn block_on<F>(fut: F) -> Result<F::Output, StoreError>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    if Handle::try_current().is_err() {
        return Ok(rt.block_on(fut));
    }
    // Inside some runtime (ours or the caller's): block a fresh thread instead of this one.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("storage-s3-call".into())
            .spawn_scoped(s, || rt.block_on(fut))
            .map_err(|e| StoreError::Backend(format!("cannot start an S3 call thread: {e}")))?
            .join()
            .map_err(|_| StoreError::Backend("an S3 call thread panicked".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_a_plain_thread() {
        assert_eq!(block_on(async { 1 + 1 }).ok(), Some(2));
    }

    #[test]
    fn runs_from_inside_another_runtime() {
        let other = Builder::new_current_thread().build().expect("runtime");
        let got = other.block_on(async { block_on(async { 40 + 2 }) });
        assert_eq!(got.ok(), Some(42));
    }

    #[test]
    fn runs_from_inside_its_own_runtime() {
        let got = block_on(async { block_on(async { 7 }) });
        assert_eq!(got.ok().and_then(Result::ok), Some(7));
    }
}
