//! Synthetic models: random weights in the exact shapes of real models.
//!
//! A user can measure any model size on their machine without downloading
//! it, and a peer engine can run the identical bytes: [`write_gguf`] lays the
//! weights out as llama.cpp's converter does (tensor names `token_embd`,
//! `blk.{i}.attn_{q,k,v,output}`, `blk.{i}.ffn_{gate,up,down}`, norms in f32,
//! every matrix in the chosen type, `output` absent when the embedding is
//! tied) with the `{arch}.*` metadata and a synthetic SentencePiece vocab of
//! the model's vocabulary size (see `vocab.rs`).
//!
//! Weights are uniform in `±sqrt(3 / d_in)` (unit-variance outputs), drawn
//! from a seeded xorshift generator per row, so a file is reproducible.
//! The whole file is built in memory before it is written: peak memory is
//! about the file size.

use crate::PerfError;
use memwall_formats::gguf::{GgmlType, GgufWriter, Value};
use memwall_kernels::quant::quantize_row;
use memwall_kernels::DType;
use memwall_model::config::{Arch, ModelConfig};
use memwall_model::cost::CostModel;
use std::path::Path;

/// The dimensions of a real model (from its Hugging Face `config.json`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    pub arch: Arch,
    pub vocab: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub context_len: usize,
    pub rope_theta: f32,
    pub norm_eps: f32,
    /// The output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// Q, K and V projections have biases (Qwen2).
    pub qkv_bias: bool,
}

/// The named shapes `--synthetic` accepts.
pub const SHAPES: [Shape; 5] = [
    Shape {
        name: "tinyllama-1.1b",
        arch: Arch::Llama,
        vocab: 32000,
        d_model: 2048,
        n_layers: 22,
        n_heads: 32,
        n_kv_heads: 4,
        head_dim: 64,
        d_ff: 5632,
        context_len: 2048,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
    },
    Shape {
        name: "llama-3.2-1b",
        arch: Arch::Llama,
        vocab: 128256,
        d_model: 2048,
        n_layers: 16,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 64,
        d_ff: 8192,
        context_len: 131072,
        rope_theta: 500000.0,
        norm_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
    },
    Shape {
        name: "qwen2.5-0.5b",
        arch: Arch::Qwen2,
        vocab: 151936,
        d_model: 896,
        n_layers: 24,
        n_heads: 14,
        n_kv_heads: 2,
        head_dim: 64,
        d_ff: 4864,
        context_len: 32768,
        rope_theta: 1000000.0,
        norm_eps: 1e-6,
        tied_embeddings: true,
        qkv_bias: true,
    },
    Shape {
        name: "llama-2-7b",
        arch: Arch::Llama,
        vocab: 32000,
        d_model: 4096,
        n_layers: 32,
        n_heads: 32,
        n_kv_heads: 32,
        head_dim: 128,
        d_ff: 11008,
        context_len: 4096,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
    },
    Shape {
        name: "smollm2-135m",
        arch: Arch::Llama,
        vocab: 49152,
        d_model: 576,
        n_layers: 30,
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
        d_ff: 1536,
        context_len: 8192,
        rope_theta: 100000.0,
        norm_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
    },
];

impl Shape {
    pub fn by_name(name: &str) -> Result<&'static Shape, PerfError> {
        SHAPES
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| PerfError::UnknownShape { name: name.to_string(), known: SHAPES.map(|s| s.name).join(", ") })
    }

    /// The shape as the decoder's configuration.
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            arch: self.arch,
            vocab: self.vocab,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            d_ff: self.d_ff,
            norm_eps: self.norm_eps,
            context_len: self.context_len,
            rope_theta: self.rope_theta,
            rope_dim: self.head_dim,
            rope_scaling: None,
        }
    }

    /// Parameters, biases included.
    pub fn parameter_count(&self) -> u64 {
        let c = self.config();
        let bias = if self.qkv_bias { (c.q_dim() + 2 * c.kv_dim()) as u64 } else { 0 };
        CostModel::parameter_count(&c, self.tied_embeddings) + c.n_layers as u64 * bias
    }

    /// Every tensor: name, `[rows, cols]` (a vector is `[1, n]`), and
    /// whether it is a matrix (stored in the model's type) or f32.
    pub fn tensors(&self) -> Vec<(String, [usize; 2], bool)> {
        let c = self.config();
        let (d, q, kv, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        let mut t = vec![("token_embd.weight".to_string(), [c.vocab, d], true)];
        for i in 0..c.n_layers {
            let b = |n: &str| format!("blk.{i}.{n}");
            t.push((b("attn_norm.weight"), [1, d], false));
            t.push((b("attn_q.weight"), [q, d], true));
            t.push((b("attn_k.weight"), [kv, d], true));
            t.push((b("attn_v.weight"), [kv, d], true));
            if self.qkv_bias {
                t.push((b("attn_q.bias"), [1, q], false));
                t.push((b("attn_k.bias"), [1, kv], false));
                t.push((b("attn_v.bias"), [1, kv], false));
            }
            t.push((b("attn_output.weight"), [d, q], true));
            t.push((b("ffn_norm.weight"), [1, d], false));
            t.push((b("ffn_gate.weight"), [ff, d], true));
            t.push((b("ffn_up.weight"), [ff, d], true));
            t.push((b("ffn_down.weight"), [d, ff], true));
        }
        t.push(("output_norm.weight".to_string(), [1, d], false));
        if !self.tied_embeddings {
            t.push(("output.weight".to_string(), [c.vocab, d], true));
        }
        t
    }
}

