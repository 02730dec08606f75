//! The engine end to end on a tiny fixture model: batch invariance (alone vs
//! among 63 others, chunked or not, after preemption, parallel samples),
//! prefix caching, cancellation, refusal and shutdown.

use memwall_engine::{
    Completion, Engine, EngineConfig, EngineError, Event, FinishReason, GenerateParams, KvCacheConfig, KvDType,
    Request, SamplingParams, SchedulerConfig,
};
use memwall_model::load;
use std::path::Path;
use std::sync::Arc;

/// Bytes of one 16-token block of the llama fixture (2 layers, kv_dim 32, f16).
const BLOCK_BYTES: usize = 2 * 2 * 16 * 32 * 2;
/// The same in 8 bits: 32 bytes and two f16 scales (head_dim 16) per row.
const Q8_BLOCK_BYTES: usize = 2 * 2 * 16 * (32 + 2 * 2);

fn engine(max_batch_tokens: usize, blocks: usize) -> Engine {
    engine_with(max_batch_tokens, blocks * BLOCK_BYTES, KvDType::F16)
}

fn engine_with(max_batch_tokens: usize, memory_bytes: usize, dtype: KvDType) -> Engine {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    let loaded = load(&path, &mut |_, _| {}).unwrap();
    let config = EngineConfig {
        kv: KvCacheConfig { block_size: 16, memory_bytes, dtype },
        scheduler: SchedulerConfig { max_batch_tokens, max_running: 64, prefix_caching: true },
        threads: 2,
        ..EngineConfig::default()
    };
    Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config).unwrap()
}

fn prompt(i: usize, len: usize) -> Vec<u32> {
    (0..len).map(|j| 3 + ((i * 131 + j * 17 + j * j) % 500) as u32).collect()
}

fn request(i: usize, seeded: bool) -> Request {
    let sampling = if seeded {
        SamplingParams { seed: Some(1000 + i as u64), ..SamplingParams::default() }
    } else {
        SamplingParams::greedy()
    };
    let params = fixed_len(8 + i % 13, sampling);
    Request::new(prompt(i, 5 + (i * 7) % 40), params)
}

/// `max_tokens` tokens exactly (end of generation ignored), no stops.
fn fixed_len(max_tokens: usize, sampling: SamplingParams) -> GenerateParams {
    GenerateParams { max_tokens, sampling, stop: vec![], ignore_eos: true, logprobs: None }
}

fn alone(r: &Request) -> Completion {
    engine(4096, 64).submit(r.clone()).unwrap().wait().unwrap().remove(0)
}

/// Runs all requests at once and checks each against its run alone.
fn check_invariance(engine: &Engine, requests: &[Request]) {
    let handles: Vec<_> = requests.iter().map(|r| engine.submit(r.clone()).unwrap()).collect();
    for (i, (h, r)) in handles.into_iter().zip(requests).enumerate() {
        let got = h.wait().unwrap().remove(0);
        let want = alone(r);
        assert_eq!(got.ids, want.ids, "request {i} changed in the batch");
        assert_eq!(got.finish, Some(FinishReason::Length));
        assert_eq!(got.ids.len(), r.params.max_tokens);
    }
}

#[test]
fn same_tokens_alone_or_among_63_others_greedy_and_seeded() {
    let requests: Vec<Request> = (0..64).map(|i| request(i, i % 2 == 1)).collect();
    let e = engine(4096, 256);
    check_invariance(&e, &requests);
    assert_eq!(e.metrics().preemptions, 0);
}

#[test]
fn same_tokens_with_chunked_prefill() {
    let requests: Vec<Request> = (0..16).map(|i| request(i, i % 2 == 0)).collect();
    // 7 tokens per step: every prompt is prefilled in chunks next to decodes.
    check_invariance(&engine(7, 256), &requests);
}

#[test]
fn overfilled_pool_preempts_and_every_request_completes_unchanged() {
    let requests: Vec<Request> = (0..24).map(|i| request(i, i % 2 == 0)).collect();
    // 12 blocks of 16 = 192 positions for 24 requests of up to 63 positions.
    let e = engine(64, 12);
    check_invariance(&e, &requests);
    let m = e.metrics();
    assert!(m.preemptions > 0, "the pool was meant to overflow");
    assert_eq!(m.kv_blocks_used, 0, "blocks leaked");
}

