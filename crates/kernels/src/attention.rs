//! The inner loops of attention over a chunk of cached keys and values:
//! scores `q · k`, the softmax's `exp`, and the weighted sum of values.
//!
//! The model's attention (`memwall_model::attention`) walks a sequence's
//! K/V in chunks of up to [`CHUNK`] rows (one paged-KV block), widens each
//! chunk to f32 and calls these three kernels with a block of up to 16
//! queries of one head. Every kernel exists as portable scalar code (the
//! reference) and as AVX2+FMA and AVX-512 code that computes **the same
//! float operations in the same order** for each output, so results are
//! bit-identical across variants, across query-block sizes (a decode step's
//! single query runs exactly what it would run inside a prefill block) and
//! across batches:
//!
//! - a score is `(Σ_d q[d]·k[d]) · scale` summed in 16 partial chains,
//!   chain `l` a fused multiply-add over `d ≡ l (mod 16)` in increasing `d`
//!   (elements past `head_dim` in the last group count as `0·0`), the 16
//!   partials reduced by halving (`l + 8`, then `+ 4`, `+ 2`, `+ 1`): the
//!   SIMD code keeps one key's chains in the lanes of a register and reduces
//!   16 keys' registers at once with a shuffle network;
//! - `exp` is one polynomial (Cephes' `expf` constants, range reduction by
//!   `2^n`, Horner with fused multiply-adds), the same in every variant, and
//!   exactly 0 below `-87.33`, so masked scores (`-inf`) weigh nothing;
//! - the weighted sum is `acc[d] = fma(p_j, v_j[d], acc[d])` over keys `j`
//!   in increasing order.
//!
//! Causality inside a chunk: key `j` is visible to query `i` iff
//! `j <= i - base`, where `base` is the key's position minus the first
//! query's position (`base = key_pos(0) - query_pos(0)`). Invisible scores
//! are written as `-inf` and invisible values are never added.

use crate::exp::exp;
use crate::matmul::Isa;
use half::f16;

/// Keys (or values) per kernel call: one paged-KV block.
pub const CHUNK: usize = 16;

/// Keys of a chunk that query `i` may see: `j < visible(i, base, n)`.
#[inline]
pub fn visible(i: usize, base: isize, n: usize) -> usize {
    (i as isize - base + 1).clamp(0, n as isize) as usize
}

/// Scores of `nq` queries against `n <= CHUNK` keys.
///
/// `q`: `[nq, hd]`; `keys`: `[n, hd]`; `out`: row `i` at `out[i * stride..]`,
/// `n` entries: `(q_i · k_j) * scale` where visible, `-inf` elsewhere.
#[allow(clippy::too_many_arguments)]
pub fn scores(hd: usize, q: &[f32], keys: &[f32], n: usize, base: isize, scale: f32, out: &mut [f32], stride: usize) {
    scores_with(Isa::detect(), hd, q, keys, n, base, scale, out, stride)
}

/// [`scores`] on a given variant (`isa` must be available).
#[allow(clippy::too_many_arguments)]
pub fn scores_with(
    isa: Isa,
    hd: usize,
    q: &[f32],
    keys: &[f32],
    n: usize,
    base: isize,
    scale: f32,
    out: &mut [f32],
    stride: usize,
) {
    assert!(isa.available());
    let nq = q.len() / hd.max(1);
    assert!(hd > 0 && q.len() == nq * hd && n <= CHUNK && keys.len() >= n * hd);
    assert!(nq == 0 || out.len() >= (nq - 1) * stride + n);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512 F (detected); lengths checked above.
        Isa::Avx512 => unsafe { x86::scores_avx512(hd, q, keys, n, base, scale, out, stride) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (detected); lengths checked above.
        Isa::Avx2 => unsafe { x86::scores_avx2(hd, q, keys, n, base, scale, out, stride) },
        _ => scores_reference(hd, q, keys, n, base, scale, out, stride),
    }
}

/// `x[j] = exp(x[j] - m)` for every `j`.
pub fn exp_sub(x: &mut [f32], m: f32) {
    exp_sub_with(Isa::detect(), x, m)
}

