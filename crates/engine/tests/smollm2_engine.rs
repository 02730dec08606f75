//! The engine on the default model (SmolLM2-135M-Instruct, 30 layers, 3 KV
//! heads): real prompts share a chat-template prefix, run batched in a pool
//! small enough to preempt, and each still produces the tokens it produces
//! alone; the second turn of a conversation reuses its prefix from the cache.

use memwall_engine::{Engine, EngineConfig, GenerateParams, KvCacheConfig, Request, SamplingParams, SchedulerConfig};
use memwall_formats::tokenizer::EncodeOptions;
use memwall_model::load;
use std::path::Path;
use std::sync::Arc;

#[test]
fn smollm2_batched_with_preemption_matches_alone() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "missing {}: run scripts/fetch-test-data.sh", path.display());
    let loaded = load(&path, &mut |_, _| {}).unwrap();
    let (model, tok) = (Arc::new(loaded.model), Arc::new(loaded.tokenizer));
    let block_bytes = 2 * 30 * 16 * 3 * 64 * 2;
    let engine = |blocks: usize, budget: usize| {
        let config = EngineConfig {
            kv: KvCacheConfig { block_size: 16, memory_bytes: blocks * block_bytes, ..Default::default() },
            scheduler: SchedulerConfig { max_batch_tokens: budget, max_running: 64, prefix_caching: true },
            threads: 2,
            ..EngineConfig::default()
        };
        Engine::new(Arc::clone(&model), Arc::clone(&tok), config).unwrap()
    };
    let questions = [
        "What is the capital of France?",
        "Name three primary colors.",
        "Why is the sky blue?",
        "Write a haiku about rust.",
        "What is 12 times 11?",
        "Who wrote Hamlet?",
    ];
    let requests: Vec<Request> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let text = format!("<|im_start|>system\nYou are a helpful assistant. Answer briefly and precisely, in one or two sentences, and never make anything up.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
            let prompt = tok.encode(&text, EncodeOptions { add_bos: false, parse_special: true });
            let sampling = if i % 2 == 0 { SamplingParams::greedy() } else { SamplingParams { seed: Some(i as u64), ..SamplingParams::default() } };
            Request::new(prompt, GenerateParams { max_tokens: 24, sampling, stop: vec![], ignore_eos: false, logprobs: None })
        })
        .collect();
    let alone: Vec<_> =
        requests.iter().map(|r| engine(64, 512).submit(r.clone()).unwrap().wait().unwrap().remove(0)).collect();

    // 12 blocks (192 positions) for six requests of ~60 positions, 32 tokens per step.
    let small = engine(12, 32);
    let handles: Vec<_> = requests.iter().map(|r| small.submit(r.clone()).unwrap()).collect();
    for (i, h) in handles.into_iter().enumerate() {
        let got = h.wait().unwrap().remove(0);
        assert_eq!(got.ids, alone[i].ids, "request {i}: {:?} vs alone {:?}", got.text, alone[i].text);
        assert_eq!(got.text, alone[i].text);
    }
    let m = small.metrics();
    eprintln!("preemptions {}, steps {}, kv waste {:.3}", m.preemptions, m.steps, m.kv_waste());
    assert!(m.preemptions > 0, "the pool was meant to overflow");
    assert_eq!(m.kv_blocks_used, 0);
    assert!(alone.iter().any(|a| !a.text.trim().is_empty()), "the model says something");

    // The shared system prompt is served from the cache.
    let e = engine(64, 512);
    e.submit(requests[0].clone()).unwrap().wait().unwrap();
    let second = e.submit(requests[1].clone()).unwrap().wait().unwrap().remove(0);
    let common = requests[0].prompt.iter().zip(&requests[1].prompt).take_while(|(a, b)| a == b).count();
    assert!(common >= 16, "the prompts share {common} tokens");
    assert_eq!(second.metrics.cached_tokens, common / 16 * 16, "every full block of the shared prefix");
    assert_eq!(second.ids, alone[1].ids);
}
