//! `POST /v1/completions`: a raw prompt (a string, or token ids) continued
//! as one `text_completion` or streamed. Special tokens written in the text
//! are parsed (as llama-server does); BOS is added when the model wants it.
//! `logprobs: k` fills the legacy `choices[i].logprobs` (see `crate::logprobs`).

use crate::access::RequestCtx;
use crate::generate::{self, finish_str, Prompt, Usage};
use crate::logprobs::{self, TextOffset, TokenEntry};
use crate::models::check_model;
use crate::params::{body_bytes, from_value, parse_json, CommonParams};
use crate::sse::{self, ChunkFormat, ChunkHead};
use crate::{ApiError, AppState, Ready};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::Response;
use memwall_formats::tokenizer::{EncodeOptions, Tokenizer};
use serde_json::{json, Value};
use std::sync::Arc;

/// What `prompt` held.
enum PromptIn {
    Text(String),
    Ids(Vec<u32>),
}

/// Accepts a string, a list of token ids, or a one-element list of either.
fn parse_prompt(v: Option<&Value>) -> Result<PromptIn, ApiError> {
    let bad = |m: &str| ApiError::invalid("prompt", m.to_string());
    match v {
        None | Some(Value::Null) => Err(bad("`prompt` is required")),
        Some(Value::String(s)) => Ok(PromptIn::Text(s.clone())),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(bad("`prompt` is an empty list"));
            }
            if items.iter().all(Value::is_number) {
                let ids = items
                    .iter()
                    .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(|| bad("`prompt` token ids must be integers >= 0"))?;
                return Ok(PromptIn::Ids(ids));
            }
            if items.len() > 1 {
                return Err(bad("batched prompts are not supported: send one prompt per request"));
            }
            match &items[0] {
                inner @ (Value::String(_) | Value::Array(_)) if !matches!(inner, Value::Array(a) if a.iter().any(|x| !x.is_number())) => {
                    parse_prompt(Some(inner))
                }
                _ => Err(bad("`prompt` must be a string, a list of token ids, or a list of one of those")),
            }
        }
        Some(_) => Err(bad("`prompt` must be a string or a list of token ids")),
    }
}

fn tokenize(ready: &Ready, p: PromptIn) -> (Vec<u32>, Option<String>) {
    match p {
        PromptIn::Ids(ids) => (ids, None),
        PromptIn::Text(text) => {
            let tok = &ready.tokenizer;
            let ids = tok.encode(&text, EncodeOptions { add_bos: tok.add_bos_by_default(), parse_special: true });
            (ids, Some(text))
        }
    }
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
    check_model(&ready, common.model.as_deref())?;
    let mut v = common.validate()?;
    v.logprobs = logprobs::completions_param(&common)?;
    if value.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid("echo", "`echo` is not supported yet"));
    }
    if value.get("best_of").and_then(Value::as_u64).is_some_and(|b| b > 1) {
        return Err(ApiError::invalid("best_of", "`best_of` is not supported; use `n`"));
    }
    let p = parse_prompt(value.get("prompt"))?;
    let r = Arc::clone(&ready);
    let (ids, text) = tokio::task::spawn_blocking(move || tokenize(&r, p))
        .await
        .map_err(|e| ApiError::internal(format!("prompt task failed: {e}")))?;
    let head = ChunkHead {
        id: format!("cmpl-{}", ctx.id),
        object: "text_completion",
        created: crate::unix_now(),
        model: ready.model_id.clone(),
    };
    let running = generate::start(&state, &ready, ctx, Prompt { ids, param: "prompt", text }, &v)?;
    if v.stream {
        let chunks = CompletionChunks {
            head,
            tokenizer: v.logprobs.map(|_| Arc::clone(&ready.tokenizer)),
            offsets: vec![TextOffset::default(); v.n],
        };
        return Ok(sse::response(running, chunks, v.include_usage));
    }
    let tokenizer = &ready.tokenizer;
    Ok(generate::respond(running, &head, "text_completion", |i, c| {
        let logprobs = match v.logprobs {
            Some(_) => logprobs::completions_json(tokenizer, &c.tokens, &mut TextOffset::default()),
            None => Value::Null,
        };
        json!({"index": i, "text": c.text, "logprobs": logprobs, "finish_reason": c.finish.map(finish_str)})
    })
    .await)
}

struct CompletionChunks {
    head: ChunkHead,
    /// Set when the request asked for logprobs.
    tokenizer: Option<Arc<Tokenizer>>,
    /// Each sample's running `text_offset`, `[n]`.
    offsets: Vec<TextOffset>,
}

impl ChunkFormat for CompletionChunks {
    fn start(&self, _index: usize) -> Option<Value> {
        None
    }

    fn delta(&mut self, index: usize, text: &str, token: Option<&TokenEntry>) -> Value {
        let logprobs = match (&self.tokenizer, token, self.offsets.get_mut(index)) {
            (Some(tok), Some(t), Some(offset)) => logprobs::completions_json(tok, std::slice::from_ref(t), offset),
            _ => Value::Null,
        };
        self.head.chunk(json!([{"index": index, "text": text, "logprobs": logprobs, "finish_reason": null}]))
    }

    fn finish(&self, index: usize, reason: &str) -> Value {
        self.head.chunk(json!([{"index": index, "text": "", "logprobs": null, "finish_reason": reason}]))
    }

    fn usage(&self, usage: &Usage) -> Value {
        self.head.usage_chunk(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_prompt, PromptIn};
    use serde_json::json;

    #[test]
    fn prompt_shapes() {
        assert!(matches!(parse_prompt(Some(&json!("hi"))), Ok(PromptIn::Text(_))));
        assert!(matches!(parse_prompt(Some(&json!([1, 2]))), Ok(PromptIn::Ids(v)) if v == [1, 2]));
        assert!(matches!(parse_prompt(Some(&json!(["hi"]))), Ok(PromptIn::Text(_))));
        assert!(matches!(parse_prompt(Some(&json!([[3]]))), Ok(PromptIn::Ids(v)) if v == [3]));
        for bad in
            [json!([]), json!([-1]), json!(["a", "b"]), json!(3), json!([1.5]), json!([{"a": 1}]), json!([["x"]])]
        {
            assert!(parse_prompt(Some(&bad)).is_err(), "{bad}");
        }
        assert!(parse_prompt(None).is_err());
    }
}
