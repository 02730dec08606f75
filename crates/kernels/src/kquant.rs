//! The k-quant block formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): super-blocks of
//! 256 elements with per-sub-block integer scales, decoded exactly as ggml's
//! `dequantize_row_q*_K` (`ggml-quants.c`) and gguf-py's `gguf.quants`
//! (byte layouts from `ggml-common.h`; `tests/quant_fixtures.rs` holds the
//! decoding bit-exact with gguf-py's).
//!
//! Every k-quant element decodes to `y = (d * sc[g]) * q - (dmin * m[g])`
//! where `g = j / 16` is the element's group of 16, `sc` and `m` are small
//! integers and `q` a small signed integer; [`KBlock`] is that common form.
//! Types without a minimum have `dmin = 0`, `m = 0` (`x - 0.0 == x`, so the
//! formula is still bit-exact with ggml's `dl * q`). The matmul multiplies
//! k-quant rows with activations quantized to ggml's Q8_K
//! ([`quantize_row_q8_k`]: one f32 scale per super-block, so a whole
//! super-block of weights and activations meets in integers; see
//! `matmul::reference::dot_kquant`).
//!
//! The quantizers (ggml's `quantize_row_q*_K_ref`, byte-identical) are in
//! [`crate::kquant_quantize`]; `quant::quantize_row` dispatches to them.

use crate::dtype::DType;
use crate::quant::{f16_at, round_ties_even_small};

/// Elements per super-block.
pub const QK_K: usize = 256;

/// One decoded super-block: `y[j] = (d * sc[j / 16]) * q[j] - (dmin * m[j / 16])`.
#[derive(Clone, Debug)]
pub struct KBlock {
    pub d: f32,
    pub dmin: f32,
    /// `[16]` group scales.
    pub sc: [i32; 16],
    /// `[16]` group minimums (0 for Q3_K and Q6_K).
    pub m: [i32; 16],
    /// `[256]` signed quants.
    pub q: [i8; QK_K],
}

/// Q4_K / Q5_K: 8 six-bit (scale, min) pairs packed in 12 bytes
/// (ggml's `get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (i32, i32) {
    if j < 4 {
        ((s[j] & 63) as i32, (s[j + 4] & 63) as i32)
    } else {
        let sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (sc as i32, m as i32)
    }
}

/// Decode one super-block of a k-quant `dtype` (`b`: `dtype.block_bytes()` bytes).
pub fn kblock(dtype: DType, b: &[u8]) -> KBlock {
    assert_eq!(b.len(), dtype.block_bytes());
    let mut k = KBlock { d: 0.0, dmin: 0.0, sc: [0; 16], m: [0; 16], q: [0; QK_K] };
    match dtype {
        DType::Q2_K => {
            // scales[16], qs[64], d, dmin
            let (scales, qs) = (&b[..16], &b[16..80]);
            k.d = f16_at(b, 80);
            k.dmin = f16_at(b, 82);
            for (g, &s) in scales.iter().enumerate() {
                k.sc[g] = (s & 0x0f) as i32;
                k.m[g] = (s >> 4) as i32;
            }
            for half in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        let v = (qs[32 * half + l] >> (2 * j)) & 3;
                        k.q[128 * half + 32 * j + l] = v as i8;
                    }
                }
            }
        }
        DType::Q3_K => {
            // hmask[32], qs[64], scales[12], d
            let (hm, qs, s) = (&b[..32], &b[32..96], &b[96..108]);
            k.d = f16_at(b, 108);
            for g in 0..16 {
                let lo = (s[g % 8] >> (4 * (g / 8))) & 0x0f;
                let hi = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
                k.sc[g] = (lo | (hi << 4)) as i32 - 32;
            }
            for half in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        let low = ((qs[32 * half + l] >> (2 * j)) & 3) as i8;
                        let bit = (hm[l] >> (4 * half + j)) & 1;
                        k.q[128 * half + 32 * j + l] = low - if bit == 0 { 4 } else { 0 };
                    }
                }
            }
        }
        DType::Q4_K | DType::Q5_K => {
            // d, dmin, scales[12], (Q5_K: qh[32]), qs[128]
            k.d = f16_at(b, 0);
            k.dmin = f16_at(b, 2);
            let s = &b[4..16];
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, s);
                k.sc[2 * j] = sc;
                k.sc[2 * j + 1] = sc;
                k.m[2 * j] = m;
                k.m[2 * j + 1] = m;
            }
            let (qh, qs) = if dtype == DType::Q5_K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
            for c in 0..4 {
                for l in 0..32 {
                    let v = qs[32 * c + l];
                    let (mut lo, mut hi) = (v & 0x0f, v >> 4);
                    if let Some(qh) = qh {
                        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                    }
                    k.q[64 * c + l] = lo as i8;
                    k.q[64 * c + 32 + l] = hi as i8;
                }
            }
        }
        DType::Q6_K => {
            // ql[128], qh[64], scales[16] (i8), d
            let (ql, qh, s) = (&b[..128], &b[128..192], &b[192..208]);
            k.d = f16_at(b, 208);
            for (sc, &s) in k.sc.iter_mut().zip(s) {
                *sc = s as i8 as i32;
            }
            for half in 0..2 {
                let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                let y = &mut k.q[128 * half..];
                for l in 0..32 {
                    let h = qh[l];
                    y[l] = ((ql[l] & 0x0f) | ((h & 3) << 4)) as i8 - 32;
                    y[l + 32] = ((ql[l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) as i8 - 32;
                    y[l + 64] = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
                    y[l + 96] = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
                }
            }
        }
        _ => unreachable!("{dtype} is not a k-quant"),
    }
    k
}

