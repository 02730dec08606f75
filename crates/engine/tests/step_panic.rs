//! A panic inside an engine step (a kernel's failed assert on a compute-pool
//! thread) fails the requests of that step with an error event, frees their
//! KV blocks, and the engine goes on serving: a later request gets the same
//! tokens as on a fresh engine.
//!
//! No model file makes the kernels panic (the loader validates every shape
//! that they assert on, see `malformed_models.rs`), so the panic is injected
//! with `Engine::inject_step_panic`, which debug builds only have: it panics
//! on a pool thread right after the forward pass wrote the step's K/V rows
//! and before the scheduler accounted for them, the worst point for the
//! cache's consistency.
#![cfg(debug_assertions)]

use memwall_engine::{Engine, EngineConfig, Event, GenerateParams, KvCacheConfig, Request, SamplingParams};
use memwall_model::load;
use std::path::Path;
use std::sync::Arc;

fn engine() -> Engine {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    let loaded = load(&path, &mut |_, _| {}).unwrap();
    let config = EngineConfig {
        kv: KvCacheConfig { block_size: 16, memory_bytes: 1 << 20, ..KvCacheConfig::default() },
        // A worker thread besides the caller's, for the panic to start on.
        threads: 2,
        ..EngineConfig::default()
    };
    Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config).unwrap()
}

/// 40 prompt tokens (two full blocks, so the prefix cache could serve them)
/// and 12 seeded tokens per sample.
fn request(n: usize) -> Request {
    let prompt: Vec<u32> = (0..40).map(|j| 3 + (j * 37 % 500) as u32).collect();
    let sampling = SamplingParams { seed: Some(7), ..SamplingParams::default() };
    let params = GenerateParams { max_tokens: 12, sampling, stop: vec![], ignore_eos: true, logprobs: None };
    Request { n, ..Request::new(prompt, params) }
}

fn ids(engine: &Engine, r: Request) -> Vec<Vec<u32>> {
    engine.submit(r).unwrap().wait().unwrap().into_iter().map(|c| c.ids).collect()
}

#[test]
fn a_panicking_step_fails_its_request_and_the_engine_keeps_serving() {
    let fresh = engine();
    let want = ids(&fresh, request(2));
    fresh.shutdown();
    assert_eq!(want.len(), 2);
    assert_eq!(want[0].len(), 12);

    let engine = engine();
    engine.inject_step_panic("injected kernel assert");
    let failing = engine.submit(request(2)).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| failing.recv()).collect();
    let errors: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "one error event for the request: {events:?}");
    assert!(errors[0].contains("internal error in the engine step"), "{}", errors[0]);
    assert!(errors[0].contains("injected kernel assert"), "the panic's message is reported: {}", errors[0]);
    assert!(!events.iter().any(|e| matches!(e, Event::Token { .. })), "no token from the failed step: {events:?}");
    let m = engine.metrics();
    assert_eq!(m.step_panics, 1);
    assert_eq!(m.kv_blocks_used, 0, "the failed request's blocks are freed");
    assert_eq!((m.running, m.waiting), (0, 0));

    // The same prompt again: its blocks were written by the interrupted
    // step but never cached, so it is computed anew, and the compute pool
    // that re-raised the panic works as before.
    assert_eq!(ids(&engine, request(2)), want, "a later request runs as on a fresh engine");
    let m = engine.metrics();
    assert_eq!(m.step_panics, 1);
    assert_eq!(m.kv_blocks_used, 0);
    assert_eq!(m.requests_finished, 2);
    engine.shutdown();
}

#[test]
fn requests_queued_behind_a_panicking_step_still_complete() {
    let fresh = engine();
    let want = ids(&fresh, request(1));
    fresh.shutdown();

    let engine = engine();
    engine.inject_step_panic("injected kernel assert");
    // Both may share the panicking step, or the second may be admitted
    // after it: each either fails with the error or completes unchanged.
    let handles: Vec<_> = (0..2).map(|_| engine.submit(request(1)).unwrap()).collect();
    let mut failed = 0;
    for h in handles {
        match h.wait() {
            Ok(c) => assert_eq!(c[0].ids, want[0]),
            Err(e) => {
                assert!(e.to_string().contains("internal error in the engine step"), "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed >= 1, "the first request was in the panicking step");
    assert_eq!(ids(&engine, request(1)), want);
    let m = engine.metrics();
    assert_eq!(m.step_panics, 1);
    assert_eq!(m.kv_blocks_used, 0);
    engine.shutdown();
}
