//! Scalar reference dot kernels, one per weight type.
//!
//! Quantized rows follow ggml's x86 kernels: an exact integer sum per block,
//! then `sumf = fma(sumi, d_w * d_x, sumf)` (then `sumf = fma(m_w, s_x, sumf)`)
//! in block order. K-quant rows use the same 32-element Q8_0 activation blocks (not
//! ggml's Q8_K): per super-block, for each activation block `c` the exact
//! integer `isum_c = sum_g sc[g] * sum(q * q_x)` over its two groups of 16
//! is folded into `a = fma(isum_c, d_x, a)` and the minimums into
//! `am = fma(m[g], xs16[g], am)` (`xs16[g] = d_x * sum(q_x)` of group `g`),
//! then `sumf = fma(d, a, sumf)`, `sumf = fma(-dmin, am, sumf)`: two fused
//! multiply-adds per activation block and two per super-block, which is what
//! lets the tile kernels spend their time in integer dot products.
//! Float rows accumulate `w[c] * x[c]` in f32 with one fused multiply-add
//! per column, in column order.

use super::{FDot, Kernel, QDot};
use crate::dtype::DType;
use crate::kquant::kblock;
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
    let mut s = 0.0f32;
    for (c, &x) in w.chunks_exact(4).zip(x) {
        s = f32::from_le_bytes([c[0], c[1], c[2], c[3]]).mul_add(x, s);
    }
    s
}

/// `w`: `[cols]` f16, `x`: `[cols]`.
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (c, &x) in w.chunks_exact(2).zip(x) {
        s = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32().mul_add(x, s);
    }
    s
}

/// `w`: `[cols]` bf16, `x`: `[cols]`.
pub fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (c, &x) in w.chunks_exact(2).zip(x) {
        s = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32().mul_add(x, s);
    }
    s
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

/// A k-quant row × Q8_0 activations (see the module docs).
pub fn dot_kquant(dtype: DType, w: &[u8], x: &Q8Row) -> f32 {
    let bb = dtype.block_bytes();
    let mut sumf = 0.0f32;
    for (sb, b) in w.chunks_exact(bb).enumerate() {
        let k = kblock(dtype, b);
        let (mut a, mut am) = (0.0f32, 0.0f32);
        for c in 0..8 {
            let i = sb * 8 + c;
            let xq = &x.qs[i * QK..(i + 1) * QK];
            let wq = &k.q[c * QK..(c + 1) * QK];
            let mut isum = 0i32;
            for h in 0..2 {
                let g = 2 * c + h;
                let dot: i32 = (16 * h..16 * h + 16).map(|j| wq[j] as i32 * xq[j] as i32).sum();
                isum += k.sc[g] * dot;
                am = (k.m[g] as f32).mul_add(x.xs16[2 * i + h], am);
            }
            a = (isum as f32).mul_add(x.d[i], a);
        }
        sumf = k.d.mul_add(a, sumf);
        sumf = (-k.dmin).mul_add(am, sumf);
    }
    sumf
}

/// Q2_K row × Q8_0 activations.
pub fn dot_q2_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q2_K, w, x)
}
/// Q3_K row × Q8_0 activations.
pub fn dot_q3_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q3_K, w, x)
}
/// Q4_K row × Q8_0 activations.
pub fn dot_q4_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q4_K, w, x)
}
/// Q5_K row × Q8_0 activations.
pub fn dot_q5_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q5_K, w, x)
}
/// Q6_K row × Q8_0 activations.
pub fn dot_q6_k(w: &[u8], x: &Q8Row) -> f32 {
    dot_kquant(DType::Q6_K, w, x)
}
