//! The serving engine: submit requests from any thread, stream their
//! tokens back, cancel them, shut down cleanly.
//!
//! After vLLM v1's `EngineCore` split: the caller-facing [`Engine`] only
//! validates requests and passes messages; one background thread owns the
//! model, the paged KV cache ([`PagedKvCache`]) and the [`Scheduler`], and
//! loops: take new requests and cancellations, schedule a step, run one
//! batched forward pass over every scheduled sequence (each weight read once
//! per step), sample each sequence that reached its last token with its own
//! seeded [`Sampler`](crate::Sampler), stream the tokens, free the blocks of
//! finished sequences.
//!
//! Guarantees:
//! - **Batch invariance**: a request's tokens depend only on its prompt and
//!   parameters (seed included), not on what else runs, how its prompt is
//!   chunked, prefix-cache hits, or preemptions. The kernels compute each row
//!   in a fixed order, attention folds one run per block, and each sample has
//!   its own random stream that advances once per token.
//! - **No out-of-memory**: a request that could never fit is refused by
//!   [`Engine::submit`]; otherwise a full cache queues or preempts.
//! - [`Engine::cancel`] frees the request's blocks before the next step.
//! - Dropping or [`Engine::shutdown`] ends every pending request with
//!   [`FinishReason::Cancelled`] and joins the thread.
//! - **A panic in a step does not end the engine**: the requests of that step
//!   get an [`Event::Error`] and their blocks are freed; later requests run
//!   as on a fresh engine (a split model's engine refuses them instead, see
//!   `step_loop`).

pub mod plan;
mod step_loop;

use crate::metrics::{EngineMetrics, RequestMetrics};
use crate::paged_kv::{KvCacheConfig, KvTooSmall, PagedKvCache};
use crate::params::{GenerateParams, MAX_LOGPROBS};
use crate::sampler::{SamplingError, TokenLogprobs};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::stop::FinishReason;
use memwall_formats::tokenizer::Tokenizer;
use memwall_model::cost::WeightBytes;
use memwall_model::Model;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How the engine is sized.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub kv: KvCacheConfig,
    pub scheduler: SchedulerConfig,
    /// Threads of the compute pool.
    pub threads: usize,
    /// Measured memory bandwidth in bytes/s, for the per-step MBU.
    pub peak_bandwidth: Option<f64>,
    /// Measured peak FLOP/s, for the per-step MFU.
    pub peak_flops: Option<f64>,
    /// Weight sizes by kind for the cost model (`WeightBytes::from_gguf`);
    /// `None` counts [`Model::weight_bytes`] as one lump read per step.
    pub weights: Option<WeightBytes>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kv: KvCacheConfig::default(),
            scheduler: SchedulerConfig::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            peak_bandwidth: None,
            peak_flops: None,
            weights: None,
        }
    }
}

/// Identifies a request within an engine.
pub type RequestId = u64;

/// One generation request.
#[derive(Clone, Debug)]
pub struct Request {
    /// `[n_prompt]` token ids.
    pub prompt: Vec<u32>,
    pub params: GenerateParams,
    /// Lower values are scheduled first; equal values first come, first served.
    pub priority: i32,
    /// Parallel samples of the prompt (OpenAI's `n`). They share the
    /// prompt's KV blocks, copied on write; sample `i` draws from seed
    /// `seed + i`.
    pub n: usize,
}

impl Request {
    pub fn new(prompt: Vec<u32>, params: GenerateParams) -> Self {
        Request { prompt, params, priority: 0, n: 1 }
    }
}

