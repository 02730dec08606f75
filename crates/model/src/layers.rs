//! The building blocks of the generic decoder: norms, linear layers with
//! optional bias, attention projections and feed-forward blocks, each bound
//! from GGUF-named weights (llama.cpp's `build_norm / build_attn / build_ffn`).

use crate::config::{ArchTraits, FfnKind, ModelConfig, NormKind};
use crate::error::ModelError;
use crate::rows::for_rows;
use crate::weights::{Matrix, WeightSource};
use memwall_kernels::matmul::matmul_many;
use memwall_kernels::{matmul, ops, ThreadPool};

/// RMSNorm (`bias` is `None`) or LayerNorm over rows of width `[d]`.
pub struct Norm {
    pub kind: NormKind,
    /// `[d]`
    pub weight: Vec<f32>,
    /// `[d]`, LayerNorm only.
    pub bias: Option<Vec<f32>>,
    pub eps: f32,
}

impl Norm {
    pub fn bind(src: &WeightSource, prefix: &str, d: usize, kind: NormKind, eps: f32) -> Result<Norm, ModelError> {
        let weight = src.vector(&format!("{prefix}.weight"), d)?;
        let bias = match kind {
            NormKind::Rms => None,
            NormKind::Layer => Some(src.vector(&format!("{prefix}.bias"), d)?),
        };
        Ok(Norm { kind, weight, bias, eps })
    }

    /// Normalizes each row of `x` (`[n, d]`) into `out` (`[n, d]`).
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        let d = self.weight.len();
        for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            match &self.bias {
                None => ops::rms_norm(xr, &self.weight, self.eps, or),
                Some(b) => ops::layer_norm(xr, &self.weight, b, self.eps, or),
            }
        }
    }

    /// [`Norm::apply`] of `x` (`[n, d]`) into itself.
    pub fn apply_in_place(&self, x: &mut [f32]) {
        let d = self.weight.len();
        for row in x.chunks_exact_mut(d) {
            match &self.bias {
                None => ops::rms_norm_in_place(row, &self.weight, self.eps),
                Some(b) => ops::layer_norm_in_place(row, &self.weight, b, self.eps),
            }
        }
    }

    /// [`Norm::apply`] with the rows spread over `pool` ([`for_rows`]).
    pub fn apply_rows(&self, pool: &ThreadPool, x: &[f32], out: &mut [f32]) {
        let d = self.weight.len();
        for_rows(pool, out, d, |rows, out| self.apply(&x[rows.start * d..rows.end * d], out));
    }
}

/// `y = x Wᵀ + b` with `W` `[d_out, d_in]`.
pub struct Linear {
    pub w: Matrix,
    /// `[d_out]`
    pub b: Option<Vec<f32>>,
}

impl Linear {
    pub fn bind(src: &WeightSource, prefix: &str, d_out: usize, d_in: usize) -> Result<Linear, ModelError> {
        let w = src.matrix(&format!("{prefix}.weight"), d_out, d_in)?;
        let b = src.opt_vector(&format!("{prefix}.bias"), d_out)?;
        Ok(Linear { w, b })
    }

    pub fn opt_bind(src: &WeightSource, prefix: &str, d_out: usize, d_in: usize) -> Result<Option<Linear>, ModelError> {
        match src.opt_matrix(&format!("{prefix}.weight"), d_out, d_in)? {
            None => Ok(None),
            Some(w) => Ok(Some(Linear { w, b: src.opt_vector(&format!("{prefix}.bias"), d_out)? })),
        }
    }

    pub fn d_out(&self) -> usize {
        self.w.rows
    }

    /// `x` `[n, d_in]` → `y` `[n, d_out]`.
    pub fn forward(&self, pool: &ThreadPool, x: &[f32], y: &mut [f32]) {
        matmul(pool, &self.w.as_mat(), x, y);
        self.add_bias(y);
    }

    /// `ys[m] = linears[m](x)` for layers that read the same `x` (Q, K and
    /// V; gate and up): one quantization of `x` and one pass of the pool
    /// over all their weights where the kernels allow (`matmul_many`).
    pub fn forward_many<const N: usize>(linears: [&Linear; N], pool: &ThreadPool, x: &[f32], ys: [&mut [f32]; N]) {
        let mut ys = ys;
        matmul_many(pool, &linears.map(|l| l.w.as_mat()), x, &mut ys);
        for (l, y) in linears.iter().zip(ys) {
            l.add_bias(y);
        }
    }

    fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.b {
            for row in y.chunks_exact_mut(b.len()) {
                for (yi, bi) in row.iter_mut().zip(b) {
                    *yi += bi;
                }
            }
        }
    }

    /// Bytes of weights read per call.
    pub fn weight_bytes(&self) -> usize {
        self.w.bytes().len()
    }
}