/// Quantize activations `x: [n]` (`n` a multiple of 256) to ggml's Q8_K,
/// bit for bit as `quantize_row_q8_K_ref` (`ggml-quants.c`; ggml's x86
/// build calls that same scalar code): per super-block `b`, `max` is the
/// first element of largest magnitude, `iscale = -127 / max`,
/// `qs = min(127, round_ties_even(iscale * x))`, `d[b] = 1 / iscale` (f32),
/// and `bsums[g]` = the sum of the 16 quants of group `g`. An all-zero
/// block gives `d = 0`, zero quants and zero sums (ggml leaves its `bsums`
/// unwritten there). NaN inputs are outside the contract.
///
/// `qs`: `[n]`, `d`: `[n / 256]`, `bsums`: `[n / 16]` (ggml stores them as
/// i16; they fit, |sum| <= 16 * 127).
pub fn quantize_row_q8_k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i32]) {
    assert!(x.len().is_multiple_of(QK_K) && qs.len() == x.len());
    assert!(d.len() == x.len() / QK_K && bsums.len() == x.len() / 16);
    #[cfg(target_arch = "x86_64")]
    if crate::matmul::Isa::detect() == crate::matmul::Isa::Avx512 {
        // SAFETY: the CPU has AVX-512 F/BW/VL (detected); lengths checked above.
        return unsafe { x86::quantize_row_q8_k_avx512(x, qs, d, bsums) };
    }
    quantize_row_q8_k_reference(x, qs, d, bsums)
}

/// The scalar code of [`quantize_row_q8_k`] (the AVX-512 variant is
/// bit-identical to it on finite inputs).
pub fn quantize_row_q8_k_reference(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i32]) {
    assert!(x.len().is_multiple_of(QK_K) && qs.len() == x.len());
    assert!(d.len() == x.len() / QK_K && bsums.len() == x.len() / 16);
    let blocks = x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K)).zip(d.iter_mut().zip(bsums.chunks_exact_mut(16)));
    for ((xb, qb), (d, bs)) in blocks {
        // Two passes (a vectorizable maximum, then the first element that
        // reaches it) find ggml's `max`: the first strictly largest |x|.
        let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        if amax == 0.0 {
            *d = 0.0;
            qb.fill(0);
            bs.fill(0);
            continue;
        }
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        for (q, &v) in qb.iter_mut().zip(xb) {
            // ggml's `nearest_int` (the same 1.5 * 2^23 trick), then MIN(127, v).
            *q = (round_ties_even_small(iscale * v) as i32).min(127) as i8;
        }
        for (s, q) in bs.iter_mut().zip(qb.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i32).sum();
        }
        *d = 1.0 / iscale;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::QK_K;
    use std::arch::x86_64::*;

    /// [`super::quantize_row_q8_k_reference`] sixteen values at a time: the
    /// same `amax`, first element reaching it, `iscale * x` rounded to
    /// nearest even, `min(127, ·)`, integer group sums and `1 / iscale`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn quantize_row_q8_k_avx512(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i32]) {
        for (b, xb) in x.chunks_exact(QK_K).enumerate() {
            // SAFETY: block b has 256 values in `x` and 256 quants in `qs`,
            // 16 sums in `bsums` and one scale in `d` (checked by the caller).
            unsafe {
                let xp = xb.as_ptr();
                let mut m = _mm512_setzero_ps();
                for k in 0..16 {
                    m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xp.add(16 * k))));
                }
                let amax = _mm512_reduce_max_ps(m);
                if amax == 0.0 {
                    d[b] = 0.0;
                    qs[b * QK_K..(b + 1) * QK_K].fill(0);
                    bsums[16 * b..16 * b + 16].fill(0);
                    continue;
                }
                let va = _mm512_set1_ps(amax);
                let mut max = amax;
                for k in 0..16 {
                    let v = _mm512_loadu_ps(xp.add(16 * k));
                    let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(v), va);
                    if hit != 0 {
                        max = *xb.get_unchecked(16 * k + hit.trailing_zeros() as usize);
                        break;
                    }
                }
                let iscale = -127.0 / max;
                let vi = _mm512_set1_ps(iscale);
                let top = _mm512_set1_epi32(127);
                let out = qs.as_mut_ptr().add(b * QK_K);
                for k in 0..16 {
                    let v = _mm512_mul_ps(vi, _mm512_loadu_ps(xp.add(16 * k)));
                    let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                    let q = _mm512_min_epi32(_mm512_cvtps_epi32(r), top);
                    _mm_storeu_si128(out.add(16 * k) as *mut __m128i, _mm512_cvtepi32_epi8(q));
                    bsums[16 * b + k] = _mm512_reduce_add_epi32(q);
                }
                d[b] = 1.0 / iscale;
            }
        }
    }
}

/// Dequantize one super-block into `y: [256]`, bit-exact with ggml.
pub fn dequantize_kblock(dtype: DType, b: &[u8], y: &mut [f32]) {
    let k = kblock(dtype, b);
    for (g, y) in y.chunks_exact_mut(16).enumerate() {
        let dl = k.d * k.sc[g] as f32;
        let ml = k.dmin * k.m[g] as f32;
        for (o, &q) in y.iter_mut().zip(&k.q[16 * g..16 * g + 16]) {
            *o = dl * q as f32 - ml;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bytes_decode_to_zero() {
        for dtype in DType::K_QUANTS {
            let b = vec![0u8; dtype.block_bytes()];
            let mut y = vec![1f32; QK_K];
            dequantize_kblock(dtype, &b, &mut y);
            assert!(y.iter().all(|&v| v == 0.0), "{dtype}");
        }
    }
}
