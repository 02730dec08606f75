//! `POST /tokenize` and `POST /detokenize`, in the shape vLLM and
//! llama-server use: `{"prompt" | "content": text, "add_special_tokens"}` →
//! `{"tokens", "count", "max_model_len"}`, and `{"tokens": [ids]}` →
//! `{"prompt", "content"}` (both names, for clients of either).

use crate::models::check_model;
use crate::params::{body_bytes, parse_json};
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use memwall_formats::tokenizer::EncodeOptions;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
struct TokenizeBody {
    model: Option<String>,
    prompt: Option<String>,
    content: Option<String>,
    add_special_tokens: Option<bool>,
    add_special: Option<bool>,
}

#[derive(Deserialize)]
struct DetokenizeBody {
    model: Option<String>,
    tokens: Option<Vec<u32>>,
}

pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body, state.config.max_body_bytes)?;
    let ready = Arc::clone(state.ready()?);
    let b: TokenizeBody = parse_json(&body)?;
    check_model(&ready, b.model.as_deref())?;
    let text =
        b.prompt.or(b.content).ok_or_else(|| ApiError::invalid("prompt", "`prompt` (or `content`) is required"))?;
    let tok = Arc::clone(&ready.tokenizer);
    let add_bos = b.add_special_tokens.or(b.add_special).unwrap_or(tok.add_bos_by_default());
    let ids = tokio::task::spawn_blocking(move || tok.encode(&text, EncodeOptions { add_bos, parse_special: true }))
        .await
        .map_err(|e| ApiError::internal(format!("tokenize task failed: {e}")))?;
    Ok(Json(json!({"count": ids.len(), "max_model_len": ready.context, "tokens": ids})))
}

pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body, state.config.max_body_bytes)?;
    let ready = Arc::clone(state.ready()?);
    let b: DetokenizeBody = parse_json(&body)?;
    check_model(&ready, b.model.as_deref())?;
    let ids = b.tokens.ok_or_else(|| ApiError::invalid("tokens", "`tokens` is required"))?;
    let vocab = ready.tokenizer.vocab_size();
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::invalid("tokens", format!("token id {bad} is outside the vocabulary of {vocab}")));
    }
    let text = ready.tokenizer.decode(&ids);
    Ok(Json(json!({"prompt": text, "content": text})))
}
