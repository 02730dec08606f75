//! Reference quantize / dequantize of one row, for every [`DType`].
//!
//! These follow ggml's `quantize_row_*_ref` / `dequantize_row_*`
//! (`ggml-quants.c`) and gguf-py's `gguf.quants`, which is bit-exact with them
//! for these types; the fixtures in `tests/data/` (made by
//! `tools/make_quant_fixtures.py` from gguf-py) hold us to that.
//!
//! Rounding, as in ggml:
//! - Q4_0 / Q5_0: `d = max / -8` (`-16`) where `max` is the value of largest
//!   magnitude (the first one on ties), `q = min(15, trunc(x / d + 8.5))`.
//! - Q4_1 / Q5_1: `d = (max - min) / 15` (`31`), `m = min`,
//!   `q = min(15, trunc((x - min) / d + 0.5))`.
//! - Q8_0: `d = amax / 127`, `q = round_half_away(x / d)`.
//! - F16: round to nearest even; BF16: ggml's `fp32_to_bf16` (round to nearest
//!   even, NaN forced quiet).
//!
//! Scales are computed in f32 and stored as f16; the quotient uses the f32
//! scale (`id = 1 / d`), exactly as the C code. Dequantization computes
//! `d * q` or `d * q + m` in f32 without fused multiply-add.
//!
//! The activation quantizers of the matmul ([`quantize_row_q8`]) live here too:
//! ggml's Q8_0 / Q8_1 math, but with the scale (and block sum) kept in f32
//! in separate arrays, since they never reach a file.

use crate::dtype::DType;
use crate::kquant::{dequantize_kblock, QK_K};
use half::{bf16, f16};

/// Elements per block of every block format.
pub const QK: usize = 32;

fn check_len(dtype: DType, n: usize, bytes: usize) {
    let want = dtype.row_bytes(n);
    assert!(want == Some(bytes), "{dtype}: a row of {n} elements takes {want:?} bytes, got {bytes}");
}

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

#[inline]
fn put_f16(b: &mut [u8], i: usize, v: f32) {
    b[i..i + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

/// ggml's `ggml_compute_fp32_to_bf16`: round to nearest even, NaN made quiet.
#[inline]
pub fn f32_to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// Dequantize one row.
///
/// `src`: `dtype.row_bytes(dst.len())` bytes; `dst`: `[n]`.
/// Panics only when the lengths disagree; any byte values are accepted.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    check_len(dtype, dst.len(), src.len());
    let bb = dtype.block_bytes();
    match dtype {
        DType::F32 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => {
            for (y, b) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(bb)) {
                dequantize_block(dtype, b, y);
            }
        }
        DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K => {
            for (y, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(bb)) {
                dequantize_kblock(dtype, b, y);
            }
        }
    }
}

/// The 32 integer quants of one block: `q` such that `x = d * q + m`
/// (`m = 0` for the symmetric formats, where `q` is already centred).
#[inline]
pub(crate) fn block_ints(dtype: DType, b: &[u8]) -> [i32; QK] {
    let mut q = [0i32; QK];
    match dtype {
        DType::Q4_0 | DType::Q4_1 => {
            let (qs, off) = if dtype == DType::Q4_0 { (&b[2..18], 8) } else { (&b[4..20], 0) };
            for j in 0..16 {
                q[j] = (qs[j] & 0x0f) as i32 - off;
                q[j + 16] = (qs[j] >> 4) as i32 - off;
            }
        }
        DType::Q5_0 | DType::Q5_1 => {
            let (h, off) = if dtype == DType::Q5_0 { (2, 16) } else { (4, 0) };
            let qh = u32::from_le_bytes([b[h], b[h + 1], b[h + 2], b[h + 3]]);
            let qs = &b[h + 4..h + 20];
            for j in 0..16 {
                let h0 = ((qh >> j) & 1) << 4;
                let h1 = ((qh >> (j + 16)) & 1) << 4;
                q[j] = ((qs[j] & 0x0f) as u32 | h0) as i32 - off;
                q[j + 16] = ((qs[j] >> 4) as u32 | h1) as i32 - off;
            }
        }
        DType::Q8_0 => {
            for j in 0..QK {
                q[j] = b[2 + j] as i8 as i32;
            }
        }
        _ => unreachable!("{dtype} has no 32-element blocks"),
    }
    q
}

