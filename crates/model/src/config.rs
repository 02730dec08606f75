//! The typed model configuration, parsed once from GGUF metadata or a Hugging
//! Face `config.json`. Model code reads fields of [`ModelConfig`], never
//! metadata strings (llama.cpp's `llama-arch` does the same with its key enum).

use crate::error::ModelError;
use memwall_formats::gguf::{GgufFile, Value};

/// The architectures memwall runs. They share one decoder; the differences
/// are data in [`ArchTraits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Phi3,
    Gpt2,
}

impl Arch {
    pub const ALL: [Arch; 6] = [Arch::Llama, Arch::Mistral, Arch::Qwen2, Arch::Qwen3, Arch::Phi3, Arch::Gpt2];

    /// The name GGUF uses in `general.architecture` (and HF's `model_type`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gpt2 => "gpt2",
        }
    }

    pub fn from_name(name: &str) -> Result<Arch, ModelError> {
        Arch::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| ModelError::UnsupportedArch {
            arch: name.to_string(),
            supported: Arch::ALL.map(Arch::name).join(", "),
        })
    }

    /// What differs between architectures, as data.
    pub fn traits(self) -> ArchTraits {
        let llama_like = ArchTraits { norm: NormKind::Rms, ffn: FfnKind::SwiGlu, learned_positions: false };
        match self {
            Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Qwen3 | Arch::Phi3 => llama_like,
            Arch::Gpt2 => ArchTraits { norm: NormKind::Layer, ffn: FfnKind::Gelu, learned_positions: true },
        }
    }
}

/// Per-architecture differences of the generic decoder. Biases, fused
/// projections and q/k norms are bound from the weights that are present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchTraits {
    pub norm: NormKind,
    pub ffn: FfnKind,
    /// GPT-2: a learned position embedding is added to the token embedding
    /// (no RoPE).
    pub learned_positions: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// `x / rms(x) * w`
    Rms,
    /// `(x - mean) / std * w + b`
    Layer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnKind {
    /// `down(silu(gate(x)) * up(x))`
    SwiGlu,
    /// `down(gelu(up(x)))` (tanh approximation)
    Gelu,
}

/// Which pairs of a head's elements RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i+1)`: llama.cpp's "normal" mode, used by llama-arch GGUF
    /// files whose converter permuted the Q/K rows.
    Interleaved,
    /// Pairs `(i, i + rot_dim/2)`: Hugging Face's `rotate_half`.
    Neox,
}

/// RoPE frequency scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (all frequencies divided by it).
    Linear { factor: f32 },
    /// Llama 3.1's wavelength-dependent scaling.
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_context: usize },
}

/// Hyper-parameters of a decoder, in the dimension names used across the
/// workspace (`d_model`, `n_heads`, `n_kv_heads`, `head_dim`, `d_ff`, `vocab`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub norm_eps: f32,
    /// Longest sequence the model was trained for.
    pub context_len: usize,
    pub rope_theta: f32,
    /// Leading elements of each head that RoPE rotates (`head_dim` unless partial).
    pub rope_dim: usize,
    pub rope_scaling: Option<RopeScaling>,
}

