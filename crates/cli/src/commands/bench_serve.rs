//! `memwall bench-serve`: load-test any OpenAI-compatible server.
//!
//! ```text
//! memwall bench-serve --url http://127.0.0.1:8080 [--api-key K] [--model NAME]
//!                     --concurrency 1,4,16,64 | --request-rate R,..
//!                     [--duration 60s | --requests N]
//!                     [--prompt-tokens 256 --output-tokens 128 | --dataset FILE.jsonl]
//!                     [--slo-ttft 500ms --slo-tpot 100ms] [--seed S] [--json FILE] [--plot FILE.svg]
//! ```
//!
//! Prints a markdown table, one row per level, with a progress bar while it
//! runs. The library side is [`memwall_loadgen`]; this file parses flags and
//! prints.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use memwall_loadgen::plot::{self, Series};
use memwall_loadgen::report::{table_header, table_row};
use memwall_loadgen::workload::{load_dataset, parse_duration};
use memwall_loadgen::{Client, Endpoint, Level, LevelReport, Observer, Plan, Prompts, RequestRecord, Slo, Stop};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    memwall bench-serve --concurrency 1,4,16 --requests 64 --json out.json --plot out.svg\n  \
    memwall bench-serve --url http://127.0.0.1:8000 --request-rate 0.5,1,2 --duration 60s --slo-ttft 500ms --slo-tpot 100ms\n  \
    memwall bench-serve --dataset prompts.jsonl --concurrency 8   # lines: {\"prompt\": \"..\", \"max_tokens\": 64}")]
pub struct Args {
    /// Base URL of the server (with or without /v1). Plain http only.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Send `Authorization: Bearer KEY`.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Model id to request (default: the first one GET /v1/models lists).
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// Closed loop: run one level per value with exactly that many requests in
    /// flight, each sent as soon as the previous one of its worker ends
    /// (default: 1).
    #[arg(long, value_name = "N,..", value_delimiter = ',', conflicts_with = "request_rate")]
    concurrency: Vec<usize>,
    /// Open loop: run one level per value with requests arriving as a Poisson
    /// process at that many requests per second, however many are in flight.
    #[arg(long, value_name = "R,..", value_delimiter = ',')]
    request_rate: Vec<f64>,
    /// Stop sending after this long per level (60s, 2m); requests in flight
    /// still finish and count.
    #[arg(long, value_name = "TIME", value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Requests per level (default: 4 × the highest concurrency and at least
    /// 32; 64 per rate).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Prompt length of the random prompts, in tokens of the server's own
    /// tokenizer (via its /tokenize and /detokenize; a word count when it has none).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    prompt_tokens: u64,
    /// Output tokens per request (`max_tokens`, with `ignore_eos` so that every
    /// request produces all of them on servers that support it).
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    output_tokens: u64,
    /// Prompts from a JSONL file instead of random ones, used in order and
    /// cycled: one object per line with "prompt" (a string) or "messages"
    /// (chat messages, needs --endpoint chat), and optionally "max_tokens"
    /// (default --output-tokens).
    #[arg(long, value_name = "FILE", conflicts_with = "prompt_tokens")]
    dataset: Option<PathBuf>,
    /// Goodput counts requests whose time to first token is at most this (500ms).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    slo_ttft: Option<Duration>,
    /// Goodput counts requests whose time per output token is at most this (100ms).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    slo_tpot: Option<Duration>,
    /// Seed of the random prompts and the Poisson arrivals.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the results to FILE: a JSON list with one object per level.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw output tokens/s and p99 TTFT against concurrency (or rate) to FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Which API to load: completions (/v1/completions) or chat (/v1/chat/completions).
    #[arg(long, value_name = "API", default_value = "completions", value_parser = ["completions", "chat"])]
    endpoint: String,
    /// Give up on a request after this long (counted as a `timeout` failure).
    #[arg(long, value_name = "TIME", default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
}

/// A progress bar over the requests of the current level.
struct Bar(ProgressBar);

impl Observer for Bar {
    fn level_started(&self, level: Level, expected: Option<usize>) {
        self.0.reset();
        self.0.set_length(expected.unwrap_or(0) as u64);
        self.0.set_message(match level {
            Level::Concurrency(c) => format!("concurrency {c}"),
            Level::Rate(r) => format!("rate {r}/s"),
        });
    }

    fn request_done(&self, _record: &RequestRecord) {
        self.0.inc(1);
    }
}

fn plan(args: &Args) -> Result<Plan> {
    if args.concurrency.contains(&0) {
        bail!("--concurrency values must be at least 1");
    }
    if args.request_rate.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("--request-rate values must be positive requests per second");
    }
    let levels: Vec<Level> = if !args.request_rate.is_empty() {
        args.request_rate.iter().map(|&r| Level::Rate(r)).collect()
    } else if args.concurrency.is_empty() {
        vec![Level::Concurrency(1)]
    } else {
        args.concurrency.iter().map(|&c| Level::Concurrency(c)).collect()
    };
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    let stop = match (args.duration, args.requests) {
        (Some(d), _) => Stop::Duration(d),
        (None, Some(n)) => Stop::Requests(n as usize),
        (None, None) if args.request_rate.is_empty() => Stop::Requests((4 * max_c).max(32)),
        (None, None) => Stop::Requests(64),
    };
    let prompts = match &args.dataset {
        Some(path) => Prompts::Dataset(load_dataset(path, args.output_tokens as usize)?),
        None => {
            Prompts::Random { prompt_tokens: args.prompt_tokens as usize, output_tokens: args.output_tokens as usize }
        }
    };
    let endpoint = if args.endpoint == "chat" { Endpoint::Chat } else { Endpoint::Completions };
    if let (Prompts::Dataset(items), Endpoint::Completions) = (&prompts, endpoint) {
        if items.iter().any(|i| matches!(i.prompt, memwall_loadgen::PromptBody::Messages(_))) {
            bail!("the dataset has \"messages\" lines: add --endpoint chat");
        }
    }
    Ok(Plan {
        endpoint,
        model: args.model.clone(),
        levels,
        stop,
        prompts,
        ignore_eos: true,
        slo: Slo { ttft: args.slo_ttft, tpot: args.slo_tpot },
        seed: args.seed,
        warmup: true,
    })
}

pub fn run(args: Args) -> Result<()> {
    let plan = plan(&args)?;
    let client = Client::new(&args.url, args.api_key.clone(), args.timeout)?;
    // One thread for the client: the server under test usually shares the machine.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} requests, {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let observer = Arc::new(Bar(bar.clone()));
    let rate = matches!(plan.levels[0], Level::Rate(_));
    eprintln!("bench-serve: {} ({}), preparing prompts…", client.base(), args.endpoint);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", table_header(rate))?;
    let run = runtime.block_on(memwall_loadgen::run(client, &plan, observer, |level| {
        bar.suspend(|| {
            let _ = writeln!(stdout, "{}", table_row(&level.report));
            let _ = stdout.flush();
        });
    }));
    bar.finish_and_clear();
    let run = run.with_context(|| format!("bench-serve against {}", args.url))?;
    let reports: Vec<LevelReport> = run.levels.iter().map(|l| l.report.clone()).collect();
    let prompt = reports.first().map_or(0.0, |r| r.prompt_tokens_mean);
    eprintln!(
        "model `{}`; prompts {:.0} tokens on average ({:?}); {} failed in all",
        run.model,
        prompt,
        run.prompt_length,
        reports.iter().map(|r| r.failed).sum::<usize>()
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&reports)?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!("{} at {}", run.model, args.url);
        plot::svg(&title, &[Series { name: &run.model, levels: &reports }], path)
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
