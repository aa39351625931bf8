//! A stored artifact (`model.json`) as the function reads it at start-up and on refresh:
//! `Artifact::from_json`, `Model::from_json` and `store::load` of a given version.
//! None may panic. An artifact that loads must also predict, and must load again from
//! its own serialisation.

#![no_main]

use digits_fuzz::{MODEL_NAME, MODEL_VERSION, MemStore, within_budget};
use libfuzzer_sys::fuzz_target;
use model::{Artifact, Model};

fuzz_target!(|data: &[u8]| {
    within_budget(data.len(), || {
        let _ = Artifact::from_json(data);
        if let Ok(m) = Model::from_json(data) {
            let row = vec![0.0; m.n_features()];
            m.predict(&row)
                .expect("a loaded model predicts a row of zeros");
            let again = m.artifact().to_json();
            Artifact::from_json(&again).expect("a loaded artifact loads from its own JSON");
        }
        let mut store = MemStore::default();
        let key = model::store::model_key(MODEL_NAME, MODEL_VERSION);
        store.0.insert(key, data.to_vec());
        let _ = model::store::load(&store, MODEL_NAME, Some(MODEL_VERSION));
    });
});
