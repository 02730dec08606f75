//! `memwall`: run, chat with, inspect and check language models on your own
//! machine. Thin: parses flags and calls the library crates.

mod commands;
mod default_model;
mod model_args;
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
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MEMWALL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => commands::generate::run(a),
        Command::Chat(a) => commands::chat::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::Logits(a) => commands::logits::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Bench(a) => commands::bench::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
