//! `memwall bench --concurrency 1,4,16,64`: offline throughput of the
//! continuous-batching engine. Each level submits that many identical-length
//! requests (random prompts, greedy, end-of-generation ignored) to a fresh
//! engine and reports aggregate decode tokens/s, mean TTFT and TPOT, and the
//! KV memory waste of the paged cache.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use memwall_engine::bench::{run as run_levels, BenchConfig, BenchResult};
use memwall_engine::{EngineConfig, KvCacheConfig, KvMemory, SchedulerConfig};
use memwall_model::LoadedModel;
use std::io::Write;
use std::sync::Arc;

/// The engine-level knobs of a concurrency benchmark.
pub struct Levels {
    pub concurrency: Vec<usize>,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub threads: usize,
    /// `None`: room for every request of the highest level at once.
    pub kv_memory: Option<KvMemory>,
    pub max_batch_tokens: usize,
    pub json: bool,
}

pub fn run(loaded: LoadedModel, levels: &Levels) -> Result<()> {
    let c = &loaded.model.config;
    let max_level = levels.concurrency.iter().copied().max().unwrap_or(1);
    // f16 keys and values of every layer, per token.
    let kv_bytes_per_token = 2 * c.n_layers * c.kv_dim() * 2;
    let kv_memory = match levels.kv_memory {
        Some(m) => m.resolve()?,
        // Whole blocks for every request of the highest level, plus one spare
        // block per request.
        None => max_level * (levels.prompt_tokens + levels.new_tokens + 32) * kv_bytes_per_token,
    };
    let config = BenchConfig {
        concurrency: levels.concurrency.clone(),
        prompt_tokens: levels.prompt_tokens,
        new_tokens: levels.new_tokens,
        engine: EngineConfig {
            kv: KvCacheConfig { memory_bytes: kv_memory, ..KvCacheConfig::default() },
            scheduler: SchedulerConfig {
                max_batch_tokens: levels.max_batch_tokens,
                max_running: max_level,
                ..SchedulerConfig::default()
            },
            threads: levels.threads,
            ..EngineConfig::default()
        },
    };
    let (model, tokenizer) = (Arc::new(loaded.model), Arc::new(loaded.tokenizer));
    let bar = ProgressBar::new(levels.concurrency.len() as u64).with_style(
        ProgressStyle::with_template("concurrency levels [{bar:30}] {pos}/{len}, {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut stdout = std::io::stdout().lock();
    if !levels.json {
        writeln!(
            stdout,
            "| concurrency | decode tok/s | output tok/s | TTFT ms | TPOT ms | KV waste | preemptions | tokens/step |"
        )?;
        writeln!(stdout, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")?;
    }
    let mut print = |r: &BenchResult| {
        bar.inc(1);
        bar.suspend(|| print_level(&mut stdout, r, levels.json));
    };
    run_levels(&model, &tokenizer, &config, &mut print).context("the engine benchmark failed")?;
    bar.finish_and_clear();
    Ok(())
}

fn print_level(out: &mut impl Write, r: &BenchResult, json: bool) {
    let _ = if json {
        let v = serde_json::json!({
            "concurrency": r.concurrency,
            "tokens_per_s": r.tokens_per_s,
            "output_tokens_per_s": r.output_tokens_per_s,
            "ttft_ms": r.ttft_ms,
            "tpot_ms": r.tpot_ms,
            "kv_waste": r.kv_waste,
            "preemptions": r.preemptions,
            "steps": r.steps,
            "mean_batch_tokens": r.mean_batch_tokens,
            "kv_capacity_tokens": r.kv_capacity_tokens,
        });
        writeln!(out, "{v}")
    } else {
        writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.2}% | {} | {:.1} |",
            r.concurrency,
            r.tokens_per_s,
            r.output_tokens_per_s,
            r.ttft_ms,
            r.tpot_ms,
            r.kv_waste * 100.0,
            r.preemptions,
            r.mean_batch_tokens
        )
    };
}
