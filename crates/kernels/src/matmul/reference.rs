//! Scalar reference dot kernels, one per weight type.
//!
//! Quantized rows follow ggml's x86 kernels: an exact integer sum per block,
//! then `sumf = fma(sumi, d_w * d_x, sumf)` (then `sumf = fma(m_w, s_x, sumf)`)
//! in block order.
//!
//! K-quant rows take Q8_K activations (ggml's `ggml_vec_dot_q*_K_q8_K`: one
//! activation scale `d_x` per 256-element super-block), so a super-block
//! costs two float operations against the weights' `d` and `dmin`:
//!
//! ```text
//! a    = Σ_G fma(sc[G], Σ_{e in G} q[e] · q_x[e], a)    G: the scale groups (32 elements
//!                                                      for Q4_K/Q5_K, 16 otherwise), in order
//! summ = Σ_g m[g] · bsum_x[g]                          exact integer (< 2^24, so exact in f32)
//! sumf = fma(d · d_x, a, sumf)
//! sumf = fma(-(dmin · d_x), summ, sumf)
//! ```
//!
//! Every product `sc[G] · Σ q q_x` is an exact integer below 2^23 (at most
//! 128 · 65 024 for Q6_K, 63 · 125 984 for Q5_K), so `a` is exact until it
//! passes 2^24 and rounds like any f32 sum after that. Summing it in f32
//! rather than in i32 (as ggml does) lets the tile kernels apply each scale
//! with a conversion and one fused multiply-add, where an i32 multiply
//! (`vpmulld`) would take two uops of the port the VNNI dot products need.
//! Float rows accumulate `w[c] * x[c]` in f32 with one fused multiply-add
//! per column, in column order.

use super::{FDot, Kernel, QDot};
use crate::dtype::DType;
use crate::kquant::{kblock, QK_K};
use crate::quant::{block_ints, f16_at, Q8Row, QK};
use half::{bf16, f16};

pub(super) fn kernel(dtype: DType) -> Kernel {
    match dtype {
        DType::F32 => Kernel::Float(dot_f32 as FDot),
        DType::F16 => Kernel::Float(dot_f16 as FDot),
        DType::BF16 => Kernel::Float(dot_bf16 as FDot),
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => Kernel::Quant(
            match dtype {
                DType::Q4_0 => dot_q4_0 as QDot,
                DType::Q5_0 => dot_q5_0 as QDot,
                _ => dot_q8_0 as QDot,
            },
            None,
        ),
        DType::Q4_1 => Kernel::Quant(dot_q4_1 as QDot, None),
        DType::Q5_1 => Kernel::Quant(dot_q5_1 as QDot, None),
        DType::Q2_K => Kernel::Quant(dot_q2_k as QDot, None),
        DType::Q3_K => Kernel::Quant(dot_q3_k as QDot, None),
        DType::Q4_K => Kernel::Quant(dot_q4_k as QDot, None),
        DType::Q5_K => Kernel::Quant(dot_q5_k as QDot, None),
        DType::Q6_K => Kernel::Quant(dot_q6_k as QDot, None),
    }
}

