//! Causal attention of a batch of ragged sequences over their cached K/V.
//!
//! Work items are (query block, query head): a query block is up to
//! [`QUERY_BLOCK`] consecutive tokens of one sequence (a decode step's token
//! is a block of one). Threads take items in turn (item `i` to thread
//! `i mod n`): a prompt's later query blocks see more keys, and contiguous
//! ranges left one thread most of the work. An item reads
//! its sequence's K/V once for all its queries: chunks of up to 16 stored
//! `[head_dim]` rows are widened to f32 (runs stored in f16 or 8 bits, the
//! paged cache) and handed to the SIMD kernels of
//! `memwall_kernels::attention` (scores of the block's queries against the
//! chunk with the causal mask, `exp`, the weighted sum of values). Each query
//! folds the runs its cache returns with an online softmax (running max `m`,
//! running sum `l`, rescaled accumulator), so nothing `n × n` is ever
//! materialised and pages work as well as one buffer.
//!
//! Batch invariance: a query runs exactly the float operations it would run
//! alone — its own scores (the kernels compute each score, `exp` and value
//! sum identically whatever the block size and SIMD width), the same per-run
//! max and rescale, the same rows in the same order; rows it must not see
//! are skipped, not added as zeros —
//! so its result depends only on its sequence's cached values and the run
//! boundaries, never on the block or the batch. Grouped-query attention
//! maps query head `h` to key/value head `h / (n_heads / n_kv_heads)`.

use crate::config::ModelConfig;
use crate::decoder::SeqInput;
use crate::kv::{KvCache, KvRows};
use memwall_kernels::attention::{self, CHUNK};
use memwall_kernels::pool::SharedOut;
use memwall_kernels::ThreadPool;

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
        // The block's queries of one head `[nq, hd]`, one chunk of keys or
        // values widened to f32 `[CHUNK, hd]`, scores `[nq, run rows]`,
        // accumulators `[nq, hd]`, per-query running max `m` and sum `l`.
        let mut qs: Vec<f32> = Vec::new();
        let mut rows = vec![0f32; CHUNK * hd];
        let mut scores: Vec<f32> = Vec::new();
        let mut acc: Vec<f32> = Vec::new();
        let (mut m, mut l) = (Vec::new(), Vec::new());
        for item in (thread..n_items).step_by(n_threads) {
            let ((seq, t0, p0, nq), h) = (blocks[item / n_heads], item % n_heads);
            qs.clear();
            for qi in 0..nq {
                qs.extend_from_slice(&q[(t0 + qi) * n_heads * hd + h * hd..][..hd]);
            }
            let kv_off = (h / group) * hd;
            m.clear();
            m.resize(nq, f32::NEG_INFINITY);
            l.clear();
            l.resize(nq, 0f32);
            acc.clear();
            acc.resize(nq * hd, 0f32);
            kv.read(layer, seq, p0 + nq, &mut |run| {
                let n = run.k.len() / kv_dim;
                // Key j of the run is visible to query qi iff j <= qi - base.
                let base = run.start as isize - p0 as isize;
                let widen = |x: &KvRows, j0: usize, c: usize, rows: &mut [f32]| {
                    for (j, row) in rows[..c * hd].chunks_exact_mut(hd).enumerate() {
                        x.widen((j0 + j) * kv_dim + kv_off, row);
                    }
                };
                scores.clear();
                scores.resize(nq * n, f32::NEG_INFINITY);
                for j0 in (0..n).step_by(CHUNK) {
                    let c = CHUNK.min(n - j0);
                    widen(&run.k, j0, c, &mut rows);
                    attention::scores(hd, &qs, &rows, c, base + j0 as isize, scale, &mut scores[j0..], n);
                }
                for qi in 0..nq {
                    let seen = &mut scores[qi * n..][..attention::visible(qi, base, n)];
                    let run_max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    if run_max == f32::NEG_INFINITY {
                        // Nothing to weigh (or only -inf / NaN scores): add nothing.
                        seen.fill(0.0);
                        continue;
                    }
                    if run_max > m[qi] {
                        let correction = attention::exp(m[qi] - run_max);
                        l[qi] *= correction;
                        acc[qi * hd..(qi + 1) * hd].iter_mut().for_each(|a| *a *= correction);
                        m[qi] = run_max;
                    }
                    attention::exp_sub(seen, m[qi]);
                    l[qi] += seen.iter().sum::<f32>();
                }
                for j0 in (0..n).step_by(CHUNK) {
                    let c = CHUNK.min(n - j0);
                    widen(&run.v, j0, c, &mut rows);
                    attention::weighted_sum(hd, &scores[j0..], n, &rows, c, base + j0 as isize, &mut acc);
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
