//! The HTTP side: one streaming request to an OpenAI-compatible endpoint,
//! timed chunk by chunk, plus the helper calls a benchmark needs before the
//! load starts (`GET /v1/models`, `POST /tokenize`, `POST /detokenize`).
//!
//! Timing follows vLLM's `benchmark_serving`: the clock starts just before
//! the request is sent; TTFT is the arrival of the first chunk carrying text;
//! every later text-bearing chunk is one inter-token gap; the end-to-end
//! latency ends with the stream. Tokens are counted from `usage` in the last
//! chunk when the server sends it (`stream_options.include_usage`; llama-server
//! always does for completions), else as text-bearing chunks.
//!
//! `/tokenize` and `/detokenize` are not OpenAI endpoints but vLLM,
//! llama-server and memwall all have them; a server without them answers 404
//! and the caller falls back to an estimate.
//!
//! Plain HTTP only (no TLS is compiled in): the tool is meant for a server on
//! this machine or this network.

use crate::sse::SseParser;
use crate::LoadgenError;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Which OpenAI endpoint the load goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/completions` with `prompt`.
    Completions,
    /// `POST /v1/chat/completions` with `messages`.
    Chat,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// What one request asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptBody {
    /// A completion prompt (sent as a user message to the chat endpoint).
    Text(String),
    /// Chat messages, `[{"role", "content"}, ...]` (chat endpoint only).
    Messages(Vec<Value>),
}

/// One request of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkItem {
    pub prompt: PromptBody,
    /// Prompt length in tokens as measured while preparing, if known.
    pub prompt_tokens: Option<usize>,
    /// `max_tokens` of the request.
    pub max_tokens: usize,
}

/// Why a request did not complete.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The server answered with this HTTP status (not 200).
    Status(u16),
    /// No connection, or the connection broke before the stream ended.
    Transport,
    /// The request took longer than the client's timeout.
    Timeout,
    /// The stream carried an `{"error": ...}` event.
    StreamError,
    /// The stream ended without `data: [DONE]`, or a chunk was not JSON.
    Malformed,
}

impl Failure {
    /// The key failures are counted under in reports: the status code, or a word.
    pub fn key(&self) -> String {
        match self {
            Failure::Status(s) => s.to_string(),
            Failure::Transport => "transport".into(),
            Failure::Timeout => "timeout".into(),
            Failure::StreamError => "stream_error".into(),
            Failure::Malformed => "malformed".into(),
        }
    }
}

/// The timing of one completed request. All times are offsets from the
/// moment the request was sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timing {
    /// Arrival of each text-bearing chunk; the first is the TTFT.
    pub chunk_times: Vec<Duration>,
    /// End of the stream.
    pub e2e: Duration,
    /// Output tokens: `usage.completion_tokens` if sent, else `chunk_times.len()`.
    pub output_tokens: usize,
    /// `usage.prompt_tokens` if the server sent it.
    pub prompt_tokens: Option<usize>,
}

impl Timing {
    /// Time to the first token (the end of the stream if no text came).
    pub fn ttft(&self) -> Duration {
        self.chunk_times.first().copied().unwrap_or(self.e2e)
    }

    /// Mean time per output token after the first: `(e2e − ttft) / (n − 1)`;
    /// `None` for a single-token reply.
    pub fn tpot(&self) -> Option<Duration> {
        (self.output_tokens > 1).then(|| (self.e2e - self.ttft()) / (self.output_tokens as u32 - 1))
    }

    /// Gaps between consecutive text-bearing chunks.
    pub fn itls(&self) -> impl Iterator<Item = Duration> + '_ {
        self.chunk_times.windows(2).map(|w| w[1] - w[0])
    }
}

/// The record of one request: when it was sent, relative to the start of
/// its level, and how it went.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub sent_at: Duration,
    pub outcome: Result<Timing, Failure>,
}

/// A client of one server.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl Client {
    /// A client of the server at `url` (`http://host:port`, with or without
    /// a trailing `/v1`). `timeout` bounds each request as a whole.
    pub fn new(url: &str, api_key: Option<String>, timeout: Duration) -> Result<Client, LoadgenError> {
        let base = url.trim_end_matches('/').trim_end_matches("/v1").trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(LoadgenError::Url(format!("{url}: only http:// URLs are supported")));
        }
        // A fresh connection per request (a loopback connect costs well under a
        // millisecond): llama-server closes a connection after a stream, and
        // cpp-httplib drops idle ones after 5 s, so a pooled connection can be
        // dead when reused and the request would fail for the client's sake.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| LoadgenError::Http(e.to_string()))?;
        Ok(Client { http, base, api_key })
    }

    /// The server's base URL, without `/v1`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = &self.api_key {
            r = r.bearer_auth(k);
        }
        r
    }

    /// The model ids of `GET /v1/models`.
    pub async fn models(&self) -> Result<Vec<String>, LoadgenError> {
        let mut r = self.http.get(format!("{}/v1/models", self.base));
        if let Some(k) = &self.api_key {
            r = r.bearer_auth(k);
        }
        let v = json_of(r.send().await, "GET /v1/models").await?;
        let ids = v["data"].as_array().map(|d| d.iter().filter_map(|m| m["id"].as_str()).map(str::to_string));
        Ok(ids.map(Iterator::collect).unwrap_or_default())
    }

    /// Token ids of `text` without special tokens, or `None` if the server
    /// has no `/tokenize`.
    pub async fn tokenize(&self, model: &str, text: &str) -> Result<Option<Vec<u32>>, LoadgenError> {
        let body = json!({"model": model, "content": text, "add_special": false, "add_special_tokens": false});
        let resp = self.post("/tokenize", &body).send().await;
        if matches!(&resp, Ok(r) if r.status() == 404 || r.status() == 405) {
            return Ok(None);
        }
        let v = json_of(resp, "POST /tokenize").await?;
        let ids = v["tokens"].as_array().ok_or_else(|| LoadgenError::Server(format!("/tokenize answered {v}")))?;
        // llama-server answers `{"id", "piece"}` objects when asked for pieces; plain ids otherwise.
        Ok(Some(ids.iter().filter_map(|t| t.as_u64().or_else(|| t["id"].as_u64())).map(|t| t as u32).collect()))
    }

    /// The text of `tokens`, or `None` if the server has no `/detokenize`.
    pub async fn detokenize(&self, model: &str, tokens: &[u32]) -> Result<Option<String>, LoadgenError> {
        let resp = self.post("/detokenize", &json!({"model": model, "tokens": tokens})).send().await;
        if matches!(&resp, Ok(r) if r.status() == 404 || r.status() == 405) {
            return Ok(None);
        }
        let v = json_of(resp, "POST /detokenize").await?;
        let text = v["content"].as_str().or_else(|| v["prompt"].as_str());
        Ok(Some(text.ok_or_else(|| LoadgenError::Server(format!("/detokenize answered {v}")))?.to_string()))
    }

    /// The JSON body of a streaming request for `item`.
    pub fn request_body(model: &str, endpoint: Endpoint, item: &WorkItem, ignore_eos: bool) -> Value {
        let mut body = json!({
            "model": model,
            "max_tokens": item.max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.0,
        });
        if ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        match (&item.prompt, endpoint) {
            (PromptBody::Text(t), Endpoint::Completions) => body["prompt"] = json!(t),
            (PromptBody::Text(t), Endpoint::Chat) => body["messages"] = json!([{"role": "user", "content": t}]),
            (PromptBody::Messages(m), _) => body["messages"] = json!(m),
        }
        body
    }

    /// Sends one streaming request and times it.
    pub async fn stream(&self, endpoint: Endpoint, body: &Value) -> Result<Timing, Failure> {
        let start = Instant::now();
        let resp = self.post(endpoint.path(), body).send().await.map_err(transport)?;
        if resp.status() != 200 {
            return Err(Failure::Status(resp.status().as_u16()));
        }
        let mut resp = resp;
        let mut parser = SseParser::default();
        let mut timing = Timing::default();
        let mut usage_tokens = None;
        let mut done = false;
        while let Some(bytes) = resp.chunk().await.map_err(transport)? {
            let now = start.elapsed();
            for data in parser.push(&bytes) {
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let v: Value = serde_json::from_str(&data).map_err(|_| Failure::Malformed)?;
                if v.get("error").is_some_and(|e| !e.is_null()) {
                    return Err(Failure::StreamError);
                }
                if chunk_text(&v).is_some_and(|t| !t.is_empty()) {
                    timing.chunk_times.push(now);
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    usage_tokens = u["completion_tokens"].as_u64().map(|n| n as usize);
                    timing.prompt_tokens = u["prompt_tokens"].as_u64().map(|n| n as usize);
                }
            }
        }
        timing.e2e = start.elapsed();
        if !done {
            return Err(Failure::Malformed);
        }
        timing.output_tokens = usage_tokens.unwrap_or(timing.chunk_times.len());
        Ok(timing)
    }
}

