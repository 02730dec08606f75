//! Every endpoint over real HTTP, streaming and not, and every error status.

mod common;

use common::{error_of, TestServer, MODEL};
use serde_json::{json, Value};

#[tokio::test]
async fn chat_completion_non_streaming() {
    let s = TestServer::start(common::config()).await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 5, "temperature": 0, "ignore_eos": true, "user": "u1", "seed": 7,
    });
    let (status, v) = s.post("/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 3);
    assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(v["usage"]["prompt_tokens"].as_u64().unwrap() + 5));
    s.wait_idle().await;
}

#[tokio::test]
async fn chat_completion_streaming_with_usage() {
    let s = TestServer::start(common::config()).await;
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 4, "temperature": 0, "ignore_eos": true,
        "stream": true, "stream_options": {"include_usage": true},
    });
    let (status, events) = s.stream("/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<&Value> = chunks.iter().filter(|c| c["choices"][0]["finish_reason"].is_string()).collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);

    // Greedy: the streamed text equals the non-streamed text.
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    let mut plain = body.clone();
    plain["stream"] = json!(false);
    let (_, v) = s.post("/v1/chat/completions", &plain.to_string()).await;
    assert_eq!(v["choices"][0]["message"]["content"].as_str(), Some(streamed.as_str()));
    s.wait_idle().await;
}