/// What a request's handle receives, in order per sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Sample `index` generated `id`; `text` is what it completed (possibly
    /// empty: held for UTF-8 or a possible stop string, or end-of-generation).
    /// `logprobs` is `Some` exactly when the request set
    /// [`GenerateParams::logprobs`]: the raw-logit log-softmax of `id` and of
    /// the most likely alternatives (see [`TokenLogprobs`]).
    Token { index: usize, id: u32, text: String, logprobs: Option<TokenLogprobs> },
    /// Text held back until the end, flushed when sample `index` finishes.
    Text { index: usize, text: String },
    /// Sample `index` ended; no more events for it.
    Finished { index: usize, reason: FinishReason, metrics: RequestMetrics },
    /// The request failed; no more events.
    Error(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens but the model's context is {context}: shorten it")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("max_tokens must be at least 1")]
    NoTokensWanted,
    #[error("n (parallel samples) must be at least 1")]
    NoSamples,
    #[error("logprobs asks for {asked} alternatives per token; at most {max} are supported")]
    TooManyLogprobs { asked: usize, max: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(
        "the request needs up to {tokens} KV positions per sample but the cache holds {capacity}: \
         lower max_tokens or the prompt, or give the KV cache more memory"
    )]
    NeverFits { tokens: usize, capacity: usize },
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    KvTooSmall(#[from] KvTooSmall),
    #[error("the engine has shut down")]
    ShutDown,
    #[error("the request failed: {0}")]
    Failed(String),
}

pub(crate) enum Command {
    Submit {
        id: RequestId,
        request: Request,
        events: Sender<Event>,
    },
    Cancel(RequestId),
    /// Debug builds only: the next step panics ([`Engine::inject_step_panic`]).
    #[cfg(debug_assertions)]
    PanicNextStep(String),
    Shutdown,
}

/// A running engine (see the module docs).
pub struct Engine {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    metrics: Arc<Mutex<EngineMetrics>>,
    vocab: usize,
    context: usize,
    capacity_tokens: usize,
}

impl Engine {
    /// Sizes the KV cache from `config.kv.memory_bytes` and starts the step loop.
    pub fn new(model: Arc<Model>, tokenizer: Arc<Tokenizer>, config: EngineConfig) -> Result<Engine, EngineError> {
        let kv = PagedKvCache::for_model(&model.config, &config.kv)?;
        let metrics = EngineMetrics {
            kv_blocks_total: kv.pool().num_blocks(),
            kv_block_size: kv.block_size(),
            kv_block_bytes: kv.block_bytes(),
            ..Default::default()
        };
        let capacity_tokens = kv.capacity_tokens();
        let metrics = Arc::new(Mutex::new(metrics));
        let (vocab, context) = (model.config.vocab, model.config.context_len);
        let (tx, rx) = channel();
        let shared = Arc::clone(&metrics);
        let scheduler = Scheduler::new(config.scheduler.clone());
        let thread = std::thread::Builder::new()
            .name("memwall-engine".into())
            .spawn(move || step_loop::run(model, tokenizer, kv, scheduler, config, shared, rx))
            .map_err(|e| EngineError::Failed(format!("cannot start the engine thread: {e}")))?;
        Ok(Engine {
            commands: tx,
            thread: Some(thread),
            next_id: AtomicU64::new(0),
            metrics,
            vocab,
            context,
            capacity_tokens,
        })
    }

    /// Token positions the KV cache holds (reported at start).
    pub fn kv_capacity_tokens(&self) -> usize {
        self.capacity_tokens
    }

    /// Queues `request` and returns the handle its events stream to. Refuses
    /// a request that is malformed or could never fit in the KV cache.
    pub fn submit(&self, request: Request) -> Result<RequestHandle, EngineError> {
        self.validate(&request)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel();
        let n = request.n;
        self.commands.send(Command::Submit { id, request, events: tx }).map_err(|_| EngineError::ShutDown)?;
        Ok(RequestHandle { id, n, events: rx, commands: self.commands.clone() })
    }

    fn validate(&self, r: &Request) -> Result<(), EngineError> {
        if r.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if r.prompt.len() >= self.context {
            return Err(EngineError::PromptTooLong { prompt: r.prompt.len(), context: self.context });
        }
        if let Some(&id) = r.prompt.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(EngineError::TokenOutOfRange { id, vocab: self.vocab });
        }
        if r.params.max_tokens == 0 {
            return Err(EngineError::NoTokensWanted);
        }
        if r.n == 0 {
            return Err(EngineError::NoSamples);
        }
        if let Some(asked) = r.params.logprobs.filter(|&k| k > MAX_LOGPROBS) {
            return Err(EngineError::TooManyLogprobs { asked, max: MAX_LOGPROBS });
        }
        r.params.sampling.validate()?;
        let tokens = r.prompt.len() + max_new_tokens(r, self.context);
        if tokens > self.capacity_tokens {
            return Err(EngineError::NeverFits { tokens, capacity: self.capacity_tokens });
        }
        Ok(())
    }

    /// Cancels request `id`: its samples finish with
    /// [`FinishReason::Cancelled`] and their blocks are freed before the next step.
    pub fn cancel(&self, id: RequestId) {
        let _ = self.commands.send(Command::Cancel(id));
    }

    /// Testing aid, compiled into debug builds only (absent from release
    /// builds, inert until called): the next step panics with `message` on
    /// a compute-pool thread after its forward pass, as a kernel's failed
    /// assert would, so tests can check that the engine survives it.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub fn inject_step_panic(&self, message: &str) {
        let _ = self.commands.send(Command::PanicNextStep(message.to_string()));
    }

    /// A snapshot of the engine's counters and last step.
    pub fn metrics(&self) -> EngineMetrics {
        self.metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Cancels whatever is pending and joins the step loop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        // A no-op for a request that has already finished.
        let _ = self.commands.send(Command::Cancel(self.id));
    }
}

