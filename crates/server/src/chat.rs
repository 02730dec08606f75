//! `POST /v1/chat/completions`: messages rendered with the chat template
//! (the `--chat-template` override or the model's own, as `transformers`'
//! `apply_chat_template` with `add_generation_prompt`), tokenized with
//! special tokens parsed, generated, returned as one `chat.completion` or
//! streamed as `chat.completion.chunk` events. `logprobs: true` (with
//! `top_logprobs`) fills `choices[i].logprobs.content` (see `crate::logprobs`).

use crate::access::RequestCtx;
use crate::generate::{self, finish_str, Prompt, Usage};
use crate::logprobs::{self, TokenEntry};
use crate::models::check_model;
use crate::params::{body_bytes, from_value, parse_json, CommonParams};
use crate::sse::{self, ChunkFormat, ChunkHead};
use crate::{ApiError, AppState, Ready};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::Response;
use memwall_formats::chat_template::{render, ChatMessage};
use memwall_formats::tokenizer::{EncodeOptions, Tokenizer};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
struct ChatBody {
    messages: Option<Vec<Message>>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// The messages as the template sees them; only text content is supported.
fn to_chat(messages: Vec<Message>) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must hold at least one message"));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        if m.role.is_empty() {
            return Err(ApiError::invalid("messages", format!("`messages[{i}].role` is empty")));
        }
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut s = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => s.push_str(&t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                "messages",
                                format!("`messages[{i}].content` has a `{kind}` part; only `text` parts are supported"),
                            ))
                        }
                    }
                }
                s
            }
        };
        out.push(ChatMessage { role: m.role, content });
    }
    Ok(out)
}

/// Renders and tokenizes the conversation.
fn prompt(ready: &Ready, messages: &[ChatMessage]) -> Result<(Vec<u32>, String), ApiError> {
    let Some(template) = &ready.chat_template else {
        return Err(ApiError::invalid(
            "messages",
            "this model has no chat template: restart the server with --chat-template FILE, or use /v1/completions",
        ));
    };
    let tok = &ready.tokenizer;
    let text = render(template, messages, true, tok.bos_text(), tok.eos_text())
        .map_err(|e| ApiError::invalid("messages", format!("cannot apply the chat template: {e}")))?;
    let add_bos = tok.add_bos_by_default() && (tok.bos_text().is_empty() || !text.starts_with(tok.bos_text()));
    let ids = tok.encode(&text, EncodeOptions { add_bos, parse_special: true });
    Ok((ids, text))
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.config.max_body_bytes)?;
    let ready = Arc::clone(state.ready()?);
    let value: Value = parse_json(&body)?;
    let common: CommonParams = from_value(&value)?;
    let chat: ChatBody = from_value(&value)?;
    check_model(&ready, common.model.as_deref())?;
    let mut v = common.validate()?;
    v.logprobs = logprobs::chat_param(&common)?;
    let messages = to_chat(chat.messages.ok_or_else(|| ApiError::invalid("messages", "`messages` is required"))?)?;
    let r = Arc::clone(&ready);
    let (ids, text) = tokio::task::spawn_blocking(move || prompt(&r, &messages))
        .await
        .map_err(|e| ApiError::internal(format!("prompt task failed: {e}")))??;
    let head = ChunkHead {
        id: format!("chatcmpl-{}", ctx.id),
        object: "chat.completion.chunk",
        created: crate::unix_now(),
        model: ready.model_id.clone(),
    };
    let running = generate::start(&state, &ready, ctx, Prompt { ids, param: "messages", text: Some(text) }, &v)?;
    if v.stream {
        let chunks = ChatChunks { head, tokenizer: v.logprobs.map(|_| Arc::clone(&ready.tokenizer)) };
        return Ok(sse::response(running, chunks, v.include_usage));
    }
    let tokenizer = &ready.tokenizer;
    Ok(generate::respond(running, &head, "chat.completion", |i, c| {
        let logprobs = match v.logprobs {
            Some(_) => logprobs::chat_json(tokenizer, &c.tokens),
            None => Value::Null,
        };
        json!({
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": logprobs,
            "finish_reason": c.finish.map(finish_str),
        })
    })
    .await)
}

struct ChatChunks {
    head: ChunkHead,
    /// Set when the request asked for logprobs.
    tokenizer: Option<Arc<Tokenizer>>,
}

impl ChunkFormat for ChatChunks {
    fn start(&self, index: usize) -> Option<Value> {
        let choice = json!({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
        Some(self.head.chunk(json!([choice])))
    }

    fn delta(&mut self, index: usize, text: &str, token: Option<&TokenEntry>) -> Value {
        let logprobs = match (&self.tokenizer, token) {
            (Some(tok), Some(t)) => logprobs::chat_json(tok, std::slice::from_ref(t)),
            _ => Value::Null,
        };
        self.head
            .chunk(json!([{"index": index, "delta": {"content": text}, "logprobs": logprobs, "finish_reason": null}]))
    }

    fn finish(&self, index: usize, reason: &str) -> Value {
        self.head.chunk(json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}]))
    }

    fn usage(&self, usage: &Usage) -> Value {
        self.head.usage_chunk(usage)
    }
}
