//! The `latest` pointer (`<name>/latest`), read from a store that also holds one valid
//! version: `store::read_latest`, then `store::load` following it. Neither may panic.

#![no_main]

use std::sync::LazyLock;

use digits_fuzz::{MODEL_NAME, MODEL_VERSION, MemStore, tiny_artifact, within_budget};
use libfuzzer_sys::fuzz_target;

/// The stored version's `model.json`, serialised once.
static MODEL_JSON: LazyLock<Vec<u8>> = LazyLock::new(|| tiny_artifact().to_json());

fuzz_target!(|data: &[u8]| {
    let mut store = MemStore::default();
    let key = model::store::model_key(MODEL_NAME, MODEL_VERSION);
    store.0.insert(key, MODEL_JSON.clone());
    store
        .0
        .insert(model::store::latest_key(MODEL_NAME), data.to_vec());
    within_budget(data.len(), || {
        let _ = model::store::read_latest(&store, MODEL_NAME);
        let _ = model::store::load(&store, MODEL_NAME, None);
    });
});
