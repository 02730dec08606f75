//! Cancellation on disconnect (KV blocks return to the pool), concurrent
//! requests, and graceful shutdown.

mod common;

use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

/// Long enough that it cannot finish before the client leaves: 32 samples
/// of up to the whole context each.
fn long_request(stream: bool) -> String {
    json!({"prompt": "The story begins", "max_tokens": 200, "n": 32, "ignore_eos": true, "stream": stream, "seed": 3})
        .to_string()
}

#[tokio::test]
async fn streaming_disconnect_cancels_and_frees_kv() {
    let s = TestServer::start(common::config()).await;
    let ready = s.handle.ready().unwrap();
    let mut resp = s
        .client
        .post(s.url("/v1/completions"))
        .header("content-type", "application/json")
        .body(long_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    assert!(first.starts_with(b"data: "));
    // The engine publishes occupancy after the step that sent the token.
    let mut held = false;
    for _ in 0..100 {
        held = ready.engine.metrics().kv_blocks_used > 0;
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(held, "the request holds KV blocks while running");
    drop(resp); // the client goes away mid-stream
    let m = s.wait_idle().await;
    assert_eq!(m.requests_cancelled, 32, "the engine cancelled each sample: {m:?}");
    assert!(m.generated_tokens < 32 * 200, "generation stopped early: {m:?}");
}

#[tokio::test]
async fn non_streaming_client_giving_up_cancels_and_frees_kv() {
    let s = TestServer::start(common::config()).await;
    let (client, url) = (s.client.clone(), s.url("/v1/completions"));
    let waiting = tokio::spawn(async move {
        client.post(url).header("content-type", "application/json").body(long_request(false)).send().await
    });
    // Once the engine has the request, the client gives up (drops the connection).
    let ready = s.handle.ready().unwrap();
    for _ in 0..1000 {
        if ready.engine.metrics().kv_blocks_used > 0 || waiting.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!waiting.is_finished(), "the request is still running");
    waiting.abort();
    let m = s.wait_idle().await;
    assert_eq!(m.requests_cancelled, 32, "the engine cancelled each sample: {m:?}");
    assert!(m.generated_tokens < 32 * 200, "generation stopped early: {m:?}");
}

#[tokio::test]
async fn concurrent_requests_all_complete_with_their_own_results() {
    let s = TestServer::start(common::config()).await;
    let body = |i: usize| {
        json!({"prompt": format!("request number {i}"), "max_tokens": 6 + i % 5, "temperature": 0, "ignore_eos": true})
            .to_string()
    };
    // Each request alone first.
    let mut alone = Vec::new();
    for i in 0..12 {
        let (status, v) = s.post("/v1/completions", &body(i)).await;
        assert_eq!(status, 200, "{v}");
        alone.push(v["choices"][0]["text"].clone());
    }
    // Then all at once, streaming and not.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (client, url, b) = (s.client.clone(), s.url("/v1/completions"), body(i));
        tasks.push(tokio::spawn(async move {
            let mut v: Value = serde_json::from_str(&b).unwrap();
            v["stream"] = json!(i % 2 == 1);
            let r =
                client.post(url).header("content-type", "application/json").body(v.to_string()).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let text = r.text().await.unwrap();
            if i % 2 == 0 {
                serde_json::from_str::<Value>(&text).unwrap()["choices"][0]["text"].clone()
            } else {
                let s: String = common::sse_data(&text)
                    .iter()
                    .filter(|d| *d != "[DONE]")
                    .filter_map(|d| {
                        serde_json::from_str::<Value>(d).unwrap()["choices"][0]["text"].as_str().map(String::from)
                    })
                    .collect();
                Value::String(s)
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), alone[i], "request {i} changed when run concurrently");
    }
    let m = s.wait_idle().await;
    assert_eq!(m.requests_cancelled, 0);
}

#[tokio::test]
async fn shutdown_drains_running_requests_then_returns() {
    let s = TestServer::start(common::config()).await;
    let (client, url) = (s.client.clone(), s.url("/v1/completions"));
    let running = tokio::spawn(async move {
        let b = json!({"prompt": "a", "max_tokens": 100, "ignore_eos": true}).to_string();
        let r = client.post(url).header("content-type", "application/json").body(b).send().await.unwrap();
        (r.status().as_u16(), r.json_text().await)
    });
    // Let it reach the engine, then signal shutdown.
    while s.handle.in_flight() == 0 && !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let url = s.url("/health");
    s.shutdown().await.expect("clean shutdown");
    let (status, body) = running.await.unwrap();
    assert_eq!(status, 200, "the running request finished: {body}");
    assert!(body.contains("\"finish_reason\":\"length\""), "{body}");
    assert!(reqwest::get(url).await.is_err(), "no longer accepting connections");
}

#[tokio::test]
async fn shutdown_deadline_cancels_what_is_left() {
    let config = memwall_server::ServerConfig { shutdown_grace: Duration::from_millis(50), ..common::config() };
    let s = TestServer::start(config).await;
    let ready = s.handle.ready().unwrap();
    let (client, url) = (s.client.clone(), s.url("/v1/completions"));
    let running = tokio::spawn(async move {
        let r = client.post(url).header("content-type", "application/json").body(long_request(true)).send().await;
        match r {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    });
    while s.handle.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::timeout(Duration::from_secs(20), s.shutdown()).await.expect("shutdown within its deadline").unwrap();
    let body = running.await.unwrap();
    assert!(body.contains("cancelled") || body.is_empty(), "the stream was cut: {body}");
    for _ in 0..200 {
        if ready.engine.metrics().kv_blocks_used == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("KV blocks still used after shutdown: {:?}", ready.engine.metrics());
}

trait JsonText {
    async fn json_text(self) -> String;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> String {
        self.text().await.unwrap_or_default()
    }
}
