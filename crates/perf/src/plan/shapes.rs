//! Named model shapes the planner knows: the synthetic shapes of `memwall
//! bench` ([`crate::synthetic::SHAPES`]) plus larger models that are planned
//! but not benchmarked here. Dimensions are from each model's Hugging Face
//! `config.json`.

use super::Subject;
use crate::synthetic::{Shape, SHAPES};
use memwall_model::Arch;

/// Shapes only the planner uses.
pub const PLAN_SHAPES: [Shape; 3] = [
    // meta-llama/Meta-Llama-3-8B
    Shape {
        name: "llama-3-8b",
        arch: Arch::Llama,
        vocab: 128256,
        d_model: 4096,
        n_layers: 32,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 128,
        d_ff: 14336,
        context_len: 8192,
        rope_theta: 500000.0,
        norm_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
    },
    // Qwen/Qwen2.5-7B
    Shape {
        name: "qwen2.5-7b",
        arch: Arch::Qwen2,
        vocab: 152064,
        d_model: 3584,
        n_layers: 28,
        n_heads: 28,
        n_kv_heads: 4,
        head_dim: 128,
        d_ff: 18944,
        context_len: 131072,
        rope_theta: 1000000.0,
        norm_eps: 1e-6,
        tied_embeddings: false,
        qkv_bias: true,
    },
    // mistralai/Mistral-7B-v0.1
    Shape {
        name: "mistral-7b",
        arch: Arch::Mistral,
        vocab: 32000,
        d_model: 4096,
        n_layers: 32,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 128,
        d_ff: 14336,
        context_len: 32768,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
    },
];

/// Every named shape, synthetic ones first.
pub fn all() -> impl Iterator<Item = &'static Shape> {
    SHAPES.iter().chain(PLAN_SHAPES.iter())
}

/// Names of every shape, for messages.
pub fn names() -> String {
    all().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The shape called `name` (case-insensitive).
pub fn by_name(name: &str) -> Option<&'static Shape> {
    all().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// A shape as the planner's subject.
pub fn subject(s: &Shape) -> Subject {
    Subject {
        name: s.name.to_string(),
        config: s.config(),
        tied_embeddings: s.tied_embeddings,
        params: s.parameter_count(),
        file_weights: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_shapes_have_their_published_sizes() {
        let params = |n| by_name(n).unwrap().parameter_count() as f64 / 1e9;
        assert!((params("llama-3-8b") - 8.03).abs() < 0.01, "{}", params("llama-3-8b"));
        assert!((params("qwen2.5-7b") - 7.62).abs() < 0.01, "{}", params("qwen2.5-7b"));
        assert!((params("mistral-7b") - 7.24).abs() < 0.01, "{}", params("mistral-7b"));
        assert!((params("llama-2-7b") - 6.74).abs() < 0.01);
        assert!(by_name("LLAMA-3-8B").is_some() && by_name("gpt-5").is_none());
    }
}
