//! Causal attention of a batch of ragged sequences over their cached K/V.
//!
//! Work items are (query block, key/value head, group of query heads): a
//! query block is up to [`QUERY_BLOCK`] consecutive tokens of one sequence
//! (a decode step's token is a block of one). Threads take items in turn
//! (item `i` to thread `i mod n`): a prompt's later query blocks see more
//! keys, and contiguous ranges left one thread most of the work (taking
//! them from contiguous shares with stealing, as the matmuls do, measured
//! 1-2% slower on a TinyLlama pp512). An item
//! reads its sequence's K/V of one key/value head once for all its queries
//! and query heads (grouped-query attention shares a key/value head between
//! `n_heads / n_kv_heads` query heads; [`heads_per_item`] keeps them in one
//! item unless that leaves too few items for the threads): chunks of up to
//! 16 stored `[head_dim]` rows are widened to f32 (runs stored in f16 or 8
//! bits, the paged cache) and handed to the SIMD kernels of
//! `memwall_kernels::attention` (scores of the block's queries against the
//! chunk with the causal mask, `exp`, the weighted sum of values), one query
//! head after the other. Each query
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
    // Items: (block, key/value head, group of `per` query heads), in that nesting.
    let per = heads_per_item(blocks.len() * c.n_kv_heads, group, pool.n_threads());
    let (subs, n_kv) = (group / per, c.n_kv_heads);
    let n_items = blocks.len() * n_kv * subs;
    let out = SharedOut::new(out);

    pool.run(|thread, n_threads| {
        ITEM_SCRATCH.with_borrow_mut(|s| {
            let ItemScratch { qs, rows, scores, acc, m, l } = s;
            rows.resize(CHUNK * hd, 0.0);
            for item in (thread..n_items).step_by(n_threads) {
                let ((seq, t0, p0, nq), rest) = (blocks[item / (n_kv * subs)], item % (n_kv * subs));
                let kv_head = rest / subs;
                let h0 = kv_head * group + (rest % subs) * per;
                let qn = per * nq;
                qs.clear();
                for h in h0..h0 + per {
                    for qi in 0..nq {
                        qs.extend_from_slice(&q[(t0 + qi) * n_heads * hd + h * hd..][..hd]);
                    }
                }
                let kv_off = kv_head * hd;
                m.clear();
                m.resize(qn, f32::NEG_INFINITY);
                l.clear();
                l.resize(qn, 0f32);
                acc.clear();
                acc.resize(qn * hd, 0f32);
                kv.read(layer, seq, p0 + nq, &mut |run| {
                    let n = run.k.len() / kv_dim;
                    // Key j of the run is visible to query qi iff j <= qi - base.
                    let base = run.start as isize - p0 as isize;
                    let widen = |x: &KvRows, j0: usize, c: usize, rows: &mut [f32]| {
                        x.widen(j0 * kv_dim + kv_off, kv_dim, hd, &mut rows[..c * hd]);
                    };
                    scores.clear();
                    scores.resize(qn * n, f32::NEG_INFINITY);
                    for j0 in (0..n).step_by(CHUNK) {
                        let c = CHUNK.min(n - j0);
                        widen(&run.k, j0, c, rows);
                        for (head_q, head_scores) in qs.chunks_exact(nq * hd).zip(scores.chunks_exact_mut(nq * n)) {
                            attention::scores(
                                hd,
                                head_q,
                                rows,
                                c,
                                base + j0 as isize,
                                scale,
                                &mut head_scores[j0..],
                                n,
                            );
                        }
                    }
                    for r in 0..qn {
                        let seen = &mut scores[r * n..][..attention::visible(r % nq, base, n)];
                        let run_max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        if run_max == f32::NEG_INFINITY {
                            // Nothing to weigh (or only -inf / NaN scores): add nothing.
                            seen.fill(0.0);
                            continue;
                        }
                        if run_max > m[r] {
                            let correction = memwall_kernels::exp::exp(m[r] - run_max);
                            l[r] *= correction;
                            acc[r * hd..(r + 1) * hd].iter_mut().for_each(|a| *a *= correction);
                            m[r] = run_max;
                        }
                        attention::exp_sub(seen, m[r]);
                        l[r] += seen.iter().sum::<f32>();
                    }
                    for j0 in (0..n).step_by(CHUNK) {
                        let c = CHUNK.min(n - j0);
                        widen(&run.v, j0, c, rows);
                        for (head_p, head_acc) in scores.chunks_exact(nq * n).zip(acc.chunks_exact_mut(nq * hd)) {
                            attention::weighted_sum(hd, &head_p[j0..], n, rows, c, base + j0 as isize, head_acc);
                        }
                    }
                });
                for r in 0..qn {
                    let (h, qi) = (h0 + r / nq, r % nq);
                    // SAFETY: every (token, head) writes its own `[hd]` slice of
                    // `out`, and items are partitioned between threads.
                    let dst = unsafe { out.slice((t0 + qi) * n_heads * hd + h * hd, hd) };
                    let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
                    for (o, a) in dst.iter_mut().zip(&acc[r * hd..(r + 1) * hd]) {
                        *o = a * inv;
                    }
                }
            }
        });
    });
}

/// One thread's buffers for its items, kept between calls so a decode step
/// allocates nothing once they have grown. Query rows `r = head · nq + qi`
/// of an item: the queries `qs` `[per · nq, hd]`, accumulators `acc`
/// `[per · nq, hd]`, running max `m` and sum `l` `[per · nq]`, `scores`
/// `[per · nq, run rows]`; `rows`: one chunk of keys or values widened to
/// f32 `[CHUNK, hd]`.
#[derive(Default)]
struct ItemScratch {
    qs: Vec<f32>,
    rows: Vec<f32>,
    scores: Vec<f32>,
    acc: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
}

thread_local! {
    static ITEM_SCRATCH: std::cell::RefCell<ItemScratch> = std::cell::RefCell::new(ItemScratch::default());
}

/// Query heads of one key/value head that share an item: all `group` of
/// them when the `kv_items` (blocks × key/value heads) give every thread
/// at least two items, else the largest divisor of `group` that does (1:
/// one query head per item).
fn heads_per_item(kv_items: usize, group: usize, threads: usize) -> usize {
    (1..=group).rev().filter(|d| group.is_multiple_of(*d)).find(|d| kv_items * (group / d) >= 2 * threads).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::heads_per_item;

    #[test]
    fn query_heads_share_an_item_while_threads_have_two_items() {
        // TinyLlama (32 query heads, 4 key/value heads), one decode token.
        assert_eq!(heads_per_item(4, 8, 2), 8);
        assert_eq!(heads_per_item(4, 8, 4), 4);
        assert_eq!(heads_per_item(4, 8, 16), 1);
        // SmolLM2 (9 / 3): three items cannot feed two threads twice.
        assert_eq!(heads_per_item(3, 3, 2), 1);
        assert_eq!(heads_per_item(6, 3, 2), 3);
        // Multi-head attention, and a long prompt's many blocks.
        assert_eq!(heads_per_item(32, 1, 2), 1);
        assert_eq!(heads_per_item(4 * 32, 8, 2), 8);
    }
}