#[test]
fn second_request_with_the_same_200_token_prefix_computes_only_the_suffix() {
    let e = engine(4096, 64);
    let shared = prompt(7, 200);
    let params = fixed_len(4, SamplingParams::greedy());
    let mut first = shared.clone();
    first.extend([5, 6, 7]);
    let a = e.submit(Request::new(first, params.clone())).unwrap().wait().unwrap().remove(0);
    assert_eq!(a.metrics.cached_tokens, 0);
    let before = e.metrics().computed_tokens;
    let mut second = shared.clone();
    second.extend([9, 10, 11, 12, 13]);
    let b = e.submit(Request::new(second.clone(), params.clone())).unwrap().wait().unwrap().remove(0);
    // 12 full blocks of 16 tokens (192) come from the cache.
    assert_eq!(b.metrics.cached_tokens, 192);
    let computed = e.metrics().computed_tokens - before;
    assert_eq!(computed as usize, (205 - 192) + (4 - 1), "suffix and decodes only");
    // And the result is the one computed from scratch.
    let fresh = engine(4096, 64).submit(Request::new(second, params)).unwrap().wait().unwrap().remove(0);
    assert_eq!(b.ids, fresh.ids);
}

#[test]
fn parallel_samples_share_the_prompt_and_match_separate_requests() {
    let e = engine(4096, 64);
    let params = fixed_len(12, SamplingParams { seed: Some(40), ..SamplingParams::default() });
    // 21 tokens: the second block is partial and shared until each sample writes it.
    let r = Request { n: 3, ..Request::new(prompt(3, 21), params.clone()) };
    let samples = e.submit(r.clone()).unwrap().wait().unwrap();
    assert_eq!(samples.len(), 3);
    for (i, s) in samples.iter().enumerate() {
        let mut p = params.clone();
        p.sampling.seed = Some(40 + i as u64);
        let want = alone(&Request::new(r.prompt.clone(), p));
        assert_eq!(s.ids, want.ids, "sample {i}");
    }
    assert_ne!(samples[0].ids, samples[1].ids);
    assert_eq!(e.metrics().kv_blocks_used, 0);
}

#[test]
fn cancel_frees_blocks_and_reports_cancelled() {
    let e = engine(4, 64);
    let params = fixed_len(200, SamplingParams::greedy());
    let h = e.submit(Request::new(prompt(1, 50), params)).unwrap();
    // Wait for the first token, then cancel.
    while !matches!(h.recv(), Some(Event::Token { .. })) {}
    e.cancel(h.id());
    let mut reason = None;
    while let Some(ev) = h.recv() {
        if let Event::Finished { reason: r, .. } = ev {
            reason = Some(r);
        }
    }
    assert_eq!(reason, Some(FinishReason::Cancelled));
    // A request after it sees the whole pool free.
    e.submit(request(2, false)).unwrap().wait().unwrap();
    let m = e.metrics();
    assert_eq!(m.kv_blocks_used, 0);
    assert_eq!(m.requests_cancelled, 1);
}

#[test]
fn bad_requests_are_refused_at_submit() {
    let e = engine(64, 4);
    let params = fixed_len(10, SamplingParams::greedy());
    let too_big = e.submit(Request::new(prompt(0, 60), params.clone()));
    assert!(matches!(too_big, Err(EngineError::NeverFits { tokens: 70, capacity: 64 })), "{:?}", too_big.err());
    assert!(matches!(e.submit(Request::new(vec![], params.clone())), Err(EngineError::EmptyPrompt)));
    assert!(matches!(
        e.submit(Request::new(vec![600], params.clone())),
        Err(EngineError::TokenOutOfRange { id: 600, vocab: 512 })
    ));
    assert!(matches!(e.submit(Request::new(prompt(0, 300), params)), Err(EngineError::PromptTooLong { .. })));
}