#[tokio::test]
async fn completions_text_tokens_n_and_stream() {
    let s = TestServer::start(common::config()).await;
    let (status, v) = s
        .post(
            "/v1/completions",
            &json!({"prompt": "Once upon", "max_tokens": 3, "temperature": 0, "ignore_eos": true}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();

    // Token-id prompt, n = 3 parallel samples, stop list.
    let body = json!({"prompt": [5, 6, 7, 8], "max_tokens": 4, "n": 3, "seed": 1, "temperature": 0.9,
                      "stop": ["zzzz"], "ignore_eos": true});
    let (status, v) = s.post("/v1/completions", &body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 12);

    // Streaming completions match the non-streamed greedy text.
    let body = json!({"prompt": "Once upon", "max_tokens": 3, "temperature": 0, "ignore_eos": true, "stream": true});
    let (status, events) = s.stream("/v1/completions", &body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(streamed, text);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage chunk unless asked");
    s.wait_idle().await;
}

#[tokio::test]
async fn models_tokenize_detokenize_health_metrics() {
    let s = TestServer::start(common::config()).await;
    let (status, body) = s.get("/v1/models").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(s.get(&format!("/v1/models/{MODEL}")).await.0, 200);

    let (status, v) =
        s.post("/tokenize", &json!({"prompt": "hello world", "add_special_tokens": false}).to_string()).await;
    assert_eq!(status, 200, "{v}");
    let tokens = v["tokens"].clone();
    assert_eq!(v["count"].as_u64(), Some(tokens.as_array().unwrap().len() as u64));
    let (status, v) = s.post("/detokenize", &json!({"tokens": tokens}).to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["prompt"].as_str().map(str::trim), Some("hello world"));

    let (status, body) = s.get("/health").await;
    assert_eq!((status, body.contains("ok")), (200, true));

    s.post("/v1/completions", &json!({"prompt": "a b", "max_tokens": 2, "ignore_eos": true}).to_string()).await;
    let (status, text) = s.get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "memwall_time_to_first_token_seconds_bucket",
        "memwall_time_per_output_token_seconds_count",
        "memwall_e2e_request_latency_seconds_sum",
        "memwall_request_queue_time_seconds_count 1",
        "memwall_requests_total{status=\"200\"}",
        "memwall_prompt_tokens_total",
        "memwall_generation_tokens_total 2",
        "memwall_preemptions_total",
        "memwall_prefix_cache_hit_tokens_total",
        "memwall_requests_running",
        "memwall_requests_waiting",
        "memwall_kv_blocks_used",
        "memwall_kv_blocks_cached",
        "memwall_last_step_mbu",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    check_exposition(&text);
}

/// Every line is a comment or `name{labels} number`, and every sample's
/// family has a TYPE line.
fn check_exposition(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let base = name.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| base.strip_suffix(s)).unwrap_or(base);
        assert!(typed.contains(base) || typed.contains(family), "no TYPE for {line:?}");
    }
}

#[tokio::test]
async fn invalid_parameters_are_400_naming_the_parameter() {
    let s = TestServer::start(common::config()).await;
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    };
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("/v1/chat/completions", "{not json".into(), None),
        ("/v1/chat/completions", "[1, 2]".into(), None),
        ("/v1/chat/completions", chat(json!({"temperature": "hot"})), Some("temperature")),
        ("/v1/chat/completions", chat(json!({"temperature": -1})), Some("temperature")),
        ("/v1/chat/completions", chat(json!({"top_p": 1.5})), Some("top_p")),
        ("/v1/chat/completions", chat(json!({"top_k": -5})), Some("top_k")),
        ("/v1/chat/completions", chat(json!({"min_p": 2})), Some("min_p")),
        ("/v1/chat/completions", chat(json!({"presence_penalty": 9})), Some("presence_penalty")),
        ("/v1/chat/completions", chat(json!({"frequency_penalty": -3})), Some("frequency_penalty")),
        ("/v1/chat/completions", chat(json!({"repetition_penalty": 0})), Some("repetition_penalty")),
        ("/v1/chat/completions", chat(json!({"max_tokens": -1})), Some("max_tokens")),
        ("/v1/chat/completions", chat(json!({"max_tokens": 0})), Some("max_tokens")),
        ("/v1/chat/completions", chat(json!({"max_tokens": 1e300})), Some("max_tokens")),
        ("/v1/chat/completions", chat(json!({"max_tokens": 10_000_000_000u64})), Some("max_tokens")),
        ("/v1/chat/completions", chat(json!({"n": 0})), Some("n")),
        ("/v1/chat/completions", chat(json!({"n": 100000})), Some("n")),
        ("/v1/chat/completions", chat(json!({"stop": 5})), Some("stop")),
        ("/v1/chat/completions", chat(json!({"stop": [""]})), Some("stop")),
        ("/v1/chat/completions", chat(json!({"logprobs": 2})), Some("logprobs")),
        ("/v1/chat/completions", chat(json!({"stream": "yes"})), Some("stream")),
        ("/v1/chat/completions", chat(json!({"messages": []})), Some("messages")),
        ("/v1/chat/completions", chat(json!({"messages": "hi"})), Some("messages")),
        ("/v1/chat/completions", chat(json!({"messages": [{"content": "no role"}]})), Some("messages")),
        ("/v1/chat/completions", json!({"max_tokens": 2}).to_string(), Some("messages")),
        ("/v1/completions", json!({"prompt": "x ".repeat(400)}).to_string(), Some("prompt")),
        ("/v1/completions", json!({"prompt": [999999]}).to_string(), Some("prompt")),
        ("/v1/completions", json!({"prompt": []}).to_string(), Some("prompt")),
        ("/v1/completions", json!({"prompt": ["a", "b"]}).to_string(), Some("prompt")),
        ("/v1/completions", json!({"max_tokens": 2}).to_string(), Some("prompt")),
        ("/v1/completions", json!({"prompt": "a", "logprobs": 30}).to_string(), Some("logprobs")),
        ("/detokenize", json!({"tokens": [-1]}).to_string(), Some("tokens")),
        ("/detokenize", json!({"tokens": [4000000000u64]}).to_string(), Some("tokens")),
        ("/tokenize", json!({}).to_string(), Some("prompt")),
    ];
    for (path, body, param) in cases {
        let (status, v) = s.post(path, &body).await;
        let e = error_of(status, 400, &v);
        assert_eq!(e["type"], "invalid_request_error");
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{path} {body}: {e}");
        }
    }
    let (_, v) = s.post("/v1/completions", &json!({"prompt": "x ".repeat(400)}).to_string()).await;
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    s.wait_idle().await;
}

