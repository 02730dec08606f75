//! Random workloads through the whole engine on a tiny model and a small
//! pool: every sample ends (finished or cancelled), finished samples equal
//! their run alone, and no block stays referenced.

use memwall_engine::{
    Engine, EngineConfig, FinishReason, GenerateParams, KvCacheConfig, Request, SamplingParams, SchedulerConfig,
};
use memwall_model::load;
use proptest::prelude::*;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Bytes of one 16-token block of the llama fixture (2 layers, kv_dim 32, f16).
const BLOCK_BYTES: usize = 2 * 2 * 16 * 32 * 2;

fn model() -> &'static (Arc<memwall_model::Model>, Arc<memwall_formats::tokenizer::Tokenizer>) {
    static MODEL: OnceLock<(Arc<memwall_model::Model>, Arc<memwall_formats::tokenizer::Tokenizer>)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
        let loaded = load(&path, &mut |_, _| {}).unwrap();
        (Arc::new(loaded.model), Arc::new(loaded.tokenizer))
    })
}

fn engine(budget: usize, blocks: usize, max_running: usize) -> Engine {
    let (m, t) = model();
    let config = EngineConfig {
        kv: KvCacheConfig { block_size: 16, memory_bytes: blocks * BLOCK_BYTES, ..Default::default() },
        scheduler: SchedulerConfig { max_batch_tokens: budget, max_running, prefix_caching: true },
        threads: 1,
        ..EngineConfig::default()
    };
    Engine::new(Arc::clone(m), Arc::clone(t), config).unwrap()
}

#[derive(Clone, Debug)]
struct Spec {
    /// Shared-prefix family and own tokens.
    family: u32,
    own: Vec<u32>,
    max_tokens: usize,
    n: usize,
    seed: Option<u64>,
    priority: i32,
    cancel: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (0..3u32, prop::collection::vec(3..500u32, 1..30), 1..16usize, 1..3usize, prop::option::of(0..100u64), -1..2i32)
        .prop_flat_map(|(family, own, max_tokens, n, seed, priority)| {
            prop::bool::weighted(0.2).prop_map(move |cancel| Spec {
                family,
                own: own.clone(),
                max_tokens,
                n,
                seed,
                priority,
                cancel,
            })
        })
}

fn request(s: &Spec) -> Request {
    let mut prompt: Vec<u32> = (0..20 * s.family).map(|i| 3 + (i * 7 + s.family) % 400).collect();
    prompt.extend(&s.own);
    let sampling = match s.seed {
        Some(seed) => SamplingParams { seed: Some(seed), ..SamplingParams::default() },
        None => SamplingParams::greedy(),
    };
    let params = GenerateParams { max_tokens: s.max_tokens, sampling, stop: vec![], ignore_eos: true, logprobs: None };
    Request { n: s.n, priority: s.priority, ..Request::new(prompt, params) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_workloads_finish_unchanged_without_leaks(
        budget in 4..64usize,
        blocks in 6..16usize,
        max_running in 1..8usize,
        specs in prop::collection::vec(spec(), 1..10),
    ) {
        let e = engine(budget, blocks, max_running);
        let reference = engine(4096, 64, 64);
        let handles: Vec<_> = specs.iter().map(|s| e.submit(request(s)).unwrap()).collect();
        for (s, h) in specs.iter().zip(&handles) {
            if s.cancel {
                h.cancel();
            }
        }
        let mut samples = 0;
        for (s, h) in specs.iter().zip(handles) {
            let got = h.wait().unwrap();
            let want = reference.submit(request(s)).unwrap().wait().unwrap();
            samples += got.len();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                match g.finish {
                    Some(FinishReason::Cancelled) => prop_assert!(s.cancel, "only cancelled requests end cancelled"),
                    Some(FinishReason::Length) => prop_assert_eq!(&g.ids, &w.ids, "{:?} sample {}", s, i),
                    other => prop_assert!(false, "unexpected finish {:?}", other),
                }
            }
        }
        let m = e.metrics();
        prop_assert_eq!(m.kv_blocks_used, 0, "blocks leaked");
        prop_assert_eq!((m.requests_finished + m.requests_cancelled) as usize, samples);
        prop_assert_eq!((m.running, m.waiting), (0, 0));
    }
}