fn dequantize_block(dtype: DType, b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let q = block_ints(dtype, b);
    if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
        let m = f16_at(b, 2);
        for (o, &q) in y.iter_mut().zip(&q) {
            *o = d * q as f32 + m;
        }
    } else {
        for (o, &q) in y.iter_mut().zip(&q) {
            *o = d * q as f32;
        }
    }
}

/// Quantize one row with ggml's reference quantizers.
///
/// `src`: `[n]`, `n` a multiple of `dtype.block_len()`;
/// `dst`: `dtype.row_bytes(n)` bytes. Panics only when the lengths disagree.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) {
    check_len(dtype, src.len(), dst.len());
    let bb = dtype.block_bytes();
    match dtype {
        DType::F32 => {
            for (c, &v) in dst.chunks_exact_mut(4).zip(src) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for (c, &v) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
            }
        }
        DType::BF16 => {
            for (c, &v) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&f32_to_bf16(v).to_le_bytes());
            }
        }
        _ if dtype.is_kquant() => crate::kquant_quantize::quantize_row_kquant(dtype, src, dst),
        _ => {
            for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(bb)) {
                quantize_block(dtype, x.try_into().unwrap(), b);
            }
        }
    }
}

/// The value of largest magnitude (the first one on ties), as ggml.
fn signed_amax(x: &[f32; QK]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline]
fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Pack 5-bit quants: low nibbles in `qs`, bit 4 of element `j` in bit `j` of `qh`.
fn pack5(q: &[u8; QK], b: &mut [u8]) {
    let mut qh = 0u32;
    for (j, &v) in q.iter().enumerate() {
        qh |= ((v as u32 >> 4) & 1) << j;
    }
    b[..4].copy_from_slice(&qh.to_le_bytes());
    for j in 0..16 {
        b[4 + j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
    }
}

fn quantize_block(dtype: DType, x: &[f32; QK], b: &mut [u8]) {
    let mut q = [0u8; QK];
    match dtype {
        DType::Q4_0 | DType::Q5_0 => {
            let (div, half, top) = if dtype == DType::Q4_0 { (-8.0, 8.5, 15) } else { (-16.0, 16.5, 31) };
            let d = signed_amax(x) / div;
            let id = inv(d);
            for (q, &v) in q.iter_mut().zip(x) {
                *q = ((v * id + half) as i32).clamp(0, top) as u8;
            }
            put_f16(b, 0, d);
            if dtype == DType::Q4_0 {
                for j in 0..16 {
                    b[2 + j] = q[j] | (q[j + 16] << 4);
                }
            } else {
                pack5(&q, &mut b[2..]);
            }
        }
        DType::Q4_1 | DType::Q5_1 => {
            let top = if dtype == DType::Q4_1 { 15 } else { 31 };
            let (min, max) = min_max(x);
            let d = (max - min) / top as f32;
            let id = inv(d);
            for (q, &v) in q.iter_mut().zip(x) {
                *q = (((v - min) * id + 0.5) as i32).clamp(0, top) as u8;
            }
            put_f16(b, 0, d);
            put_f16(b, 2, min);
            if dtype == DType::Q4_1 {
                for j in 0..16 {
                    b[4 + j] = q[j] | (q[j + 16] << 4);
                }
            } else {
                pack5(&q, &mut b[4..]);
            }
        }
        DType::Q8_0 => {
            let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = inv(d);
            put_f16(b, 0, d);
            for (o, &v) in b[2..].iter_mut().zip(x) {
                *o = (v * id).round() as i8 as u8;
            }
        }
        _ => unreachable!("{dtype} has no 32-element blocks"),
    }
}

/// `v.round() as i32` (C's `roundf`: ties away from zero) without a libm
/// call, for |v| < 2^31; NaN gives 0. Exact: `v - trunc(v)` is representable.
#[inline]
pub fn round_half_away(v: f32) -> i32 {
    let t = v as i32;
    let frac = v - t as f32;
    t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)
}

