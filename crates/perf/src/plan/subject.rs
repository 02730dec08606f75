//! What `--model` names: a named shape ([`super::shapes`]), a GGUF file (its
//! real tensor sizes become the cost model's weight bytes) or a Hugging Face
//! directory (`config.json`; weights planned in the requested type).

use super::{shapes, Subject, WeightType};
use crate::hardware::ComputeClass;
use crate::PerfError;
use memwall_formats::gguf::GgufFile;
use memwall_model::cost::{CostModel, WeightBytes};
use memwall_model::ModelConfig;
use std::path::Path;

/// Resolves `model` to a subject and the weight type it is stored in
/// (`None` for shapes and directories, whose type is the caller's choice).
pub fn resolve(model: &str) -> Result<(Subject, Option<WeightType>), PerfError> {
    let path = Path::new(model);
    if path.is_dir() {
        return from_hf_dir(path).map(|s| (s, None));
    }
    if path.is_file() {
        return from_gguf(path).map(|(s, w)| (s, Some(w)));
    }
    let shape = shapes::by_name(model)
        .ok_or_else(|| PerfError::UnknownShape { name: model.to_string(), known: shapes::names() })?;
    Ok((shapes::subject(shape), None))
}

/// A GGUF file: shape from its metadata, bytes from its tensor table.
pub fn from_gguf(path: &Path) -> Result<(Subject, WeightType), PerfError> {
    let g = GgufFile::open(path)?;
    let config = ModelConfig::from_gguf(&g)?;
    let weights = WeightBytes::from_gguf(&g, &config);
    let params = g.tensors().iter().map(|t| t.n_elements()).sum();
    let tied = !g.tensors().iter().any(|t| t.name == "output.weight");
    let attn_params = (config.d_model * (2 * config.q_dim() + 2 * config.kv_dim())) as f64;
    let bytes_per_weight = weights.attn_per_layer / attn_params.max(1.0);
    let class = match bytes_per_weight {
        b if b >= 3.5 => ComputeClass::F32,
        b if b >= 1.9 => ComputeClass::F16,
        b if b >= 0.7 => ComputeClass::Int8,
        _ => ComputeClass::Int4,
    };
    let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
    let wt = WeightType { name: format!("file ({:.2} bits/weight)", bytes_per_weight * 8.0), bytes_per_weight, class };
    Ok((Subject { name, config, tied_embeddings: tied, params, file_weights: Some(weights) }, wt))
}

/// A Hugging Face directory: `config.json` only.
pub fn from_hf_dir(dir: &Path) -> Result<Subject, PerfError> {
    let file = dir.join("config.json");
    let io = |source| PerfError::Io { path: file.display().to_string(), source };
    let text = std::fs::read_to_string(&file).map_err(io)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| PerfError::Json { path: file.display().to_string(), source })?;
    let config = ModelConfig::from_hf_json(&json)?;
    let tied = json.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(false);
    let params = CostModel::parameter_count(&config, tied);
    Ok(Subject { name: dir.display().to_string(), config, tied_embeddings: tied, params, file_weights: None })
}
