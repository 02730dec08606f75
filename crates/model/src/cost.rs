//! The cost model: floating-point operations and bytes moved by one forward
//! step of a decoder, per kind of layer.
//!
//! This is the single source of truth for "how much work is a step": the
//! benchmark's MBU / MFU, the engine's live utilisation metrics and the
//! planner's roofline estimates all read it. It follows the accounting of
//! DESIGN.md (and of the usual roofline analyses of decoder inference):
//!
//! * every weight matrix is read **once per step**, whatever the batch holds
//!   (the matmul kernels stream each row once for all tokens);
//! * the embedding reads one row per token;
//! * attention reads each sequence's cached keys and values once per layer
//!   (for all of its new tokens) and writes the new tokens' rows;
//! * a matmul `[n, d_in] · [d_in, d_out]` costs `2 · n · d_in · d_out` FLOPs;
//! * attention of a new token at position `p` costs `4 · n_heads · head_dim ·
//!   (p + 1)` FLOPs (`q·k` and `softmax·v`), causal within the step;
//! * activations are assumed to stay in cache and are not counted as bytes
//!   moved; norms count their weight vectors and `4 · d_model` FLOPs per row.
//!
//! Biases (Qwen2's QKV bias) and the softmax / RoPE / SwiGLU element-wise
//! work are below 0.1% of a step's FLOPs and are not counted as FLOPs.
//!
//! What FLOPs and bytes miss is counted apart, in [`Overhead`]: work whose
//! time depends on neither, and which dominates a small model's step on a
//! CPU (SmolLM2-135M's 128-token prefill on two cores spends about a fifth
//! of its time quantizing activations and an eighth in SiLU and RoPE, all on
//! one thread, and a decode step meets its thread pool 151 times). It counts
//! barriers (one thread-pool dispatch per matmul job and per attention, as
//! the decoder runs them), activation elements quantized to 8 bits before a
//! quantized matmul job, and elements through the other element-wise kernels
//! (norms, RoPE, SwiGLU / GELU, residual adds, KV writes). A planner turns
//! them into time with a barrier latency and element rates measured on the
//! machine (`memwall_perf::probe`); where a chip states none, they cost
//! nothing (the pure roofline).
//!
//! ```text
//! step = batch of sequences, sequence s: context c_s (already cached) and t_s new tokens
//! n_tokens = Σ t_s,   positions attended = Σ_s (t_s · c_s + t_s (t_s + 1) / 2)
//! ```

use crate::config::{FfnKind, ModelConfig};
use memwall_formats::gguf::GgufFile;
use memwall_kernels::DType;

/// A kind of layer, in the order a step runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Token (and learned position) embedding lookups: one row per token.
    Embedding,
    /// Q, K, V and output projections of every layer.
    AttnProjections,
    /// Scores and weighted sums over the cached keys and values.
    AttnKv,
    /// The feed-forward block of every layer.
    Mlp,
    /// Every RMSNorm / LayerNorm (two per layer and the final one).
    Norms,
    /// The output projection to the vocabulary (for the rows that want logits).
    Output,
}

impl LayerKind {
    pub const ALL: [LayerKind; 6] = [
        LayerKind::Embedding,
        LayerKind::AttnProjections,
        LayerKind::AttnKv,
        LayerKind::Mlp,
        LayerKind::Norms,
        LayerKind::Output,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Embedding => "embedding",
            LayerKind::AttnProjections => "attn_proj",
            LayerKind::AttnKv => "attn_kv",
            LayerKind::Mlp => "mlp",
            LayerKind::Norms => "norms",
            LayerKind::Output => "output",
        }
    }
}

/// FLOPs and bytes of some part of a step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub flops: f64,
    /// Bytes read from or written to memory (weights, KV cache).
    pub bytes: f64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.flops += o.flops;
        self.bytes += o.bytes;
    }
}

impl std::ops::AddAssign for Overhead {
    fn add_assign(&mut self, o: Overhead) {
        self.barriers += o.barriers;
        self.quantized += o.quantized;
        self.elementwise += o.elementwise;
    }
}

/// Bytes of the weights, by role: what a step reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightBytes {
    /// Q, K, V and output projection matrices of one layer.
    pub attn_per_layer: f64,
    /// Feed-forward matrices of one layer.
    pub mlp_per_layer: f64,
    /// Norm weight vectors of one layer (and biases, if any).
    pub norms_per_layer: f64,
    /// The output projection `[vocab, d_model]` (the embedding when tied).
    pub output: f64,
    /// One row of the token embedding `[d_model]`.
    pub embedding_row: f64,
}

