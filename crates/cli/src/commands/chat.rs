//! `memwall chat`: a multi-turn conversation in the terminal, rendered with
//! the model's own chat template. Each turn is a request to the engine, whose
//! prefix cache still holds the earlier turns' KV blocks, so a turn computes
//! little more than its new tokens.

use crate::model_args::ModelArgs;
use crate::sampling_args::SamplingArgs;
use anyhow::{bail, Context, Result};
use memwall_engine::{GenerateParams, Request};
use memwall_formats::chat_template::{render, ChatMessage};
use memwall_formats::tokenizer::EncodeOptions;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message that opens the conversation.
    #[arg(long)]
    system: Option<String>,
    /// A Jinja chat template file to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// Longest reply, in tokens.
    #[arg(long, short = 'n', default_value_t = 512)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(args: Args) -> Result<()> {
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        sampling: args.sampling.params()?,
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
    };
    let (engine, tok) = args.model.engine()?;
    let template = match &args.chat_template {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => match tok.chat_template() {
            Some(t) => t.to_string(),
            None => bail!("this model has no chat template; pass one with --chat-template FILE"),
        },
    };
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage { role: "system".into(), content: system.clone() });
    }
    eprintln!("memwall chat: type a message and press Enter; /reset starts over, /exit or Ctrl-D quits.");
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        eprint!("\n> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                messages.retain(|m: &ChatMessage| m.role == "system");
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage { role: "user".into(), content: line.to_string() });
        let prompt = render(&template, &messages, true, tok.bos_text(), tok.eos_text())?;
        let add_bos = tok.add_bos_by_default() && (tok.bos_text().is_empty() || !prompt.starts_with(tok.bos_text()));
        let ids = tok.encode(&prompt, EncodeOptions { add_bos, parse_special: true });
        let reply = engine.submit(Request::new(ids, params.clone())).and_then(|handle| {
            handle.stream(&mut |_, piece| {
                let _ = stdout.write_all(piece.as_bytes());
                let _ = stdout.flush();
            })
        });
        match reply {
            Ok(mut completions) => {
                println!();
                let text = completions.remove(0).text;
                messages.push(ChatMessage { role: "assistant".into(), content: text.trim().to_string() });
            }
            Err(e) => {
                messages.pop();
                eprintln!("error: {e}; /reset to start a new conversation");
            }
        }
    }
}