/// Tokens a request may generate: `max_tokens`, capped by the context.
pub(crate) fn max_new_tokens(r: &Request, context: usize) -> usize {
    r.params.max_tokens.min(context.saturating_sub(r.prompt.len()))
}

/// One sample's result, gathered by [`RequestHandle::wait`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    /// Generated ids, including a final end-of-generation id if sampled.
    pub ids: Vec<u32>,
    pub text: String,
    /// One entry per id of `ids` when the request asked for logprobs, else empty.
    pub logprobs: Vec<TokenLogprobs>,
    pub finish: Option<FinishReason>,
    pub metrics: RequestMetrics,
}

/// The receiving end of one request. Dropping it cancels the request.
pub struct RequestHandle {
    id: RequestId,
    n: usize,
    events: Receiver<Event>,
    commands: Sender<Command>,
}

impl RequestHandle {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The next event; `None` once every sample has finished.
    pub fn recv(&self) -> Option<Event> {
        self.events.recv().ok()
    }

    /// The next event if one is ready.
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Asks the engine to cancel this request.
    pub fn cancel(&self) {
        let _ = self.commands.send(Command::Cancel(self.id));
    }

    /// Blocks until the request ends and returns each sample's result.
    pub fn wait(self) -> Result<Vec<Completion>, EngineError> {
        self.stream(&mut |_, _| {})
    }

    /// Like [`wait`](Self::wait), calling `on_text(index, piece)` with each
    /// non-empty piece of text as it arrives (what `memwall generate` prints).
    pub fn stream(self, on_text: &mut dyn FnMut(usize, &str)) -> Result<Vec<Completion>, EngineError> {
        let mut out = vec![Completion::default(); self.n];
        while let Some(e) = self.recv() {
            match e {
                Event::Token { index, id, text, logprobs } => {
                    out[index].ids.push(id);
                    out[index].logprobs.extend(logprobs);
                    if !text.is_empty() {
                        on_text(index, &text);
                    }
                    out[index].text.push_str(&text);
                }
                Event::Text { index, text } => {
                    on_text(index, &text);
                    out[index].text.push_str(&text);
                }
                Event::Finished { index, reason, metrics } => {
                    out[index].finish = Some(reason);
                    out[index].metrics = metrics;
                }
                Event::Error(e) => return Err(EngineError::Failed(e)),
            }
        }
        if out.iter().any(|c| c.finish.is_none()) {
            return Err(EngineError::ShutDown);
        }
        Ok(out)
    }
}
