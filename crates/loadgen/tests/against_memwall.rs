//! End to end: the load generator against a real memwall server on an
//! ephemeral loopback port, serving the tiny llama fixture in-process.
//! Counts only — no wall-clock assertions.

use memwall_engine::{Engine, EngineConfig, KvCacheConfig, SchedulerConfig};
use memwall_loadgen::{run, Client, Endpoint, Level, Plan, PromptLength, Prompts, Quiet, Slo, Stop};
use memwall_server::{Ready, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MODEL: &str = "llama-fixture";

/// Starts a server with `api_keys` and returns its address; it runs until the test's runtime ends.
async fn start_server(api_keys: Vec<String>) -> SocketAddr {
    let config = ServerConfig { addr: SocketAddr::from(([127, 0, 0, 1], 0)), api_keys, ..ServerConfig::default() };
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr().unwrap();
    let handle = server.handle();
    tokio::spawn(server.run(std::future::pending()));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama.gguf");
    let loaded = memwall_model::load(&path, &mut |_, _| {}).expect("fixture loads");
    let context = loaded.model.config.context_len;
    let tokenizer = Arc::new(loaded.tokenizer);
    let config = EngineConfig {
        kv: KvCacheConfig { memory_bytes: 16 << 20, ..KvCacheConfig::default() },
        scheduler: SchedulerConfig { max_batch_tokens: 512, max_running: 16, prefix_caching: true },
        threads: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::new(Arc::new(loaded.model), Arc::clone(&tokenizer), config).expect("engine starts");
    handle.set_ready(Ready::new(engine, tokenizer, MODEL.to_string(), None, context));
    addr
}

fn plan(levels: Vec<Level>, requests: usize) -> Plan {
    Plan {
        endpoint: Endpoint::Completions,
        model: None,
        levels,
        stop: Stop::Requests(requests),
        prompts: Prompts::Random { prompt_tokens: 12, output_tokens: 6 },
        ignore_eos: true,
        slo: Slo::default(),
        seed: 3,
        warmup: true,
    }
}

fn client(addr: SocketAddr, key: Option<&str>) -> Client {
    Client::new(&format!("http://{addr}/v1"), key.map(str::to_string), Duration::from_secs(120)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_at_concurrency_1_and_4_gets_every_requested_token() {
    let addr = start_server(vec![]).await;
    let mut seen = Vec::new();
    let run =
        run(client(addr, None), &plan(vec![Level::Concurrency(1), Level::Concurrency(4)], 6), Arc::new(Quiet), |l| {
            seen.push(l.level)
        })
        .await
        .expect("the run starts");
    assert_eq!(run.model, MODEL, "the model comes from /v1/models");
    assert_eq!(run.prompt_length, PromptLength::Tokenized, "memwall has /tokenize");
    assert_eq!(seen, [Level::Concurrency(1), Level::Concurrency(4)]);
    for level in &run.levels {
        let r = &level.report;
        assert_eq!((r.requests, r.completed, r.failed), (6, 6, 0), "{r:?}");
        assert_eq!((r.output_tokens, r.output_tokens_min, r.output_tokens_max), (36, 6, 6));
        assert_eq!(level.records.len(), 6);
        for rec in &level.records {
            let t = rec.outcome.as_ref().expect("completed");
            assert_eq!(t.output_tokens, 6, "ignore_eos fixes the length");
            // The server counts the prompt: the window of 12 tokens, give or
            // take its edges re-tokenizing, plus BOS.
            let p = t.prompt_tokens.expect("usage.prompt_tokens");
            assert!((10..=15).contains(&p), "prompt tokens {p}");
            assert!(!t.chunk_times.is_empty() && t.chunk_times.len() <= 6);
            assert!(t.chunk_times.windows(2).all(|w| w[0] <= w[1]) && t.ttft() <= t.e2e);
        }
        assert_eq!(r.slo_met, 6, "no SLO: every completed request counts");
        assert!(r.output_tokens_per_s > 0.0 && r.goodput > 0.0);
        assert!(r.latencies.ttft_ms.p50 <= r.latencies.ttft_ms.p99);
    }
    assert_eq!(run.levels[1].report.concurrency, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_the_requested_number_of_requests() {
    let addr = start_server(vec![]).await;
    let run = run(client(addr, None), &plan(vec![Level::Rate(200.0)], 5), Arc::new(Quiet), |_| {}).await.unwrap();
    let r = &run.levels[0].report;
    assert_eq!((r.request_rate, r.completed, r.failed, r.output_tokens), (Some(200.0), 5, 0, 30));
    let sent: Vec<_> = run.levels[0].records.iter().map(|r| r.sent_at).collect();
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "arrivals in order: {sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_status() {
    let addr = start_server(vec!["right".into()]).await;
    // /v1/models needs the key too, so name the model; no warm-up (it would fail first).
    let mut p = plan(vec![Level::Concurrency(2)], 3);
    p.model = Some(MODEL.into());
    p.warmup = false;
    p.prompts = Prompts::Dataset(memwall_loadgen::workload::load_dataset(&dataset(), 4).unwrap());
    let run = run(client(addr, Some("wrong")), &p, Arc::new(Quiet), |_| {}).await.unwrap();
    let r = &run.levels[0].report;
    assert_eq!((r.completed, r.failed), (0, 3));
    assert_eq!(r.failures.get("401"), Some(&3));
    // With the right key the same dataset completes, lengths from the file.
    let run = run_ok(addr, p).await;
    let r = &run.levels[0].report;
    assert_eq!((r.completed, r.failed, r.output_tokens), (3, 0, 3 * 5));
}

async fn run_ok(addr: SocketAddr, p: Plan) -> memwall_loadgen::Run {
    run(client(addr, Some("right")), &p, Arc::new(Quiet), |_| {}).await.unwrap()
}

fn dataset() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("memwall-loadgen-{}.jsonl", std::process::id()));
    std::fs::write(&path, "{\"prompt\": \"Once upon a time\", \"max_tokens\": 5}\n").unwrap();
    path
}
