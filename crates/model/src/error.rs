//! Errors of loading and running a model, each saying what is wrong and,
//! where it can, what to do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("unsupported architecture '{arch}' (supported: {supported})")]
    UnsupportedArch { arch: String, supported: String },
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    #[error("bad model configuration: {0}")]
    BadConfig(String),
    #[error("cannot split the model over ranks: {0}")]
    Split(String),
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    BadShape { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("tensor '{name}' has type {ty}, which memwall cannot compute with yet (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K)")]
    UnsupportedType { name: String, ty: String },
    #[error(transparent)]
    Gguf(#[from] memwall_formats::gguf::GgufError),
    #[error(transparent)]
    SafeTensors(#[from] memwall_formats::safetensors::SafeTensorsError),
    #[error(transparent)]
    Tokenizer(#[from] memwall_formats::tokenizer::TokenizerError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("{0} is neither a GGUF file nor a Hugging Face model directory (config.json + *.safetensors)")]
    NotAModel(String),
    #[error(
        "the prompt has {prompt} tokens, more than the context of {context} tokens; shorten it or raise --context"
    )]
    PromptTooLong { prompt: usize, context: usize },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },
}