/// The text of a completion or chat chunk's first choice.
fn chunk_text(v: &Value) -> Option<&str> {
    let choice = v["choices"].as_array()?.first()?;
    choice["text"].as_str().or_else(|| choice["delta"]["content"].as_str())
}

fn transport(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Transport
    }
}

async fn json_of(resp: reqwest::Result<reqwest::Response>, what: &str) -> Result<Value, LoadgenError> {
    let resp = resp.map_err(|e| LoadgenError::Http(format!("{what}: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| LoadgenError::Http(format!("{what}: {e}")))?;
    if !status.is_success() {
        return Err(LoadgenError::Server(format!("{what} answered {status}: {}", text.trim())));
    }
    serde_json::from_str(&text).map_err(|e| LoadgenError::Server(format!("{what}: not JSON ({e}): {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(chunks_ms: &[u64], e2e_ms: u64, tokens: usize) -> Timing {
        Timing {
            chunk_times: chunks_ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            e2e: Duration::from_millis(e2e_ms),
            output_tokens: tokens,
            prompt_tokens: None,
        }
    }

    #[test]
    fn ttft_tpot_itl_of_a_stream() {
        let t = timing(&[100, 120, 150, 160], 170, 4);
        assert_eq!(t.ttft(), Duration::from_millis(100));
        assert_eq!(t.tpot(), Some(Duration::from_millis(70) / 3));
        let itl: Vec<_> = t.itls().map(|d| d.as_millis()).collect();
        assert_eq!(itl, [20, 30, 10]);
        assert_eq!(timing(&[40], 50, 1).tpot(), None);
        assert_eq!(timing(&[], 50, 0).ttft(), Duration::from_millis(50));
    }

    #[test]
    fn chunk_text_reads_completions_and_chat() {
        assert_eq!(chunk_text(&json!({"choices": [{"text": "a"}]})), Some("a"));
        assert_eq!(chunk_text(&json!({"choices": [{"delta": {"content": "b"}}]})), Some("b"));
        assert_eq!(chunk_text(&json!({"choices": [{"delta": {"role": "assistant"}}]})), None);
        assert_eq!(chunk_text(&json!({"choices": [], "usage": {}})), None);
    }

    #[test]
    fn request_body_fixes_the_output_length() {
        let item = WorkItem { prompt: PromptBody::Text("hi".into()), prompt_tokens: Some(1), max_tokens: 7 };
        let b = Client::request_body("m", Endpoint::Completions, &item, true);
        assert_eq!(
            (b["prompt"].as_str(), b["max_tokens"].as_u64(), b["ignore_eos"].as_bool()),
            (Some("hi"), Some(7), Some(true))
        );
        assert_eq!(b["stream_options"]["include_usage"], json!(true));
        let b = Client::request_body("m", Endpoint::Chat, &item, false);
        assert_eq!(b["messages"], json!([{"role": "user", "content": "hi"}]));
        assert!(b.get("ignore_eos").is_none());
    }

    #[test]
    fn urls_are_normalised_and_https_refused() {
        let c = Client::new("http://127.0.0.1:8080/v1/", None, Duration::from_secs(1)).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:8080");
        assert!(Client::new("https://example.com", None, Duration::from_secs(1)).is_err());
    }
}
