//! The knobs of one request's sampler and their validation.
//!
//! Defaults follow llama.cpp's `common_params_sampling` (temperature 0.8,
//! top-k 40, top-p 0.95, min-p 0.05, penalties off over the last 64 tokens), so
//! a model behaves here as it does under `llama-cli` with no flags.

use thiserror::Error;

/// Sampling parameters of one request. See the [module docs](super) for the
/// order in which they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax, ties go to the lowest id).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability mass is at
    /// least `top_p`; `1.0` disables.
    pub top_p: f32,
    /// Keep tokens with `p >= min_p * p_max`; `0.0` disables.
    pub min_p: f32,
    /// HF / llama.cpp repetition penalty: for each token in the penalty window,
    /// `logit > 0 ? logit / pen : logit * pen`; `1.0` disables.
    pub repetition_penalty: f32,
    /// OpenAI presence penalty: `logit -= presence` for each token seen in the
    /// penalty window. Negative values encourage repetition.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty: `logit -= frequency * count` where `count` is
    /// the token's number of occurrences in the penalty window.
    pub frequency_penalty: f32,
    /// How many of the most recent history tokens the penalties look at;
    /// `0` means the whole history.
    pub penalty_last_n: usize,
    /// Seed of the request's random stream; `None` draws one from the OS
    /// (read it back with [`Sampler::seed`](super::Sampler::seed)).
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95,
    /// min-p 0.05, all penalties off, penalty window 64, random seed.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Plain argmax decoding: temperature 0, every filter and penalty off.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Self::default() }
    }

    /// Whether these parameters pick the argmax (no random draw).
    pub fn is_greedy(&self) -> bool {
        // NaN counts as greedy, so unvalidated params degrade safely.
        self.temperature.is_nan() || self.temperature <= 0.0
    }

    /// Checks every parameter's range; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let check = |name, value: f32, ok: bool, expected| {
            if ok {
                Ok(())
            } else {
                Err(SamplingError::InvalidParam { name, value, expected })
            }
        };
        let t = self.temperature;
        check("temperature", t, t.is_finite() && t >= 0.0, "a finite number >= 0 (0 = greedy)")?;
        let p = self.top_p;
        check("top_p", p, p > 0.0 && p <= 1.0, "in (0, 1] (1 = disabled)")?;
        let m = self.min_p;
        check("min_p", m, (0.0..=1.0).contains(&m), "in [0, 1] (0 = disabled)")?;
        let r = self.repetition_penalty;
        check("repetition_penalty", r, r.is_finite() && r > 0.0, "a finite number > 0 (1 = disabled)")?;
        let pp = self.presence_penalty;
        check("presence_penalty", pp, pp.is_finite(), "a finite number (0 = disabled)")?;
        let fp = self.frequency_penalty;
        check("frequency_penalty", fp, fp.is_finite(), "a finite number (0 = disabled)")
    }
}

/// A sampling parameter outside its range.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum SamplingError {
    /// `name` has `value`, which is not `expected`.
    #[error("invalid sampling parameter {name} = {value}: it must be {expected}")]
    InvalidParam { name: &'static str, value: f32, expected: &'static str },
}
