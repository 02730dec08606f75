//! `memwall logits`: the top-K next-token logits after each position, for
//! checking a model against a reference implementation.

use crate::model_args::ModelArgs;
use crate::parallel_args::ParallelArgs;
use anyhow::{Context, Result};
use memwall_model::{ContiguousKvCache, KvElem, LogitsWanted, Scratch, SeqInput};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    parallel: ParallelArgs,
    /// Comma-separated token ids, e.g. 1,2,3.
    #[arg(long, value_delimiter = ',', required = true)]
    tokens: Vec<u32>,
    /// How many logits to print per position.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

pub fn run(args: Args) -> Result<()> {
    // Split: every rank runs the same forward pass on its part; rank 0 prints.
    let par = args.parallel.init()?;
    let loaded = args.model.load_part(&par)?;
    let pool = memwall_kernels::ThreadPool::new(par.threads(args.model.threads));
    let model = &loaded.model;
    let c = &model.config;
    let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, KvElem::F32);
    let mut scratch = Scratch::default();
    let input = SeqInput { seq: 0, tokens: &args.tokens, start: 0, logits: LogitsWanted::All };
    let logits = model.forward(&[input], &mut kv, &pool, &mut scratch).context("forward pass")?;
    if par.rank() > 0 {
        return Ok(());
    }
    let positions: Vec<Vec<(u32, f32)>> = logits.chunks_exact(c.vocab).map(|row| top_k(row, args.top)).collect();
    println!("{}", serde_json::json!({ "positions": positions }));
    Ok(())
}

/// The `k` largest `(id, logit)` pairs, largest first (ties: lower id first).
pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, row[i as usize])).collect()
}
