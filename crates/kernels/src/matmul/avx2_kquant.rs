//! AVX2 + FMA + F16C dot kernels for the k-quants (Q2_K ... Q6_K) against
//! Q8_K activations (one f32 scale per 256-element
//! super-block, `quantize_row_q8_k`), after ggml's `ggml_vec_dot_q4_K_q8_K`
//! and `ggml_vec_dot_q6_K_q8_K` (`arch/x86/quants.c`); Q5_K is Q4_K with
//! each element's fifth bit or-ed in from `qh`. Q2_K and Q3_K follow Q6_K
//! (scales per 16 elements): Q2_K's minimums are the exact integer
//! `Σ_g m[g] · bsum_x[g]`, Q3_K's `q = low2 + 4 · hbit - 4` is multiplied as
//! the unsigned `low2 + 4 · hbit` and its `-4` taken back as Q6_K's `-32`.
//!
//! Per super-block and token, the whole super-block meets in integers: 8 i32
//! lanes of `Σ sc[g] · q · q_x` (`_mm256_maddubs_epi16` of unsigned quants
//! with signed activations, then `_mm256_madd_epi16` with the group scales
//! as i16). Q6_K's `-32` offset is taken back in the same integers
//! (`32 Σ_g sc[g] · bsum_x[g]`), so the super-block costs one float
//! operation, `acc = fma(d · d_x, float(sumi), acc)` per lane; Q4_K's
//! minimums are the exact integers `m[j] · qsum32_x[j]` in 8 f32 lanes and
//! one more `fma(dmin · d_x, ·)` into a second accumulator subtracted at
//! the end. The
//! float rounding thus differs from the reference (bounds in
//! `tests/matmul.rs`). Weights are prefetched [`PREFETCH_BYTES`] ahead.
//!
//! Q2_K / Q3_K here (they were on the scalar reference): a TinyLlama-shaped
//! synthetic model at 2 threads, Q2_K pp64 3.8 -> 40.9 tok/s, tg16 3.5 -> 35.1;
//! Q3_K pp64 3.7 -> 30.2, tg16 3.4 -> 26.8.

use super::{Kernel, QDot, QDot4, PREFETCH_BYTES};
use crate::dtype::DType;
use crate::kquant::QK_K;
use crate::quant::{Q8Row, QK};
use std::arch::x86_64::*;

pub(super) fn kernel(dtype: DType) -> Kernel {
    match dtype {
        DType::Q4_K => Kernel::Quant(dot_q4_k as QDot, Some(dot_q4_kx4 as QDot4)),
        DType::Q5_K => Kernel::Quant(dot_q5_k as QDot, Some(dot_q5_kx4 as QDot4)),
        DType::Q6_K => Kernel::Quant(dot_q6_k as QDot, None),
        DType::Q2_K => Kernel::Quant(dot_q2_k as QDot, None),
        DType::Q3_K => Kernel::Quant(dot_q3_k as QDot, None),
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

/// Q4_K (`Q5 = false`) or Q5_K × Q8_K activations for `N` tokens (weights
/// unpacked once; the same operations for every token, so each is its
/// one-token result).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q45_k<const Q5: bool, const N: usize>(w: &[u8], xs_: [&Q8Row; N]) -> [f32; N] {
    // d, dmin, scales[12], (Q5_K: qh[32]), qs[128]
    let (bb, qs_at) = if Q5 { (176, 48) } else { (144, 16) };
    let nsb = w.len() / bb;
    assert!(w.len() == nsb * bb);
    for x in xs_ {
        assert!(x.qs.len() == nsb * QK_K && x.d.len() == nsb && x.qsum32.len() == nsb * 8);
    }
    let low = _mm256_set1_epi8(0x0f);
    let (mut acc, mut acc_min) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let one = _mm256_set1_epi8(1);
    for (sb, b) in w.chunks_exact(bb).enumerate() {
        _mm_prefetch(b.as_ptr().wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        // SAFETY: qh is bytes 16..48 of a Q5_K block.
        let qh = if Q5 { _mm256_loadu_si256(b.as_ptr().add(16) as *const __m256i) } else { _mm256_setzero_si256() };
        let s = &b[4..16];
        // The minimums: m[j] · qsum32_x[j], exact integers in f32 lanes.
        let mut m = [0f32; 8];
        for (j, m) in m.iter_mut().enumerate() {
            *m = if j < 4 { s[j + 4] & 63 } else { (s[j + 4] >> 4) | ((s[j] >> 6) << 4) } as f32;
        }
        let m = _mm256_loadu_ps(m.as_ptr());
        let mut sumi = [_mm256_setzero_si256(); N];
        for c in 0..4 {
            // SAFETY: 32 bytes at qs_at + 32c are inside the block; activations checked above.
            let q = _mm256_loadu_si256(b.as_ptr().add(qs_at + 32 * c) as *const __m256i);
            let halves = [_mm256_and_si256(q, low), _mm256_and_si256(_mm256_srli_epi16(q, 4), low)];
            for (h, mut qw) in halves.into_iter().enumerate() {
                let j = 2 * c + h;
                if Q5 {
                    // Bit j of qh[l] is bit 4 of element l of sub-block j.
                    let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j as i32)), one);
                    qw = _mm256_or_si256(qw, _mm256_slli_epi16(bit, 4));
                }
                let sc = if j < 4 { s[j] & 63 } else { (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4) };
                let sc = _mm256_set1_epi16(sc as i16);
                for t in 0..N {
                    let qx = _mm256_loadu_si256(xs_[t].qs.as_ptr().add(sb * QK_K + j * QK) as *const __m256i);
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), sc));
                }
            }
        }
        for t in 0..N {
            let x = xs_[t];
            let dx = *x.d.get_unchecked(sb);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            let mq = _mm256_mul_ps(m, _mm256_loadu_ps(x.qsum32.as_ptr().add(8 * sb)));
            acc_min[t] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * dx), mq, acc_min[t]);
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum(acc[t]) - hsum(acc_min[t]);
    }
    out
}