impl WeightBytes {
    /// Every matrix in `dtype`, norms in f32 (how llama.cpp's converter and
    /// memwall's synthetic models store them).
    pub fn uniform(c: &ModelConfig, dtype: DType) -> WeightBytes {
        let per_weight = dtype.block_bytes() as f64 / dtype.block_len() as f64;
        let d = c.d_model as f64;
        let attn = d * (c.q_dim() + 2 * c.kv_dim()) as f64 + c.q_dim() as f64 * d;
        WeightBytes {
            attn_per_layer: attn * per_weight,
            mlp_per_layer: ffn_matrices(c) as f64 * d * c.d_ff as f64 * per_weight,
            norms_per_layer: 2.0 * d * 4.0,
            output: c.vocab as f64 * d * per_weight,
            embedding_row: d * per_weight,
        }
    }

    /// The sizes of the tensors of a GGUF file, grouped by llama.cpp tensor
    /// names (`blk.N.attn_*`, `blk.N.ffn_*`, `output.weight`,
    /// `token_embd.weight`), averaged over layers.
    pub fn from_gguf(g: &GgufFile, c: &ModelConfig) -> WeightBytes {
        let mut w = WeightBytes {
            attn_per_layer: 0.0,
            mlp_per_layer: 0.0,
            norms_per_layer: 0.0,
            output: 0.0,
            embedding_row: 0.0,
        };
        let mut embd = 0.0;
        let mut output = None;
        for t in g.tensors() {
            let bytes = t.ggml_type.bytes_for(t.n_elements()).unwrap_or(0) as f64;
            let name = t.name.as_str();
            let role = name.strip_prefix("blk.").and_then(|r| r.split_once('.')).map(|(_, r)| r);
            match role {
                Some(r) if r.contains("norm") => w.norms_per_layer += bytes,
                Some(r) if r.starts_with("attn_") && r.ends_with(".bias") => w.norms_per_layer += bytes,
                Some(r) if r.starts_with("attn_") => w.attn_per_layer += bytes,
                Some(r) if r.starts_with("ffn_") => w.mlp_per_layer += bytes,
                Some(_) => {}
                None if name == "token_embd.weight" => embd = bytes,
                None if name == "output.weight" => output = Some(bytes),
                None => {}
            }
        }
        let layers = c.n_layers.max(1) as f64;
        w.attn_per_layer /= layers;
        w.mlp_per_layer /= layers;
        w.norms_per_layer /= layers;
        w.output = output.unwrap_or(embd);
        w.embedding_row = embd / c.vocab.max(1) as f64;
        w
    }

    /// Bytes of every matrix a step reads (layers and output; not the embedding).
    pub fn per_step(&self, n_layers: usize) -> f64 {
        n_layers as f64 * (self.attn_per_layer + self.mlp_per_layer + self.norms_per_layer) + self.output
    }
}

/// Matrices of shape `d_model × d_ff` in one feed-forward block.
fn ffn_matrices(c: &ModelConfig) -> usize {
    match c.arch.traits().ffn {
        FfnKind::SwiGlu => 3,
        FfnKind::Gelu => 2,
    }
}

/// One sequence's share of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqStep {
    /// Positions already in the KV cache before the step.
    pub context: usize,
    /// Tokens the step processes (prompt chunk, or 1 for decode).
    pub new_tokens: usize,
    /// Rows that want logits (0, 1, or `new_tokens`).
    pub logits: usize,
}

impl SeqStep {
    /// A decode step: one new token after `context` cached positions.
    pub fn decode(context: usize) -> SeqStep {
        SeqStep { context, new_tokens: 1, logits: 1 }
    }

    /// A whole prompt of `n` tokens in one step, logits for the last one.
    pub fn prefill(n: usize) -> SeqStep {
        SeqStep { context: 0, new_tokens: n, logits: 1 }
    }
}

/// The work of a step that FLOPs and bytes do not measure: a fixed count
/// per layer (barriers) and element counts that grow with the step's tokens
/// but not with the parameter count.
///
/// Counted as memwall's decoder runs a layer (`decoder.rs`) on a CPU with
/// the tile kernels: Q, K and V in one matmul job on one quantization of
/// their input, gate and up likewise (`memwall_kernels::matmul::matmul_many`;
/// without tiles they are separate jobs, 3 more per layer), one dispatch per
/// job and one for attention, and every element-wise kernel on the calling
/// thread between dispatches.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Overhead {
    /// Thread-pool dispatches, each ending in a barrier: per layer Q/K/V,
    /// attention, attention output, gate/up (or up) and down, 5; one more
    /// for the output projection.
    pub barriers: f64,
    /// Activation elements quantized to 8 bits, one pass per matmul job's
    /// input `[n_tokens, d_in]` (only for quantized weights; float weights
    /// take the f32 activations as they are).
    pub quantized: f64,
    /// Elements through the other element-wise kernels, per token and layer:
    /// two norms and two residual adds (`4 · d_model`), RoPE over Q and K
    /// (`q_dim + kv_dim`), the KV write (`2 · kv_dim`) and the activation
    /// (`d_ff`); per logit row the final norm (`d_model`).
    pub elementwise: f64,
}

