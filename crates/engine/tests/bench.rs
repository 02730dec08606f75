//! The offline benchmark's shape on a tiny model, and (ignored, run by hand)
//! its numbers on the default model:
//! `cargo test -p memwall-engine --test bench -- --ignored --nocapture`.

use memwall_engine::bench::{run, BenchConfig};
use memwall_engine::{EngineConfig, KvCacheConfig, SchedulerConfig};
use memwall_model::load;
use std::path::Path;
use std::sync::Arc;

fn bench(
    path: &Path,
    concurrency: Vec<usize>,
    prompt_tokens: usize,
    new_tokens: usize,
) -> Vec<memwall_engine::bench::BenchResult> {
    let loaded = load(path, &mut |_, _| {}).unwrap();
    let (model, tokenizer) = (Arc::new(loaded.model), Arc::new(loaded.tokenizer));
    let config = BenchConfig {
        concurrency,
        prompt_tokens,
        new_tokens,
        engine: EngineConfig {
            kv: KvCacheConfig { block_size: 16, memory_bytes: 256 << 20, ..Default::default() },
            scheduler: SchedulerConfig { max_batch_tokens: 512, max_running: 64, prefix_caching: true },
            threads: 2,
            ..EngineConfig::default()
        },
    };
    run(&model, &tokenizer, &config, &mut |r| eprintln!("{r:?}")).unwrap()
}

#[test]
fn every_level_reports_sane_numbers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    let results = bench(&path, vec![1, 4], 20, 9);
    assert_eq!(results.iter().map(|r| r.concurrency).collect::<Vec<_>>(), vec![1, 4]);
    for r in &results {
        assert!(r.tokens_per_s > 0.0 && r.output_tokens_per_s > 0.0);
        assert!(r.ttft_ms > 0.0 && r.tpot_ms > 0.0);
        // 20 + 9 positions in 2 blocks of 16: at most 12 of 32 slots (and
        // fewer on average) hold nothing.
        assert!((0.0..0.5).contains(&r.kv_waste), "{}", r.kv_waste);
        assert_eq!(r.preemptions, 0);
    }
}

#[test]
#[ignore = "minutes on 2 cores; prints the benchmark table of the default model"]
fn smollm2_throughput_by_concurrency() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let results = bench(&path, vec![1, 4, 16], 128, 128);
    println!("| concurrency | decode tok/s | output tok/s | TTFT ms | TPOT ms | KV waste | steps |");
    println!("|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2}% | {} |",
            r.concurrency,
            r.tokens_per_s,
            r.output_tokens_per_s,
            r.ttft_ms,
            r.tpot_ms,
            r.kv_waste * 100.0,
            r.steps
        );
    }
}
