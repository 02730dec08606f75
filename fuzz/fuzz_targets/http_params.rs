//! The JSON bodies of `/v1/chat/completions` and `/v1/completions` as the
//! server parses them: `parse_json` into the shared parameters, then
//! `validate` and the engine parameters for any prompt length. Never panics;
//! whatever validates respects the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memwall_server::params::{parse_json, CommonParams, MAX_N, MAX_STOPS, MAX_STOP_BYTES};

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    let Ok(params) = parse_json::<CommonParams>(&body) else {
        return;
    };
    let Ok(v) = params.validate() else {
        return;
    };
    assert!(v.n >= 1 && v.n as u64 <= MAX_N);
    assert!(v.stop.len() <= MAX_STOPS);
    assert!(v.stop.iter().all(|s| !s.is_empty() && s.len() <= MAX_STOP_BYTES));
    for (prompt_len, limit) in [(0, 0), (1, 256), (300, 256), (usize::MAX, usize::MAX)] {
        let g = v.generate_params(prompt_len, limit);
        assert!(g.max_tokens >= 1);
    }
});