/// `w`: `[cols]` f32 (little-endian bytes), `x`: `[cols]`.
pub fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    dot_float(w, x, 4, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// `w`: `[cols]` f16, `x`: `[cols]`.
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    dot_float(w, x, 2, |c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
}

/// `w`: `[cols]` bf16, `x`: `[cols]`.
pub fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    dot_float(w, x, 2, |c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
}

/// The float dots' order, which the tile kernels run exactly: two chains
/// of fused multiply-adds, over the even and the odd columns, added at the
/// end. (With one chain a one-token tile kernel waits out the FMA latency
/// at every column: F16 decode streamed ~30 GB/s on one Zen 5 core, below
/// memory's ~39.)
fn dot_float(w: &[u8], x: &[f32], elem_bytes: usize, get: impl Fn(&[u8]) -> f32) -> f32 {
    let mut s = [0.0f32; 2];
    for (c, (w, &x)) in w.chunks_exact(elem_bytes).zip(x).enumerate() {
        s[c % 2] = get(w).mul_add(x, s[c % 2]);
    }
    s[0] + s[1]
}

fn dot_sym(dtype: DType, w: &[u8], x: &Q8Row) -> f32 {
    let bb = dtype.block_bytes();
    let mut sumf = 0.0f32;
    for (i, b) in w.chunks_exact(bb).enumerate() {
        let q = block_ints(dtype, b);
        let xq = &x.qs[i * QK..(i + 1) * QK];
        let sumi: i32 = q.iter().zip(xq).map(|(&a, &b)| a * b as i32).sum();
        sumf = (sumi as f32).mul_add(f16_at(b, 0) * x.d[i], sumf);
    }
    sumf
}

fn dot_offset(dtype: DType, w: &[u8], x: &Q8Row) -> f32 {
    let bb = dtype.block_bytes();
    let mut sumf = 0.0f32;
    for (i, b) in w.chunks_exact(bb).enumerate() {
        let q = block_ints(dtype, b);
        let xq = &x.qs[i * QK..(i + 1) * QK];
        let sumi: i32 = q.iter().zip(xq).map(|(&a, &b)| a * b as i32).sum();
        sumf = (sumi as f32).mul_add(f16_at(b, 0) * x.d[i], sumf);
        sumf = f16_at(b, 2).mul_add(x.s[i], sumf);
    }
    sumf
}

/// Q4_0 row × Q8_0 activations.
pub fn dot_q4_0(w: &[u8], x: &Q8Row) -> f32 {
    dot_sym(DType::Q4_0, w, x)
}
/// Q5_0 row × Q8_0 activations.
pub fn dot_q5_0(w: &[u8], x: &Q8Row) -> f32 {
    dot_sym(DType::Q5_0, w, x)
}
/// Q8_0 row × Q8_0 activations.
pub fn dot_q8_0(w: &[u8], x: &Q8Row) -> f32 {
    dot_sym(DType::Q8_0, w, x)
}
/// Q4_1 row × Q8_1 activations.
pub fn dot_q4_1(w: &[u8], x: &Q8Row) -> f32 {
    dot_offset(DType::Q4_1, w, x)
}
/// Q5_1 row × Q8_1 activations.
pub fn dot_q5_1(w: &[u8], x: &Q8Row) -> f32 {
    dot_offset(DType::Q5_1, w, x)
}

/// Elements per scale group of a k-quant, as the kernels apply the scales:
/// Q4_K and Q5_K have one scale per 32 (stored twice in [`crate::kquant::KBlock`]).
fn kquant_group(dtype: DType) -> usize {
    if matches!(dtype, DType::Q4_K | DType::Q5_K) {
        32
    } else {
        16
    }
}

/// A k-quant row × Q8_K activations (see the module docs).
pub fn dot_kquant(dtype: DType, w: &[u8], x: &Q8Row) -> f32 {
    let bb = dtype.block_bytes();
    let group = kquant_group(dtype);
    let mut sumf = 0.0f32;
    for (sb, b) in w.chunks_exact(bb).enumerate() {
        let k = kblock(dtype, b);
        let xq = &x.qs[sb * QK_K..(sb + 1) * QK_K];
        let mut a = 0.0f32;
        for g in (0..QK_K).step_by(group) {
            let dot: i32 = (g..g + group).map(|e| k.q[e] as i32 * xq[e] as i32).sum();
            a = (k.sc[g / 16] as f32).mul_add(dot as f32, a);
        }
        let summ: i32 = (0..16).map(|g| k.m[g] * x.gsum[16 * sb + g]).sum();
        let dx = x.d[sb];
        sumf = (k.d * dx).mul_add(a, sumf);
        sumf = (-(k.dmin * dx)).mul_add(summ as f32, sumf);
    }
    sumf
}

/// Q2_K row × Q8_K activations.
pub fn dot_q2_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q2_K, w, x)
}
/// Q3_K row × Q8_K activations.
pub fn dot_q3_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q3_K, w, x)
}
/// Q4_K row × Q8_K activations.
pub fn dot_q4_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q4_K, w, x)
}
/// Q5_K row × Q8_K activations.
pub fn dot_q5_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q5_K, w, x)
}
/// Q6_K row × Q8_K activations.
pub fn dot_q6_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q6_K, w, x)
}
