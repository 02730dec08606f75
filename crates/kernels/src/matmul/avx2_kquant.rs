//! AVX2 + FMA + F16C dot kernels for the k-quants of Q4_K_M files (Q4_K and
//! Q6_K) against the 32-element Q8_0 activation blocks.
//!
//! The arithmetic is the reference's (`reference::dot_kquant`) regrouped:
//! per activation block, exact integer sums of `sc[g] * q * q_x` in 8 i32
//! lanes (`_mm256_maddubs_epi16` of unsigned quants with signed
//! activations, then `_mm256_madd_epi16` with the group scales as i16),
//! converted to f32 per lane and multiplied by `d * d_x`. The parts that do
//! not depend on the weight quants — Q4_K's `dmin * m[g] * sum(x)` and
//! Q6_K's `-32` offset, `32 d sc[g] * sum(x)` — are one 16-lane float dot per
//! super-block with the row-independent group sums `Q8Row::xs16`, kept in a
//! second accumulator and subtracted at the end. The float rounding thus
//! differs from the reference (bounds in `tests/matmul.rs`). Weights are
//! prefetched [`PREFETCH_BYTES`] ahead.

use super::{Kernel, QDot, QDot4, PREFETCH_BYTES};
use crate::dtype::DType;
use crate::quant::{Q8Row, QK};
use std::arch::x86_64::*;

pub(super) fn kernel(dtype: DType) -> Kernel {
    match dtype {
        DType::Q4_K => Kernel::Quant(dot_q4_k as QDot, Some(dot_q4_kx4 as QDot4)),
        DType::Q6_K => Kernel::Quant(dot_q6_k as QDot, None),
        _ => super::reference::kernel(dtype),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    crate::quant::f16_at(b, i)
}

/// Q4_K × Q8_0 activations for `N` tokens (weights unpacked once).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k<const N: usize>(w: &[u8], xs_: [&Q8Row; N]) -> [f32; N] {
    const BB: usize = 144;
    let nsb = w.len() / BB;
    assert!(w.len() == nsb * BB);
    for x in xs_ {
        assert!(x.qs.len() == nsb * 256 && x.d.len() == nsb * 8 && x.xs16.len() == nsb * 16);
    }
    let low = _mm256_set1_epi8(0x0f);
    let (mut acc, mut acc_min) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    for (sb, b) in w.chunks_exact(BB).enumerate() {
        _mm_prefetch(b.as_ptr().wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let s = &b[4..16];
        // The minimums: dmin * sum_g m[g] * xs16[g], row-independent sums of x.
        let mut m = [0f32; 8];
        for (j, m) in m.iter_mut().enumerate() {
            *m = if j < 4 { s[j + 4] & 63 } else { (s[j + 4] >> 4) | ((s[j] >> 6) << 4) } as f32;
        }
        let m_lo = _mm256_setr_ps(m[0], m[0], m[1], m[1], m[2], m[2], m[3], m[3]);
        let m_hi = _mm256_setr_ps(m[4], m[4], m[5], m[5], m[6], m[6], m[7], m[7]);
        for t in 0..N {
            let xs = xs_[t].xs16.as_ptr().add(16 * sb);
            let mx = _mm256_fmadd_ps(m_lo, _mm256_loadu_ps(xs), _mm256_mul_ps(m_hi, _mm256_loadu_ps(xs.add(8))));
            acc_min[t] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), mx, acc_min[t]);
        }
        for c in 0..4 {
            // SAFETY: 32 bytes at 16 + 32c < 144; activations checked above.
            let q = _mm256_loadu_si256(b.as_ptr().add(16 + 32 * c) as *const __m256i);
            let halves = [_mm256_and_si256(q, low), _mm256_and_si256(_mm256_srli_epi16(q, 4), low)];
            for (h, qw) in halves.into_iter().enumerate() {
                let j = 2 * c + h;
                let sc = if j < 4 { s[j] & 63 } else { (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4) };
                let sc = _mm256_set1_epi16(sc as i16);
                let i = sb * 8 + j;
                for t in 0..N {
                    let x = xs_[t];
                    let qx = _mm256_loadu_si256(x.qs.as_ptr().add(i * QK) as *const __m256i);
                    let isum = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), sc);
                    let dx = *x.d.get_unchecked(i);
                    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(isum), acc[t]);
                }
            }
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum(acc[t]) - hsum(acc_min[t]);
    }
    out
}

/// Q4_K × Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_k(w: &[u8], x: &Q8Row) -> f32 {
    q4_k::<1>(w, [x])[0]
}

/// Four tokens; each bit-identical to [`dot_q4_k`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_kx4(w: &[u8], x: [&Q8Row; 4]) -> [f32; 4] {
    q4_k::<4>(w, x)
}

/// Q6_K × Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6_k(w: &[u8], x: &Q8Row) -> f32 {
    const BB: usize = 210;
    let nsb = w.len() / BB;
    assert!(w.len() == nsb * BB && x.qs.len() == nsb * 256 && x.d.len() == nsb * 8 && x.xs16.len() == nsb * 16);
    let (low, two) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
    let (mut acc, mut acc_off) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (sb, b) in w.chunks_exact(BB).enumerate() {
        let p = b.as_ptr();
        _mm_prefetch(p.wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        let d = f16_at(b, 208);
        let scales = &b[192..208];
        // The offset: 32 d sum_g sc[g] * xs16[g], row-independent sums of x.
        let sc16 = _mm_loadu_si128(p.add(192) as *const __m128i);
        let sc_lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc16));
        let sc_hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc16, 8)));
        let xs = x.xs16.as_ptr().add(16 * sb);
        let sx = _mm256_fmadd_ps(sc_lo, _mm256_loadu_ps(xs), _mm256_mul_ps(sc_hi, _mm256_loadu_ps(xs.add(8))));
        acc_off = _mm256_fmadd_ps(_mm256_set1_ps(32.0 * d), sx, acc_off);
        for half in 0..2 {
            // SAFETY: ql[64 half .. + 64] and qh[32 half .. + 32] are inside the block.
            let ql0 = _mm256_loadu_si256(p.add(64 * half) as *const __m256i);
            let ql1 = _mm256_loadu_si256(p.add(64 * half + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(p.add(128 + 32 * half) as *const __m256i);
            let hi = |k: i32| {
                let v = match k {
                    0 => qh,
                    1 => _mm256_srli_epi16(qh, 2),
                    2 => _mm256_srli_epi16(qh, 4),
                    _ => _mm256_srli_epi16(qh, 6),
                };
                _mm256_slli_epi16(_mm256_and_si256(v, two), 4)
            };
            let blocks = [
                _mm256_or_si256(_mm256_and_si256(ql0, low), hi(0)),
                _mm256_or_si256(_mm256_and_si256(ql1, low), hi(1)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), hi(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), hi(3)),
            ];
            for (k, qw) in blocks.into_iter().enumerate() {
                let j = 4 * half + k;
                let (s0, s1) = (scales[2 * j] as i8 as i16, scales[2 * j + 1] as i8 as i16);
                let sc = _mm256_setr_m128i(_mm_set1_epi16(s0), _mm_set1_epi16(s1));
                let i = sb * 8 + j;
                let qx = _mm256_loadu_si256(x.qs.as_ptr().add(i * QK) as *const __m256i);
                let isum = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), sc);
                let dx = *x.d.get_unchecked(i);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(isum), acc);
            }
        }
    }
    hsum(acc) - hsum(acc_off)
}
