//! AVX-512 (F, BW, VL) + VNNI dot kernels (x86-64) for Q4_0, Q4_1 and Q8_0
//! weights; the other types use the AVX2 kernels.
//!
//! Two weight blocks (64 elements) fill one 512-bit register: the block
//! quants are unpacked to unsigned bytes and multiplied with the signed
//! activation bytes by `_mm512_dpbusd_epi32` (VNNI: four `u8 × i8` products
//! summed into each i32 lane; lanes 0–7 hold block `i`, lanes 8–15 block
//! `i + 1`). Weights stored signed are offset to unsigned (Q4_0: `q + 8` is
//! the raw nibble; Q8_0: `q ^ 0x80 = q + 128`) and the offset is taken back
//! exactly in integers with a second `dpbusd` of the offset byte against the
//! activations. Each lane's exact integer is converted to f32 and
//! fused-multiply-added with its block's `d_w * d_x` into a 16-lane
//! accumulator; Q4_1 adds `m_w * s_x` per block into a separate 2-lane sum.
//! An odd last block runs the same code with the second block's activations
//! masked to zero. The final horizontal sum has a fixed order.
//!
//! As in the AVX2 kernels, the four-token variants unpack each weight pair
//! once and run the very same per-token float operations, so every result
//! is bit-identical to the one-token call (batch invariance). Weights are
//! prefetched [`PREFETCH_BYTES`] ahead.
//!
//! The scalar twins are `reference::dot_q4_0` / `dot_q4_1` / `dot_q8_0`.
//!
//! The AVX-512 intrinsics are stable since Rust 1.89, the workspace's
//! `rust-version`.

use super::{Kernel, QDot, QDot4, PREFETCH_BYTES};
use crate::dtype::DType;
use crate::quant::{Q8Row, QK};
use std::arch::x86_64::*;

pub(super) fn kernel(dtype: DType) -> Kernel {
    match dtype {
        DType::Q4_0 => Kernel::Quant(dot_q4_0 as QDot, Some(dot_q4_0x4 as QDot4)),
        DType::Q4_1 => Kernel::Quant(dot_q4_1 as QDot, Some(dot_q4_1x4 as QDot4)),
        DType::Q8_0 => Kernel::Quant(dot_q8_0 as QDot, Some(dot_q8_0x4 as QDot4)),
        _ => super::avx2::kernel(dtype),
    }
}

/// The weight formats of this file.
const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

const fn block_bytes(f: u8) -> usize {
    match f {
        Q4_0 => 18,
        Q4_1 => 20,
        _ => 34,
    }
}

/// Horizontal sum in a fixed order (halves, then quarters, then pairs).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum512(v: __m512) -> f32 {
    let h =
        _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))));
    let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// 16 packed nibbles at `p0` and at `p1` -> 64 bytes
/// `[lo(p0), hi(p0), lo(p1), hi(p1)]`: the elements of two blocks in order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn nibbles2(p0: *const u8, p1: *const u8) -> __m512i {
    let v = _mm256_inserti128_si256::<1>(
        _mm256_castsi128_si256(_mm_loadu_si128(p0 as *const __m128i)),
        _mm_loadu_si128(p1 as *const __m128i),
    );
    let v = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), _mm512_castsi256_si512(v));
    // Shift the second copy of each block (16-bit elements 8..16, 24..32).
    let v = _mm512_mask_srli_epi16::<4>(v, 0xff00_ff00, v);
    _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
}

/// Two f16 at `p0` and `p1` -> `[f(p0), f(p1), 0, 0]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn f16_pair(p0: *const u8, p1: *const u8) -> __m128 {
    let a = (p0 as *const u16).read_unaligned() as u32;
    let b = (p1 as *const u16).read_unaligned() as u32;
    _mm_cvtph_ps(_mm_cvtsi32_si128((a | (b << 16)) as i32))
}

/// Two f32 at `p` (or one and a zero when `!two`) -> `[p[0], p[1], 0, 0]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn f32_pair(p: *const f32, two: bool) -> __m128 {
    if two {
        _mm_castpd_ps(_mm_load_sd(p as *const f64))
    } else {
        _mm_load_ss(p)
    }
}