/// A shape and an element type: `tinyllama-1.1b:q4_0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyntheticSpec {
    pub shape: &'static Shape,
    pub dtype: DType,
}

impl SyntheticSpec {
    /// Parses `SHAPE[:TYPE]`; the type defaults to q4_0.
    pub fn parse(s: &str) -> Result<SyntheticSpec, PerfError> {
        let (name, ty) = s.split_once(':').unwrap_or((s, "q4_0"));
        if name.is_empty() {
            return Err(PerfError::BadSpec(s.to_string()));
        }
        let shape = Shape::by_name(name)?;
        let dtype = DType::from_name(ty).ok_or_else(|| PerfError::UnknownType {
            name: ty.to_string(),
            supported: DType::EVERY.map(DType::name).join(", "),
        })?;
        let spec = SyntheticSpec { shape, dtype };
        spec.check()?;
        Ok(spec)
    }

    /// Every matrix row must be whole blocks of the type.
    fn check(&self) -> Result<(), PerfError> {
        let block = self.dtype.block_len();
        for (what, n) in [
            ("d_model", self.shape.d_model),
            ("d_ff", self.shape.d_ff),
            ("q_dim", self.shape.n_heads * self.shape.head_dim),
        ] {
            if n % block != 0 {
                return Err(PerfError::BlockMismatch {
                    shape: self.shape.name,
                    what,
                    n,
                    dtype: self.dtype.name(),
                    block,
                });
            }
        }
        Ok(())
    }

    /// `tinyllama-1.1b-q4_0`, for file names.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.shape.name, self.dtype.name())
    }

    /// Bytes of the tensor data of the file.
    pub fn data_bytes(&self) -> u64 {
        self.shape
            .tensors()
            .iter()
            .map(|(_, [r, c], m)| {
                let t = if *m { self.dtype } else { DType::F32 };
                (*r * t.row_bytes(*c).unwrap_or(0)) as u64
            })
            .sum()
    }
}

/// llama.cpp's `general.file_type` (`enum llama_ftype`) of an all-`dtype` model.
fn file_type(dtype: DType) -> Option<u32> {
    Some(match dtype.name() {
        "f32" => 0,
        "f16" => 1,
        "q4_0" => 2,
        "q4_1" => 3,
        "q8_0" => 7,
        "q5_0" => 8,
        "q5_1" => 9,
        "bf16" => 32,
        _ => return None,
    })
}

