//! What the fuzz targets share: an allocation budget per input, a small valid model, and an
//! in-memory object store.
//!
//! The budget: every Rust allocation goes through [`Budget`], and while one input is being
//! handled ([`within_budget`]) the bytes allocated may grow by at most
//! `BUDGET_BASE + BUDGET_PER_BYTE * input length` (1 MiB + 64 x the input; about 65 MiB for
//! a 1 MiB body). The allocation that would pass it prints its size and a backtrace and
//! aborts: libFuzzer records that input as a crash. This works on stable Rust without a
//! sanitizer, where libFuzzer's own `-malloc_limit_mb` cannot see allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use model::store::ObjectStore;
use model::{Artifact, FORMAT_VERSION, Model, Scaler};

/// Bytes one input may allocate whatever its size.
pub const BUDGET_BASE: usize = 1 << 20;
/// Bytes one input may allocate per byte of input.
pub const BUDGET_PER_BYTE: usize = 64;

/// The system allocator, counting live bytes and refusing to pass [`LIMIT`].
pub struct Budget;

#[global_allocator]
static ALLOCATOR: Budget = Budget;
/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most [`LIVE`] may reach; `usize::MAX` outside [`within_budget`].
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

impl Budget {
    /// Count `size` more bytes; past the limit, report where and abort.
    fn grow(size: usize) {
        let live = LIVE.fetch_add(size, Relaxed).saturating_add(size);
        let limit = LIMIT.load(Relaxed);
        if live > limit {
            // Lifted first: printing the backtrace allocates.
            LIMIT.store(usize::MAX, Relaxed);
            if std::thread::panicking() {
                // The panic is the crash; it may hold the backtrace lock, so only let it go on.
                return;
            }
            eprintln!(
                "==fuzz== allocation of {size} bytes takes this input to {live} live bytes, over its budget (limit {limit})\n{}",
                Backtrace::force_capture()
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is passed to `System` unchanged; only the counting is added.
unsafe impl GlobalAlloc for Budget {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::grow(layout.size());
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::grow(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match new_size.checked_sub(layout.size()) {
            Some(more) => Self::grow(more),
            None => _ = LIVE.fetch_sub(layout.size() - new_size, Relaxed),
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Run `f` with the live heap allowed to grow by at most the budget of an input of
/// `input_len` bytes over what it is now; the limit is lifted again afterwards.
pub fn within_budget<R>(input_len: usize, f: impl FnOnce() -> R) -> R {
    let budget = BUDGET_BASE.saturating_add(BUDGET_PER_BYTE.saturating_mul(input_len));
    LIMIT.store(LIVE.load(Relaxed).saturating_add(budget), Relaxed);
    let r = f();
    LIMIT.store(usize::MAX, Relaxed);
    r
}

/// The name of the model the targets serve and store.
pub const MODEL_NAME: &str = "digits";
/// The version it is stored and served as.
pub const MODEL_VERSION: &str = "20260101T000000.000Z-0123456789ab";

/// A small valid artifact: 4 features, 3 classes labelled `0`, `1`, `2` (integer labels,
/// as the digits model has), so that valid rows are short enough for a fuzzer to find.
pub fn tiny_artifact() -> Artifact {
    let mut a = Artifact {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        name: MODEL_NAME.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        classes: vec!["0".into(), "1".into(), "2".into()],
        feature_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        scaler: Scaler {
            mean: vec![0.0, 1.0, 2.0, 3.0],
            scale: vec![1.0, 2.0, 0.5, 1.0],
        },
        coefficients: vec![
            vec![1.0, 0.0, -1.0, 0.5],
            vec![0.0, 1.0, 0.5, -1.0],
            vec![-1.0, -1.0, 0.0, 0.0],
        ],
        intercepts: vec![0.0, 0.1, -0.1],
        training: serde_json::Map::new(),
        metrics: serde_json::Map::new(),
        data_sha256: "0".repeat(64),
    };
    a.seal();
    a
}

/// [`tiny_artifact`] as a loaded model.
pub fn tiny_model() -> Model {
    Model::new(tiny_artifact()).expect("the fuzz model is valid")
}

/// An object store in memory: keys to bytes.
#[derive(Debug, Default)]
pub struct MemStore(pub HashMap<String, Vec<u8>>);

impl ObjectStore for MemStore {
    fn describe(&self, key: &str) -> String {
        format!("mem://{key}")
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, model::StoreError> {
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| model::StoreError::NotFound(self.describe(key)))
    }
    fn put_new(&self, key: &str, _bytes: &[u8]) -> Result<(), model::StoreError> {
        Err(model::StoreError::Backend(format!("{key}: read-only")))
    }
    fn put(&self, key: &str, _bytes: &[u8]) -> Result<(), model::StoreError> {
        Err(model::StoreError::Backend(format!("{key}: read-only")))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, model::StoreError> {
        let mut keys: Vec<String> = self
            .0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.sort();
        Ok(keys)
    }
    fn delete(&self, key: &str) -> Result<(), model::StoreError> {
        Err(model::StoreError::Backend(format!("{key}: read-only")))
    }
}