/// [`exp_sub`] on a given variant (`isa` must be available).
pub fn exp_sub_with(isa: Isa, x: &mut [f32], m: f32) {
    assert!(isa.available());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512 F (detected).
        Isa::Avx512 => unsafe { x86::exp_sub_avx512(x, m) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (detected).
        Isa::Avx2 => unsafe { x86::exp_sub_avx2(x, m) },
        _ => x.iter_mut().for_each(|v| *v = exp(*v - m)),
    }
}

/// Adds the visible keys' weighted values to each query's accumulator.
///
/// `p`: row `i` at `p[i * stride..]`, the `n <= CHUNK` weights of query `i`;
/// `vals`: `[n, hd]`; `acc`: `[nq, hd]`, `acc_i[d] = fma(p_ij, v_j[d], acc_i[d])`
/// for the visible `j` in increasing order.
pub fn weighted_sum(hd: usize, p: &[f32], stride: usize, vals: &[f32], n: usize, base: isize, acc: &mut [f32]) {
    weighted_sum_with(Isa::detect(), hd, p, stride, vals, n, base, acc)
}

/// [`weighted_sum`] on a given variant (`isa` must be available).
#[allow(clippy::too_many_arguments)]
pub fn weighted_sum_with(
    isa: Isa,
    hd: usize,
    p: &[f32],
    stride: usize,
    vals: &[f32],
    n: usize,
    base: isize,
    acc: &mut [f32],
) {
    assert!(isa.available());
    let nq = acc.len() / hd.max(1);
    assert!(hd > 0 && acc.len() == nq * hd && n <= CHUNK && vals.len() >= n * hd);
    assert!(nq == 0 || p.len() >= (nq - 1) * stride + n);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512 F (detected); lengths checked above.
        Isa::Avx512 => unsafe { x86::weighted_sum_avx512(hd, p, stride, vals, n, base, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (detected); lengths checked above.
        Isa::Avx2 => unsafe { x86::weighted_sum_avx2(hd, p, stride, vals, n, base, acc) },
        _ => weighted_sum_reference(hd, p, stride, vals, n, base, acc),
    }
}

/// Rows of cached f16 keys or values widened for the kernels above: row `r`
/// of `out` (`[rows, width]`) is `x[at + r * stride..][..width]` as f32
/// (exact; F16C eight lanes at a time where the CPU has it). One call per
/// chunk: per-row calls cost more than the conversion in decode.
pub fn widen_f16(x: &[f16], at: usize, stride: usize, width: usize, out: &mut [f32]) {
    let rows = out.len() / width.max(1);
    assert!(out.len() == rows * width && (rows == 0 || at + (rows - 1) * stride + width <= x.len()));
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() != Isa::Reference {
        // SAFETY: AVX2 implies F16C here (`Isa::Avx2` requires both); bounds checked above.
        return unsafe { x86::widen_f16(x, at, stride, width, out) };
    }
    for (r, o) in out.chunks_exact_mut(width).enumerate() {
        for (o, v) in o.iter_mut().zip(&x[at + r * stride..]) {
            *o = v.to_f32();
        }
    }
}

/// The scalar reference of [`scores`].
#[allow(clippy::too_many_arguments)]
pub fn scores_reference(
    hd: usize,
    q: &[f32],
    keys: &[f32],
    n: usize,
    base: isize,
    scale: f32,
    out: &mut [f32],
    stride: usize,
) {
    for (i, q) in q.chunks_exact(hd).enumerate() {
        let row = &mut out[i * stride..i * stride + n];
        let vis = visible(i, base, n);
        for (j, s) in row.iter_mut().enumerate() {
            *s = if j < vis { dot16(q, &keys[j * hd..(j + 1) * hd]) * scale } else { f32::NEG_INFINITY };
        }
    }
}

/// `q · k` in the module's order: 16 fused chains, halving reduction.
pub fn dot16(q: &[f32], k: &[f32]) -> f32 {
    let mut p = [0f32; 16];
    for g in (0..q.len()).step_by(16) {
        for (l, p) in p.iter_mut().enumerate() {
            let (a, b) = (q.get(g + l).copied().unwrap_or(0.0), k.get(g + l).copied().unwrap_or(0.0));
            *p = a.mul_add(b, *p);
        }
    }
    for half in [8, 4, 2, 1] {
        for l in 0..half {
            p[l] += p[l + half];
        }
    }
    p[0]
}

/// The scalar reference of [`weighted_sum`].
pub fn weighted_sum_reference(
    hd: usize,
    p: &[f32],
    stride: usize,
    vals: &[f32],
    n: usize,
    base: isize,
    acc: &mut [f32],
) {
    for (i, acc) in acc.chunks_exact_mut(hd).enumerate() {
        for j in 0..visible(i, base, n) {
            let w = p[i * stride + j];
            for (a, &v) in acc.iter_mut().zip(&vals[j * hd..(j + 1) * hd]) {
                *a = w.mul_add(v, *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::exp::x86::{exp16, exp8};
    use std::arch::x86_64::*;

    /// Lane mask of the `hd` elements of group `g` (16 per group).
    #[inline]
    fn group_mask(hd: usize, g: usize) -> u16 {
        let left = hd - 16 * g;
        if left >= 16 {
            u16::MAX
        } else {
            (1u16 << left) - 1
        }
    }

    /// Reduces 16 registers of 16 partial sums each: lane `j` of the result
    /// is `a[j]`'s halving-tree sum (see the module docs).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce16(a: &[__m512; 16]) -> __m512 {
        // Level 1 (l + 8): b[i] = [a[2i] lanes l + (l + 8), a[2i + 1] the same].
        let b: [__m512; 8] = std::array::from_fn(|i| {
            let (x, y) = (a[2 * i], a[2 * i + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(x, y), _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y))
        });
        // Level 2 (l + 4): c[i] holds keys 4i .. 4i + 4, one per 128-bit block.
        let c: [__m512; 4] = std::array::from_fn(|i| {
            let (x, y) = (b[2 * i], b[2 * i + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(x, y), _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y))
        });
        // Level 3 (l + 2): block k of e[i] = [key k' x2, key k' + 4 x2] of c[2i], c[2i + 1].
        let e: [__m512; 2] = std::array::from_fn(|i| {
            let (x, y) = (c[2 * i], c[2 * i + 1]);
            _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(x, y), _mm512_shuffle_ps::<0b11_10_11_10>(x, y))
        });
        // Level 4 (l + 1): lane 4k + r holds key k + 4r.
        let f = _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(e[0], e[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(e[0], e[1]),
        );
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_ps(order, f)
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores_avx512(
        hd: usize,
        q: &[f32],
        keys: &[f32],
        n: usize,
        base: isize,
        scale: f32,
        out: &mut [f32],
        stride: usize,
    ) {
        let groups = hd.div_ceil(16);
        let scale = _mm512_set1_ps(scale);
        let row_mask = ((1u32 << n) - 1) as u16;
        for (i, q) in q.chunks_exact(hd).enumerate() {
            let vis = visible(i, base, n);
            let mut acc = [_mm512_setzero_ps(); 16];
            for g in 0..groups {
                let m = group_mask(hd, g);
                // SAFETY: masked lanes stay inside row `q` / key row `j` (`16 g + l < hd`).
                let qg = unsafe { _mm512_maskz_loadu_ps(m, q.as_ptr().add(16 * g)) };
                for (j, acc) in acc.iter_mut().enumerate().take(vis) {
                    let kg = unsafe { _mm512_maskz_loadu_ps(m, keys.as_ptr().add(j * hd + 16 * g)) };
                    *acc = _mm512_fmadd_ps(qg, kg, *acc);
                }
            }
            let s = _mm512_mul_ps(reduce16(&acc), scale);
            let visible_lanes = ((1u32 << vis) - 1) as u16;
            let s = _mm512_mask_blend_ps(visible_lanes, _mm512_set1_ps(f32::NEG_INFINITY), s);
            // SAFETY: lanes 0..n of row i are inside `out` (checked by the caller).
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(i * stride), row_mask, s) };
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exp_sub_avx512(x: &mut [f32], m: f32) {
        let mv = _mm512_set1_ps(m);
        for c in x.chunks_mut(16) {
            let mask = ((1u32 << c.len()) - 1) as u16;
            // SAFETY: the masked lanes are the chunk's `c.len()` elements.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, c.as_ptr());
                _mm512_mask_storeu_ps(c.as_mut_ptr(), mask, exp16(_mm512_sub_ps(v, mv)));
            }
        }
    }

    /// Blocks of 4 queries × 4 groups of 16 elements keep 16 accumulators in
    /// registers, so each value row is loaded once for 4 queries and the
    /// 16 fused multiply-add chains run side by side (one query's 4 chains
    /// alone waited on the FMA latency: pp512 spent 5.5% of its time here).
    /// Each element still takes its fused multiply-adds in key order.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum_avx512(
        hd: usize,
        p: &[f32],
        stride: usize,
        vals: &[f32],
        n: usize,
        base: isize,
        acc: &mut [f32],
    ) {
        const QB: usize = 4;
        const GB: usize = 4;
        let nq = acc.len() / hd;
        let groups = hd.div_ceil(16);
        for i0 in (0..nq).step_by(QB) {
            let qn = QB.min(nq - i0);
            let vis: [usize; QB] = std::array::from_fn(|k| if k < qn { visible(i0 + k, base, n) } else { 0 });
            let keys = vis[0].max(vis[qn - 1]);
            for g0 in (0..groups).step_by(GB) {
                // Mask 0 for groups past the row: they load nothing and are never stored.
                let m: [u16; GB] = std::array::from_fn(|g| if g0 + g < groups { group_mask(hd, g0 + g) } else { 0 });
                let at = |k: usize, g: usize| (i0 + k) * hd + 16 * (g0 + g);
                let mut a = [[_mm512_setzero_ps(); GB]; QB];
                for (k, ak) in a.iter_mut().enumerate().take(qn) {
                    for (g, akg) in ak.iter_mut().enumerate() {
                        // SAFETY: masked lanes stay inside row i0 + k of `acc`.
                        *akg = unsafe { _mm512_maskz_loadu_ps(m[g], acc.as_ptr().wrapping_add(at(k, g))) };
                    }
                }
                for j in 0..keys {
                    // SAFETY: masked lanes stay inside value row j (j < n).
                    let v: [__m512; GB] = std::array::from_fn(|g| unsafe {
                        _mm512_maskz_loadu_ps(m[g], vals.as_ptr().wrapping_add(j * hd + 16 * (g0 + g)))
                    });
                    for (k, ak) in a.iter_mut().enumerate().take(qn) {
                        if j < vis[k] {
                            // SAFETY: (i0 + k, j) is a visible weight of row i0 + k of `p`.
                            let w = _mm512_set1_ps(unsafe { *p.get_unchecked((i0 + k) * stride + j) });
                            for (akg, vg) in ak.iter_mut().zip(&v) {
                                *akg = _mm512_fmadd_ps(w, *vg, *akg);
                            }
                        }
                    }
                }
                for (k, ak) in a.iter().enumerate().take(qn) {
                    for (g, akg) in ak.iter().enumerate() {
                        // SAFETY: as the loads above.
                        unsafe { _mm512_mask_storeu_ps(acc.as_mut_ptr().wrapping_add(at(k, g)), m[g], *akg) };
                    }
                }
            }
        }
    }

    /// `_mm256_maskload_ps` mask of the `left` (< 8 possible) elements from here.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mask8(left: usize) -> __m256i {
        let k = left.min(8) as i32;
        _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// Loads elements `at .. at + 8` of `x` that are below `len` (zeros past it).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(x: *const f32, at: usize, len: usize) -> __m256 {
        if at + 8 <= len {
            // SAFETY: the caller's row holds `len` elements.
            unsafe { _mm256_loadu_ps(x.add(at)) }
        } else if at < len {
            // SAFETY: only the lanes below `len - at` are read.
            unsafe { _mm256_maskload_ps(x.add(at), mask8(len - at)) }
        } else {
            _mm256_setzero_ps()
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn widen_f16(x: &[f16], at: usize, stride: usize, width: usize, out: &mut [f32]) {
        for (r, o) in out.chunks_exact_mut(width).enumerate() {
            let row = &x[at + r * stride..][..width];
            let (src, dst) = (row.as_ptr() as *const u16, o.as_mut_ptr());
            let mut i = 0;
            while i + 8 <= width {
                // SAFETY: i + 8 <= width elements of `row` and `o`.
                unsafe { _mm256_storeu_ps(dst.add(i), _mm256_cvtph_ps(_mm_loadu_si128(src.add(i) as *const __m128i))) };
                i += 8;
            }
            for (o, v) in o[i..].iter_mut().zip(&row[i..]) {
                *o = v.to_f32();
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores_avx2(
        hd: usize,
        q: &[f32],
        keys: &[f32],
        n: usize,
        base: isize,
        scale: f32,
        out: &mut [f32],
        stride: usize,
    ) {
        for (i, q) in q.chunks_exact(hd).enumerate() {
            let vis = visible(i, base, n);
            let row = &mut out[i * stride..i * stride + n];
            for (j, s) in row.iter_mut().enumerate() {
                if j >= vis {
                    *s = f32::NEG_INFINITY;
                    continue;
                }
                let k = keys[j * hd..(j + 1) * hd].as_ptr();
                // Lanes 0-7 and 8-15 of the 16 chains.
                let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for g in (0..hd).step_by(16) {
                    // SAFETY: load8 reads only elements below hd of q and k.
                    unsafe {
                        lo = _mm256_fmadd_ps(load8(q.as_ptr(), g, hd), load8(k, g, hd), lo);
                        hi = _mm256_fmadd_ps(load8(q.as_ptr(), g + 8, hd), load8(k, g + 8, hd), hi);
                    }
                }
                let w = _mm256_add_ps(lo, hi);
                let x = _mm_add_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps::<1>(w));
                let y = _mm_add_ps(x, _mm_movehl_ps(x, x));
                let z = _mm_add_ss(y, _mm_shuffle_ps::<0b01>(y, y));
                *s = _mm_cvtss_f32(z) * scale;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_sub_avx2(x: &mut [f32], m: f32) {
        let mv = _mm256_set1_ps(m);
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: the chunk has 8 elements.
            unsafe {
                let v = _mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv);
                _mm256_storeu_ps(c.as_mut_ptr(), exp8(v));
            }
        }
        chunks.into_remainder().iter_mut().for_each(|v| *v = exp(*v - m));
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum_avx2(
        hd: usize,
        p: &[f32],
        stride: usize,
        vals: &[f32],
        n: usize,
        base: isize,
        acc: &mut [f32],
    ) {
        for (i, acc) in acc.chunks_exact_mut(hd).enumerate() {
            let vis = visible(i, base, n);
            for g in (0..hd).step_by(8) {
                let m = mask8(hd - g);
                // SAFETY: masked lanes stay inside row i of `acc` and value row j.
                unsafe {
                    let mut a = _mm256_maskload_ps(acc.as_ptr().add(g), m);
                    for j in 0..vis {
                        let v = _mm256_maskload_ps(vals.as_ptr().add(j * hd + g), m);
                        a = _mm256_fmadd_ps(_mm256_set1_ps(*p.get_unchecked(i * stride + j)), v, a);
                    }
                    _mm256_maskstore_ps(acc.as_mut_ptr().add(g), m, a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random f32 in [-2, 2).
    fn rnd(state: &mut u64) -> f32 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    }

    #[test]
    fn exp_sub_is_the_scalar_exp_on_every_variant() {
        let xs: Vec<f32> =
            (0..1000).map(|i| -90.0 + i as f32 * 0.1807).chain([f32::NEG_INFINITY, -87.33655, 100.0]).collect();
        let want: Vec<f32> = xs.iter().map(|&x| exp(x)).collect();
        for isa in isas() {
            let mut got = xs.clone();
            exp_sub_with(isa, &mut got, 0.0);
            assert_eq!(bits(&got), bits(&want), "{isa:?}");
        }
    }

    #[test]
    fn every_variant_is_bit_identical_to_the_reference() {
        let mut st = 7u64;
        for hd in [64, 80, 128, 7, 16, 33] {
            for nq in [1, 3, 16] {
                for n in [1, 5, 16] {
                    for base in [-20isize, -3, 0, 2, 15] {
                        let q: Vec<f32> = (0..nq * hd).map(|_| rnd(&mut st)).collect();
                        let k: Vec<f32> = (0..n * hd).map(|_| rnd(&mut st)).collect();
                        let stride = n + 3;
                        let mut want = vec![7f32; nq * stride];
                        scores_reference(hd, &q, &k, n, base, 0.125, &mut want, stride);
                        for isa in isas() {
                            let mut got = vec![7f32; nq * stride];
                            scores_with(isa, hd, &q, &k, n, base, 0.125, &mut got, stride);
                            assert_eq!(bits(&got), bits(&want), "{isa:?} scores hd {hd} nq {nq} n {n} base {base}");
                        }
                        for i in 0..nq {
                            let seen = visible(i, base, n);
                            for j in 0..n {
                                let s = want[i * stride + j];
                                if j < seen {
                                    let exact: f64 =
                                        (0..hd).map(|d| q[i * hd + d] as f64 * k[j * hd + d] as f64).sum::<f64>()
                                            * 0.125;
                                    assert!((s as f64 - exact).abs() < 1e-5 * hd as f64, "{s} vs {exact}");
                                } else {
                                    assert_eq!(s, f32::NEG_INFINITY);
                                }
                            }
                        }
                        let mut pr = want.clone();
                        pr.iter_mut().for_each(|v| *v = exp(*v - 0.5));
                        let v: Vec<f32> = (0..n * hd).map(|_| rnd(&mut st)).collect();
                        let acc0: Vec<f32> = (0..nq * hd).map(|_| rnd(&mut st)).collect();
                        let mut a = acc0.clone();
                        weighted_sum_reference(hd, &pr, stride, &v, n, base, &mut a);
                        for isa in isas() {
                            let mut pw = want.clone();
                            exp_sub_with(isa, &mut pw, 0.5);
                            assert_eq!(bits(&pw), bits(&pr), "{isa:?} exp");
                            let mut b = acc0.clone();
                            weighted_sum_with(isa, hd, &pr, stride, &v, n, base, &mut b);
                            assert_eq!(bits(&a), bits(&b), "{isa:?} weighted sum hd {hd} nq {nq} n {n} base {base}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn widened_f16_rows_are_exact() {
        let mut state = 7u64;
        let x: Vec<f16> = (0..200).map(|_| f16::from_f32(rnd(&mut state))).collect();
        for (at, stride, width, rows) in [(0, 16, 16, 4), (3, 20, 13, 5), (5, 64, 64, 2), (1, 9, 9, 0)] {
            let mut out = vec![0f32; rows * width];
            widen_f16(&x, at, stride, width, &mut out);
            for (r, row) in out.chunks_exact(width).enumerate() {
                for (e, &o) in row.iter().enumerate() {
                    assert_eq!(o, x[at + r * stride + e].to_f32(), "row {r} element {e}");
                }
            }
        }
    }

    #[test]
    fn a_query_gets_the_same_scores_alone_as_in_a_block() {
        let mut st = 11u64;
        let (hd, nq, n) = (64, 16, 16);
        let q: Vec<f32> = (0..nq * hd).map(|_| rnd(&mut st)).collect();
        let k: Vec<f32> = (0..n * hd).map(|_| rnd(&mut st)).collect();
        let mut block = vec![0f32; nq * n];
        scores(hd, &q, &k, n, 0, 0.125, &mut block, n);
        for i in 0..nq {
            let mut alone = vec![0f32; n];
            // Alone, query i is the block's first query: keys shift by -i.
            scores(hd, &q[i * hd..(i + 1) * hd], &k, n, -(i as isize), 0.125, &mut alone, n);
            assert_eq!(bits(&alone), bits(&block[i * n..(i + 1) * n]));
        }
    }

    fn isas() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|i| i.available())
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }
}
