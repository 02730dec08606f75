//! Every resource a client controls is bounded, and crossing a bound is a
//! clear error: per-request parameters (`n`, stop strings, `top_logprobs`,
//! prompt length against the context), request head (header count and
//! size), body size, and connections. Queue length is in `api.rs`.

mod common;

use common::{error_of, TestServer};
use memwall_server::params::{MAX_N, MAX_STOPS, MAX_STOP_BYTES, MAX_TOP_LOGPROBS};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn completion(extra: serde_json::Value) -> String {
    let mut body = json!({"prompt": "Hello", "max_tokens": 1});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body.to_string()
}

#[tokio::test]
async fn request_parameters_stop_at_their_bounds() {
    let s = TestServer::start(common::config()).await;
    // At the bound: accepted.
    let stops: Vec<String> = (0..MAX_STOPS).map(|i| format!("{i}").repeat(MAX_STOP_BYTES / 2)).collect();
    let longest = "z".repeat(MAX_STOP_BYTES);
    for body in [
        completion(json!({"n": MAX_N, "temperature": 0})),
        completion(json!({"stop": stops})),
        completion(json!({"stop": [longest]})),
    ] {
        let (status, v) = s.post("/v1/completions", &body).await;
        assert_eq!(status, 200, "{v}");
    }
    // One past it: a 400 naming the parameter and the limit.
    let too_many: Vec<String> = (0..=MAX_STOPS).map(|i| i.to_string()).collect();
    let cases = [
        (completion(json!({"n": MAX_N + 1})), "n", MAX_N.to_string()),
        (completion(json!({"stop": too_many})), "stop", MAX_STOPS.to_string()),
        (completion(json!({"stop": "y".repeat(MAX_STOP_BYTES + 1)})), "stop", MAX_STOP_BYTES.to_string()),
        (completion(json!({"top_logprobs": MAX_TOP_LOGPROBS + 1})), "top_logprobs", MAX_TOP_LOGPROBS.to_string()),
    ];
    for (body, param, limit) in cases {
        let (status, v) = s.post("/v1/completions", &body).await;
        let e = error_of(status, 400, &v);
        assert_eq!(e["param"], param, "{e}");
        assert!(e["message"].as_str().unwrap().contains(&limit), "the message names the limit {limit}: {e}");
    }
    // A prompt longer than the context.
    let context = s.handle.ready().unwrap().context;
    let ids: Vec<u32> = vec![5; context + 1];
    let (status, v) = s.post("/v1/completions", &json!({"prompt": ids, "max_tokens": 1}).to_string()).await;
    let e = error_of(status, 400, &v);
    assert_eq!(e["code"], "context_length_exceeded", "{e}");
    s.wait_idle().await;
}

#[tokio::test]
async fn request_heads_are_bounded() {
    let s = TestServer::start(common::config()).await;
    let with_headers = |n: usize, value_len: usize| {
        let mut r = s.client.get(s.url("/health"));
        for i in 0..n {
            r = r.header(format!("x-h{i}"), "v".repeat(value_len));
        }
        r
    };
    assert_eq!(with_headers(50, 10).send().await.unwrap().status().as_u16(), 200);
    // hyper's HTTP/1 limits: 100 headers, ~400 KiB of request head.
    assert_eq!(with_headers(150, 10).send().await.unwrap().status().as_u16(), 431);
    assert_eq!(with_headers(1, 600 << 10).send().await.unwrap().status().as_u16(), 431);
    assert_eq!(s.get("/health").await.0, 200, "the server still answers");
}

#[tokio::test]
async fn an_oversized_body_is_413_with_connection_close() {
    let s = TestServer::start(common::config()).await;
    let big = json!({"prompt": "a".repeat(100 << 10)}).to_string();
    let r = s.client.post(s.url("/v1/completions")).body(big).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // The unread body ends the connection; a keep-alive client must know.
    assert_eq!(r.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    let text = r.text().await.unwrap();
    assert!(text.contains(&(64 << 10).to_string()), "the message names the limit: {text}");
    assert_eq!(s.get("/health").await.0, 200);
}

/// Sends a bare `GET /health` on `stream` and returns the whole response.
async fn raw_get_health(mut stream: TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_and_are_closed() {
    let config = memwall_server::ServerConfig { max_connections: 2, ..common::config() };
    let s = TestServer::start(config).await;
    // Two idle connections take both places.
    let first = TcpStream::connect(s.addr).await.unwrap();
    let second = TcpStream::connect(s.addr).await.unwrap();
    let refused = raw_get_health(TcpStream::connect(s.addr).await.unwrap()).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections") && refused.contains("2 connections"), "{refused}");
    // A held connection still works; this request closes it.
    let answer = raw_get_health(second).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Its place is free again (once the server has seen it close), while
    // `first` still holds the other.
    let mut last = String::new();
    for _ in 0..200 {
        last = raw_get_health(TcpStream::connect(s.addr).await.unwrap()).await;
        if last.starts_with("HTTP/1.1 200") {
            drop(first);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a freed connection place was never reused: {last}");
}
