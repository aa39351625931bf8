//! What the fuzz targets share: an allocation budget per input, a small valid model, and an
//! in-memory object store.
//!
//! The budget: every Rust allocation goes through [`cap::Cap`], and while one input is being
//! handled ([`within_budget`]) the bytes allocated may grow by at most
//! `BUDGET_BASE + BUDGET_PER_BYTE * input length` (1 MiB + 64 x the input; about 65 MiB for
//! a 1 MiB body). An allocation past it fails, and Rust aborts with "memory allocation of N
//! bytes failed": libFuzzer records that input as a crash. This works on stable Rust without
//! a sanitizer, where libFuzzer's own `-malloc_limit_mb` cannot see allocations.

use std::alloc::System;
use std::collections::HashMap;

use cap::Cap;
use model::store::ObjectStore;
use model::{Artifact, FORMAT_VERSION, Model, Scaler};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Bytes one input may allocate whatever its size.
pub const BUDGET_BASE: usize = 1 << 20;
/// Bytes one input may allocate per byte of input.
pub const BUDGET_PER_BYTE: usize = 64;

/// Run `f` with the live heap allowed to grow by at most the budget of an input of
/// `input_len` bytes over what it is now; the limit is lifted again afterwards.
pub fn within_budget<R>(input_len: usize, f: impl FnOnce() -> R) -> R {
    let budget = BUDGET_BASE.saturating_add(BUDGET_PER_BYTE.saturating_mul(input_len));
    let limit = ALLOCATOR.allocated().saturating_add(budget);
    // Cannot fail: the limit is above what is allocated now.
    let _ = ALLOCATOR.set_limit(limit);
    let r = f();
    let _ = ALLOCATOR.set_limit(usize::MAX);
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
}