/// Q, K and V projections: three matrices, or one fused `[q_dim + 2 kv_dim, d_model]`.
pub enum Qkv {
    Split { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

/// One attention block's weights.
pub struct AttentionWeights {
    pub qkv: Qkv,
    /// Per-head RMSNorm of queries and keys (Qwen3), `[head_dim]` each.
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    /// `[d_model, q_dim]`
    pub output: Linear,
}

impl AttentionWeights {
    pub fn bind(src: &WeightSource, blk: &str, c: &ModelConfig) -> Result<Self, ModelError> {
        let (d, q_dim, kv_dim) = (c.d_model, c.q_dim(), c.kv_dim());
        let qkv = match Linear::opt_bind(src, &format!("{blk}.attn_qkv"), q_dim + 2 * kv_dim, d)? {
            Some(fused) => Qkv::Fused(fused),
            None => Qkv::Split {
                q: Linear::bind(src, &format!("{blk}.attn_q"), q_dim, d)?,
                k: Linear::bind(src, &format!("{blk}.attn_k"), kv_dim, d)?,
                v: Linear::bind(src, &format!("{blk}.attn_v"), kv_dim, d)?,
            },
        };
        let head_norm = |name: &str| -> Result<Option<Norm>, ModelError> {
            let w = src.opt_vector(&format!("{blk}.{name}.weight"), c.head_dim)?;
            Ok(w.map(|weight| Norm { kind: NormKind::Rms, weight, bias: None, eps: c.norm_eps }))
        };
        Ok(AttentionWeights {
            qkv,
            q_norm: head_norm("attn_q_norm")?,
            k_norm: head_norm("attn_k_norm")?,
            output: Linear::bind(src, &format!("{blk}.attn_output"), d, q_dim)?,
        })
    }

    pub fn weight_bytes(&self) -> usize {
        let qkv = match &self.qkv {
            Qkv::Split { q, k, v } => q.weight_bytes() + k.weight_bytes() + v.weight_bytes(),
            Qkv::Fused(l) => l.weight_bytes(),
        };
        qkv + self.output.weight_bytes()
    }
}

/// One feed-forward block's weights.
pub struct FfnWeights {
    pub kind: FfnKind,
    /// `[d_ff, d_model]`; `None` with SwiGLU means `up` holds gate and up
    /// fused as `[2 d_ff, d_model]` (gate first, as Phi-3).
    pub gate: Option<Linear>,
    pub up: Linear,
    /// `[d_model, d_ff]`
    pub down: Linear,
}

impl FfnWeights {
    pub fn bind(src: &WeightSource, blk: &str, c: &ModelConfig, traits: ArchTraits) -> Result<Self, ModelError> {
        let (d, ff) = (c.d_model, c.d_ff);
        let gate = match traits.ffn {
            FfnKind::SwiGlu => Linear::opt_bind(src, &format!("{blk}.ffn_gate"), ff, d)?,
            FfnKind::Gelu => None,
        };
        let up_rows = if traits.ffn == FfnKind::SwiGlu && gate.is_none() { 2 * ff } else { ff };
        Ok(FfnWeights {
            kind: traits.ffn,
            gate,
            up: Linear::bind(src, &format!("{blk}.ffn_up"), up_rows, d)?,
            down: Linear::bind(src, &format!("{blk}.ffn_down"), d, ff)?,
        })
    }

    pub fn weight_bytes(&self) -> usize {
        self.gate.as_ref().map_or(0, Linear::weight_bytes) + self.up.weight_bytes() + self.down.weight_bytes()
    }

    /// `x` `[n, d_model]` → `out` `[n, d_model]`, using `gate_buf` and
    /// `up_buf` (each at least `[n, d_ff]`, `up_buf` `[n, 2 d_ff]` when fused).
    pub fn forward(&self, pool: &ThreadPool, x: &[f32], gate_buf: &mut [f32], up_buf: &mut [f32], out: &mut [f32]) {
        let n = x.len() / self.up.w.cols;
        let ff = self.down.w.cols;
        let act = &mut gate_buf[..n * ff];
        match (self.kind, &self.gate) {
            (FfnKind::Gelu, _) => {
                self.up.forward(pool, x, act);
                for_rows(pool, act, ff, |_, act| ops::gelu(act));
            }
            (FfnKind::SwiGlu, Some(gate)) => {
                let up = &mut up_buf[..n * ff];
                Linear::forward_many([gate, &self.up], pool, x, [&mut *act, &mut *up]);
                let up = &*up;
                for_rows(pool, act, ff, |rows, act| ops::silu_mul(act, Some(&up[rows.start * ff..rows.end * ff])));
            }
            (FfnKind::SwiGlu, None) => {
                let fused = &mut up_buf[..n * 2 * ff];
                self.up.forward(pool, x, fused);
                let fused = &*fused;
                for_rows(pool, act, ff, |rows, act| {
                    let fused = &fused[rows.start * 2 * ff..rows.end * 2 * ff];
                    for (row, a) in fused.chunks_exact(2 * ff).zip(act.chunks_exact_mut(ff)) {
                        let (g, u) = row.split_at(ff);
                        ops::swiglu(g, u, a);
                    }
                });
            }
        }
        self.down.forward(pool, act, out);
    }
}