/// FLOPs and bytes of one step, per layer kind.
#[derive(Clone, Debug, PartialEq)]
pub struct StepCost {
    /// One entry per [`LayerKind`], in [`LayerKind::ALL`] order.
    pub by_kind: Vec<(LayerKind, Cost)>,
    /// Tokens processed by the step.
    pub n_tokens: usize,
    /// Work outside FLOPs and bytes; zero for an empty step.
    pub overhead: Overhead,
}

impl StepCost {
    pub fn total(&self) -> Cost {
        let mut t = Cost::default();
        for (_, c) in &self.by_kind {
            t += *c;
        }
        t
    }

    pub fn get(&self, kind: LayerKind) -> Cost {
        self.by_kind.iter().find(|(k, _)| *k == kind).map_or(Cost::default(), |(_, c)| *c)
    }
}

/// The cost model of one model: its shape, its weight sizes and its KV
/// element size.
#[derive(Clone, Debug)]
pub struct CostModel {
    pub config: ModelConfig,
    pub weights: WeightBytes,
    /// Bytes of one cached K or V element (4 for f32, 2 for f16).
    pub kv_elem_bytes: f64,
}

impl CostModel {
    pub fn new(config: ModelConfig, weights: WeightBytes, kv_elem_bytes: f64) -> CostModel {
        CostModel { config, weights, kv_elem_bytes }
    }

    /// The cost of one step over `batch`.
    pub fn step(&self, batch: &[SeqStep]) -> StepCost {
        let c = &self.config;
        let w = &self.weights;
        let (d, layers) = (c.d_model as f64, c.n_layers as f64);
        let n: usize = batch.iter().map(|s| s.new_tokens).sum();
        let logit_rows: usize = batch.iter().map(|s| s.logits).sum();
        let nf = n as f64;

        let embedding = Cost { flops: 0.0, bytes: nf * w.embedding_row };

        let proj_cols = (c.q_dim() + 2 * c.kv_dim()) as f64 + c.q_dim() as f64;
        let attn_proj = match n {
            0 => Cost::default(),
            _ => Cost { flops: layers * 2.0 * nf * d * proj_cols, bytes: layers * w.attn_per_layer },
        };

        let mut attended = 0.0;
        let mut kv_rows_read = 0.0;
        for s in batch.iter().filter(|s| s.new_tokens > 0) {
            let (ctx, t) = (s.context as f64, s.new_tokens as f64);
            attended += t * ctx + t * (t + 1.0) / 2.0;
            kv_rows_read += ctx + t;
        }
        let kv_row_bytes = 2.0 * c.kv_dim() as f64 * self.kv_elem_bytes;
        let attn_kv = Cost {
            flops: layers * 4.0 * c.q_dim() as f64 * attended,
            // Read every cached row once; write the new rows.
            bytes: layers * kv_row_bytes * (kv_rows_read + nf),
        };

        let mlp = match n {
            0 => Cost::default(),
            _ => Cost {
                flops: layers * 2.0 * nf * ffn_matrices(c) as f64 * d * c.d_ff as f64,
                bytes: layers * w.mlp_per_layer,
            },
        };

        let norm_rows = layers * 2.0 * nf + logit_rows as f64;
        let norms = match n {
            0 => Cost::default(),
            _ => Cost { flops: 4.0 * d * norm_rows, bytes: layers * w.norms_per_layer + d * 4.0 },
        };

        let output = match logit_rows {
            0 => Cost::default(),
            r => Cost { flops: 2.0 * r as f64 * d * c.vocab as f64, bytes: w.output },
        };

        let overhead = match n {
            0 => Overhead::default(),
            _ => self.overhead(nf, logit_rows as f64),
        };

        StepCost {
            by_kind: vec![
                (LayerKind::Embedding, embedding),
                (LayerKind::AttnProjections, attn_proj),
                (LayerKind::AttnKv, attn_kv),
                (LayerKind::Mlp, mlp),
                (LayerKind::Norms, norms),
                (LayerKind::Output, output),
            ],
            n_tokens: n,
            overhead,
        }
    }

