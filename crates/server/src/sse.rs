//! Server-Sent Events for streamed completions: one `data: {json}` event per
//! chunk, a final usage chunk when `stream_options.include_usage` is set,
//! and `data: [DONE]`. With logprobs, every generated token gets a chunk
//! carrying its entry, even when its text is held back (empty delta).
//!
//! The response body owns the [`Running`] request: when the client
//! disconnects, hyper drops the body, and the drop cancels the request in
//! the engine.

use crate::access::Deferred;
use crate::generate::{finish_str, Running, Usage};
use crate::logprobs::TokenEntry;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use memwall_engine::Event;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;

/// How one endpoint shapes its chunks.
pub trait ChunkFormat: Send + 'static {
    /// A chunk sent before any text of sample `index` (chat's role), if any.
    fn start(&self, index: usize) -> Option<Value>;
    /// New text of sample `index` (possibly empty when `token` is given),
    /// and, when the request asked for logprobs, the token that produced it
    /// (`None` for text flushed at the end).
    fn delta(&mut self, index: usize, text: &str, token: Option<&TokenEntry>) -> Value;
    fn finish(&self, index: usize, reason: &str) -> Value;
    /// The last chunk, with `usage` and no choices.
    fn usage(&self, usage: &Usage) -> Value;
}

struct StreamState<F> {
    running: Running,
    format: F,
    include_usage: bool,
    pending: VecDeque<Bytes>,
    ended: bool,
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// The streamed response for `running`.
pub fn response<F: ChunkFormat>(running: Running, format: F, include_usage: bool) -> Response {
    let pending = (0..running.n).filter_map(|i| format.start(i)).map(|v| event(&v)).collect();
    let state = StreamState { running, format, include_usage, pending, ended: false };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(b), st));
            }
            if st.ended {
                return None;
            }
            match st.running.next().await {
                Some(Event::Token { index, id, text, logprobs: Some(lp) }) => {
                    // Every token has its chunk, so that logprobs stream one per token.
                    st.pending.push_back(event(&st.format.delta(index, &text, Some(&(id, lp)))));
                }
                Some(Event::Token { index, text, logprobs: None, .. }) | Some(Event::Text { index, text }) => {
                    if !text.is_empty() {
                        st.pending.push_back(event(&st.format.delta(index, &text, None)));
                    }
                }
                Some(Event::Finished { index, reason, .. }) => {
                    st.pending.push_back(event(&st.format.finish(index, finish_str(reason))));
                }
                Some(Event::Error(e)) => {
                    let err = crate::ApiError::internal(format!("generation failed: {e}"));
                    st.pending.push_back(event(&err.body()));
                    st.pending.push_back(Bytes::from_static(DONE));
                    st.ended = true;
                }
                None => {
                    if st.include_usage {
                        st.pending.push_back(event(&st.format.usage(&st.running.usage)));
                    }
                    st.pending.push_back(Bytes::from_static(DONE));
                    st.ended = true;
                }
            }
        }
    });
    let mut resp =
        ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream))
            .into_response();
    resp.extensions_mut().insert(Deferred);
    resp
}

/// The fields every chunk of a response repeats.
#[derive(Clone, Debug)]
pub struct ChunkHead {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
}

impl ChunkHead {
    pub fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object, "created": self.created, "model": self.model, "choices": choices})
    }

    pub fn usage_chunk(&self, usage: &Usage) -> Value {
        let mut v = self.chunk(json!([]));
        v["usage"] = usage.json();
        v
    }
}
