//! AVX2 + FMA + F16C dot kernels (x86-64).
//!
//! The quantized kernels follow ggml's `arch/x86/quants.c`: unpack a block's
//! quants to 32 bytes, multiply with the activation bytes by
//! `_mm256_maddubs_epi16` (unsigned × signed; signed weights go through the
//! `sign` trick), widen pairs to i32 with `_mm256_madd_epi16`, convert the
//! 8 partial sums to f32 and `fmadd` them with the block scale into an
//! 8-lane accumulator. No intermediate saturates: |pair| <= 2 * 128 * 127.
//! Blocks alternate between two accumulators (even / odd blocks) to hide the
//! FMA latency; the order depends only on `cols`. The four-token variants
//! unpack each weight block once and run the very same per-token float
//! operations, so they are bit-identical to the one-token kernels.
//!
//! Each block asks for the line [`PREFETCH_BYTES`] ahead: see there why.
//!
//! Float kernels use four 8-lane FMA accumulators over 32 columns, then one
//! 8-lane accumulator, then a scalar tail.

use super::{FDot, Kernel, QDot, QDot4, PREFETCH_BYTES};
use crate::dtype::DType;
use crate::quant::{Q8Row, QK};
use std::arch::x86_64::*;

pub(super) fn kernel(dtype: DType) -> Kernel {
    match dtype {
        DType::F32 => Kernel::Float(dot_f32 as FDot),
        DType::F16 => Kernel::Float(dot_f16 as FDot),
        DType::BF16 => Kernel::Float(dot_bf16 as FDot),
        DType::Q4_0 => Kernel::Quant(dot_q4_0 as QDot, Some(dot_q4_0x4 as QDot4)),
        DType::Q4_1 => Kernel::Quant(dot_q4_1 as QDot, Some(dot_q4_1x4 as QDot4)),
        DType::Q5_0 => Kernel::Quant(dot_q5_0 as QDot, Some(dot_q5_0x4 as QDot4)),
        DType::Q5_1 => Kernel::Quant(dot_q5_1 as QDot, Some(dot_q5_1x4 as QDot4)),
        DType::Q8_0 => Kernel::Quant(dot_q8_0 as QDot, Some(dot_q8_0x4 as QDot4)),
        DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K => super::avx2_kquant::kernel(dtype),
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

/// The little-endian f16 at `b` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn h2f(b: *const u8) -> f32 {
    let h = (b as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// 16 packed nibbles -> 32 bytes: low nibbles are elements 0..16, high 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let v = _mm_loadu_si128(p as *const __m128i);
    let m = _mm_set1_epi8(0x0f);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m))
}

/// Bit `j` of the little-endian u32 at `p` -> byte `j` = 0xff or 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
    let qh = (p as *const u32).read_unaligned();
    let shuf = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), shuf);
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask)
}

/// Pairwise sums of `a[i] * b[i]`, a unsigned bytes (<= 128), b signed: 8 × f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn madd_u8_i8(a: __m256i, b: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(a, b);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// The shared loop over the blocks of one weight row, for `N` tokens at once
/// (the unpacked weights are reused across tokens). `unpack(block ptr)` gives
/// the block's 32 weight bytes, signed or unsigned as `signed` says. Each
/// token's float operations are the same whatever `N`, so results are
/// bit-identical to the one-token call.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_blocks<const BB: usize, const OFFSET: bool, const N: usize>(
    w: &[u8],
    xs: [&Q8Row; N],
    unpack: impl Fn(*const u8) -> __m256i,
    signed: bool,
) -> [f32; N] {
    let nb = w.len() / BB;
    assert!(w.len() == nb * BB);
    for x in xs {
        assert!(x.qs.len() == nb * QK && x.d.len() == nb && (!OFFSET || x.s.len() == nb));
    }
    let wp = w.as_ptr();
    // SAFETY (all reads below): i < nb and the lengths are checked above.
    let block = |i: usize, acc: &mut [__m256; N], summs: &mut [__m128; N]| unsafe {
        let b = wp.add(i * BB);
        _mm_prefetch(b.wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
        let qw = unpack(b);
        let aw = if signed { _mm256_sign_epi8(qw, qw) } else { qw };
        // Lane 0: d; lane 1: m (offset formats; otherwise two quant bytes, unused).
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128((b as *const i32).read_unaligned()));
        let dw = _mm256_broadcastss_ps(dm);
        let mw = _mm_movehdup_ps(dm);
        for t in 0..N {
            let x = xs[t];
            let qx = _mm256_loadu_si256(x.qs.as_ptr().add(i * QK) as *const __m256i);
            let qx = if signed { _mm256_sign_epi8(qx, qw) } else { qx };
            let p = madd_u8_i8(aw, qx);
            let d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&*x.d.as_ptr().add(i)));
            acc[t] = _mm256_fmadd_ps(d, p, acc[t]);
            if OFFSET {
                summs[t] = _mm_fmadd_ss(mw, _mm_load_ss(x.s.as_ptr().add(i)), summs[t]);
            }
        }
    };
    let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let (mut s0, mut s1) = ([_mm_setzero_ps(); N], [_mm_setzero_ps(); N]);
    let mut i = 0;
    while i + 2 <= nb {
        block(i, &mut acc0, &mut s0);
        block(i + 1, &mut acc1, &mut s1);
        i += 2;
    }
    if i < nb {
        block(i, &mut acc0, &mut s0);
    }
    let mut out = [0.0f32; N];
    for t in 0..N {
        let summs = _mm_cvtss_f32(_mm_add_ss(s0[t], s1[t]));
        out[t] = hsum(_mm256_add_ps(acc0[t], acc1[t])) + summs;
    }
    out
}

