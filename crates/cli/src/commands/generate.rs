//! `memwall generate`: one prompt, streamed continuation, a summary line.

use crate::model_args::ModelArgs;
use crate::parallel_args::ParallelArgs;
use crate::sampling_args::SamplingArgs;
use anyhow::Result;
use memwall_engine::{GenerateParams, Request};
use memwall_formats::tokenizer::EncodeOptions;
use std::io::Write;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    parallel: ParallelArgs,
    /// The prompt (special tokens such as <|im_start|> are recognised).
    #[arg(long, short = 'p')]
    prompt: String,
    /// Generate at most N tokens.
    #[arg(long, short = 'n', default_value_t = 128)]
    max_tokens: usize,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON object {"prompt_ids", "ids", "text"} instead of streaming.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        sampling: args.sampling.params()?,
        stop: args.stop.clone(),
        ignore_eos: false,
        logprobs: None,
    };
    let par = args.parallel.init()?;
    if par.rank() > 0 {
        return args.model.serve_worker(&par);
    }
    let (engine, tok) = args.model.engine_part(&par)?;
    let opts = EncodeOptions { add_bos: tok.add_bos_by_default(), parse_special: true };
    let prompt_ids = tok.encode(&args.prompt, opts);
    let handle = engine.submit(Request::new(prompt_ids.clone(), params))?;
    let mut stdout = std::io::stdout().lock();
    let json = args.json;
    let mut completions = handle.stream(&mut |_, piece| {
        if !json {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    let generation = completions.remove(0);
    if json {
        let out = serde_json::json!({
            "prompt_ids": prompt_ids,
            "ids": generation.ids,
            "text": generation.text,
        });
        writeln!(stdout, "{out}")?;
    } else {
        writeln!(stdout)?;
    }
    let m = &generation.metrics;
    eprintln!(
        "prompt {} tokens, generated {} tokens, TTFT {:.1} ms, TPOT {:.2} ms, {:.1} tokens/s ({} threads, finish: {})",
        prompt_ids.len(),
        generation.ids.len(),
        m.ttft.as_secs_f64() * 1e3,
        m.tpot.as_secs_f64() * 1e3,
        m.decode_tokens_per_s(),
        par.threads(args.model.threads),
        generation.finish.map_or("unknown", |f| f.as_str()),
    );
    Ok(())
}