/// `v.round_ties_even()` for |v| < 2^22 (NaN stays NaN), without the libm
/// call that `round_ties_even` becomes when SSE4.1 is not a compile-time
/// target feature: adding and subtracting 1.5 * 2^23 rounds to an integer
/// in the default (nearest-even) rounding mode. Activation quants are
/// |v| <= 127.
#[inline]
pub fn round_ties_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (v + MAGIC) - MAGIC
}

/// One row of activations quantized to 8 bits for the integer dot kernels,
/// in one of two forms:
///
/// - **Q8_0 / Q8_1** (weights in the 32-element formats,
///   [`quantize_row_q8`]): `qs`: `[n]`, `d` and `s`: `[n / 32]` (ggml's
///   Q8_0 `d` and Q8_1 `s = d * sum(qs)`, f32). For tiled weights also
///   `gsum`: `[n / 16]`, the exact integer `sum(qs)` of each group of 16
///   (the tile kernels take the weights' offsets back with it); empty
///   otherwise. `qsum32` is empty.
/// - **Q8_K** (k-quant weights, [`crate::kquant::quantize_row_q8_k`]):
///   `qs`: `[n]`, `d`: `[n / 256]` (one f32 scale per super-block),
///   `gsum`: `[n / 16]` (ggml's `bsums`), and `qsum32`: `[n / 32]`, the
///   exact `sum(qs)` of each 32 as f32 (what the minimums of Q4_K/Q5_K
///   multiply). `s` is empty.
#[derive(Clone, Copy)]
pub struct Q8Row<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub gsum: &'a [i32],
    pub qsum32: &'a [f32],
}

/// Quantize activations `x: [n]` (n a multiple of 32) to `qs: [n]`,
/// `d: [n / 32]`, `s: [n / 32]` exactly as llama.cpp does on x86
/// (`quantize_row_q8_1` in ggml-cpu's `arch/x86/quants.c`, which the scalar
/// `_ref` matches except for ties): `q = round_ties_even(x * 127 / amax)`,
/// `d = f16(amax / 127)`, `s = f16(d * sum(q))`. Keeping ggml's f16 rounding
/// of `d` and `s` makes memwall's logits follow llama.cpp's to the last bit
/// the formats allow. (Q8_0 is the same without `s`.)
pub fn quantize_row_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(x.len().is_multiple_of(QK) && qs.len() == x.len());
    assert!(d.len() == x.len() / QK && s.len() == d.len());
    #[cfg(target_arch = "x86_64")]
    if crate::matmul::Isa::detect() == crate::matmul::Isa::Avx512 {
        // SAFETY: the CPU has AVX-512 F/BW/VL (detected); lengths checked above.
        return unsafe { x86::quantize_row_q8_avx512(x, qs, d, s) };
    }
    quantize_row_q8_reference(x, qs, d, s)
}