/// Defines `$name(w, x) -> f32` (one token) and `$name4(w, [x; 4]) -> [f32; 4]`
/// over [`dot_blocks`] for one block format.
macro_rules! quant_kernel {
    ($(#[$doc:meta])* $name:ident, $name4:ident, $bb:literal, $offset:literal, $signed:literal, |$p:ident| $unpack:expr) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], x: &Q8Row) -> f32 {
            let unpack = |$p: *const u8| unsafe { $unpack };
            dot_blocks::<$bb, $offset, 1>(w, [x], unpack, $signed)[0]
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name4(w: &[u8], x: [&Q8Row; 4]) -> [f32; 4] {
            let unpack = |$p: *const u8| unsafe { $unpack };
            if $offset {
                // Two tokens at a time: four would spill the 16 ymm registers.
                let [a, b] = dot_blocks::<$bb, $offset, 2>(w, [x[0], x[1]], &unpack, $signed);
                let [c, d] = dot_blocks::<$bb, $offset, 2>(w, [x[2], x[3]], &unpack, $signed);
                [a, b, c, d]
            } else {
                dot_blocks::<$bb, $offset, 4>(w, x, unpack, $signed)
            }
        }
    };
}

quant_kernel!(
    /// Q4_0 × Q8_0: nibbles - 8.
    dot_q4_0, dot_q4_0x4, 18, false, true,
    |p| _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8))
);
quant_kernel!(
    /// Q4_1 × Q8_1: unsigned nibbles, `+ m * s`.
    dot_q4_1, dot_q4_1x4, 20, true, false,
    |p| nibbles(p.add(4))
);
quant_kernel!(
    /// Q5_0 × Q8_0: `(nibble | hi << 4) - 16` = `nibble | (hi ? 0 : 0xf0)` as i8.
    dot_q5_0, dot_q5_0x4, 22, false, true,
    |p| {
        let hi = _mm256_andnot_si256(bits_to_bytes(p.add(2)), _mm256_set1_epi8(0xf0u8 as i8));
        _mm256_or_si256(nibbles(p.add(6)), hi)
    }
);
quant_kernel!(
    /// Q5_1 × Q8_1: unsigned `nibble | hi << 4`, `+ m * s`.
    dot_q5_1, dot_q5_1x4, 24, true, false,
    |p| {
        let hi = _mm256_and_si256(bits_to_bytes(p.add(4)), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles(p.add(8)), hi)
    }
);
quant_kernel!(
    /// Q8_0 × Q8_0.
    dot_q8_0, dot_q8_0x4, 34, false, true,
    |p| _mm256_loadu_si256(p.add(2) as *const __m256i)
);

/// Shared float loop: `load(i)` gives columns `8i..8i+8` of the weight row as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_float(x: &[f32], load: impl Fn(usize) -> __m256, scalar: impl Fn(usize) -> f32) -> f32 {
    let n = x.len();
    let xp = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut c = 0;
    while c + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let j = c + 8 * k;
            *a = _mm256_fmadd_ps(load(j / 8), _mm256_loadu_ps(xp.add(j)), *a);
        }
        c += 32;
    }
    let mut a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    while c + 8 <= n {
        a = _mm256_fmadd_ps(load(c / 8), _mm256_loadu_ps(xp.add(c)), a);
        c += 8;
    }
    let mut s = hsum(a);
    while c < n {
        s += scalar(c) * x[c];
        c += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), 4 * x.len());
    let p = w.as_ptr() as *const f32;
    dot_float(x, |i| unsafe { _mm256_loadu_ps(p.add(8 * i)) }, |c| unsafe { p.add(c).read_unaligned() })
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), 2 * x.len());
    let p = w.as_ptr();
    dot_float(
        x,
        |i| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * i) as *const __m128i)) },
        |c| unsafe { h2f(p.add(2 * c)) },
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), 2 * x.len());
    let p = w.as_ptr();
    dot_float(
        x,
        |i| unsafe {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(16 * i) as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
        },
        |c| f32::from_bits((u16::from_le_bytes([w[2 * c], w[2 * c + 1]]) as u32) << 16),
    )
}
