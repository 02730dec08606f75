//! Turning one row of logits into one token.
//!
//! A [`Sampler`] belongs to one request: it owns the request's
//! [`SamplingParams`], its random stream and its scratch buffers, so sampling
//! allocates nothing per token once the buffers have grown to the vocabulary
//! (except the `top` vector of [`TokenLogprobs`], and only when logprobs are
//! asked for). Each sequence drawing from its own seeded stream is what makes
//! a request's tokens independent of the batch it runs in.
//!
//! # Order of operations
//!
//! The chain is llama.cpp's default (`penalties; top_k; top_p; min_p;
//! temperature`, its `dry`, `typ_p`, `xtc` and `top_n_sigma` being off), with
//! **temperature last**: the filters see the untempered distribution, and the
//! temperature only reshapes the draw among the survivors. (Hugging Face and
//! vLLM apply the temperature before top-p / min-p; with temperature 1 the two
//! agree.)
//!
//! 1. **Sanitize**: NaN becomes `-inf`, `+inf` becomes `f32::MAX`.
//! 2. **Logprobs**, only when asked for, are taken here: [`TokenLogprobs`] is
//!    the log-softmax of the model's *raw* logits (sanitized only), before
//!    penalties, temperature and truncation. This is what the OpenAI API
//!    reports and vLLM's default (`logprobs_mode = "raw_logprobs"`): the
//!    model's own belief, whatever the request's sampling knobs.
//! 3. **Penalties** over the last `penalty_last_n` tokens of `history`
//!    (repetition, then frequency and presence; see `penalty.rs`).
//! 4. **Greedy** when `temperature == 0`: the argmax of the post-penalty
//!    logits, ties to the lowest id.
//! 5. **Top-k**, then **top-p** against the top-k set's renormalised mass,
//!    then **min-p** against the maximum (see `truncate.rs`).
//! 6. **Temperature**, then one draw: the survivors in id order are weighted
//!    by `exp((logit - max) / temperature)` and a uniform number from the
//!    stream picks one by inverse CDF.
//!
//! The softmax normaliser is computed once per call when it is needed (for a
//! draw, or for logprobs) and shared between steps 2 and 6 when no penalty
//! changed the logits; greedy sampling without logprobs computes none.
//!
//! If every logit is `-inf` (or NaN), the token is 0 and its logprob is
//! `-ln(vocab)`, as if all logits were equal.
//!
//! # Reproducibility
//!
//! The stream is ChaCha8 (`rand_chacha`, whose output is value-stable across
//! platforms and versions), seeded by expanding the `u64` seed with SplitMix64
//! rather than through `rand`'s `seed_from_u64`, and read only through
//! `next_u64`, never through `rand`'s distributions. A non-greedy call draws
//! exactly one `u64`, whatever the filters keep, so token `n` always uses the
//! `n`-th number of the stream. The weights use our own `exp` and fixed-order
//! sums (see `weights.rs`) rather than the platform's libm, so the same seed
//! and logits give the same tokens on every platform.

mod params;
mod penalty;
mod truncate;
mod weights;

#[cfg(test)]
mod tests;

use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use params::{SamplingError, SamplingParams};
use truncate::{all_candidates, by_likelihood, Candidate};

/// One sampled token and, when asked for, its logprobs.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// The chosen token id.
    pub token: u32,
    /// `Some` exactly when [`Sampler::sample`] was given `Some(n)`.
    pub logprobs: Option<TokenLogprobs>,
}

/// What the OpenAI API's `logprobs` report about one sampled token.
///
/// Both numbers are log-probabilities under the log-softmax of the model's
/// **raw** logits for this position: before penalties, temperature, top-k,
/// top-p and min-p (vLLM's default `raw_logprobs`; OpenAI's convention). So
/// under greedy decoding without penalties, `logprob` is the largest value
/// in `top`, and with sampling the chosen token need not be in `top`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// Log-probability of the chosen token, `<= 0`. `-inf` only if the model
    /// gave the chosen token a `-inf` (or NaN) logit, which happens only when
    /// penalties pushed every other token to `-inf` as well.
    pub logprob: f32,
    /// The `n` most likely tokens as `(id, logprob)`, most likely first
    /// (ties to the lower id), `n` clamped to the vocabulary; empty for
    /// `n = 0`. Masked tokens appear with `-inf` if `n` reaches them.
    pub top: Vec<(u32, f32)>,
}

/// The sampler of one request: parameters, random stream, scratch buffers.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    /// The seed actually used (drawn from the OS when `params.seed` is None).
    seed: u64,
    rng: ChaCha8Rng,
    /// Sanitized logits of the current call, `[vocab]`: raw, then post-penalty.
    logits: Vec<f32>,
    /// Occurrences of each token in the penalty window, `[vocab]`; all zero
    /// between calls.
    counts: Vec<u32>,
    /// Tokens surviving truncation, or the top-n for logprobs, `[<= vocab]`.
    cands: Vec<Candidate>,
    /// `exp(logit - max)` of `logits`, `[vocab]`.
    exp: Vec<f32>,
    /// Tempered weights of `cands`, `[<= vocab]`.
    weights: Vec<f32>,
}

