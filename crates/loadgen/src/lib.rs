//! # memwall-loadgen
//!
//! A load generator for any OpenAI-compatible server — memwall,
//! llama-server, vLLM, SGLang, TGI — in the manner of vLLM's `bench serve`
//! and SGLang's `bench_serving`: streaming requests, a closed loop at fixed
//! concurrency or an open loop with Poisson arrivals, prompts of a
//! controlled token length, fixed output lengths (`max_tokens` with
//! `ignore_eos`), and per level TTFT, TPOT, inter-token latency and
//! end-to-end latency at mean / p50 / p90 / p99, throughput, and goodput
//! under latency targets.
//!
//! Layout, one concept per module: [`client`] (one timed streaming request
//! and the helper endpoints), [`sse`] (event parsing), [`workload`]
//! (prompts, datasets, arrival times), [`load`] (the two loops),
//! [`stats`] (percentiles, goodput), [`report`] (JSON and the table),
//! [`plot`] (SVG). [`run`] ties them together for `memwall bench-serve`.
//!
//! Guarantees: the seed fixes the prompts (for a given tokenizer) and the
//! arrival times; failures are counted by status, never abort a level; the
//! client measures, it never retries. The client shares the machine with
//! the server it measures: it does little work per chunk (no allocation
//! beyond the chunk's JSON), and on a loaded machine its own scheduling
//! delays are part of what it reports.

pub mod client;
pub mod load;
pub mod plot;
pub mod report;
pub mod sse;
pub mod stats;
pub mod workload;

pub use client::{Client, Endpoint, Failure, PromptBody, RequestRecord, Timing, WorkItem};
pub use load::{Level, Observer, Quiet, Stop};
pub use report::LevelReport;
pub use stats::{LevelStats, Slo};
pub use workload::{PromptLength, Prompts};

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::Arc;

/// What can stop a run before its first request.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("HTTP error: {0} (is the server running at that address?)")]
    Http(String),
    #[error("unexpected answer from the server: {0}")]
    Server(String),
    #[error("dataset: {0}")]
    Dataset(String),
    #[error("the server lists no model; name one with --model")]
    NoModel,
}

/// A whole benchmark run against one server.
#[derive(Clone, Debug)]
pub struct Plan {
    pub endpoint: Endpoint,
    /// The model to name in requests (default: the first of `/v1/models`).
    pub model: Option<String>,
    pub levels: Vec<Level>,
    pub stop: Stop,
    pub prompts: Prompts,
    /// Send `ignore_eos: true` so every request produces `max_tokens`.
    pub ignore_eos: bool,
    pub slo: Slo,
    pub seed: u64,
    /// Send one request before the first level and leave it out of the results.
    pub warmup: bool,
}

/// One measured level.
#[derive(Clone, Debug)]
pub struct LevelResult {
    pub level: Level,
    pub stats: LevelStats,
    pub report: LevelReport,
    pub records: Vec<RequestRecord>,
}

/// What a run found out before the load starts, and what it measured.
#[derive(Clone, Debug)]
pub struct Run {
    pub model: String,
    pub prompt_length: PromptLength,
    pub levels: Vec<LevelResult>,
}

/// The model a run names: `plan.model`, else the server's first.
pub async fn resolve_model(client: &Client, model: Option<&str>) -> Result<String, LoadgenError> {
    match model {
        Some(m) => Ok(m.to_string()),
        None => client.models().await?.into_iter().next().ok_or(LoadgenError::NoModel),
    }
}

/// How many prompts a level needs: its request count, or for a duration
/// enough distinct ones that repeats are rare (they are cycled beyond that).
fn prompts_needed(level: Level, stop: Stop) -> usize {
    match (stop, level) {
        (Stop::Requests(n), _) => n,
        (Stop::Duration(_), Level::Concurrency(c)) => (16 * c).max(256),
        (Stop::Duration(d), Level::Rate(r)) => ((r * d.as_secs_f64() * 1.5) as usize + 16).min(20_000),
    }
}

/// Where a run's prompts come from.
enum Source<'a> {
    Random(workload::PromptMaker),
    Dataset(&'a [WorkItem]),
}

impl Source<'_> {
    async fn items(
        &self,
        client: &Client,
        model: &str,
        n: usize,
        rng: &mut StdRng,
    ) -> Result<Vec<WorkItem>, LoadgenError> {
        match self {
            Source::Random(maker) => maker.items(client, model, n, rng).await,
            Source::Dataset(d) => Ok(d.to_vec()),
        }
    }
}

/// Runs `plan` against `client`'s server; `on_level` sees each level as it ends.
pub async fn run(
    client: Client,
    plan: &Plan,
    observer: Arc<dyn Observer>,
    mut on_level: impl FnMut(&LevelResult),
) -> Result<Run, LoadgenError> {
    let model = resolve_model(&client, plan.model.as_deref()).await?;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let (source, prompt_length, output_tokens_requested) = match &plan.prompts {
        Prompts::Random { prompt_tokens, output_tokens } => {
            let maker = workload::PromptMaker::new(&client, &model, *prompt_tokens, *output_tokens, &mut rng).await?;
            let length = maker.length();
            (Source::Random(maker), length, Some(*output_tokens))
        }
        Prompts::Dataset(d) if d.is_empty() => return Err(LoadgenError::Dataset("no prompts".into())),
        Prompts::Dataset(d) => (Source::Dataset(d), PromptLength::Dataset, None),
    };
    if plan.warmup {
        let item = source.items(&client, &model, 1, &mut rng).await?.remove(0);
        let item = WorkItem { max_tokens: item.max_tokens.min(4), ..item };
        let body = Client::request_body(&model, plan.endpoint, &item, plan.ignore_eos);
        if let Err(f) = client.stream(plan.endpoint, &body).await {
            return Err(LoadgenError::Server(format!("the warm-up request failed: {}", f.key())));
        }
    }
    let cx = report::Context { prompt_length, output_tokens_requested, slo: plan.slo };
    let mut levels = Vec::with_capacity(plan.levels.len());
    for &level in &plan.levels {
        let items = source.items(&client, &model, prompts_needed(level, plan.stop), &mut rng).await?;
        let shared = Arc::new(load::Shared {
            client: client.clone(),
            endpoint: plan.endpoint,
            model: model.clone(),
            ignore_eos: plan.ignore_eos,
            items,
        });
        let (records, wall) = load::run_level(shared, level, plan.stop, &mut rng, Arc::clone(&observer)).await;
        let stats = LevelStats::of(&records, wall, plan.slo);
        let result = LevelResult { level, report: LevelReport::new(level, &stats, cx), stats, records };
        on_level(&result);
        levels.push(result);
    }
    Ok(Run { model, prompt_length, levels })
}
