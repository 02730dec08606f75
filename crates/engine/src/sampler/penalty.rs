//! Repetition, presence and frequency penalties over a window of history.
//!
//! The formula is llama.cpp's `llama_sampler_penalties_apply`, per token `t`
//! occurring `count > 0` times in the window:
//!
//! ```text
//! logit = logit > 0 ? logit / repetition : logit * repetition
//! logit -= count * frequency + presence
//! ```
//!
//! Counting uses a dense `[vocab]` scratch of zeros: the window's tokens are
//! counted, each distinct token is penalised once and its count reset, so one
//! call costs O(window) and allocates nothing once the scratch has grown.

use super::{sanitize, SamplingParams};

/// Applies the penalties of `params` to `logits` (`[vocab]`) for the tokens in
/// the last `penalty_last_n` entries of `history`. `counts` is scratch that is
/// all zeros on entry and on return. Token ids `>= vocab` are ignored.
/// Penalties outside their valid range (see `SamplingParams::validate`) are
/// skipped rather than applied. Returns `false` when every penalty is off
/// (`logits` untouched), `true` when they were applied.
pub(super) fn apply_penalties(
    params: &SamplingParams,
    history: &[u32],
    logits: &mut [f32],
    counts: &mut Vec<u32>,
) -> bool {
    let rep = params.repetition_penalty;
    let rep = if rep.is_finite() && rep > 0.0 { rep } else { 1.0 };
    let finite_or_zero = |x: f32| if x.is_finite() { x } else { 0.0 };
    let presence = finite_or_zero(params.presence_penalty);
    let frequency = finite_or_zero(params.frequency_penalty);
    if rep == 1.0 && presence == 0.0 && frequency == 0.0 {
        return false;
    }

    let n = params.penalty_last_n;
    let window = if n == 0 || n >= history.len() { history } else { &history[history.len() - n..] };

    counts.resize(logits.len(), 0);
    for &t in window {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
        }
    }
    for &t in window {
        let i = t as usize;
        let count = match counts.get(i) {
            Some(&c) if c > 0 => c,
            _ => continue, // out of vocab, or already penalised
        };
        counts[i] = 0;
        let mut logit = logits[i];
        if rep != 1.0 {
            logit = if logit > 0.0 { logit / rep } else { logit * rep };
        }
        logit -= count as f32 * frequency + presence;
        logits[i] = sanitize(logit);
    }
    true
}
