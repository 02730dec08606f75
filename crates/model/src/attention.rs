//! Causal attention of a batch of ragged sequences over their cached K/V.
//!
//! Each (token, query head) pair is an independent work item; threads take
//! contiguous ranges of items. A query folds the runs its cache returns with
//! an online softmax (running max `m`, running sum `l`, rescaled accumulator),
//! so it works on one contiguous buffer or on pages alike and never
//! materialises an `n × n` score matrix. Runs stored in f16 or 8 bits (the
//! paged cache) are widened to f32 one `[head_dim]` row at a time; the result for
//! a token depends only on its sequence's cached values and the run
//! boundaries, never on the other items of the batch. Grouped-query attention maps query
//! head `h` to key/value head `h / (n_heads / n_kv_heads)`.

use crate::config::ModelConfig;
use crate::decoder::SeqInput;
use crate::kv::{KvCache, KvRows};
use memwall_kernels::pool::{split_range, SharedOut};
use memwall_kernels::{ops, ThreadPool};

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
    // (sequence, position) of every token of the batch.
    let tokens: Vec<(u64, usize)> =
        inputs.iter().flat_map(|i| (i.start..i.start + i.tokens.len()).map(move |p| (i.seq, p))).collect();
    let n_items = tokens.len() * n_heads;
    let out = SharedOut::new(out);

    pool.run(|thread, n_threads| {
        let mut scores: Vec<f32> = Vec::new();
        let mut acc = vec![0f32; hd];
        // One stored head row widened to f32, `[head_dim]`.
        let mut row = vec![0f32; hd];
        for item in split_range(n_items, 1, thread, n_threads) {
            let (t, h) = (item / n_heads, item % n_heads);
            let (seq, pos) = tokens[t];
            let qh = &q[t * n_heads * hd + h * hd..][..hd];
            let kv_off = (h / group) * hd;
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            acc.fill(0.0);
            kv.read(layer, seq, pos + 1, &mut |run| {
                let n = run.k.len() / kv_dim;
                scores.clear();
                match run.k {
                    KvRows::F32(k) => {
                        scores.extend((0..n).map(|j| ops::dot_f32(qh, &k[j * kv_dim + kv_off..][..hd]) * scale));
                    }
                    k => scores.extend((0..n).map(|j| {
                        k.widen(j * kv_dim + kv_off, &mut row);
                        ops::dot_f32(qh, &row) * scale
                    })),
                }
                let run_max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if run_max > m {
                    let correction = (m - run_max).exp();
                    l *= correction;
                    acc.iter_mut().for_each(|a| *a *= correction);
                    m = run_max;
                }
                for (j, &s) in scores.iter().enumerate() {
                    let w = (s - m).exp();
                    l += w;
                    match run.v {
                        KvRows::F32(v) => ops::axpy(w, &v[j * kv_dim + kv_off..][..hd], &mut acc),
                        v => {
                            v.widen(j * kv_dim + kv_off, &mut row);
                            ops::axpy(w, &row, &mut acc);
                        }
                    }
                }
            });
            // SAFETY: every item writes its own `[hd]` slice of `out`, and
            // items are partitioned between threads.
            let dst = unsafe { out.slice(t * n_heads * hd + h * hd, hd) };
            let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
            for (o, a) in dst.iter_mut().zip(&acc) {
                *o = a * inv;
            }
        }
    });
}