impl ModelConfig {
    /// Checks the relations the decoder relies on, so a bad file is an error
    /// here and not an out-of-bounds index later.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::BadConfig(what));
        let dims = [
            ("vocab", self.vocab),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("d_ff", self.d_ff),
            ("context_len", self.context_len),
        ];
        for (name, v) in dims {
            if v == 0 || v > 1 << 24 {
                return bad(format!("{name} = {v} is out of range (1..=16777216)"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!("n_heads = {} is not a multiple of n_kv_heads = {}", self.n_heads, self.n_kv_heads));
        }
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(format!(
                "rope dimension {} must be even and at most head_dim = {}",
                self.rope_dim, self.head_dim
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return bad(format!("norm epsilon {} is not a finite non-negative number", self.norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rope theta {} is not a positive number", self.rope_theta));
        }
        Ok(())
    }

    /// `n_heads * head_dim`: width of the attention's Q projection.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// `n_kv_heads * head_dim`: width of the K and V projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Reads the `{arch}.*` keys of a GGUF file.
    pub fn from_gguf(g: &GgufFile) -> Result<ModelConfig, ModelError> {
        let arch_name = gguf_str(g, "general.architecture")?;
        let arch = Arch::from_name(arch_name)?;
        let key = |k: GgufKey| k.name(arch_name);
        let get_usize = |k: GgufKey| gguf_usize(g, &key(k));
        let opt_usize = |k: GgufKey| match g.get(&key(k)) {
            None => Ok(None),
            Some(_) => gguf_usize(g, &key(k)).map(Some),
        };
        let opt_f32 = |k: GgufKey| -> Result<Option<f32>, ModelError> {
            match g.get(&key(k)) {
                None => Ok(None),
                Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| type_err(&key(k), v)),
            }
        };

        let d_model = get_usize(GgufKey::EmbeddingLength)?;
        let n_heads = get_usize(GgufKey::HeadCount)?;
        let n_kv_heads = opt_usize(GgufKey::HeadCountKv)?.unwrap_or(n_heads);
        let head_dim = match opt_usize(GgufKey::KeyLength)? {
            Some(h) => h,
            None if n_heads > 0 => d_model / n_heads,
            None => 0,
        };
        let vocab = match opt_usize(GgufKey::VocabSize)? {
            Some(v) => v,
            None => match g.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
                Some(tokens) => tokens.len(),
                None => token_embd_rows(g)?,
            },
        };
        let norm_eps = match arch.traits().norm {
            NormKind::Rms => opt_f32(GgufKey::RmsEps)?.unwrap_or(1e-5),
            NormKind::Layer => opt_f32(GgufKey::LayerNormEps)?.unwrap_or(1e-5),
        };
        let rope_dim = opt_usize(GgufKey::RopeDimensionCount)?.unwrap_or(head_dim);
        let rope_scaling = match g.get(&key(GgufKey::RopeScalingType)).and_then(Value::as_str) {
            None | Some("none") => None,
            Some("linear") => {
                let factor = opt_f32(GgufKey::RopeScalingFactor)?.unwrap_or(1.0);
                (factor != 1.0).then_some(RopeScaling::Linear { factor })
            }
            Some(other) => {
                return Err(ModelError::BadConfig(format!(
                    "unsupported rope scaling type '{other}' (supported: none, linear, and Llama 3 rope_freqs)"
                )))
            }
        };
        let config = ModelConfig {
            arch,
            vocab,
            d_model,
            n_layers: get_usize(GgufKey::BlockCount)?,
            n_heads,
            n_kv_heads,
            head_dim,
            d_ff: get_usize(GgufKey::FeedForwardLength)?,
            norm_eps,
            context_len: get_usize(GgufKey::ContextLength)?,
            rope_theta: opt_f32(GgufKey::RopeFreqBase)?.unwrap_or(10_000.0),
            rope_dim: if arch.traits().learned_positions { head_dim } else { rope_dim },
            rope_scaling,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads a Hugging Face `config.json` (already parsed).
    pub fn from_hf_json(json: &serde_json::Value) -> Result<ModelConfig, ModelError> {
        let model_type = json
            .get("model_type")
            .and_then(|v| v.as_str())
            .ok_or_else(|| ModelError::BadConfig("config.json has no \"model_type\"".into()))?;
        let arch = Arch::from_name(model_type)?;
        let hf = HfJson(json);
        let config = if arch == Arch::Gpt2 {
            let d_model = hf.usize_any(&["n_embd", "hidden_size"])?;
            let n_heads = hf.usize_any(&["n_head", "num_attention_heads"])?;
            ModelConfig {
                arch,
                vocab: hf.usize_any(&["vocab_size"])?,
                d_model,
                n_layers: hf.usize_any(&["n_layer", "num_hidden_layers"])?,
                n_heads,
                n_kv_heads: n_heads,
                head_dim: d_model / n_heads.max(1),
                d_ff: hf.opt_usize("n_inner")?.unwrap_or(d_model.saturating_mul(4)),
                norm_eps: hf.opt_f32("layer_norm_epsilon")?.unwrap_or(1e-5),
                context_len: hf.usize_any(&["n_positions", "n_ctx"])?,
                rope_theta: 10_000.0,
                rope_dim: d_model / n_heads.max(1),
                rope_scaling: None,
            }
        } else {
            let d_model = hf.usize_any(&["hidden_size"])?;
            let n_heads = hf.usize_any(&["num_attention_heads"])?;
            let head_dim = match hf.opt_usize("head_dim")? {
                Some(h) => h,
                None => d_model / n_heads.max(1),
            };
            // transformers 5 moved rope settings into "rope_parameters".
            let rope = json.get("rope_parameters").filter(|v| v.is_object());
            let rope_theta = match rope.and_then(|r| r.get("rope_theta")).and_then(|v| v.as_f64()) {
                Some(t) => t as f32,
                None => hf.opt_f32("rope_theta")?.unwrap_or(10_000.0),
            };
            let scaling = rope.or_else(|| json.get("rope_scaling").filter(|v| v.is_object()));
            let partial = hf.opt_f32("partial_rotary_factor")?.unwrap_or(1.0);
            ModelConfig {
                arch,
                vocab: hf.usize_any(&["vocab_size"])?,
                d_model,
                n_layers: hf.usize_any(&["num_hidden_layers"])?,
                n_heads,
                n_kv_heads: hf.opt_usize("num_key_value_heads")?.unwrap_or(n_heads),
                head_dim,
                d_ff: hf.usize_any(&["intermediate_size"])?,
                norm_eps: hf.opt_f32("rms_norm_eps")?.unwrap_or(1e-6),
                context_len: hf.usize_any(&["max_position_embeddings"])?,
                rope_theta,
                rope_dim: ((head_dim as f32 * partial) as usize) & !1,
                rope_scaling: scaling.map(hf_rope_scaling).transpose()?.flatten(),
            }
        };
        config.validate()?;
        Ok(config)
    }
}

/// GGUF metadata keys the decoder reads, without the `{arch}.` prefix.
#[derive(Clone, Copy, Debug)]
enum GgufKey {
    ContextLength,
    EmbeddingLength,
    BlockCount,
    FeedForwardLength,
    HeadCount,
    HeadCountKv,
    KeyLength,
    RmsEps,
    LayerNormEps,
    RopeFreqBase,
    RopeDimensionCount,
    RopeScalingType,
    RopeScalingFactor,
    VocabSize,
}

impl GgufKey {
    fn name(self, arch: &str) -> String {
        let suffix = match self {
            GgufKey::ContextLength => "context_length",
            GgufKey::EmbeddingLength => "embedding_length",
            GgufKey::BlockCount => "block_count",
            GgufKey::FeedForwardLength => "feed_forward_length",
            GgufKey::HeadCount => "attention.head_count",
            GgufKey::HeadCountKv => "attention.head_count_kv",
            GgufKey::KeyLength => "attention.key_length",
            GgufKey::RmsEps => "attention.layer_norm_rms_epsilon",
            GgufKey::LayerNormEps => "attention.layer_norm_epsilon",
            GgufKey::RopeFreqBase => "rope.freq_base",
            GgufKey::RopeDimensionCount => "rope.dimension_count",
            GgufKey::RopeScalingType => "rope.scaling.type",
            GgufKey::RopeScalingFactor => "rope.scaling.factor",
            GgufKey::VocabSize => "vocab_size",
        };
        format!("{arch}.{suffix}")
    }
}

fn type_err(key: &str, v: &Value) -> ModelError {
    ModelError::BadConfig(format!("metadata key '{key}' has type {}, expected a number", v.type_name()))
}

fn gguf_str<'a>(g: &'a GgufFile, key: &str) -> Result<&'a str, ModelError> {
    let v = g.get(key).ok_or_else(|| ModelError::MissingKey(key.to_string()))?;
    v.as_str().ok_or_else(|| {
        ModelError::BadConfig(format!("metadata key '{key}' has type {}, expected a string", v.type_name()))
    })
}

fn gguf_usize(g: &GgufFile, key: &str) -> Result<usize, ModelError> {
    let v = g.get(key).ok_or_else(|| ModelError::MissingKey(key.to_string()))?;
    // Some converters write a per-layer array (e.g. head_count_kv); take a
    // uniform array as its value.
    let scalar = match v.as_array() {
        Some(items) => {
            let first = items.first().and_then(Value::as_u64);
            if first.is_some() && items.iter().all(|x| x.as_u64() == first) {
                first
            } else {
                return Err(ModelError::BadConfig(format!(
                    "metadata key '{key}' varies per layer, which memwall does not support"
                )));
            }
        }
        None => v.as_u64(),
    };
    let n = scalar.ok_or_else(|| type_err(key, v))?;
    usize::try_from(n).map_err(|_| ModelError::BadConfig(format!("metadata key '{key}' = {n} is too large")))
}

fn token_embd_rows(g: &GgufFile) -> Result<usize, ModelError> {
    let t = g
        .tensor("token_embd.weight")
        .ok_or_else(|| ModelError::MissingKey("tokenizer.ggml.tokens (or token_embd.weight)".into()))?;
    Ok(t.dims.get(1).copied().unwrap_or(0) as usize)
}

struct HfJson<'a>(&'a serde_json::Value);

impl HfJson<'_> {
    fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_u64().and_then(|n| usize::try_from(n).ok()).map(Some).ok_or_else(|| {
                ModelError::BadConfig(format!("config.json \"{key}\" = {v} is not a non-negative integer"))
            }),
        }
    }

    fn usize_any(&self, keys: &[&str]) -> Result<usize, ModelError> {
        for key in keys {
            if let Some(v) = self.opt_usize(key)? {
                return Ok(v);
            }
        }
        Err(ModelError::BadConfig(format!("config.json has no \"{}\"", keys.join("\" or \""))))
    }

    fn opt_f32(&self, key: &str) -> Result<Option<f32>, ModelError> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| ModelError::BadConfig(format!("config.json \"{key}\" = {v} is not a number"))),
        }
    }
}

