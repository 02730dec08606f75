//! The server outlasts misbehaving clients and a failing engine step:
//! connections that send no request head (silent, dripping, idle
//! keep-alive) are closed after `header_timeout` and give their place back,
//! while a long streamed response is never cut by it; a panic in an engine
//! step fails that request with an OpenAI-shaped 500 (or an error event in a
//! stream) and the next request is served.
//!
//! Waits are bounded generously only so that a failure cannot hang the
//! tests; nothing asserts on speed.

mod common;

use common::TestServer;
use memwall_server::ServerConfig;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest wait for something the server must do on its own.
const WAIT: Duration = Duration::from_secs(30);

fn config(max_connections: usize) -> ServerConfig {
    ServerConfig { header_timeout: Duration::from_secs(1), max_connections, ..common::config() }
}

/// Reads until the server closes the connection (EOF or reset) and returns
/// what came; panics if it stays open for [`WAIT`].
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let read = async {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("the server never closed the connection")
}

/// Sends a bare `GET /health` on a new connection and returns the response.
async fn raw_get_health(s: &TestServer) -> String {
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    read_until_closed(&mut stream).await
}

/// `GET /health` until it is served (a closed connection's place returns
/// once the server has dropped it).
async fn health_is_served(s: &TestServer) {
    let mut last = String::new();
    for _ in 0..500 {
        last = raw_get_health(s).await;
        if last.starts_with("HTTP/1.1 200") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the connection place was never freed: {last}");
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_gives_its_place_back() {
    let s = TestServer::start(config(1)).await;
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    // It holds the only place meanwhile.
    let refused = raw_get_health(&s).await;
    assert!(refused.starts_with("HTTP/1.1 503") && refused.contains("too_many_connections"), "{refused}");
    let got = read_until_closed(&mut silent).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    health_is_served(&s).await;
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_request_head_dripped_byte_by_byte_is_cut_off() {
    let s = TestServer::start(config(4)).await;
    let (mut rd, mut wr) = TcpStream::connect(s.addr).await.unwrap().into_split();
    // Slowloris: a header line every 200 ms, for longer than we wait.
    let drip = tokio::spawn(async move {
        if wr.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").await.is_err() {
            return;
        }
        for _ in 0..(2 * WAIT.as_millis() / 200) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"x-slow: 1\r\n").await.is_err() {
                return;
            }
        }
    });
    let got = read_until_closed(&mut rd).await;
    assert!(!got.starts_with("HTTP/1.1 200"), "a head never finished was answered: {got}");
    drip.abort();
    assert_eq!(s.get("/health").await.0, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_response() {
    let s = TestServer::start(config(1)).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    // Keep-alive (HTTP/1.1's default): answered, then idle until the timeout.
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let got = read_until_closed(&mut stream).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
    health_is_served(&s).await;
}

#[tokio::test]
async fn a_stream_longer_than_the_header_timeout_is_not_cut() {
    let s = TestServer::start(config(4)).await;
    // ~10 MB of chunks (64 samples × 200 tokens with 20 logprobs each), more
    // than the sockets buffer: the server stays blocked writing while this
    // client reads nothing for twice the timeout, then reads it all.
    let body = json!({
        "prompt": "Hello", "max_tokens": 200, "n": 64, "logprobs": 20,
        "temperature": 1.0, "seed": 1, "ignore_eos": true, "stream": true,
    })
    .to_string();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = read_until_closed(&mut stream).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{}", &got[..got.len().min(300)]);
    // Chunked transfer encoding interleaves size lines; the events are whole.
    let finished = got.matches("\"finish_reason\":\"length\"").count();
    assert_eq!(finished, 64, "every sample's last chunk arrived");
    assert!(got.contains("data: [DONE]"), "the stream ended normally");
    assert!(got.len() > 4 << 20, "the response outgrew the socket buffers: {} bytes", got.len());
}

/// Debug builds only: the engine's panic injection is compiled out of release builds.
#[cfg(debug_assertions)]
mod engine_panic {
    use super::common::{self, error_of, TestServer};
    use serde_json::{json, Value};

    #[tokio::test]
    async fn a_panicking_engine_step_is_a_500_then_the_server_serves_again() {
        let s = TestServer::start(common::config()).await;
        let ready = s.handle.ready().unwrap();
        let body = json!({"prompt": "Once upon", "max_tokens": 4, "temperature": 0, "ignore_eos": true});
        let (status, want) = s.post("/v1/completions", &body.to_string()).await;
        assert_eq!(status, 200, "{want}");

        ready.engine.inject_step_panic("injected kernel assert");
        let (status, err) = s.post("/v1/completions", &body.to_string()).await;
        let e = error_of(status, 500, &err);
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("internal error in the engine step") && message.contains("injected"), "{message}");
        assert_eq!(e["type"], "server_error");

        // Streamed: the headers are out already, so an error event, then the end.
        ready.engine.inject_step_panic("injected kernel assert");
        let mut streamed = body.clone();
        streamed["stream"] = Value::Bool(true);
        let (status, events) = s.stream("/v1/completions", &streamed.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
        let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains("internal error in the engine step"), "{error}");

        let (status, again) = s.post("/v1/completions", &body.to_string()).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["choices"][0]["text"], want["choices"][0]["text"]);
        let m = s.wait_idle().await;
        assert_eq!(m.step_panics, 2);
        let (_, metrics) = s.get("/metrics").await;
        assert!(metrics.contains("memwall_engine_step_panics_total 2"), "{metrics}");
    }
}
