//! A Hugging Face `config.json` of arbitrary content into a `ModelConfig`:
//! never panics, and what it accepts passes `validate()` (so the derived
//! widths cannot overflow).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memwall_model::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(c) = ModelConfig::from_hf_json(&json) {
        c.validate().expect("from_hf_json returned a config that does not validate");
        let _ = (c.q_dim(), c.kv_dim());
    }
});
