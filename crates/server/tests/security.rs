//! Security properties of the server: API keys never reach the log (or an
//! error body, or `Debug` of the config), prompts are logged only when asked
//! for, the default bind is loopback, and no request can make the server
//! open a file — the `model` field only ever names the served model.

mod common;

use common::{error_of, TestServer, MODEL};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Everything `tracing` writes in this test binary (all tests share it).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

/// Waits until the log holds an access line mentioning `needle`.
async fn wait_for_access_line(needle: &str) -> String {
    for _ in 0..500 {
        let text = log_text();
        if text.lines().any(|l| l.contains("memwall::access") && l.contains(needle)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no access line with {needle:?} in the log:\n{}", log_text());
}

#[tokio::test]
async fn api_keys_and_prompts_never_reach_the_log() {
    log();
    let key = "sk-SECRET-CANARY-7f3a";
    let wrong = "sk-WRONG-CANARY-19c2";
    let config = memwall_server::ServerConfig { api_keys: vec![key.into()], ..common::config() };
    assert!(!format!("{config:?}").contains("SECRET-CANARY"), "Debug of the config shows the key");
    let s = TestServer::start(config).await;

    let completion = json!({"prompt": "PROMPT-CANARY-A completion", "max_tokens": 2}).to_string();
    let r = s.client.post(s.url("/v1/completions")).bearer_auth(key).body(completion.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let chat =
        json!({"messages": [{"role": "user", "content": "PROMPT-CANARY-A chat"}], "max_tokens": 2, "stream": true});
    let r = s.client.post(s.url("/v1/chat/completions")).bearer_auth(key).body(chat.to_string()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap();
    // Wrong keys, in both headers: refused without echoing the key.
    let r = s.client.post(s.url("/v1/completions")).bearer_auth(wrong).body(completion.clone()).send().await.unwrap();
    let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
    error_of(status, 401, &serde_json::from_str(&body).unwrap());
    assert!(!body.contains("WRONG-CANARY"), "{body}");
    let r = s.client.get(s.url("/v1/models")).header("x-api-key", wrong).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s.client.get(s.url("/v1/models")).header("x-api-key", key).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Every request above has its access line before we look.
    wait_for_access_line("POST /v1/chat/completions").await;
    s.wait_idle().await;
    let text = wait_for_access_line("GET /v1/models").await;
    let access_lines = text.lines().filter(|l| l.contains("memwall::access")).count();
    assert!(access_lines >= 5, "expected the access lines of five requests:\n{text}");
    for canary in ["SECRET-CANARY", "WRONG-CANARY", "PROMPT-CANARY-A"] {
        assert!(!text.contains(canary), "{canary} reached the log:\n{text}");
    }
}

#[tokio::test]
async fn prompts_are_logged_only_with_log_prompts() {
    log();
    let config = memwall_server::ServerConfig { log_prompts: true, ..common::config() };
    let s = TestServer::start(config).await;
    let (status, v) =
        s.post("/v1/completions", &json!({"prompt": "PROMPT-CANARY-B", "max_tokens": 1}).to_string()).await;
    assert_eq!(status, 200, "{v}");
    wait_for_access_line("PROMPT-CANARY-B").await;
}

#[tokio::test]
async fn the_model_field_never_names_a_file() {
    let s = TestServer::start(common::config()).await;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    let fixture = fixture.canonicalize().unwrap().display().to_string();
    let paths = [
        fixture.as_str(),
        "../../tests/fixtures/models/llama.gguf",
        "tests/fixtures/models/qwen2.gguf",
        "/etc/passwd",
        "file:///etc/passwd",
        "/proc/self/environ",
        "llama-fixture/../../../etc/passwd",
    ];
    for path in paths {
        for (route, body) in [
            ("/v1/completions", json!({"model": path, "prompt": "x", "max_tokens": 1})),
            ("/v1/chat/completions", json!({"model": path, "messages": [{"role": "user", "content": "x"}]})),
        ] {
            let (status, v) = s.post(route, &body.to_string()).await;
            let e = error_of(status, 404, &v);
            assert_eq!(e["code"], "model_not_found", "{route} {path}: {e}");
            assert!(!e["message"].as_str().unwrap().contains("root:"), "{e}");
        }
        let (status, body) = s.get(&format!("/v1/models/{path}")).await;
        assert_eq!(status, 404, "GET /v1/models/{path}: {body}");
    }
    // The served model is unchanged.
    let (status, body) = s.get("/v1/models").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [MODEL]);
}

#[test]
fn the_default_bind_is_loopback_without_keys_in_the_log() {
    let config = memwall_server::ServerConfig::default();
    assert!(config.addr.ip().is_loopback(), "{}", config.addr);
    let with_key = memwall_server::ServerConfig { api_keys: vec!["sk-abc".into(), "sk-def".into()], ..config };
    let shown = format!("{with_key:?}");
    assert!(!shown.contains("sk-abc") && !shown.contains("sk-def") && shown.contains("2 redacted"), "{shown}");
}
