//! OpenAI `logprobs` over real HTTP: chat (`logprobs` + `top_logprobs`) and
//! completions (legacy `logprobs: k`), streaming and not, and their errors.

mod common;

use common::{error_of, TestServer, MODEL};
use serde_json::{json, Value};

/// The JSON chunks of an SSE stream, without `[DONE]`.
fn json_chunks(events: &[String]) -> Vec<Value> {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A `{"token", "logprob", "bytes"}` object is well-formed: a probability,
/// and `bytes` are the token's UTF-8 (or its raw bytes, `bytes:\x..` form).
fn check_token(t: &Value) {
    let token = t["token"].as_str().unwrap_or_else(|| panic!("token in {t}"));
    let lp = f(&t["logprob"]);
    assert!(lp <= 0.0 && lp.exp() <= 1.0 && lp >= -9999.0, "logprob {lp}");
    let bytes: Vec<u8> =
        t["bytes"].as_array().unwrap().iter().map(|b| u8::try_from(b.as_u64().unwrap()).unwrap()).collect();
    match std::str::from_utf8(&bytes) {
        Ok(s) => assert_eq!(s, token),
        Err(_) => {
            let escaped: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            assert_eq!(token, format!("bytes:{escaped}"));
        }
    }
}

#[tokio::test]
async fn chat_logprobs_are_well_formed_and_stream_the_same() {
    let s = TestServer::start(common::config()).await;
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "Tell me a story"}],
        "max_tokens": 7, "temperature": 0, "ignore_eos": true, "logprobs": true, "top_logprobs": 3,
    });
    let (status, v) = s.post("/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap_or_else(|| panic!("{v}")).clone();
    assert_eq!(content.len(), 7, "one entry per generated token");
    assert_eq!(v["usage"]["completion_tokens"], 7);
    for entry in &content {
        check_token(entry);
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        top.iter().for_each(check_token);
        assert!(top.windows(2).all(|w| f(&w[0]["logprob"]) >= f(&w[1]["logprob"])), "sorted: {entry}");
        // Greedy without penalties: the chosen token is the most likely one.
        assert_eq!(f(&entry["logprob"]), f(&top[0]["logprob"]), "{entry}");
        assert_eq!(entry["token"], top[0]["token"]);
        let mass: f64 = top.iter().map(|t| f(&t["logprob"]).exp()).sum();
        assert!(mass <= 1.0 + 1e-5, "top probabilities sum to {mass}");
    }

    // Streaming: every token's entry arrives in a chunk of its own; together
    // they are the non-streamed list, and the text is the same.
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let (status, events) = s.stream("/v1/chat/completions", &streamed_body.to_string()).await;
    assert_eq!(status, 200);
    let chunks = json_chunks(&events);
    assert!(chunks[0]["choices"][0]["logprobs"].is_null(), "the role chunk has no token");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert!(last["choices"][0]["logprobs"].is_null());
    let mut streamed = Vec::new();
    let mut text = String::new();
    for c in &chunks {
        let choice = &c["choices"][0];
        text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
        if let Some(list) = choice["logprobs"]["content"].as_array() {
            assert_eq!(list.len(), 1, "one token per chunk: {c}");
            streamed.extend(list.iter().cloned());
        }
    }
    assert_eq!(streamed, content);
    assert_eq!(Some(text.as_str()), v["choices"][0]["message"]["content"].as_str());

    // `logprobs: true` alone: the chosen tokens with empty alternatives.
    let mut no_top = body.clone();
    no_top.as_object_mut().unwrap().remove("top_logprobs");
    let (_, v2) = s.post("/v1/chat/completions", &no_top.to_string()).await;
    let content2 = v2["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content2.len(), 7);
    for (a, b) in content2.iter().zip(&content) {
        assert_eq!(a["top_logprobs"], json!([]));
        assert_eq!((&a["token"], &a["logprob"]), (&b["token"], &b["logprob"]));
    }

    // Not asked: null, streaming and not.
    let mut off = body.clone();
    off.as_object_mut().unwrap().remove("top_logprobs");
    off["logprobs"] = json!(false);
    let (_, v3) = s.post("/v1/chat/completions", &off.to_string()).await;
    assert!(v3["choices"][0]["logprobs"].is_null(), "{v3}");
    off["stream"] = json!(true);
    let (_, events) = s.stream("/v1/chat/completions", &off.to_string()).await;
    assert!(json_chunks(&events).iter().all(|c| c["choices"][0]["logprobs"].is_null()));
    s.wait_idle().await;
}

#[tokio::test]
async fn completions_logprobs_are_well_formed_and_stream_the_same() {
    let s = TestServer::start(common::config()).await;
    let body = json!({"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "ignore_eos": true,
                      "logprobs": 2});
    let (status, v) = s.post("/v1/completions", &body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap_or_else(|| panic!("{v}"));
    let token_logprobs = lp["token_logprobs"].as_array().unwrap();
    let top = lp["top_logprobs"].as_array().unwrap();
    let offsets: Vec<u64> = lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    assert_eq!(tokens.len(), 6);
    assert_eq!((token_logprobs.len(), top.len(), offsets.len()), (6, 6, 6));
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    let text_chars = v["choices"][0]["text"].as_str().unwrap().chars().count() as u64;
    assert!(offsets.iter().all(|&o| o <= text_chars), "{offsets:?} within {text_chars} chars");
    for ((token, logprob), alternatives) in tokens.iter().zip(token_logprobs).zip(top) {
        assert!(token.is_string());
        let logprob = f(logprob);
        assert!(logprob <= 0.0 && logprob.exp() <= 1.0);
        let alternatives = alternatives.as_object().unwrap();
        // Two alternatives (fewer only if two distinct ids share a string).
        assert!((1..=2).contains(&alternatives.len()), "{alternatives:?}");
        let best = alternatives.values().map(f).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(logprob, best, "greedy picks the most likely token");
        assert_eq!(alternatives.get(token.as_str().unwrap()).map(f), Some(logprob));
    }

    // Streamed: one token per chunk, the same lists once concatenated.
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let (status, events) = s.stream("/v1/completions", &streamed_body.to_string()).await;
    assert_eq!(status, 200);
    let mut joined = json!({"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []});
    let mut text = String::new();
    for c in json_chunks(&events) {
        let choice = &c["choices"][0];
        text.push_str(choice["text"].as_str().unwrap());
        if choice["logprobs"].is_null() {
            assert!(choice["finish_reason"].is_string(), "only the finish chunk lacks logprobs: {c}");
            continue;
        }
        for key in ["tokens", "token_logprobs", "top_logprobs", "text_offset"] {
            let part = choice["logprobs"][key].as_array().unwrap();
            assert_eq!(part.len(), 1, "{c}");
            joined[key].as_array_mut().unwrap().extend(part.iter().cloned());
        }
    }
    assert_eq!(&joined, lp);
    assert_eq!(Some(text.as_str()), v["choices"][0]["text"].as_str());

    // `logprobs: 0`: the chosen tokens, no alternatives; n samples each get theirs.
    let body0 = json!({"prompt": [5, 6, 7], "max_tokens": 3, "n": 2, "seed": 3, "temperature": 1.0,
                       "ignore_eos": true, "logprobs": 0});
    let (status, v) = s.post("/v1/completions", &body0.to_string()).await;
    assert_eq!(status, 200, "{v}");
    for choice in v["choices"].as_array().unwrap() {
        assert_eq!(choice["logprobs"]["tokens"].as_array().unwrap().len(), 3);
        assert!(choice["logprobs"]["top_logprobs"].as_array().unwrap().iter().all(|t| t == &json!({})));
    }

    // Not asked: null.
    let (_, v) = s.post("/v1/completions", &json!({"prompt": "a", "max_tokens": 2}).to_string()).await;
    assert!(v["choices"][0]["logprobs"].is_null(), "{v}");
    s.wait_idle().await;
}

#[tokio::test]
async fn invalid_logprobs_are_400_naming_the_parameter() {
    let s = TestServer::start(common::config()).await;
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b.to_string()
    };
    let cases = [
        ("/v1/chat/completions", chat(json!({"top_logprobs": 2})), "top_logprobs"),
        ("/v1/chat/completions", chat(json!({"logprobs": false, "top_logprobs": 1})), "top_logprobs"),
        ("/v1/chat/completions", chat(json!({"logprobs": true, "top_logprobs": 21})), "top_logprobs"),
        ("/v1/chat/completions", chat(json!({"logprobs": true, "top_logprobs": -1})), "top_logprobs"),
        ("/v1/chat/completions", chat(json!({"logprobs": true, "top_logprobs": "3"})), "top_logprobs"),
        ("/v1/chat/completions", chat(json!({"logprobs": 1})), "logprobs"),
        ("/v1/chat/completions", chat(json!({"logprobs": "yes"})), "logprobs"),
        ("/v1/completions", json!({"prompt": "a", "logprobs": 21}).to_string(), "logprobs"),
        ("/v1/completions", json!({"prompt": "a", "logprobs": -1}).to_string(), "logprobs"),
        ("/v1/completions", json!({"prompt": "a", "logprobs": true}).to_string(), "logprobs"),
        ("/v1/completions", json!({"prompt": "a", "logprobs": 2.5}).to_string(), "logprobs"),
    ];
    for (path, body, param) in cases {
        let (status, v) = s.post(path, &body).await;
        let e = error_of(status, 400, &v);
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["param"], param, "{path} {body}: {e}");
    }
    s.wait_idle().await;
}