    /// [`Overhead`] of a step of `n_tokens` (> 0) rows, `logit_rows` of which
    /// want logits.
    fn overhead(&self, n_tokens: f64, logit_rows: f64) -> Overhead {
        let c = &self.config;
        let (d, q, kv, ff, layers) =
            (c.d_model as f64, c.q_dim() as f64, c.kv_dim() as f64, c.d_ff as f64, c.n_layers as f64);
        let has_output = if logit_rows > 0.0 { 1.0 } else { 0.0 };
        // Inputs of the jobs Q/K/V (d), attention output (q_dim), gate/up
        // (d; GELU: up) and down (d_ff).
        let quantized_per_token = d + q + d + ff;
        let elementwise_per_token = 4.0 * d + q + kv + 2.0 * kv + ff;
        Overhead {
            barriers: layers * 5.0 + has_output,
            quantized: layers * n_tokens * quantized_per_token + logit_rows * d,
            elementwise: layers * n_tokens * elementwise_per_token + logit_rows * d,
        }
    }

    /// Total cost of decoding `n_gen` tokens one at a time after `context`
    /// cached positions (batch 1): what `tg` measures.
    pub fn decode_run(&self, context: usize, n_gen: usize) -> Cost {
        let mut total = Cost::default();
        for i in 0..n_gen {
            total += self.step(&[SeqStep::decode(context + i)]).total();
        }
        total
    }