/// The scalar code of [`quantize_row_q8`] (the AVX-512 variant is
/// bit-identical to it on finite inputs).
pub fn quantize_row_q8_reference(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (i, xb) in x.chunks_exact(QK).enumerate() {
        let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let db = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qs[i * QK..(i + 1) * QK].iter_mut().zip(xb) {
            *q = round_ties_even_small(v * id) as i8;
            sum += *q as i32;
        }
        d[i] = f16::from_f32(db).to_f32();
        s[i] = f16::from_f32(db * sum as f32).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// [`quantize_row_q8_reference`] with the block's 32 values in two
    /// registers: the same `amax`, `d`, `id`, `v * id` rounded to nearest
    /// even, integer sum and f16 roundings.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn quantize_row_q8_avx512(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
        for (i, xb) in x.chunks_exact(QK).enumerate() {
            // SAFETY: block i has 32 values in `x` and 32 quants in `qs`.
            unsafe {
                let v0 = _mm512_loadu_ps(xb.as_ptr());
                let v1 = _mm512_loadu_ps(xb.as_ptr().add(16));
                let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
                let db = amax / 127.0;
                let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
                let round = |v| {
                    _mm512_cvtps_epi32(_mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                        _mm512_mul_ps(v, id),
                    ))
                };
                let (q0, q1) = (round(v0), round(v1));
                let out = qs.as_mut_ptr().add(i * QK);
                _mm_storeu_si128(out as *mut __m128i, _mm512_cvtepi32_epi8(q0));
                _mm_storeu_si128(out.add(16) as *mut __m128i, _mm512_cvtepi32_epi8(q1));
                let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
                d[i] = f16::from_f32(db).to_f32();
                s[i] = f16::from_f32(db * sum as f32).to_f32();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_activation_quantization_is_the_reference() {
        let mut st = 3u64;
        let mut next = || {
            st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((st >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        };
        // Random blocks, a zero block, ties (x * id landing on .5) and a constant block.
        let mut x: Vec<f32> = (0..32 * 40).map(|_| next()).collect();
        x[32..64].fill(0.0);
        for (j, v) in x[64..96].iter_mut().enumerate() {
            *v = (j as f32 - 15.5) * 127.0 / 31.0 / 127.0 * 2.0;
        }
        x[96..128].fill(-3.25);
        let n = x.len();
        let (mut q0, mut d0, mut s0) = (vec![0i8; n], vec![0f32; n / 32], vec![0f32; n / 32]);
        let (mut q1, mut d1, mut s1) = (q0.clone(), d0.clone(), s0.clone());
        quantize_row_q8_reference(&x, &mut q0, &mut d0, &mut s0);
        quantize_row_q8(&x, &mut q1, &mut d1, &mut s1);
        assert_eq!(q0, q1);
        assert_eq!(
            d0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            d1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(
            s0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            s1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        // Q4_0 / Q5_0 clamp the value opposite to `max` (when it has the same
        // magnitude) to the top quant, a full step away, as ggml does.
        let x: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 31.5) / 7.0).collect();
        for dtype in DType::ALL {
            let mut q = vec![0u8; dtype.row_bytes(64).unwrap()];
            let mut y = vec![0f32; 64];
            quantize_row(dtype, &x, &mut q);
            dequantize_row(dtype, &q, &mut y);
            let step = match dtype {
                DType::F32 => 0.0,
                DType::F16 => 4.5 / 1024.0,
                DType::BF16 => 4.5 / 128.0,
                DType::Q4_0 => 4.5 / 8.0,
                DType::Q4_1 => 9.0 / 15.0,
                DType::Q5_0 => 4.5 / 16.0,
                DType::Q5_1 => 9.0 / 31.0,
                DType::Q8_0 => 4.5 / 127.0,
                _ => unreachable!(),
            };
            for (a, b) in x.iter().zip(&y) {
                let tol = if matches!(dtype, DType::Q4_0 | DType::Q5_0) { step } else { step * 0.51 };
                assert!((a - b).abs() <= tol + 1e-3, "{dtype}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn round_half_away_is_roundf() {
        let mut v = -130.0f32;
        while v < 130.0 {
            for w in [v, f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().wrapping_sub(1))] {
                assert_eq!(round_half_away(w), w.round() as i32, "{w}");
            }
            v += 0.125;
        }
        assert_eq!(round_half_away(f32::NAN), 0);
        assert_eq!(round_half_away(0.49999997), 0);
    }

    #[test]
    fn round_ties_even_small_is_round_ties_even() {
        let mut v = -200.0f32;
        while v < 200.0 {
            for w in [v, f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().wrapping_sub(1))] {
                if w.is_nan() {
                    continue;
                }
                assert_eq!(round_ties_even_small(w), w.round_ties_even(), "{w}");
            }
            v += 0.125;
        }
        assert!(round_ties_even_small(f32::NAN).is_nan());
        assert_eq!(round_ties_even_small(-0.4).to_bits() & 0x7fff_ffff, 0);
    }

    #[test]
    fn bf16_matches_ggml_rounding() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie to even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0); // quiet NaN
    }
}