#[test]
fn shutdown_cancels_pending_requests() {
    let e = engine(4, 64);
    let params = fixed_len(200, SamplingParams::greedy());
    let handles: Vec<_> = (0..3).map(|i| e.submit(Request::new(prompt(i, 30), params.clone())).unwrap()).collect();
    e.shutdown();
    for h in handles {
        let mut last = None;
        while let Some(ev) = h.recv() {
            last = Some(ev);
        }
        assert!(
            matches!(last, Some(Event::Finished { reason: FinishReason::Cancelled, .. })),
            "pending requests end cancelled"
        );
    }
}

#[test]
fn dropping_a_handle_cancels_its_request() {
    let e = engine(4, 64);
    let params = fixed_len(200, SamplingParams::greedy());
    drop(e.submit(Request::new(prompt(1, 50), params)).unwrap());
    // Commands are handled in order: the cancel lands before this request.
    e.submit(request(2, false)).unwrap().wait().unwrap();
    let m = e.metrics();
    assert_eq!((m.requests_cancelled, m.requests_finished), (1, 1));
    assert_eq!(m.kv_blocks_used, 0);
}

#[test]
fn q8_cache_is_batch_invariant_too() {
    let requests: Vec<Request> = (0..12).map(|i| request(i, i % 2 == 0)).collect();
    let small = engine_with(16, 12 * Q8_BLOCK_BYTES, KvDType::Q8);
    assert_eq!(small.kv_capacity_tokens(), 192);
    let handles: Vec<_> = requests.iter().map(|r| small.submit(r.clone()).unwrap()).collect();
    for (i, (h, r)) in handles.into_iter().zip(&requests).enumerate() {
        let got = h.wait().unwrap().remove(0);
        let want = engine_with(4096, 64 * Q8_BLOCK_BYTES, KvDType::Q8).submit(r.clone()).unwrap().wait().unwrap();
        assert_eq!(got.ids, want[0].ids, "request {i}");
    }
    assert!(small.metrics().preemptions > 0);
}

#[test]
fn steps_report_cost_model_bytes_and_utilisation() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    let loaded = load(&path, &mut |_, _| {}).unwrap();
    let weight_bytes = loaded.model.weight_bytes() as u64;
    let config =
        EngineConfig { threads: 2, peak_bandwidth: Some(1e10), peak_flops: Some(1e11), ..EngineConfig::default() };
    let e = Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config).unwrap();
    let mut streamed = String::new();
    let done = e.submit(request(5, false)).unwrap().stream(&mut |_, piece| streamed.push_str(piece)).unwrap();
    assert_eq!(streamed, done[0].text);
    let step = e.metrics().last_step;
    assert_eq!((step.seqs, step.tokens, step.sampled), (1, 1, 1));
    assert!(step.bytes_moved >= weight_bytes, "{} < {weight_bytes}", step.bytes_moved);
    assert!(step.flops > 0.0);
    assert!(step.mbu.is_some_and(|u| u > 0.0) && step.mfu.is_some_and(|u| u > 0.0));
}

/// The engine (paged f16 cache, batched with other requests) continues every
/// fixture prompt with transformers' greedy tokens.
#[test]
fn engine_greedy_matches_transformers_on_every_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models");
    for arch in ["llama", "mistral", "qwen2", "qwen3", "phi3", "gpt2"] {
        let text = std::fs::read_to_string(dir.join(arch).join("expected.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
        };
        let (prompt, want) = (ids(&v["prompt_ids"]), ids(&v["greedy_ids"]));
        let loaded = load(&dir.join(format!("{arch}.gguf")), &mut |_, _| {}).unwrap();
        let config = EngineConfig {
            scheduler: SchedulerConfig { max_batch_tokens: 5, ..SchedulerConfig::default() },
            threads: 2,
            ..EngineConfig::default()
        };
        let e = Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config).unwrap();
        let params = fixed_len(want.len(), SamplingParams::greedy());
        let noise: Vec<u32> = (0..11).map(|i| 3 + i * 5).collect();
        let other = e.submit(Request::new(noise, params.clone())).unwrap();
        let got = e.submit(Request::new(prompt, params)).unwrap().wait().unwrap().remove(0);
        assert_eq!(got.ids, want, "{arch}");
        other.wait().unwrap();
    }
}
