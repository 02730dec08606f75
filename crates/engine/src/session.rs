//! A single conversation on one sequence: prompt in, streamed text out.
//!
//! The session keeps its KV cache between calls and reuses the longest
//! common prefix of the previous context and the new prompt, so a chat turn
//! only computes the tokens the conversation added. The paged, batched engine
//! reuses prefixes across requests the same way, by block hash.

use crate::sampler::{Sampler, SamplingParams};
use crate::stop::{FinishReason, StopMatcher};
use memwall_formats::tokenizer::{StreamDecoder, Tokenizer};
use memwall_kernels::ThreadPool;
use memwall_model::{ContiguousKvCache, KvElem, LogitsWanted, Model, ModelError, Scratch, SeqInput};
use std::time::{Duration, Instant};

/// What to generate after a prompt.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before any of these strings; they are not emitted.
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

/// The outcome of one [`Session::generate`] call.
#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// Generated ids, including a final end-of-generation id if one was sampled.
    pub ids: Vec<u32>,
    /// The emitted text (without stop strings or end-of-generation text).
    pub text: String,
    pub finish: FinishReason,
    /// Prompt tokens served from the session's cache instead of computed.
    pub reused_tokens: usize,
    pub metrics: GenerationMetrics,
}

#[derive(Clone, Debug, Default)]
pub struct GenerationMetrics {
    /// From the call to the first generated token.
    pub ttft: Duration,
    /// Mean time per generated token after the first.
    pub tpot: Duration,
    pub total: Duration,
}

impl GenerationMetrics {
    /// Generated tokens per second after the first token.
    pub fn decode_tokens_per_s(&self, generated: usize) -> f64 {
        if generated < 2 || self.tpot.is_zero() {
            return 0.0;
        }
        1.0 / self.tpot.as_secs_f64()
    }
}

/// One sequence with its cache.
pub struct Session<'m> {
    model: &'m Model,
    tokenizer: &'m Tokenizer,
    pool: &'m ThreadPool,
    kv: ContiguousKvCache,
    scratch: Scratch,
    /// Tokens whose K/V are in `kv`, in order.
    cached: Vec<u32>,
}

const SEQ: u64 = 0;

impl<'m> Session<'m> {
    /// A session that keeps keys and values in f16, as llama.cpp does.
    pub fn new(model: &'m Model, tokenizer: &'m Tokenizer, pool: &'m ThreadPool) -> Self {
        Session::with_kv(model, tokenizer, pool, KvElem::F16)
    }

    /// A session whose cache stores `elem` (f32 to match a float32 reference).
    pub fn with_kv(model: &'m Model, tokenizer: &'m Tokenizer, pool: &'m ThreadPool, elem: KvElem) -> Self {
        let c = &model.config;
        Session {
            model,
            tokenizer,
            pool,
            kv: ContiguousKvCache::new(c.n_layers, c.kv_dim(), c.context_len, elem),
            scratch: Scratch::default(),
            cached: Vec::new(),
        }
    }

    /// Generates a continuation of `prompt_ids`, calling `on_text` with each
    /// piece of text as soon as it is complete UTF-8 and cannot be part of a
    /// stop string.
    pub fn generate(
        &mut self,
        prompt_ids: &[u32],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, ModelError> {
        let start = Instant::now();
        let context = self.model.config.context_len;
        if prompt_ids.is_empty() {
            return Err(ModelError::BadConfig("the prompt is empty: give at least one token".into()));
        }
        if prompt_ids.len() >= context {
            return Err(ModelError::PromptTooLong { prompt: prompt_ids.len(), context });
        }
        // Reuse the cached prefix, but always compute the last prompt token:
        // its logits choose the first new token.
        let common = self.cached.iter().zip(prompt_ids).take_while(|(a, b)| a == b).count();
        let reused = common.min(prompt_ids.len() - 1);
        self.cached.truncate(reused);

        let mut sampler = Sampler::new(params.sampling.clone());
        let mut decoder = StreamDecoder::continuing(self.tokenizer);
        let mut stops = StopMatcher::new(params.stop.clone());
        let mut history = prompt_ids.to_vec();
        let mut text = String::new();
        let mut emit = |s: &str, text: &mut String| {
            if !s.is_empty() {
                on_text(s);
                text.push_str(s);
            }
        };
        let mut ids = Vec::new();
        let mut pending: Vec<u32> = prompt_ids[reused..].to_vec();
        let mut first_token_at = None;
        let mut stopped_by_string = false;
        let finish = loop {
            if ids.len() >= params.max_tokens {
                break FinishReason::Length;
            }
            if self.cached.len() + pending.len() > context {
                break FinishReason::Length;
            }
            let input = SeqInput { seq: SEQ, tokens: &pending, start: self.cached.len(), logits: LogitsWanted::Last };
            let logits = self.model.forward(&[input], &mut self.kv, self.pool, &mut self.scratch)?;
            self.cached.extend_from_slice(&pending);
            let token = sampler.sample(logits, &history, 0).token;
            first_token_at.get_or_insert_with(Instant::now);
            ids.push(token);
            history.push(token);
            if !params.ignore_eos && self.tokenizer.is_eog(token) {
                break FinishReason::Stop;
            }
            let piece = decoder.push(token);
            let step = stops.push(&piece);
            emit(&step.emit, &mut text);
            if step.stopped {
                stopped_by_string = true;
                break FinishReason::Stop;
            }
            pending.clear();
            pending.push(token);
        };
        if !stopped_by_string {
            // Flush text held back for UTF-8 completion or a partial stop string.
            let tail = decoder.finish();
            let step = stops.push(&tail);
            emit(&step.emit, &mut text);
            if !step.stopped {
                let rest = stops.finish();
                emit(&rest, &mut text);
            }
        }
        let end = Instant::now();
        let first = first_token_at.unwrap_or(end);
        let metrics = GenerationMetrics {
            ttft: first - start,
            tpot: if ids.len() > 1 { (end - first) / (ids.len() as u32 - 1) } else { Duration::ZERO },
            total: end - start,
        };
        Ok(Generation { prompt_ids: prompt_ids.to_vec(), ids, text, finish, reused_tokens: reused, metrics })
    }

    /// Tokens currently cached.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }
}
