//! `memwall inspect`: what a model file holds, without running it.

use anyhow::Result;
use memwall_formats::gguf::GgufFile;
use memwall_formats::safetensors::SafeTensorsDir;
use memwall_formats::tokenizer::Tokenizer;
use memwall_model::load::{detect, ModelFormat};
use memwall_model::ModelConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file or a Hugging Face model directory.
    model: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let path = &args.model;
    // type name -> (tensors, elements, bytes)
    let mut types: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    let (config, tokenizer, tokenizer_kind) = match detect(path)? {
        ModelFormat::Gguf => {
            let g = GgufFile::open(path)?;
            for t in g.tensors() {
                let e = types.entry(t.ggml_type.name().to_string()).or_default();
                *e = (e.0 + 1, e.1 + t.n_elements(), e.2 + t.n_bytes as u64);
            }
            let kind = g.get("tokenizer.ggml.model").and_then(|v| v.as_str()).unwrap_or("none").to_string();
            let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).map(|p| format!(" (pre-tokenizer {p})"));
            (ModelConfig::from_gguf(&g), Tokenizer::from_gguf(&g).ok(), kind + &pre.unwrap_or_default())
        }
        ModelFormat::HfDir => {
            let dir = SafeTensorsDir::open(path)?;
            for name in dir.names() {
                let t = dir.get(name).expect("listed");
                let e = types.entry(format!("{:?}", t.dtype).to_lowercase()).or_default();
                *e = (e.0 + 1, e.1 + t.shape.iter().product::<usize>() as u64, e.2 + t.data.len() as u64);
            }
            let json = std::fs::read_to_string(path.join("config.json"))?;
            let config = ModelConfig::from_hf_json(&serde_json::from_str(&json)?);
            (config, Tokenizer::from_hf_dir(path).ok(), "tokenizer.json".to_string())
        }
    };
    println!("model:          {}", path.display());
    match &config {
        Ok(c) => {
            println!("architecture:   {}", c.arch.name());
            println!("layers:         {}", c.n_layers);
            println!("d_model:        {}  (d_ff {})", c.d_model, c.d_ff);
            println!("heads:          {} query, {} key/value, head_dim {}", c.n_heads, c.n_kv_heads, c.head_dim);
            println!("vocabulary:     {}", c.vocab);
            println!("context length: {}", c.context_len);
        }
        Err(e) => println!("architecture:   not runnable: {e}"),
    }
    let params: u64 = types.values().map(|t| t.1).sum();
    let bytes: u64 = types.values().map(|t| t.2).sum();
    println!("parameters:     {} ({:.1} M)", params, params as f64 / 1e6);
    println!("weights:        {:.1} MB", bytes as f64 / 1e6);
    for (ty, (n, elems, b)) in &types {
        println!("  {ty:>6}: {n:>4} tensors, {:>12} elements, {:>10.2} MB", elems, *b as f64 / 1e6);
    }
    println!("tokenizer:      {tokenizer_kind}");
    let template = tokenizer.as_ref().and_then(|t| t.chat_template()).is_some();
    println!("chat template:  {}", if template { "yes" } else { "no" });
    Ok(())
}
