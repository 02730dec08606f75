//! The engine on rank 0 of a split model, with the other ranks running
//! [`run_worker`] on threads of this process ([`ThreadGroup`] instead of MPI):
//! step plans, mirrored block tables, copy-on-write copies of parallel
//! samples and prefix-cache hits must give the unsplit engine's tokens.

use memwall_engine::engine::plan::run_worker;
use memwall_engine::{Engine, EngineConfig, GenerateParams, KvCacheConfig, Request, SamplingParams};
use memwall_model::collective::ThreadGroup;
use memwall_model::{load, load_split, Collective, Split};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf")
}

fn config() -> EngineConfig {
    // Small blocks so that prompts span several and samples share some.
    EngineConfig {
        kv: KvCacheConfig { block_size: 4, memory_bytes: 1 << 20, ..Default::default() },
        threads: 1,
        ..Default::default()
    }
}

/// Ids of every sample of every request, requests run one after another
/// (the second shares the first's prompt prefix) on `engine`.
fn generate(engine: &Engine) -> Vec<Vec<u32>> {
    let greedy = GenerateParams {
        max_tokens: 10,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: true,
        logprobs: None,
    };
    let seeded =
        GenerateParams { sampling: SamplingParams { seed: Some(3), ..SamplingParams::default() }, ..greedy.clone() };
    let prompt: Vec<u32> = (1..20).map(|i| (i * 37 % 500) as u32).collect();
    let mut longer = prompt.clone();
    longer.extend([5, 6, 7, 8, 9, 10]); // 25 tokens: the samples share a partial block
                                        // 50 tokens: a pipeline runs its prefill as micro-batches.
    let long: Vec<u32> = (0..50).map(|i| (i * 53 % 500) as u32).collect();
    let requests = [
        Request::new(prompt, greedy.clone()),
        Request { n: 3, ..Request::new(longer, seeded) },
        Request::new(vec![42, 43], greedy.clone()),
        Request::new(long, greedy),
    ];
    requests.into_iter().flat_map(|r| engine.submit(r).unwrap().wait().unwrap().into_iter().map(|c| c.ids)).collect()
}

/// The ids of [`generate`] with the model split as `split(rank)` over
/// `size` ranks, rank 0 running the engine and the others [`run_worker`].
fn split_run(size: usize, split: fn(usize) -> Split) -> Vec<Vec<u32>> {
    let mut groups = ThreadGroup::new(size);
    let workers: Vec<_> = groups
        .drain(1..)
        .map(|g| {
            std::thread::spawn(move || {
                let split = split(g.rank());
                let comm: Arc<dyn Collective> = Arc::new(g);
                let m = load_split(&fixture(), split, comm, &mut |_, _| {}).unwrap();
                run_worker(Arc::new(m.model), 1).unwrap();
            })
        })
        .collect();
    let comm: Arc<dyn Collective> = Arc::new(groups.pop().unwrap());
    let loaded = load_split(&fixture(), split(0), comm, &mut |_, _| {}).unwrap();
    let engine = Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config()).unwrap();
    let ids = generate(&engine);
    engine.shutdown();
    workers.into_iter().for_each(|w| w.join().unwrap());
    ids
}

#[test]
fn split_engines_generate_the_whole_models_tokens() {
    let loaded = load(&fixture(), &mut |_, _| {}).unwrap();
    let engine = Engine::new(Arc::new(loaded.model), Arc::new(loaded.tokenizer), config()).unwrap();
    let want = generate(&engine);
    engine.shutdown();
    assert_eq!(want.len(), 6);
    assert_eq!(split_run(2, |r| Split::new(1, 2, r, 2).unwrap()), want, "pipeline");
    assert_eq!(split_run(2, |r| Split::new(2, 1, r, 2).unwrap()), want, "tensor");
    assert_eq!(split_run(4, |r| Split::new(2, 2, r, 4).unwrap()), want, "tensor and pipeline");
}
