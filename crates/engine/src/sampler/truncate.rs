//! Top-k, top-p and min-p: which tokens may be drawn at all.
//!
//! All three keep a *prefix* of the vocabulary sorted by likelihood (ties go
//! to the lower id), so the surviving set is the shortest of their prefixes
//! and only that prefix is ever sorted:
//!
//! - top-k keeps the `k` best in one pass through a `k`-heap (or with
//!   `select_nth_unstable` when `k` is large);
//! - top-p is measured against the probability mass of the top-k set (as
//!   llama.cpp renormalises after top-k); its cut is found in O(vocab) with a
//!   histogram of mass, sorting only the bucket where the cut falls;
//! - min-p is a threshold on `logit - max` that does not depend on the set
//!   (the maximum always survives), so it is applied first as a linear filter.
//!
//! The survivors are returned in id order: the draw never depends on the
//! internal order left by an unstable selection, which may change between
//! Rust versions.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::SamplingParams;

/// Above this `k`, top-k selects in place instead of through a heap.
const HEAP_MAX_K: usize = 512;

/// A token still eligible to be drawn, with its post-penalty logit. Ordered
/// by [`by_likelihood`]: the *greatest* candidate is the least likely.
#[derive(Clone, Copy, Debug)]
pub(super) struct Candidate {
    pub id: u32,
    pub logit: f32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        by_likelihood(self, other)
    }
}

/// Most likely first; equal logits go to the lower id. Logits are sanitized
/// (never NaN), so this is a total order (and `-0.0 == 0.0`).
pub(super) fn by_likelihood(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.partial_cmp(&a.logit).unwrap_or(Ordering::Equal).then(a.id.cmp(&b.id))
}

/// Fills `cands` with the tokens of `logits` (`[vocab]`, sanitized, maximum
/// `max`, which must be finite) that survive top-k, top-p and min-p, in id
/// order. `exp` is `exp(logit - max)` per token (`[vocab]`) and `z_full` its
/// sum. Tokens at `-inf` never survive.
pub(super) fn truncate(
    params: &SamplingParams,
    logits: &[f32],
    exp: &[f32],
    max: f32,
    z_full: f64,
    cands: &mut Vec<Candidate>,
) {
    let weight = |c: &Candidate| exp[c.id as usize] as f64;
    let min_p = params.min_p;
    // `(l - max) >= ln(min_p)` is `p >= min_p * p_max`; min_p = 0 keeps all
    // finite logits, so the same filter also drops the `-inf` ones.
    let ln_min_p = if min_p > 0.0 && min_p <= 1.0 { (min_p as f64).ln() } else { f64::NEG_INFINITY };
    let keep = |l: f32| l > f32::NEG_INFINITY && (l - max) as f64 >= ln_min_p;

    cands.clear();
    let mut z = z_full;
    let mut reordered = false;
    let k = params.top_k;
    if k > 0 && k < logits.len() {
        top_k(logits, k, cands);
        reordered = true;
        z = cands.iter().map(weight).sum();
        cands.retain(|c| keep(c.logit));
    } else {
        cands.extend(all_candidates(logits).filter(|c| keep(c.logit)));
    }

    let top_p = params.top_p;
    if top_p > 0.0 && top_p < 1.0 {
        top_p_cut(cands, max, weight, top_p as f64 * z);
        reordered = true;
    }
    if reordered {
        cands.sort_unstable_by_key(|c| c.id);
    }
}

/// Fills `cands` with the `k` (`> 0`) most likely tokens of `logits` that are
/// not `-inf`, in no particular order.
fn top_k(logits: &[f32], k: usize, cands: &mut Vec<Candidate>) {
    let finite = all_candidates(logits).filter(|c| c.logit > f32::NEG_INFINITY);
    if k > HEAP_MAX_K {
        cands.extend(finite);
        if k < cands.len() {
            cands.select_nth_unstable_by(k - 1, by_likelihood);
            cands.truncate(k);
        }
        return;
    }
    // A max-heap of the kept: its root is the least likely, to be replaced.
    let mut heap = BinaryHeap::from(std::mem::take(cands));
    for c in finite {
        if heap.len() < k {
            heap.push(c);
        } else if heap.peek().is_some_and(|worst| c < *worst) {
            if let Some(mut worst) = heap.peek_mut() {
                *worst = c;
            }
        }
    }
    *cands = heap.into_vec();
}

/// Every token of `logits` (`[vocab]`) as a candidate, in id order.
pub(super) fn all_candidates(logits: &[f32]) -> impl Iterator<Item = Candidate> + '_ {
    logits.iter().enumerate().map(|(i, &logit)| Candidate { id: i as u32, logit })
}

/// Keeps the shortest most-likely prefix of `cands` whose mass `Σ weight`
/// (`weight` being `exp(logit - max)`)
/// reaches `target` (all of them if none does), in any order.
///
/// O(len): a histogram of mass by `max - logit` in buckets of 1/16 nat finds
/// the bucket where the running mass crosses `target`; only that bucket's
/// candidates are sorted, the better ones are kept whole. The running mass is
/// the bucket sums, in bucket order.
fn top_p_cut(cands: &mut Vec<Candidate>, max: f32, weight: impl Fn(&Candidate) -> f64, target: f64) {
    const PER_NAT: f32 = 16.0;
    const BUCKETS: usize = 512; // 32 nats; the last bucket takes the rest
    let bucket = |c: &Candidate| (((max - c.logit) * PER_NAT) as usize).min(BUCKETS - 1);

    let mut mass = [0.0f64; BUCKETS];
    for c in cands.iter() {
        mass[bucket(c)] += weight(c);
    }
    let mut before = 0.0;
    let Some(cross) = mass.iter().position(|&m| {
        let reached = before + m >= target;
        if !reached {
            before += m;
        }
        reached
    }) else {
        return;
    };

    cands.retain(|c| bucket(c) <= cross);
    // The crossing bucket last (a two-key sort is linear), sorted inside.
    cands.sort_unstable_by_key(|c| bucket(c) == cross);
    let first = cands.partition_point(|c| bucket(c) < cross);
    cands[first..].sort_unstable_by(by_likelihood);
    let mut acc = before;
    for i in first..cands.len() {
        acc += weight(&cands[i]);
        if acc >= target {
            cands.truncate(i + 1);
            return;
        }
    }
}
