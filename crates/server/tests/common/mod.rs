//! A real server on an ephemeral loopback port over the tiny llama fixture,
//! and a few client helpers.

#![allow(dead_code)]

use memwall_engine::{Engine, EngineConfig, KvCacheConfig, SchedulerConfig};
use memwall_server::{Ready, Server, ServerConfig, ServerHandle};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const MODEL: &str = "llama-fixture";

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

pub fn config() -> ServerConfig {
    ServerConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_body_bytes: 64 << 10,
        shutdown_grace: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

pub fn engine() -> (Engine, Arc<memwall_formats::tokenizer::Tokenizer>, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    let loaded = memwall_model::load(&path, &mut |_, _| {}).expect("fixture loads");
    let context = loaded.model.config.context_len;
    let tokenizer = Arc::new(loaded.tokenizer);
    let config = EngineConfig {
        kv: KvCacheConfig { memory_bytes: 16 << 20, ..KvCacheConfig::default() },
        scheduler: SchedulerConfig { max_batch_tokens: 512, max_running: 64, prefix_caching: true },
        threads: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::new(Arc::new(loaded.model), Arc::clone(&tokenizer), config).expect("engine starts");
    (engine, tokenizer, context)
}

impl TestServer {
    /// A server that is not ready yet (model "loading").
    pub async fn loading(config: ServerConfig) -> TestServer {
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().unwrap();
        let handle = server.handle();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        TestServer { addr, handle, client: reqwest::Client::new(), stop: Some(tx), task: Some(task) }
    }

    pub async fn start(config: ServerConfig) -> TestServer {
        let s = Self::loading(config).await;
        let (engine, tokenizer, context) = engine();
        s.handle.set_ready(Ready::new(engine, tokenizer, MODEL.to_string(), None, context));
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts a JSON body.
    async fn send_json(&self, path: &str, body: &str) -> reqwest::Response {
        let r = self.client.post(self.url(path)).header("content-type", "application/json").body(body.to_string());
        r.send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self.send_json(path, body).await;
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.expect("request sent");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// Posts and returns the SSE `data:` payloads in order.
    pub async fn stream(&self, path: &str, body: &str) -> (u16, Vec<String>) {
        let r = self.send_json(path, body).await;
        let status = r.status().as_u16();
        assert!(
            status != 200 || r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"),
            "a stream is text/event-stream"
        );
        let text = r.text().await.expect("body");
        (status, sse_data(&text))
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.expect("server task")
    }

    /// Polls the engine until no KV block is used and nothing runs or waits.
    pub async fn wait_idle(&self) -> memwall_engine::EngineMetrics {
        let ready = self.handle.ready().expect("ready");
        for _ in 0..500 {
            let m = ready.engine.metrics();
            if m.kv_blocks_used == 0 && m.running == 0 && m.waiting == 0 && self.handle.in_flight() == 0 {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the engine did not go idle: {:?}", ready.engine.metrics());
    }
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {e:?}")).to_string())
        .collect()
}

/// Asserts an OpenAI-shaped error with `status`, and returns its `error` object.
pub fn error_of(status: u16, want: u16, body: &Value) -> Value {
    assert_eq!(status, want, "status of {body}");
    let e = body.get("error").unwrap_or_else(|| panic!("no error object in {body}")).clone();
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "message in {e}");
    assert!(e["type"].is_string(), "type in {e}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "param and code keys in {e}");
    e
}
