//! Opens a model path — a GGUF file or a Hugging Face directory — into a
//! [`Model`] and its [`Tokenizer`].

use crate::collective::{Collective, SingleProcess};
use crate::config::{Arch, ModelConfig, RopeStyle};
use crate::decoder::Model;
use crate::error::ModelError;
use crate::shard::Split;
use crate::weights::WeightSource;
use memwall_formats::gguf::GgufFile;
use memwall_formats::safetensors::SafeTensorsDir;
use memwall_formats::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::Arc;

/// What a model path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Gguf,
    HfDir,
}

pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub format: ModelFormat,
}

/// Detects the format of `path` without reading weights.
pub fn detect(path: &Path) -> Result<ModelFormat, ModelError> {
    let meta = std::fs::metadata(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
    if meta.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(ModelFormat::HfDir);
        }
        return Err(ModelError::NotAModel(path.display().to_string()));
    }
    let mut magic = [0u8; 4];
    use std::io::Read;
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) if &magic == b"GGUF" => Ok(ModelFormat::Gguf),
        Ok(()) | Err(_) => Err(ModelError::NotAModel(path.display().to_string())),
    }
}

/// Loads the model and tokenizer at `path`; `progress(done, total)` reports
/// weight binding layer by layer.
pub fn load(path: &Path, progress: &mut dyn FnMut(usize, usize)) -> Result<LoadedModel, ModelError> {
    load_split(path, Split::WHOLE, Arc::new(SingleProcess), progress)
}

/// Like [`load`], binding only this rank's share of the weights
/// (see [`crate::shard`]); the ranks talk through `comm`.
pub fn load_split(
    path: &Path,
    split: Split,
    comm: Arc<dyn Collective>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LoadedModel, ModelError> {
    let _span = tracing::info_span!("load", path = %path.display()).entered();
    match detect(path)? {
        ModelFormat::Gguf => {
            let g = GgufFile::open(path)?;
            let config = ModelConfig::from_gguf(&g)?;
            let tokenizer = Tokenizer::from_gguf(&g)?;
            // llama.cpp's converter permutes Q/K rows of the llama architecture
            // so that adjacent pairs rotate together; the others keep
            // Hugging Face's half-split layout.
            let rope = if config.arch == Arch::Llama { RopeStyle::Interleaved } else { RopeStyle::Neox };
            let model = Model::bind_split(&WeightSource::Gguf(g), config, Some(rope), split, comm, progress)?;
            Ok(LoadedModel { model, tokenizer, format: ModelFormat::Gguf })
        }
        ModelFormat::HfDir => {
            let config_path = path.join("config.json");
            let text = std::fs::read_to_string(&config_path)
                .map_err(|source| ModelError::Io { path: config_path.display().to_string(), source })?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|source| ModelError::Json { path: config_path.display().to_string(), source })?;
            let config = ModelConfig::from_hf_json(&json)?;
            let dir = SafeTensorsDir::open(path)?;
            let tokenizer = Tokenizer::from_hf_dir(path)?;
            let src = WeightSource::Hf { arch: config.arch, dir };
            let model = Model::bind_split(&src, config, Some(RopeStyle::Neox), split, comm, progress)?;
            Ok(LoadedModel { model, tokenizer, format: ModelFormat::HfDir })
        }
    }
}