#[tokio::test]
async fn not_found_unknown_model_too_large_and_method() {
    let s = TestServer::start(common::config()).await;
    let (status, body) = s.get("/v1/nope").await;
    error_of(status, 404, &serde_json::from_str(&body).unwrap());
    let (status, v) = s
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}).to_string(),
        )
        .await;
    let e = error_of(status, 404, &v);
    assert_eq!((e["param"].as_str(), e["code"].as_str()), (Some("model"), Some("model_not_found")));
    let (status, body) = s.get("/v1/models/gpt-9").await;
    error_of(status, 404, &serde_json::from_str(&body).unwrap());
    let big = json!({"prompt": "a".repeat(100 << 10)}).to_string();
    let (status, v) = s.post("/v1/completions", &big).await;
    error_of(status, 413, &v);
    let (status, body) = s.get("/v1/completions").await;
    error_of(status, 405, &serde_json::from_str(&body).unwrap());
}

#[tokio::test]
async fn api_keys_are_required_when_set() {
    let config = memwall_server::ServerConfig { api_keys: vec!["sk-test-1".into()], ..common::config() };
    let s = TestServer::start(config).await;
    let (status, body) = s.get("/v1/models").await;
    let e = error_of(status, 401, &serde_json::from_str(&body).unwrap());
    assert_eq!(e["code"], "invalid_api_key");
    let wrong = s.client.get(s.url("/v1/models")).bearer_auth("sk-test-2").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = s.client.get(s.url("/v1/models")).bearer_auth("sk-test-1").send().await.unwrap();
    assert_eq!(right.status().as_u16(), 200);
    // Probes and scrapers need no key.
    assert_eq!(s.get("/health").await.0, 200);
    assert_eq!(s.get("/metrics").await.0, 200);
}

#[tokio::test]
async fn loading_is_503_then_ready() {
    let s = TestServer::loading(common::config()).await;
    assert_eq!(s.get("/health").await.0, 503);
    let (status, v) =
        s.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "x"}]}).to_string()).await;
    error_of(status, 503, &v);
    let (status, body) = s.get("/v1/models").await;
    error_of(status, 503, &serde_json::from_str(&body).unwrap());
    let (engine, tok, context) = common::engine();
    s.handle.set_ready(memwall_server::Ready::new(engine, tok, MODEL.into(), None, context));
    assert_eq!(s.get("/health").await.0, 200);
}

#[tokio::test]
async fn full_queue_is_429() {
    let config = memwall_server::ServerConfig { max_queue: 0, ..common::config() };
    let s = TestServer::start(config).await;
    let (status, v) = s.post("/v1/completions", &json!({"prompt": "a", "max_tokens": 1}).to_string()).await;
    let e = error_of(status, 429, &v);
    assert_eq!(e["code"], "queue_full");
}

#[tokio::test]
async fn chat_template_errors_are_clear_400s() {
    // A template that raises: its own message reaches the client.
    let s = TestServer::loading(common::config()).await;
    let (engine, tok, context) = common::engine();
    let template = "{{ raise_exception('only user turns, please') }}".to_string();
    s.handle.set_ready(memwall_server::Ready::new(engine, tok, MODEL.into(), Some(template), context));
    let chat = json!({"messages": [{"role": "user", "content": "x"}]}).to_string();
    let (status, v) = s.post("/v1/chat/completions", &chat).await;
    let e = error_of(status, 400, &v);
    assert!(e["message"].as_str().unwrap().contains("only user turns"), "{e}");

    // No template at all: chat is refused with what to do; completions still work.
    let s = TestServer::loading(common::config()).await;
    let (engine, tok, context) = common::engine();
    let mut ready = memwall_server::Ready::new(engine, tok, MODEL.into(), None, context);
    ready.chat_template = None;
    s.handle.set_ready(ready);
    let (status, v) = s.post("/v1/chat/completions", &chat).await;
    let e = error_of(status, 400, &v);
    assert!(e["message"].as_str().unwrap().contains("--chat-template"), "{e}");
    let (status, _) = s.post("/v1/completions", &json!({"prompt": "x", "max_tokens": 1}).to_string()).await;
    assert_eq!(status, 200);
}
