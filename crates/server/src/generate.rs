//! The bridge from an HTTP request to the engine and back: a queue slot
//! (429 when full), `Engine::submit`, a thread that forwards the request's
//! blocking event channel into a tokio channel, and a [`Running`] whose drop
//! cancels the request in the engine if it has not finished.
//!
//! Cancellation reaches the engine as soon as the consumer goes away (the
//! response body or handler future is dropped), not at the next token: the
//! guard calls `Engine::cancel` directly, and the engine frees the
//! request's blocks before its next step.

use crate::access::{AccessRecord, Deferred, RequestCtx};
use crate::logprobs::TokenEntry;
use crate::params::Validated;
use crate::sse::ChunkHead;
use crate::{ApiError, AppState, Ready};
use axum::response::{IntoResponse, Response};
use memwall_engine::{Event, FinishReason, Request, RequestId};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Token counts of a response, OpenAI's `usage`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// OpenAI's spelling of a finish reason.
pub fn finish_str(r: FinishReason) -> &'static str {
    r.as_str()
}

/// A request submitted to the engine. Dropping it before the end cancels it.
pub struct Running {
    events: mpsc::UnboundedReceiver<Event>,
    state: Arc<AppState>,
    ready: Arc<Ready>,
    id: RequestId,
    pub n: usize,
    finished: usize,
    done: bool,
    pub usage: Usage,
    access: AccessRecord,
    _slot: Slot,
}

/// What the HTTP side needs to know about the prompt.
pub struct Prompt {
    /// `[n_prompt]` token ids.
    pub ids: Vec<u32>,
    /// The request field holding it (`messages` or `prompt`), for errors.
    pub param: &'static str,
    /// Its text, kept only for `--log-prompts`.
    pub text: Option<String>,
}

/// Takes a queue slot and submits the request.
pub fn start(
    state: &Arc<AppState>,
    ready: &Arc<Ready>,
    ctx: RequestCtx,
    prompt: Prompt,
    v: &Validated,
) -> Result<Running, ApiError> {
    let max_queue = state.config.max_queue;
    if state.in_flight.fetch_add(1, Ordering::AcqRel) >= max_queue {
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::queue_full(max_queue));
    }
    let slot = Slot(Arc::clone(state));
    let prompt_tokens = prompt.ids.len();
    let limit = ready.limit();
    if let Some(m) = v.max_tokens {
        if prompt_tokens < limit && prompt_tokens.saturating_add(m) > limit {
            return Err(ApiError::invalid(
                v.max_tokens_param,
                format!(
                    "the prompt has {prompt_tokens} tokens and {} is {m}, more than the {limit} positions \
                     this server holds per request: lower it to at most {}",
                    v.max_tokens_param,
                    limit - prompt_tokens
                ),
            ));
        }
    }
    let params = v.generate_params(prompt_tokens, limit);
    let request = Request { prompt: prompt.ids, params, priority: 0, n: v.n };
    let handle = ready.engine.submit(request).map_err(|e| ApiError::from_engine(e, prompt.param))?;
    let id = handle.id();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name(format!("memwall-req-{id}"))
        .spawn(move || {
            while let Some(e) = handle.recv() {
                if tx.send(e).is_err() {
                    break; // the consumer is gone; dropping `handle` cancels too
                }
            }
        })
        .map_err(|e| {
            ready.engine.cancel(id);
            ApiError::internal(format!("cannot start a request thread: {e}"))
        })?;
    if let Ok(mut live) = state.live.lock() {
        live.insert(id);
    }
    state.metrics.observe_prompt(prompt_tokens);
    let log_prompt = if state.config.log_prompts { prompt.text } else { None };
    Ok(Running {
        events: rx,
        state: Arc::clone(state),
        ready: Arc::clone(ready),
        id,
        n: v.n,
        finished: 0,
        done: false,
        usage: Usage { prompt_tokens, completion_tokens: 0 },
        access: AccessRecord {
            state: Arc::clone(state),
            ctx,
            prompt_tokens,
            generated_tokens: 0,
            ttft: None,
            outcome: "cancelled",
            prompt: log_prompt,
        },
        _slot: slot,
    })
}

/// A taken queue slot, given back on drop.
struct Slot(Arc<AppState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Running {
    /// The next event, with the bookkeeping done; `None` at the end.
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let Some(event) = self.events.recv().await else {
            // The engine went away without finishing every sample.
            self.done = true;
            if self.finished < self.n {
                self.access.outcome = "error";
                return Some(Event::Error("the engine stopped before the request finished".into()));
            }
            return None;
        };
        match &event {
            Event::Finished { reason, metrics, .. } => {
                self.state.metrics.observe_sample(metrics);
                self.usage.completion_tokens += metrics.generated_tokens;
                self.access.generated_tokens += metrics.generated_tokens;
                if metrics.generated_tokens > 0 {
                    self.access.ttft = Some(self.access.ttft.map_or(metrics.ttft, |t| t.min(metrics.ttft)));
                }
                self.finished += 1;
                if self.finished >= self.n {
                    self.done = true;
                    self.access.outcome = finish_str(*reason);
                }
            }
            Event::Error(_) => {
                self.done = true;
                self.access.outcome = "error";
            }
            Event::Token { .. } | Event::Text { .. } => {}
        }
        Some(event)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            self.ready.engine.cancel(self.id);
            self.access.outcome = "cancelled";
        }
        if let Ok(mut live) = self.state.live.lock() {
            live.remove(&self.id);
        }
    }
}

/// One sample's result for a non-streaming response.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    pub text: String,
    pub finish: Option<FinishReason>,
    /// Each generated token with its logprobs, when the request asked for them.
    pub tokens: Vec<TokenEntry>,
}

/// The non-streaming answer: runs `running` to the end and replies with
/// `{"id", "object", "created", "model", "choices", "usage"}`, each choice
/// built by `choice(index, sample)`; an error mid-generation becomes its
/// error response. Marked [`Deferred`]: the access log line is written when
/// the request ends.
pub async fn respond(
    running: Running,
    head: &ChunkHead,
    object: &str,
    choice: impl Fn(usize, Choice) -> Value,
) -> Response {
    let mut resp = match collect(running).await {
        Ok((choices, usage)) => {
            let choices: Vec<Value> = choices.into_iter().enumerate().map(|(i, c)| choice(i, c)).collect();
            let mut body = head.chunk(Value::Array(choices));
            body["object"] = Value::from(object);
            body["usage"] = usage.json();
            axum::Json(body).into_response()
        }
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(Deferred);
    resp
}

/// Runs `running` to the end and gathers each sample's text.
pub async fn collect(mut running: Running) -> Result<(Vec<Choice>, Usage), ApiError> {
    let mut choices = vec![Choice::default(); running.n];
    while let Some(event) = running.next().await {
        match event {
            Event::Token { index, id, text, logprobs } => {
                if let Some(c) = choices.get_mut(index) {
                    c.text.push_str(&text);
                    c.tokens.extend(logprobs.map(|lp| (id, lp)));
                }
            }
            Event::Text { index, text } => {
                if let Some(c) = choices.get_mut(index) {
                    c.text.push_str(&text);
                }
            }
            Event::Finished { index, reason, .. } => {
                if let Some(c) = choices.get_mut(index) {
                    c.finish = Some(reason);
                }
            }
            Event::Error(e) => return Err(ApiError::internal(format!("generation failed: {e}"))),
        }
    }
    Ok((choices, running.usage))
}