/// Q4_K × Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_k(w: &[u8], x: &Q8Row) -> f32 {
    q45_k::<false, 1>(w, [x])[0]
}

/// Four tokens; each bit-identical to [`dot_q4_k`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_kx4(w: &[u8], x: [&Q8Row; 4]) -> [f32; 4] {
    q45_k::<false, 4>(w, x)
}

/// Q5_K × Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_k(w: &[u8], x: &Q8Row) -> f32 {
    q45_k::<true, 1>(w, [x])[0]
}

/// Four tokens; each bit-identical to [`dot_q5_k`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_kx4(w: &[u8], x: [&Q8Row; 4]) -> [f32; 4] {
    q45_k::<true, 4>(w, x)
}

/// Q6_K × Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6_k(w: &[u8], x: &Q8Row) -> f32 {
    const BB: usize = 210;
    let nsb = w.len() / BB;
    assert!(w.len() == nsb * BB && x.qs.len() == nsb * QK_K && x.d.len() == nsb && x.gsum.len() == nsb * 16);
    let (low, two) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
    let mut acc = _mm256_setzero_ps();
    for (sb, b) in w.chunks_exact(BB).enumerate() {
        let p = b.as_ptr();
        _mm_prefetch(p.wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        let d = f16_at(b, 208);
        let scales = &b[192..208];
        // The offset (u = q + 32): 32 Σ_g sc[g] bsum_x[g], taken back in lane 0.
        let g = &x.gsum[16 * sb..16 * sb + 16];
        let off: i32 = (0..16).map(|k| scales[k] as i8 as i32 * g[k]).sum::<i32>() * 32;
        let mut sumi = _mm256_setr_epi32(-off, 0, 0, 0, 0, 0, 0, 0);
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
                sumi = _mm256_add_epi32(sumi, scaled_dot(qw, qx32(x, sb, j), s0, s1));
            }
        }
        let dx = *x.d.get_unchecked(sb);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// The 32 signed activations of sub-block `c` of super-block `sb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn qx32(x: &Q8Row, sb: usize, c: usize) -> __m256i {
    // SAFETY: the caller checked `x.qs` holds every super-block.
    unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(sb * QK_K + c * QK) as *const __m256i) }
}

/// `Σ u·x` of one 32-element sub-block with its two group scales (`s0` for
/// elements 0..16, `s1` for 16..32), in 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scaled_dot(u: __m256i, qx: __m256i, s0: i16, s1: i16) -> __m256i {
    let sc = _mm256_setr_m128i(_mm_set1_epi16(s0), _mm_set1_epi16(s1));
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, qx), sc)
}