/// The loop over the blocks of one weight row for `N` tokens at once; see
/// the module docs.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_rows<const F: u8, const N: usize>(w: &[u8], xs: [&Q8Row; N]) -> [f32; N] {
    let bb = block_bytes(F);
    let nb = w.len() / bb;
    assert!(w.len() == nb * bb);
    for x in xs {
        assert!(x.qs.len() == nb * QK && x.d.len() == nb && (F != Q4_1 || x.s.len() == nb));
    }
    let wp = w.as_ptr();
    let zero = _mm512_setzero_si512();
    // Lanes 0..8 take element 0 of a 4-lane vector, lanes 8..16 element 1.
    let spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let mut acc = [_mm512_setzero_ps(); N];
    let mut summs = [_mm_setzero_ps(); N];
    // SAFETY (all reads below): blocks i and, when `two`, i + 1 are < nb,
    // and the lengths are checked above.
    let pair = |i: usize, two: bool, acc: &mut [__m512; N], summs: &mut [__m128; N]| unsafe {
        let b0 = wp.add(i * bb);
        let b1 = if two { b0.add(bb) } else { b0 };
        _mm_prefetch(b0.wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        let qw = match F {
            Q4_0 => nibbles2(b0.add(2), b1.add(2)),
            Q4_1 => nibbles2(b0.add(4), b1.add(4)),
            _ => {
                let lo = _mm512_castsi256_si512(_mm256_loadu_si256(b0.add(2) as *const __m256i));
                let v = _mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(b1.add(2) as *const __m256i));
                _mm512_xor_si512(v, _mm512_set1_epi8(0x80u8 as i8))
            }
        };
        let dw = f16_pair(b0, b1);
        let mw = if F == Q4_1 { f16_pair(b0.add(2), b1.add(2)) } else { _mm_setzero_ps() };
        let offset = _mm512_set1_epi8(if F == Q4_0 { 8 } else { 0x80u8 as i8 });
        let xmask: u64 = if two { u64::MAX } else { 0xffff_ffff };
        for t in 0..N {
            let x = xs[t];
            let qx = _mm512_maskz_loadu_epi8(xmask, x.qs.as_ptr().add(i * QK));
            let mut p = _mm512_dpbusd_epi32(zero, qw, qx);
            if F != Q4_1 {
                p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(zero, offset, qx));
            }
            let scale = _mm_mul_ps(dw, f32_pair(x.d.as_ptr().add(i), two));
            let scale = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(scale));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[t]);
            if F == Q4_1 {
                summs[t] = _mm_fmadd_ps(mw, f32_pair(x.s.as_ptr().add(i), two), summs[t]);
            }
        }
    };
    let mut i = 0;
    while i + 2 <= nb {
        pair(i, true, &mut acc, &mut summs);
        i += 2;
    }
    if i < nb {
        pair(i, false, &mut acc, &mut summs);
    }
    let mut out = [0.0f32; N];
    for t in 0..N {
        let m = _mm_add_ss(summs[t], _mm_movehdup_ps(summs[t]));
        out[t] = hsum512(acc[t]) + _mm_cvtss_f32(m);
    }
    out
}

macro_rules! quant_kernel {
    ($(#[$doc:meta])* $name:ident, $name4:ident, $fmt:ident) => {
        $(#[$doc])*
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], x: &Q8Row) -> f32 {
            dot_rows::<$fmt, 1>(w, [x])[0]
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name4(w: &[u8], x: [&Q8Row; 4]) -> [f32; 4] {
            dot_rows::<$fmt, 4>(w, x)
        }
    };
}

quant_kernel!(
    /// Q4_0 × Q8_0.
    dot_q4_0, dot_q4_0x4, Q4_0
);
quant_kernel!(
    /// Q4_1 × Q8_1.
    dot_q4_1, dot_q4_1x4, Q4_1
);
quant_kernel!(
    /// Q8_0 × Q8_0.
    dot_q8_0, dot_q8_0x4, Q8_0
);