impl Sampler {
    /// A sampler for `params`. Parameters are not validated here (call
    /// [`SamplingParams::validate`] at the API boundary); out-of-range values
    /// never panic but fall back to "disabled" (NaN temperature: greedy).
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(rand::random);
        Self {
            rng: ChaCha8Rng::from_seed(expand_seed(seed)),
            seed,
            params,
            logits: Vec::new(),
            counts: Vec::new(),
            cands: Vec::new(),
            exp: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// The parameters this sampler applies.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The seed of the random stream: `params.seed`, or the one drawn from
    /// the OS (report it so a user can replay the request).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Picks the next token from `logits` (`[vocab]`, raw model output),
    /// penalising tokens of `history` (prompt + generated so far; the caller
    /// chooses what counts). With `logprobs: Some(n)` it also reports the
    /// chosen token's logprob and the `n` most likely tokens (clamped to
    /// `vocab`), from the raw logits (see [`TokenLogprobs`]); with `None` it
    /// computes none of that and allocates nothing.
    ///
    /// # Panics
    ///
    /// If `logits` is empty (a vocabulary has at least one token).
    pub fn sample(&mut self, logits: &[f32], history: &[u32], logprobs: Option<usize>) -> Sampled {
        assert!(!logits.is_empty(), "Sampler::sample: empty logits row");
        self.logits.clear();
        self.logits.extend(logits.iter().map(|&l| sanitize(l)));
        // Raw logprobs come before the penalties touch `self.logits`.
        let raw = logprobs.map(|n| {
            let dist = Distribution::of(&self.logits, &mut self.exp);
            let top = if n > 0 { self.top_logprobs(&dist, n) } else { Vec::new() };
            (dist, top)
        });
        let penalised = penalty::apply_penalties(&self.params, history, &mut self.logits, &mut self.counts);

        let token = if self.params.is_greedy() {
            argmax(&self.logits)
        } else {
            // Always one draw per call, so the stream stays aligned with the
            // token index whatever the filters keep.
            let u = unit_f64(self.rng.next_u64());
            // Unpenalised logits are the raw ones: reuse their softmax (and `exp`).
            let dist = match &raw {
                Some((dist, _)) if !penalised => *dist,
                _ => Distribution::of(&self.logits, &mut self.exp),
            };
            self.draw(&dist, u)
        };
        let logprobs =
            raw.map(|(dist, top)| TokenLogprobs { logprob: dist.logprob(sanitize(logits[token as usize])), top });
        Sampled { token, logprobs }
    }

    /// Truncates, applies the temperature and picks the survivor at `u`
    /// (uniform in `[0, 1)`) of the cumulative weights.
    fn draw(&mut self, dist: &Distribution, u: f64) -> u32 {
        if dist.max == f32::NEG_INFINITY {
            return 0;
        }
        truncate::truncate(&self.params, &self.logits, &self.exp, dist.max, dist.z, &mut self.cands);
        let t = self.params.temperature;
        self.weights.clear();
        self.weights.extend(self.cands.iter().map(|c| weights::exp_neg((c.logit - dist.max) / t)));
        // The maximum survives with weight 1, so some weight is positive.
        weights::pick(&self.weights, u).map_or(0, |i| self.cands[i].id)
    }

    /// The `n` most likely tokens of `dist` with their logprobs.
    fn top_logprobs(&mut self, dist: &Distribution, n: usize) -> Vec<(u32, f32)> {
        let n = n.min(self.logits.len());
        self.cands.clear();
        self.cands.extend(all_candidates(&self.logits));
        if n < self.cands.len() {
            self.cands.select_nth_unstable_by(n - 1, by_likelihood);
        }
        let top = &mut self.cands[..n];
        top.sort_unstable_by(by_likelihood);
        top.iter().map(|c| (c.id, dist.logprob(c.logit))).collect()
    }
}

/// NaN becomes `-inf` (never chosen), `+inf` becomes `f32::MAX` (so that
/// `logit - max` stays finite).
pub(crate) fn sanitize(logit: f32) -> f32 {
    if logit.is_nan() {
        f32::NEG_INFINITY
    } else if logit > f32::MAX {
        f32::MAX
    } else {
        logit
    }
}

/// The log-softmax of a row of sanitized logits, as `max` and
/// `z = Σ exp(logit - max)` (summed in f64).
#[derive(Clone, Copy, Debug)]
struct Distribution {
    max: f32,
    z: f64,
    vocab: usize,
}

impl Distribution {
    /// Also fills `exp` with `exp(logit - max)`, `[vocab]` (left stale if
    /// every logit is `-inf`).
    fn of(logits: &[f32], exp: &mut Vec<f32>) -> Self {
        // A select rather than `f32::max`: no NaN here, and it vectorizes.
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
        let z = if max == f32::NEG_INFINITY {
            0.0
        } else {
            weights::exp_shifted(logits, max, exp);
            weights::sum(exp)
        };
        Self { max, z, vocab: logits.len() }
    }

    fn logprob(&self, logit: f32) -> f32 {
        if self.max == f32::NEG_INFINITY {
            -(self.vocab as f32).ln()
        } else {
            (logit as f64 - self.max as f64 - self.z.ln()) as f32
        }
    }
}

/// Index of the largest logit, the lowest one among equals (0 if all `-inf`).
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The top 53 bits of `x` as a uniform number in `[0, 1)`.
fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Expands a `u64` seed into ChaCha's 32-byte key with SplitMix64, a fixed
/// function of our own so the stream never depends on `rand`'s choice.
fn expand_seed(seed: u64) -> [u8; 32] {
    let mut state = seed;
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    key
}