/// Q2_K × Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q2_k(w: &[u8], x: &Q8Row) -> f32 {
    // scales[16] (scale | min << 4), qs[64], d, dmin
    const BB: usize = 84;
    let nsb = w.len() / BB;
    assert!(w.len() == nsb * BB && x.qs.len() == nsb * QK_K && x.d.len() == nsb && x.gsum.len() == nsb * 16);
    let three = _mm256_set1_epi8(3);
    let (mut acc, mut acc_min) = (_mm256_setzero_ps(), 0f32);
    for (sb, b) in w.chunks_exact(BB).enumerate() {
        let p = b.as_ptr();
        _mm_prefetch(p.wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        _mm_prefetch(p.wrapping_add(PREFETCH_BYTES + 64) as *const i8, _MM_HINT_T0);
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        let scales = &b[..16];
        let g = &x.gsum[16 * sb..16 * sb + 16];
        let summ: i32 = scales.iter().zip(g).map(|(&s, &g)| (s >> 4) as i32 * g).sum();
        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: qs[32 half .. + 32] is inside the block.
            let q = unsafe { _mm256_loadu_si256(p.add(16 + 32 * half) as *const __m256i) };
            for j in 0..4 {
                let u = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), three);
                let c = 4 * half + j;
                let (s0, s1) = ((scales[2 * c] & 0x0f) as i16, (scales[2 * c + 1] & 0x0f) as i16);
                sumi = _mm256_add_epi32(sumi, scaled_dot(u, unsafe { qx32(x, sb, c) }, s0, s1));
            }
        }
        let dx = *x.d.get_unchecked(sb);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi), acc);
        acc_min = (dmin * dx).mul_add(summ as f32, acc_min);
    }
    hsum(acc) - acc_min
}

/// Q3_K × Q8_K activations.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q3_k(w: &[u8], x: &Q8Row) -> f32 {
    // hmask[32], qs[64], scales[12] (6-bit, offset 32), d
    const BB: usize = 110;
    let nsb = w.len() / BB;
    assert!(w.len() == nsb * BB && x.qs.len() == nsb * QK_K && x.d.len() == nsb && x.gsum.len() == nsb * 16);
    let (three, one) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
    let mut acc = _mm256_setzero_ps();
    for (sb, b) in w.chunks_exact(BB).enumerate() {
        let p = b.as_ptr();
        _mm_prefetch(p.wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        _mm_prefetch(p.wrapping_add(PREFETCH_BYTES + 64) as *const i8, _MM_HINT_T0);
        let d = f16_at(b, 108);
        let s = &b[96..108];
        let sc: [i16; 16] = std::array::from_fn(|g| {
            let lo = (s[g % 8] >> (4 * (g / 8))) & 0x0f;
            let hi = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
            (lo | (hi << 4)) as i16 - 32
        });
        // The offset (u = q + 4): 4 Σ_g sc[g] bsum_x[g], taken back in lane 0.
        let g = &x.gsum[16 * sb..16 * sb + 16];
        let off: i32 = sc.iter().zip(g).map(|(&s, &g)| s as i32 * g).sum::<i32>() * 4;
        let mut sumi = _mm256_setr_epi32(-off, 0, 0, 0, 0, 0, 0, 0);
        // SAFETY: hmask is bytes 0..32 of the block.
        let hm = unsafe { _mm256_loadu_si256(p as *const __m256i) };
        for half in 0..2 {
            // SAFETY: qs[32 half .. + 32] is inside the block.
            let q = unsafe { _mm256_loadu_si256(p.add(32 + 32 * half) as *const __m256i) };
            for j in 0..4 {
                let low = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), three);
                // Bit 4 half + j of hmask[l] is element l's third bit (a shift by at most
                // 7 within 16-bit lanes, then the mask keeps each byte's own bit).
                let bit = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * half + j) as i32)), one);
                let u = _mm256_or_si256(low, _mm256_slli_epi16(bit, 2));
                let c = 4 * half + j;
                sumi = _mm256_add_epi32(sumi, scaled_dot(u, unsafe { qx32(x, sb, c) }, sc[2 * c], sc[2 * c + 1]));
            }
        }
        let dx = *x.d.get_unchecked(sb);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}
