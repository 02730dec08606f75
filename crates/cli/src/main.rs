//! `memwall`: run, chat with, inspect and check language models on your own
//! machine. Thin: parses flags and calls the library crates.

mod commands;
mod default_model;
mod model_args;
mod parallel_args;
mod sampling_args;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "memwall", version, about = "LLM inference at the memory wall", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation of a prompt, streaming text as it arrives.
    Generate(commands::generate::Args),
    /// Chat with a model in the terminal, using the model's own chat template.
    Chat(commands::chat::Args),
    /// Print the token ids of a text.
    Tokenize(commands::tokenize::Args),
    /// Print the top next-token logits after each position of a token list (JSON).
    Logits(commands::logits::Args),
    /// Describe a model file or directory: architecture, sizes, tensor types.
    Inspect(commands::inspect::Args),
    /// Benchmark prefill and decode (llama-bench's pp/tg tests) with MBU and
    /// MFU against this machine's measured bandwidth and peak FLOP/s.
    Bench(commands::bench::Args),
    /// Serve the model over an OpenAI-compatible HTTP API (chat, completions,
    /// streaming, metrics).
    Serve(commands::serve::Args),
    /// Load-test any OpenAI-compatible server: TTFT, TPOT, inter-token and
    /// end-to-end latency percentiles, throughput and goodput per concurrency
    /// or request rate.
    BenchServe(commands::bench_serve::Args),
    /// Predict latency, throughput, memory, energy and cost of a model on
    /// any hardware from its roofline; --validate checks it on this machine.
    Plan(commands::plan::Args),
    /// Re-encode a GGUF model's weight matrices in another type (q4_0 ...
    /// q8_0, q2_k ... q6_k, the q3_k_m / q4_k_m / q5_k_m mixes, f16, bf16),
    /// with llama.cpp's rules for which tensors keep more bits.
    Quantize(commands::quantize::Args),
}

fn main() {
    let cli = Cli::parse();
    // The server's access log is on by default; other commands stay quiet.
    let default_filter = if matches!(cli.command, Command::Serve(_)) { "info" } else { "" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMWALL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Generate(a) => commands::generate::run(a),
        Command::Chat(a) => commands::chat::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::Logits(a) => commands::logits::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::BenchServe(a) => commands::bench_serve::run(a),
        Command::Plan(a) => commands::plan::run(a),
        Command::Quantize(a) => commands::quantize::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