    /// Number of parameters of the weight matrices and norms (embedding
    /// counted once, output counted unless `tied`).
    pub fn parameter_count(c: &ModelConfig, tied: bool) -> u64 {
        let d = c.d_model as u64;
        let attn = d * (c.q_dim() + 2 * c.kv_dim()) as u64 + c.q_dim() as u64 * d;
        let mlp = ffn_matrices(c) as u64 * d * c.d_ff as u64;
        let norms = 2 * d;
        let embd = c.vocab as u64 * d;
        let output = if tied { 0 } else { c.vocab as u64 * d };
        c.n_layers as u64 * (attn + mlp + norms) + embd + output + d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;

    /// Llama-like, small enough to count by hand: q_dim 8, kv_dim 4.
    fn tiny() -> ModelConfig {
        ModelConfig {
            arch: Arch::Llama,
            vocab: 10,
            d_model: 8,
            n_layers: 2,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            d_ff: 16,
            norm_eps: 1e-5,
            context_len: 64,
            rope_theta: 10000.0,
            rope_dim: 4,
            rope_scaling: None,
        }
    }

    fn tiny_model() -> CostModel {
        let c = tiny();
        CostModel::new(c.clone(), WeightBytes::uniform(&c, DType::F32), 2.0)
    }

    #[test]
    fn uniform_weight_bytes() {
        let w = WeightBytes::uniform(&tiny(), DType::F32);
        // (8·(8+4+4) + 8·8) weights · 4 B
        assert_eq!(w.attn_per_layer, 768.0);
        // 3 · 8 · 16 · 4 B
        assert_eq!(w.mlp_per_layer, 1536.0);
        assert_eq!(w.norms_per_layer, 64.0);
        assert_eq!(w.output, 320.0);
        assert_eq!(w.embedding_row, 32.0);
        assert_eq!(w.per_step(2), 2.0 * (768.0 + 1536.0 + 64.0) + 320.0);
        // Q4_0: 18 bytes per 32 weights.
        let q = WeightBytes::uniform(&tiny(), DType::Q4_0);
        assert_eq!(q.output, 80.0 * 18.0 / 32.0);
    }

    #[test]
    fn decode_step_by_hand() {
        let s = tiny_model().step(&[SeqStep::decode(3)]);
        assert_eq!(s.n_tokens, 1);
        let expect = [
            (LayerKind::Embedding, 0.0, 32.0),
            // 2 layers · 2 · 1 token · 8 · (16 + 8)
            (LayerKind::AttnProjections, 768.0, 1536.0),
            // 2 · 4 · q_dim 8 · 4 positions; 2 layers · (2 · 4 · 2 B) · (4 read + 1 written)
            (LayerKind::AttnKv, 256.0, 160.0),
            // 2 · 2 · 1 · 3 · 8 · 16
            (LayerKind::Mlp, 1536.0, 3072.0),
            // 4 · 8 · (2 · 2 + 1) rows; 2 · 64 + 32
            (LayerKind::Norms, 160.0, 160.0),
            // 2 · 8 · 10
            (LayerKind::Output, 160.0, 320.0),
        ];
        for (kind, flops, bytes) in expect {
            assert_eq!(s.get(kind), Cost { flops, bytes }, "{}", kind.name());
        }
        assert_eq!(s.total(), Cost { flops: 2880.0, bytes: 5280.0 });
    }

    #[test]
    fn prefill_attention_is_causal() {
        let s = tiny_model().step(&[SeqStep::prefill(3)]);
        // positions attended 1 + 2 + 3 = 6
        assert_eq!(s.get(LayerKind::AttnKv), Cost { flops: 2.0 * 4.0 * 8.0 * 6.0, bytes: 2.0 * 16.0 * 6.0 });
        // weights are read once for all 3 tokens
        assert_eq!(s.get(LayerKind::Mlp).bytes, 3072.0);
        assert_eq!(s.get(LayerKind::Mlp).flops, 3.0 * 1536.0);
        assert_eq!(s.get(LayerKind::Output).flops, 160.0);
    }

    #[test]
    fn batch_reads_weights_once() {
        let m = tiny_model();
        let one = m.step(&[SeqStep::decode(5)]).total();
        let four = m.step(&[SeqStep::decode(5); 4]).total();
        let kv_one = m.step(&[SeqStep::decode(5)]).get(LayerKind::AttnKv).bytes;
        let embd_one = 32.0;
        // Only KV traffic and embedding rows grow with the batch.
        assert_eq!(four.bytes - one.bytes, 3.0 * (kv_one + embd_one));
        assert!((four.flops - 4.0 * one.flops).abs() < 1e-9);
    }

    #[test]
    fn empty_step_costs_nothing() {
        assert_eq!(tiny_model().step(&[]).total(), Cost::default());
    }

    #[test]
    fn decode_run_sums_steps() {
        let m = tiny_model();
        let run = m.decode_run(0, 3);
        let by_step: f64 = (0..3).map(|i| m.step(&[SeqStep::decode(i)]).total().flops).sum();
        assert_eq!(run.flops, by_step);
    }

    #[test]
    fn decode_overhead_by_hand() {
        let o = tiny_model().step(&[SeqStep::decode(3)]).overhead;
        // 2 layers · (q/k/v, attention, output, gate/up, down) + logits
        assert_eq!(o.barriers, 11.0);
        // 2 · (8 + 8 + 8 + 16) + final row 8
        assert_eq!(o.quantized, 88.0);
        // 2 · (4 · 8 + 8 + 4 + 2 · 4 + 16) + final norm 8
        assert_eq!(o.elementwise, 144.0);
        assert_eq!(tiny_model().step(&[]).overhead, Overhead::default());
    }

    #[test]
    fn barriers_scale_with_layers_not_width_or_tokens() {
        let at = |c: ModelConfig, tokens: usize| {
            CostModel::new(c.clone(), WeightBytes::uniform(&c, DType::Q8_0), 2.0)
                .step(&[SeqStep::prefill(tokens)])
                .overhead
        };
        let base = at(tiny(), 4);
        let wide = at(ModelConfig { d_model: 64, d_ff: 128, ..tiny() }, 4);
        let deep = at(ModelConfig { n_layers: 4, ..tiny() }, 4);
        assert_eq!(wide.barriers, base.barriers);
        assert_eq!(at(tiny(), 64).barriers, base.barriers);
        // 5 per layer, 1 for the output projection
        assert_eq!(deep.barriers - 1.0, 2.0 * (base.barriers - 1.0));
        // Element counts grow with tokens and width, not with a fixed term.
        let long = at(tiny(), 8);
        assert_eq!(long.quantized - 8.0, 2.0 * (base.quantized - 8.0));
        assert_eq!(long.elementwise - 8.0, 2.0 * (base.elementwise - 8.0));
        assert!(wide.elementwise > 5.0 * base.elementwise);
        // GELU blocks have one matrix fewer but as many jobs (up; down).
        let gelu = at(ModelConfig { arch: crate::config::Arch::Gpt2, ..tiny() }, 4);
        assert_eq!(gelu.barriers, base.barriers);
    }

    #[test]
    fn tinyllama_parameter_count() {
        let c = ModelConfig {
            vocab: 32000,
            d_model: 2048,
            n_layers: 22,
            n_heads: 32,
            n_kv_heads: 4,
            head_dim: 64,
            d_ff: 5632,
            context_len: 2048,
            rope_dim: 64,
            ..tiny()
        };
        assert_eq!(CostModel::parameter_count(&c, false), 1_100_048_384);
    }
}
