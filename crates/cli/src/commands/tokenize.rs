//! `memwall tokenize`: token ids of a text. Needs only the vocabulary, so it
//! works on vocabulary-only GGUF files.

use crate::model_args::ModelArgs;
use anyhow::{Context, Result};
use memwall_formats::gguf::GgufFile;
use memwall_formats::tokenizer::{EncodeOptions, Tokenizer};
use memwall_model::load::{detect, ModelFormat};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to tokenize.
    #[arg(long)]
    text: String,
    /// Add the beginning-of-sequence token.
    #[arg(long)]
    bos: bool,
    /// Recognise special tokens (e.g. <|im_start|>) in the text.
    #[arg(long)]
    special: bool,
    /// Print {"ids": [...]} instead of one `id<TAB>piece` line per token.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let path = args.model.path()?;
    let tokenizer = match detect(&path)? {
        ModelFormat::Gguf => Tokenizer::from_gguf(&GgufFile::open(&path)?)?,
        ModelFormat::HfDir => Tokenizer::from_hf_dir(&path)?,
    };
    let ids = tokenizer.encode(&args.text, EncodeOptions { add_bos: args.bos, parse_special: args.special });
    if args.json {
        println!("{}", serde_json::json!({ "ids": ids }));
    } else {
        for id in ids {
            let piece = String::from_utf8_lossy(&tokenizer.token_bytes(id)).into_owned();
            println!("{id}\t{}", serde_json::to_string(&piece).context("piece")?);
        }
    }
    Ok(())
}
