//! Request bodies shared by the generation endpoints, and their validation
//! into the engine's [`GenerateParams`].
//!
//! Bodies are parsed with `serde_path_to_error`, so a wrong type names the
//! parameter (`param: "temperature"`) in the 400. Ranges are checked here
//! (with the parameter's OpenAI name) and again by the engine. Unknown
//! fields are ignored, as OpenAI SDKs send fields a server may not know.
//! Unset sampling fields take the engine's defaults (llama.cpp's, as
//! llama-server does).

use crate::errors::ApiError;
use axum::body::Bytes;
use memwall_engine::{GenerateParams, SamplingParams};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Most parallel samples (`n`) one request may ask for.
pub const MAX_N: u64 = 64;
/// Most stop strings one request may give.
pub const MAX_STOPS: usize = 16;
/// Longest stop string, in UTF-8 bytes (the stop matcher keeps this much text back).
pub const MAX_STOP_BYTES: usize = 512;
/// Most alternatives `top_logprobs` may ask for per token (OpenAI's limit, the engine's).
pub const MAX_TOP_LOGPROBS: u64 = memwall_engine::MAX_LOGPROBS as u64;

/// Parses `body` as a JSON object into `T`, naming the offending field.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    from_value(&value)
}

/// Deserializes `value` (which must be an object) into `T`, naming the
/// offending field.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid request: {inner}"))
        } else {
            let top = path.split(['.', '[']).next().unwrap_or(&path).to_string();
            ApiError::invalid(top, format!("invalid `{path}`: {inner}"))
        }
    })
}

/// `stop`: one string or a list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum StopParam {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// The parameters `/v1/chat/completions` and `/v1/completions` share.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CommonParams {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopParam>,
    pub n: Option<u64>,
    /// A bool for chat, an integer for completions: each endpoint reads it
    /// (`crate::logprobs`).
    pub logprobs: Option<serde_json::Value>,
    pub top_logprobs: Option<u64>,
    pub user: Option<String>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Keep generating past end-of-generation tokens (llama-server / vLLM extension).
    pub ignore_eos: Option<bool>,
}

/// A validated generation request, short of its prompt.
#[derive(Clone, Debug)]
pub struct Validated {
    /// `None`: up to the context / KV capacity.
    pub max_tokens: Option<usize>,
    /// Which field set it (`max_tokens` or `max_completion_tokens`).
    pub max_tokens_param: &'static str,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// Alternatives per token for logprobs; `None`: no logprobs. Set by the
    /// endpoint, which spells the parameter its own way (`crate::logprobs`).
    pub logprobs: Option<usize>,
}

impl Validated {
    /// The engine's parameters for a prompt of `prompt_len` tokens, when
    /// the model holds `limit` positions (min of context and KV capacity).
    pub fn generate_params(&self, prompt_len: usize, limit: usize) -> GenerateParams {
        let max_tokens = self.max_tokens.unwrap_or_else(|| limit.saturating_sub(prompt_len).max(1));
        GenerateParams {
            max_tokens,
            sampling: self.sampling.clone(),
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            logprobs: self.logprobs,
        }
    }
}

fn check_f32(name: &str, v: Option<f32>, ok: impl Fn(f32) -> bool, expected: &str) -> Result<Option<f32>, ApiError> {
    match v {
        Some(x) if !x.is_finite() || !ok(x) => {
            Err(ApiError::invalid(name, format!("`{name}` is {x}; it must be {expected}")))
        }
        other => Ok(other),
    }
}

impl CommonParams {
    /// Checks every range and builds the engine's view.
    pub fn validate(&self) -> Result<Validated, ApiError> {
        if let Some(k) = self.top_logprobs.filter(|&k| k > MAX_TOP_LOGPROBS) {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("`top_logprobs` is {k}; it must be between 0 and {MAX_TOP_LOGPROBS}"),
            ));
        }
        let max = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => Some(("max_completion_tokens", m)),
            (None, Some(m)) => Some(("max_tokens", m)),
            (None, None) => None,
        };
        let max_tokens = match max {
            Some((name, 0)) => return Err(ApiError::invalid(name, format!("`{name}` must be at least 1"))),
            Some((_, m)) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
            None => None,
        };
        let n = self.n.unwrap_or(1);
        if n == 0 || n > MAX_N {
            return Err(ApiError::invalid("n", format!("`n` is {n}; it must be between 1 and {MAX_N}")));
        }
        let d = SamplingParams::default();
        let temperature =
            check_f32("temperature", self.temperature, |t| (0.0..=100.0).contains(&t), "between 0 and 100")?;
        let top_p = check_f32("top_p", self.top_p, |p| p > 0.0 && p <= 1.0, "in (0, 1]")?;
        let min_p = check_f32("min_p", self.min_p, |p| (0.0..=1.0).contains(&p), "in [0, 1]")?;
        let pen = |name, v| check_f32(name, v, |x: f32| (-2.0..=2.0).contains(&x), "between -2 and 2");
        let presence_penalty = pen("presence_penalty", self.presence_penalty)?;
        let frequency_penalty = pen("frequency_penalty", self.frequency_penalty)?;
        let repetition_penalty =
            check_f32("repetition_penalty", self.repetition_penalty, |x| x > 0.0 && x <= 10.0, "in (0, 10]")?;
        let top_k = match self.top_k {
            None => d.top_k,
            Some(-1 | 0) => 0,
            Some(k) if k > 0 => usize::try_from(k).unwrap_or(usize::MAX),
            Some(k) => {
                return Err(ApiError::invalid("top_k", format!("`top_k` is {k}; it must be >= 1, or 0 / -1 for off")))
            }
        };
        let sampling = SamplingParams {
            temperature: temperature.unwrap_or(d.temperature),
            top_k,
            top_p: top_p.unwrap_or(d.top_p),
            min_p: min_p.unwrap_or(d.min_p),
            repetition_penalty: repetition_penalty.unwrap_or(d.repetition_penalty),
            presence_penalty: presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: frequency_penalty.unwrap_or(d.frequency_penalty),
            penalty_last_n: d.penalty_last_n,
            seed: self.seed.map(|s| s as u64),
        };
        if let Err(e) = sampling.validate() {
            return Err(ApiError::from_engine(e.into(), "prompt"));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopParam::One(s)) => vec![s.clone()],
            Some(StopParam::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOPS {
            return Err(ApiError::invalid("stop", format!("at most {MAX_STOPS} stop strings are allowed")));
        }
        if stop.iter().any(|s| s.is_empty()) {
            return Err(ApiError::invalid("stop", "stop strings must not be empty"));
        }
        if let Some(s) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::invalid(
                "stop",
                format!("a stop string is {} bytes long; the limit is {MAX_STOP_BYTES}", s.len()),
            ));
        }
        Ok(Validated {
            max_tokens,
            max_tokens_param: max.map_or("max_tokens", |(name, _)| name),
            sampling,
            stop,
            ignore_eos: self.ignore_eos.unwrap_or(false),
            n: n as usize,
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
            logprobs: None,
        })
    }
}

/// The raw body, with axum's limit rejection turned into our 413.
pub fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))),
    }
}
