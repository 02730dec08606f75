//! Causal attention of a batch of ragged sequences over their cached K/V.
//!
//! Work items are (query block, query head): a query block is up to
//! [`QUERY_BLOCK`] consecutive tokens of one sequence (a decode step's token
//! is a block of one). Threads take contiguous ranges of items. An item reads
//! its sequence's K/V once for all its queries: each stored `[head_dim]` row
//! is widened to f32 once (runs stored in f16 or 8 bits, the paged cache)
//! and scored against every query of the block that may see it (causal
//! mask). Each query folds the runs its cache returns with an online softmax
//! (running max `m`, running sum `l`, rescaled accumulator), so nothing
//! `n × n` is ever materialised and pages work as well as one buffer.
//!
//! Batch invariance: a query runs exactly the float operations it would run
//! alone — its own scores, the same per-run max and rescale, the same rows
//! in the same order; rows it must not see are skipped, not added as zeros —
//! so its result depends only on its sequence's cached values and the run
//! boundaries, never on the block or the batch. Grouped-query attention
//! maps query head `h` to key/value head `h / (n_heads / n_kv_heads)`.

use crate::config::ModelConfig;
use crate::decoder::SeqInput;
use crate::kv::{KvCache, KvRows};
use memwall_kernels::pool::{split_range, SharedOut};
use memwall_kernels::{ops, ThreadPool};

/// Consecutive queries of one sequence that share one pass over its K/V.
pub const QUERY_BLOCK: usize = 16;

/// `out[t, h]` = softmax(q[t, h] · Kᵀ / √head_dim) · V over positions
/// `[0, pos(t)]` of t's sequence. `q` and `out` are `[n_tokens, n_heads * head_dim]`;
/// K/V of the batch's tokens must already be in `kv`.
pub fn attend_batch(
    pool: &ThreadPool,
    c: &ModelConfig,
    inputs: &[SeqInput<'_>],
    kv: &dyn KvCache,
    layer: usize,
    q: &[f32],
    out: &mut [f32],
) {
    let (hd, n_heads) = (c.head_dim, c.n_heads);
    let group = c.n_heads / c.n_kv_heads;
    let kv_dim = c.kv_dim();
    let scale = 1.0 / (hd as f32).sqrt();
    // Query blocks: (sequence, first token of the batch, first position, tokens).
    let mut blocks: Vec<(u64, usize, usize, usize)> = Vec::new();
    let mut t0 = 0;
    for i in inputs {
        for b in (0..i.tokens.len()).step_by(QUERY_BLOCK) {
            blocks.push((i.seq, t0 + b, i.start + b, QUERY_BLOCK.min(i.tokens.len() - b)));
        }
        t0 += i.tokens.len();
    }
    let n_items = blocks.len() * n_heads;
    let out = SharedOut::new(out);

    pool.run(|thread, n_threads| {
        // `[nq][run rows]` scores, `[nq][head_dim]` accumulators, per-query `m` and `l`.
        let mut scores: Vec<f32> = Vec::new();
        let mut acc: Vec<f32> = Vec::new();
        let (mut m, mut l) = (Vec::new(), Vec::new());
        // One stored head row widened to f32, `[head_dim]`.
        let mut row = vec![0f32; hd];
        for item in split_range(n_items, 1, thread, n_threads) {
            let ((seq, t0, p0, nq), h) = (blocks[item / n_heads], item % n_heads);
            let query = |qi: usize| &q[(t0 + qi) * n_heads * hd + h * hd..][..hd];
            let kv_off = (h / group) * hd;
            m.clear();
            m.resize(nq, f32::NEG_INFINITY);
            l.clear();
            l.resize(nq, 0f32);
            acc.clear();
            acc.resize(nq * hd, 0f32);
            kv.read(layer, seq, p0 + nq, &mut |run| {
                let n = run.k.len() / kv_dim;
                // Queries that see row j: those at positions >= run.start + j.
                let first_seeing = |j: usize| (run.start + j).saturating_sub(p0);
                scores.clear();
                scores.resize(nq * n, f32::NEG_INFINITY);
                for j in 0..n {
                    let k = match run.k {
                        KvRows::F32(k) => &k[j * kv_dim + kv_off..][..hd],
                        k => {
                            k.widen(j * kv_dim + kv_off, &mut row);
                            &row
                        }
                    };
                    for qi in first_seeing(j)..nq {
                        scores[qi * n + j] = ops::dot_f32(query(qi), k) * scale;
                    }
                }
                for qi in 0..nq {
                    let seen = &scores[qi * n..qi * n + n];
                    let run_max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    if run_max > m[qi] {
                        let correction = (m[qi] - run_max).exp();
                        l[qi] *= correction;
                        acc[qi * hd..(qi + 1) * hd].iter_mut().for_each(|a| *a *= correction);
                        m[qi] = run_max;
                    }
                }
                for j in 0..n {
                    if first_seeing(j) >= nq {
                        continue;
                    }
                    let v = match run.v {
                        KvRows::F32(v) => &v[j * kv_dim + kv_off..][..hd],
                        v => {
                            v.widen(j * kv_dim + kv_off, &mut row);
                            &row
                        }
                    };
                    for qi in first_seeing(j)..nq {
                        let w = (scores[qi * n + j] - m[qi]).exp();
                        l[qi] += w;
                        ops::axpy(w, v, &mut acc[qi * hd..(qi + 1) * hd]);
                    }
                }
            });
            for qi in 0..nq {
                // SAFETY: every (token, head) writes its own `[hd]` slice of
                // `out`, and items are partitioned between threads.
                let dst = unsafe { out.slice((t0 + qi) * n_heads * hd + h * hd, hd) };
                let inv = if l[qi] > 0.0 { 1.0 / l[qi] } else { 0.0 };
                for (o, a) in dst.iter_mut().zip(&acc[qi * hd..(qi + 1) * hd]) {
                    *o = a * inv;
                }
            }
        }
    });
}
