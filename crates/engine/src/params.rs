//! What a request asks to generate.

use crate::sampler::SamplingParams;

/// What to generate after a prompt.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Generate at most this many tokens.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before any of these strings; they are not emitted.
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}