fn hf_rope_scaling(v: &serde_json::Value) -> Result<Option<RopeScaling>, ModelError> {
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).map(|x| x as f32);
    let need = |k: &str| num(k).ok_or_else(|| ModelError::BadConfig(format!("rope scaling '{kind}' needs \"{k}\"")));
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: need("factor")? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_context: need("original_max_position_embeddings")? as usize,
        })),
        other => Err(ModelError::BadConfig(format!(
            "unsupported rope scaling type '{other}' (supported: default, linear, llama3)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_llama3_config_parses() {
        let json = serde_json::json!({
            "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128,
            "vocab_size": 300, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
        });
        let c = ModelConfig::from_hf_json(&json).unwrap();
        assert_eq!((c.head_dim, c.n_kv_heads, c.kv_dim()), (16, 2, 32));
        assert_eq!(c.rope_theta, 500000.0);
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Llama3 { original_context: 32, .. })));
    }

    #[test]
    fn unknown_arch_lists_supported() {
        let json = serde_json::json!({"model_type": "mamba"});
        let err = ModelConfig::from_hf_json(&json).unwrap_err().to_string();
        assert!(err.contains("mamba") && err.contains("qwen3") && err.contains("gpt2"), "{err}");
    }

    /// Regression: a GPT-2 config without `n_inner` and a huge `n_embd`
    /// overflowed `4 * d_model` (a panic in builds with overflow checks)
    /// before validation could reject it.
    #[test]
    fn r_gpt2_huge_n_embd_is_an_error_not_an_overflow() {
        let json = serde_json::json!({
            "model_type": "gpt2", "n_embd": u64::MAX / 2, "n_head": 1, "n_layer": 1,
            "vocab_size": 10, "n_positions": 8
        });
        let err = ModelConfig::from_hf_json(&json).unwrap_err().to_string();
        assert!(err.contains("d_model"), "{err}");
    }

    #[test]
    fn inconsistent_heads_are_rejected() {
        let json = serde_json::json!({
            "model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 3, "num_hidden_layers": 2, "intermediate_size": 128,
            "vocab_size": 300, "max_position_embeddings": 256
        });
        let err = ModelConfig::from_hf_json(&json).unwrap_err().to_string();
        assert!(err.contains("n_kv_heads"), "{err}");
    }
}