/// Builds the GGUF file of `spec` with weights from `seed` and writes it to
/// `path`. `progress(done, total)` in bytes of tensor data generated.
pub fn write_gguf(
    spec: &SyntheticSpec,
    path: &Path,
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), PerfError> {
    let s = spec.shape;
    let arch = s.arch.name();
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", arch)?;
    w.add_metadata("general.name", format!("memwall synthetic {}", spec.file_stem()).as_str())?;
    if let Some(ft) = file_type(spec.dtype) {
        w.add_metadata("general.file_type", Value::U32(ft))?;
    }
    w.add_metadata("general.quantization_version", Value::U32(2))?;
    let k = |key: &str| format!("{arch}.{key}");
    w.add_metadata(k("context_length"), Value::U32(s.context_len as u32))?;
    w.add_metadata(k("embedding_length"), Value::U32(s.d_model as u32))?;
    w.add_metadata(k("block_count"), Value::U32(s.n_layers as u32))?;
    w.add_metadata(k("feed_forward_length"), Value::U32(s.d_ff as u32))?;
    w.add_metadata(k("attention.head_count"), Value::U32(s.n_heads as u32))?;
    w.add_metadata(k("attention.head_count_kv"), Value::U32(s.n_kv_heads as u32))?;
    w.add_metadata(k("attention.key_length"), Value::U32(s.head_dim as u32))?;
    w.add_metadata(k("attention.value_length"), Value::U32(s.head_dim as u32))?;
    w.add_metadata(k("attention.layer_norm_rms_epsilon"), Value::F32(s.norm_eps))?;
    w.add_metadata(k("rope.freq_base"), Value::F32(s.rope_theta))?;
    w.add_metadata(k("rope.dimension_count"), Value::U32(s.head_dim as u32))?;
    w.add_metadata(k("vocab_size"), Value::U32(s.vocab as u32))?;
    crate::vocab::add_spm_vocab(&mut w, s.vocab)?;

    let total = spec.data_bytes();
    let mut done = 0u64;
    for (i, (name, [rows, cols], is_matrix)) in s.tensors().into_iter().enumerate() {
        let dtype = if is_matrix { spec.dtype } else { DType::F32 };
        let data = if is_matrix {
            random_matrix(dtype, rows, cols, seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
        } else if name.ends_with(".bias") {
            vec![0u8; rows * cols * 4]
        } else {
            // Norm weights of 1.0, as a freshly initialised model.
            (0..rows * cols).flat_map(|_| 1.0f32.to_le_bytes()).collect()
        };
        done += data.len() as u64;
        let dims: Vec<u64> = if rows == 1 { vec![cols as u64] } else { vec![cols as u64, rows as u64] };
        w.add_tensor_owned(name, &dims, GgmlType::from_dtype(dtype), data)?;
        progress(done, total);
    }
    w.write_file(path)?;
    Ok(())
}

/// A `[rows, cols]` matrix of uniform `±sqrt(3 / cols)` values in `dtype`,
/// generated on all cores (each row from its own seeded generator, so the
/// result does not depend on the number of threads).
fn random_matrix(dtype: DType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let rb = dtype.row_bytes(cols).expect("checked by SyntheticSpec::check");
    let mut out = vec![0u8; rows * rb];
    let n_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows_per = rows.div_ceil(n_threads).max(1);
    let scale = (3.0 / cols as f32).sqrt();
    std::thread::scope(|sc| {
        for (chunk_i, chunk) in out.chunks_mut(rows_per * rb).enumerate() {
            sc.spawn(move || {
                let mut row = vec![0f32; cols];
                for (j, dst) in chunk.chunks_exact_mut(rb).enumerate() {
                    let r = (chunk_i * rows_per + j) as u64;
                    let mut rng = XorShift::new(seed ^ r.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    for v in row.iter_mut() {
                        *v = (rng.next_f32() * 2.0 - 1.0) * scale;
                    }
                    quantize_row(dtype, &row, dst);
                }
            });
        }
    });
    out
}

/// xorshift64*: fast, seedable, good enough for weights nobody reads.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_real_models() {
        let count = |n| Shape::by_name(n).unwrap().parameter_count();
        assert_eq!(count("tinyllama-1.1b"), 1_100_048_384);
        assert_eq!(count("llama-3.2-1b"), 1_235_814_400);
        assert_eq!(count("qwen2.5-0.5b"), 494_032_768);
        assert_eq!(count("llama-2-7b"), 6_738_415_616);
        assert_eq!(count("smollm2-135m"), 134_515_008);
    }

    #[test]
    fn tensor_list_counts_every_parameter() {
        for s in &SHAPES {
            let n: u64 = s.tensors().iter().map(|(_, [r, c], _)| (r * c) as u64).sum();
            assert_eq!(n, s.parameter_count(), "{}", s.name);
        }
    }

    #[test]
    fn specs_parse_and_check_blocks() {
        let s = SyntheticSpec::parse("tinyllama-1.1b:q8_0").unwrap();
        assert_eq!((s.shape.name, s.dtype), ("tinyllama-1.1b", DType::Q8_0));
        assert_eq!(SyntheticSpec::parse("smollm2-135m").unwrap().dtype, DType::Q4_0);
        assert!(matches!(SyntheticSpec::parse("gpt-5"), Err(PerfError::UnknownShape { .. })));
        assert!(matches!(SyntheticSpec::parse("llama-2-7b:q9"), Err(PerfError::UnknownType { .. })));
        // Q4_0 TinyLlama: 1.1e9 weights in 18-byte blocks of 32, norms in f32.
        let q4 = SyntheticSpec::parse("tinyllama-1.1b:q4_0").unwrap();
        let gb = q4.data_bytes() as f64 / 1e9;
        assert!((0.61..0.63).contains(&gb), "{gb}");
    }

    #[test]
    fn random_matrix_is_reproducible_and_bounded() {
        let a = random_matrix(DType::F32, 7, 64, 42);
        assert_eq!(a, random_matrix(DType::F32, 7, 64, 42));
        let bound = (3.0f32 / 64.0).sqrt();
        assert!(a.chunks_exact(4).all(|b| f32::from_le_bytes(b.try_into().unwrap()).abs() <= bound));
    }
}
