//! What a request asks to generate.

use crate::sampler::SamplingParams;

/// Most alternatives [`GenerateParams::logprobs`] may ask for per token (the
/// OpenAI API's `top_logprobs` limit, and vLLM's default `max_logprobs`).
pub const MAX_LOGPROBS: usize = 20;

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
    /// Report logprobs with every generated token: `Some(n)` puts the chosen
    /// token's logprob and the `n` most likely alternatives
    /// (`0..=`[`MAX_LOGPROBS`]) in each [`Event::Token`](crate::Event::Token);
    /// `None` computes nothing and costs nothing.
    ///
    /// The distribution is the log-softmax of the model's **raw** logits at
    /// that position, before penalties, temperature and top-k / top-p /
    /// min-p (as OpenAI and vLLM's default `raw_logprobs` report it); see
    /// [`TokenLogprobs`](crate::sampler::TokenLogprobs).
    pub logprobs: Option<usize>,
}
