//! AVX-512 VNNI kernels on tiled weights (`packed.rs`): 16 rows × up to
//! [`TILE_TOKENS`] tokens per call, every weight byte unpacked once for all
//! the tokens.
//!
//! Per tile block (32 elements of 16 rows) the kernel loads the rows'
//! scales (one `vcvtph2ps` gives 16 f32), and the eight 4-byte words of
//! quants as eight registers `w[k]` (lane `j` = elements `4k .. 4k + 4` of
//! row `j`; Q4_0/Q4_1 unpack four loaded registers into low and high
//! nibbles, Q8_0 loads eight). Then for each token `t`:
//!
//! ```text
//! isum = init + Σ_k vpdpbusd(w[k], broadcast(x_t.qs[32 b + 4 k .. + 4]))   exact i32 per row
//! init = -8 · Σ x_t.qs (Q4_0: q = nibble - 8), -128 · Σ x_t.qs (Q8_0: stored q + 128), 0 (Q4_1)
//! acc_t = fma(float(isum), d_w · d_x, acc_t)      (Q4_1: then acc_t = fma(m_w, s_x, acc_t))
//! ```
//!
//! in block order: lane `j` of `acc_t` runs exactly the float operations of
//! `reference::dot_q4_0` (and `dot_q4_1`, `dot_q8_0`) on row `j` and token
//! `t`, so every result is bit-identical to the scalar reference and
//! independent of how many tokens share the call (batch invariance). (With a
//! separate multiply and add instead of the fused one the compiler kept the
//! eight accumulators in memory: 25-40% slower.)
//! The k-quant tiles (`ktile_n`) take Q8_K activations and run
//! `reference::dot_kquant`'s operations the same way, per super-block.
//! Each tile block is prefetched ahead as this CPU's [`Prefetch`] plan says.

use super::packed::KTile;
use super::PREFETCH_BYTES;
use crate::dtype::DType;
use crate::kquant::QK_K;
use crate::quant::{Q8Row, QK};
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Tokens per call: `acc` for 8 tokens plus 8 weight registers fit the 32
/// vector registers.
pub(super) const TILE_TOKENS: usize = 8;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

/// Rows `16 i .. 16 i + 16` × `xs.len()` (≤ [`TILE_TOKENS`]) tokens:
/// `out[t][j] = y[t][16 i + j]`. `tile` is tile `i`'s bytes.
/// SAFETY contract: the CPU has AVX-512 F/BW/VL + VNNI; `tile` holds
/// `blocks × 16 × block_bytes` bytes for the `blocks` of every `xs[t]`,
/// which carries `gsum` (Q8_0/Q8_1) or is Q8_K (k-quants).
pub(super) type TileDot = unsafe fn(tile: &[u8], xs: &[Q8Row], out: &mut [[f32; 16]]);

/// Float weights: rows `16 i .. 16 i + 16` × `xs.len()` (≤ [`TILE_TOKENS`])
/// token rows `[cols]`. Same contract as [`TileDot`].
pub(super) type FTileDot = unsafe fn(tile: &[u8], xs: &[&[f32]], out: &mut [[f32; 16]]);

/// The float tile kernel for `dtype`, if it has one.
pub(super) fn float_tile_kernel(dtype: DType) -> Option<FTileDot> {
    match dtype {
        DType::F32 => Some(ftiles::<F32> as FTileDot),
        DType::F16 => Some(ftiles::<F16> as FTileDot),
        DType::BF16 => Some(ftiles::<BF16> as FTileDot),
        _ => None,
    }
}

const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn ftiles<const E: u8>(tile: &[u8], xs: &[&[f32]], out: &mut [[f32; 16]]) {
    assert_eq!(xs.len(), out.len());
    macro_rules! n {
        ($($n:literal)*) => {
            match xs.len() {
                $($n => ftile_n::<E, $n>(tile, xs.try_into().expect("length matched"), out.try_into().expect("length matched")),)*
                n => panic!("{n} tokens in one tile call"),
            }
        };
    }
    n!(1 2 3 4 5 6 7 8)
}

/// Float tiles: per column `c` one load of the 16 rows' weights (converted
/// to f32), then for each token `acc_t[c % 2] = fma(w, x_t[c], acc_t[c % 2])`
/// and at the end `acc_t[0] + acc_t[1]`: lane `j` runs `reference::dot_f32`
/// / `dot_f16` / `dot_bf16` on row `j` exactly (two chains, so one token
/// does not wait out the FMA latency at every column).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn ftile_n<const E: u8, const N: usize>(tile: &[u8], xs: &[&[f32]; N], out: &mut [[f32; 16]; N]) {
    let eb = if E == F32 { 4 } else { 2 };
    let tb = 16 * eb;
    let cols = tile.len() / tb;
    assert!(tile.len() == cols * tb);
    for x in xs {
        assert!(x.len() == cols);
    }
    let column = |p: *const u8| match E {
        F32 => _mm512_loadu_ps(p as *const f32),
        F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
        _ => {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i))))
        }
    };
    let mut even = [_mm512_setzero_ps(); N];
    let mut odd = [_mm512_setzero_ps(); N];
    let tp = tile.as_ptr();
    let pf = Prefetch::get();
    for c in (0..cols).step_by(2) {
        // SAFETY (reads below): columns c and c + 1 (when < cols) are inside
        // `tile` and every x[t].
        let p = tp.add(c * tb);
        pf.ahead(p, 2 * tb);
        let w = column(p);
        for t in 0..N {
            even[t] = _mm512_fmadd_ps(w, _mm512_set1_ps(*xs[t].get_unchecked(c)), even[t]);
        }
        if c + 1 < cols {
            let w = column(p.add(tb));
            for t in 0..N {
                odd[t] = _mm512_fmadd_ps(w, _mm512_set1_ps(*xs[t].get_unchecked(c + 1)), odd[t]);
            }
        }
    }
    for t in 0..N {
        _mm512_storeu_ps(out[t].as_mut_ptr(), _mm512_add_ps(even[t], odd[t]));
    }
}

/// The tile kernel for `dtype`, if it has one.
pub(super) fn tile_kernel(dtype: DType) -> Option<TileDot> {
    match dtype {
        DType::Q4_0 => Some(tiles::<Q4_0> as TileDot),
        DType::Q4_1 => Some(tiles::<Q4_1> as TileDot),
        DType::Q8_0 => Some(tiles::<Q8_0> as TileDot),
        DType::Q4_K => Some(ktiles::<0, 0, true> as TileDot),
        DType::Q5_K => Some(ktiles::<1, 0, true> as TileDot),
        DType::Q6_K => Some(ktiles::<2, 32, false> as TileDot),
        _ => None,
    }
}

/// Calls `$f::<$p.., N>(tile, xs, out)` with `N = xs.len()` (1 to 8).
macro_rules! by_tokens {
    ($f:ident $ps:tt ($tile:ident, $xs:ident, $out:ident)) => {{
        assert_eq!($xs.len(), $out.len());
        by_tokens!(@match $f $ps $tile $xs $out [1 2 3 4 5 6 7 8])
    }};
    (@match $f:ident $ps:tt $tile:ident $xs:ident $out:ident [$($n:literal)*]) => {
        match $xs.len() {
            $($n => {
                let x: &[Q8Row; $n] = $xs.try_into().expect("length matched");
                let o: &mut [[f32; 16]; $n] = $out.try_into().expect("length matched");
                by_tokens!(@call $f $ps $n $tile x o)
            })*
            n => panic!("{n} tokens in one tile call"),
        }
    };
    (@call $f:ident ($($p:tt),*) $n:literal $tile:ident $x:ident $o:ident) => {
        $f::<$($p,)* $n>($tile, $x, $o)
    };
}

/// Runs `$body` for `$t` = 0 .. `$n` (a const generic, at most 8) as
/// straight-line code, so per-token accumulators stay in registers.
macro_rules! each_token {
    ($n:expr, $t:ident => $body:block) => {
        each_token!(@ $n, $t, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $n:expr, $t:ident, $body:block, $($i:literal)*) => {
        $(
            if $i < $n {
                let $t: usize = $i;
                $body
            }
        )*
    };
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tiles<const F: u8>(tile: &[u8], xs: &[Q8Row], out: &mut [[f32; 16]]) {
    by_tokens!(tile_n(F)(tile, xs, out))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn ktiles<const HB: usize, const OFF: i32, const MIN: bool>(tile: &[u8], xs: &[Q8Row], out: &mut [[f32; 16]]) {
    by_tokens!(ktile_n(HB, OFF, MIN)(tile, xs, out))
}

/// Where the tile kernels prefetch weight bytes, chosen once per CPU
/// ([`Prefetch::get`]): `t1` bytes ahead with `PREFETCHT1`, `t0` bytes
/// ahead with `PREFETCHT0` (0: not at all). Measured with
/// `examples/stream_bench.rs` (300 MB on 2 MiB pages, one token, GB/s):
///
/// - **Intel** (Xeon family 6 model 167, the project's earlier VM): T1
///   [`PREFETCH_BYTES`] (4 KiB) ahead into L2, then T0 1536 B ahead pulls
///   the lines on into L1 so the loads stop waiting on L2. At 1 / 2
///   threads, L2 only → L2 + L1: Q4_0 14.8 / 30.8 → 16.5 / 32.9, Q8_0
///   14.8 / 32.1 → 17.1 / 33.9, Q4_K 13.1 / 28.0 → 15.2 / 31.1, Q6_K 13.5
///   / 29.1 → 16.0 / 32.6 (1024 and 2048 B within noise; a T0 alone 4 KiB
///   ahead held the core's few L1 fill buffers a whole memory latency:
///   ~10.5).
/// - **AMD** (EPYC family 26, Zen 5, this project's VM since December):
///   the Intel plan issues two prefetches per line and read 33.5 / 36.6 /
///   32.2 / 33.4 (Q4_0 / Q8_0 / Q4_K / Q6_K, one thread; a plain read
///   39-40); one T0 8 KiB ahead reads 37.7-39.3 / 37.4-39.2 / 37.5-40.4 /
///   36.3-39.0 (T0 6 KiB within noise of it, T1 alone 4-8 KiB lower for
///   Q8_0 and Q6_K, 12 KiB worse everywhere). At 2 threads the host's
///   bandwidth itself moves between ~45 and ~80 GB/s; in its fast phases
///   this plan read 73-83, the Intel one 59-75.
///
/// `MEMWALL_PREFETCH=T1,T0` (bytes, e.g. `4096,1536`) overrides the plan,
/// for tuning on a new CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Prefetch {
    t1: usize,
    t0: usize,
}

impl Prefetch {
    const INTEL: Prefetch = Prefetch { t1: PREFETCH_BYTES, t0: 1536 };
    const AMD: Prefetch = Prefetch { t1: 0, t0: 8192 };

    /// This CPU's plan, decided once.
    pub(super) fn get() -> Prefetch {
        static PLAN: OnceLock<Prefetch> = OnceLock::new();
        *PLAN.get_or_init(|| {
            let env = std::env::var("MEMWALL_PREFETCH").ok();
            env.as_deref().and_then(Prefetch::parse).unwrap_or_else(|| match is_amd() {
                true => Prefetch::AMD,
                false => Prefetch::INTEL,
            })
        })
    }

    /// `"T1,T0"` in bytes; `None` unless both parse.
    fn parse(s: &str) -> Option<Prefetch> {
        let (t1, t0) = s.split_once(',')?;
        Some(Prefetch { t1: t1.trim().parse().ok()?, t0: t0.trim().parse().ok()? })
    }

    /// Prefetches the `bytes` bytes at `p` `t1` bytes ahead with T1 and
    /// `t0` bytes ahead with T0.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn ahead(self, p: *const u8, bytes: usize) {
        let mut l = 0;
        while l < bytes {
            // Prefetching never faults, whatever the address.
            if self.t1 != 0 {
                _mm_prefetch(p.wrapping_add(self.t1 + l) as *const i8, _MM_HINT_T1);
            }
            if self.t0 != 0 {
                _mm_prefetch(p.wrapping_add(self.t0 + l) as *const i8, _MM_HINT_T0);
            }
            l += 64;
        }
    }
}

/// Whether the CPU's vendor string is AMD's (`CPUID` leaf 0).
fn is_amd() -> bool {
    let r = __cpuid(0);
    [r.ebx, r.edx, r.ecx].map(u32::to_le_bytes).concat() == b"AuthenticAMD"
}

/// Sixteen rows' `u = q + off` of one 32-element sub-block (`q`: its quants,
/// see `packed::KTile`; with `HB = 0` also Q4_0/Q4_1's) as eight registers: lane `j` of `w[k]` holds
/// elements `4k .. 4k + 4` of row `j`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn kquants<const HB: usize>(q: *const u8) -> [__m512i; 8] {
    let low = _mm512_set1_epi8(0x0f);
    let mut w = [_mm512_setzero_si512(); 8];
    for k in 0..4 {
        let v = _mm512_loadu_si512(q.add(64 * k) as *const __m512i);
        w[k] = _mm512_and_si512(v, low);
        w[k + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
    }
    // The high bits of register k sit at bits HB·k .. of each byte of `h`:
    // shift them to bit 4 (a shift by at most 4 either way never brings in a
    // neighbouring byte's bits under the mask) and merge with one
    // `w | (h' & mask)` (vpternlogd 0xF8).
    if HB == 1 {
        let h = _mm512_loadu_si512(q.add(256) as *const __m512i);
        let bit4 = _mm512_set1_epi8(0x10);
        w[0] = _mm512_ternarylogic_epi32::<0xF8>(w[0], _mm512_slli_epi32::<4>(h), bit4);
        w[1] = _mm512_ternarylogic_epi32::<0xF8>(w[1], _mm512_slli_epi32::<3>(h), bit4);
        w[2] = _mm512_ternarylogic_epi32::<0xF8>(w[2], _mm512_slli_epi32::<2>(h), bit4);
        w[3] = _mm512_ternarylogic_epi32::<0xF8>(w[3], _mm512_slli_epi32::<1>(h), bit4);
        w[4] = _mm512_ternarylogic_epi32::<0xF8>(w[4], h, bit4);
        w[5] = _mm512_ternarylogic_epi32::<0xF8>(w[5], _mm512_srli_epi32::<1>(h), bit4);
        w[6] = _mm512_ternarylogic_epi32::<0xF8>(w[6], _mm512_srli_epi32::<2>(h), bit4);
        w[7] = _mm512_ternarylogic_epi32::<0xF8>(w[7], _mm512_srli_epi32::<3>(h), bit4);
    } else if HB == 2 {
        let bits45 = _mm512_set1_epi8(0x30);
        for half in 0..2 {
            let h = _mm512_loadu_si512(q.add(256 + 64 * half) as *const __m512i);
            let w = &mut w[4 * half..4 * half + 4];
            w[0] = _mm512_ternarylogic_epi32::<0xF8>(w[0], _mm512_slli_epi32::<4>(h), bits45);
            w[1] = _mm512_ternarylogic_epi32::<0xF8>(w[1], _mm512_slli_epi32::<2>(h), bits45);
            w[2] = _mm512_ternarylogic_epi32::<0xF8>(w[2], h, bits45);
            w[3] = _mm512_ternarylogic_epi32::<0xF8>(w[3], _mm512_srli_epi32::<2>(h), bits45);
        }
    }
    w
}

/// K-quant tiles (`packed::KTile`: `HB` high bits, `u = q + OFF`, with or
/// without minimums; scales per 32 elements with minimums, per 16
/// without) × Q8_K activations. Per token, exactly
/// `reference::dot_kquant`'s integers and float operations:
///
/// ```text
/// per scale group G (sub-block c's 32 elements, or its two halves of 16):
///   dot  = Σ u·x - OFF · bsum_x[G]          exact i32 (vpdpbusd chains from that start)
///   a    = fma(sc[G], float(dot), a)
/// per super-block:
///   acc  = fma(d · d_x, a, acc)
///   summ = Σ_c fma(m[c], qsum32_x[c])       (MIN; exact: every partial sum is an integer < 2^24)
///   acc  = fma(-(dmin · d_x), summ, acc)    (MIN; without it the reference adds a ±0,
///                                            which leaves its never -0 sum unchanged)
/// ```
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn ktile_n<const HB: usize, const OFF: i32, const MIN: bool, const N: usize>(
    tile: &[u8],
    xs: &[Q8Row; N],
    out: &mut [[f32; 16]; N],
) {
    let kt = KTile { hb: HB, off: OFF, group: if MIN { 32 } else { 16 }, min: MIN };
    let tsb = kt.bytes();
    let nsb = tile.len() / tsb;
    assert!(tile.len() == nsb * tsb);
    for x in xs {
        assert!(x.qs.len() == nsb * QK_K && x.d.len() == nsb && x.gsum.len() == nsb * 16 && x.qsum32.len() == nsb * 8);
    }
    let zero = _mm512_setzero_si512();
    let zf = _mm512_setzero_ps();
    let mut acc = [zf; N];
    let tp = tile.as_ptr();
    let pf = Prefetch::get();
    for sb in 0..nsb {
        // SAFETY (reads below): super-block sb is inside `tile`, and its
        // activations inside each `xs[t]` (lengths checked above).
        let p = tp.add(sb * tsb);
        // Scales and minimums as f32 (small integers: exact).
        let scales = |g: usize| {
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(kt.sc() + 16 * g) as *const __m128i)))
        };
        let mut a = [zf; N];
        for c in 0..8 {
            // An eighth of the super-block's prefetches per sub-block rather
            // than all of them (37 lines for Q4_K) at once: streaming from
            // memory, one token, one thread, Q4_K went from 11.6 to 13.2 GB/s
            // and Q6_K from 12.6 to 13.5 (`examples/stream_bench.rs`, 300 MB;
            // Q4_0 runs 14.8-15.5 there).
            let (l0, l1) = (c * tsb / 8 / 64, ((c + 1) * tsb / 8).div_ceil(64));
            pf.ahead(p.wrapping_add(64 * l0), 64 * (l1 - l0));
            let w = kquants::<HB>(p.add(kt.header() + c * kt.sub()));
            let (sc0, sc1) = if MIN { (scales(c), zf) } else { (scales(2 * c), scales(2 * c + 1)) };
            each_token!(N, t => {
                let x = &xs[t];
                let xq = x.qs.as_ptr().add(sb * QK_K + c * QK) as *const i32;
                let word = |k: usize| _mm512_set1_epi32(xq.add(k).read_unaligned());
                // Σ u·x over words k0 .. k0 + 4 (elements 4 k0 .. 4 k0 + 16), two chains, from `init`.
                let quarter = |k0: usize, init: __m512i| {
                    let a0 = _mm512_dpbusd_epi32(init, w[k0], word(k0));
                    let a1 = _mm512_dpbusd_epi32(zero, w[k0 + 1], word(k0 + 1));
                    let a0 = _mm512_dpbusd_epi32(a0, w[k0 + 2], word(k0 + 2));
                    let a1 = _mm512_dpbusd_epi32(a1, w[k0 + 3], word(k0 + 3));
                    _mm512_add_epi32(a0, a1)
                };
                if MIN {
                    // OFF = 0: one scale for the 32 elements.
                    let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(quarter(0, zero), quarter(4, zero)));
                    a[t] = _mm512_fmadd_ps(sc0, dot, a[t]);
                } else {
                    let g = x.gsum.as_ptr().add(16 * sb + 2 * c);
                    let h0 = _mm512_cvtepi32_ps(quarter(0, _mm512_set1_epi32(-OFF * *g)));
                    let h1 = _mm512_cvtepi32_ps(quarter(4, _mm512_set1_epi32(-OFF * *g.add(1))));
                    a[t] = _mm512_fmadd_ps(sc0, h0, a[t]);
                    a[t] = _mm512_fmadd_ps(sc1, h1, a[t]);
                }
            });
        }
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
        each_token!(N, t => {
            let dx = _mm512_set1_ps(*xs[t].d.get_unchecked(sb));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), a[t], acc[t]);
        });
        if MIN {
            // The minimums, in their own pass so the one above keeps its registers.
            let mut summ = [zf; N];
            for c in 0..8 {
                let m =
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(kt.m() + 16 * c) as *const __m128i)));
                each_token!(N, t => {
                    let q32 = _mm512_set1_ps(*xs[t].qsum32.get_unchecked(8 * sb + c));
                    summ[t] = _mm512_fmadd_ps(m, q32, summ[t]);
                });
            }
            let dmw = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i));
            each_token!(N, t => {
                let dx = _mm512_set1_ps(*xs[t].d.get_unchecked(sb));
                acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dmw, dx), summ[t], acc[t]);
            });
        }
    }
    for t in 0..N {
        _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_n<const F: u8, const N: usize>(tile: &[u8], xs: &[Q8Row; N], out: &mut [[f32; 16]; N]) {
    let bb = match F {
        Q4_0 => 18,
        Q4_1 => 20,
        _ => 34,
    };
    let tb = 16 * bb;
    let nb = tile.len() / tb;
    assert!(tile.len() == nb * tb);
    for x in xs {
        assert!(x.qs.len() == nb * QK && x.d.len() == nb && x.gsum.len() == 2 * nb && (F != Q4_1 || x.s.len() == nb));
    }
    let offset = match F {
        Q4_0 => -8,
        Q4_1 => 0,
        _ => -128,
    };
    let header = if F == Q4_1 { 64 } else { 32 };
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); N];
    let tp = tile.as_ptr();
    let pf = Prefetch::get();
    for b in 0..nb {
        // SAFETY (reads below): tile block b is inside `tile` and token
        // block b inside each `xs[t]` (lengths checked above).
        let p = tp.add(b * tb);
        pf.ahead(p, tb);
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
        let mw = if F == Q4_1 { _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i)) } else { dw };
        let q = p.add(header);
        let w = if F == Q8_0 {
            std::array::from_fn(|k| _mm512_loadu_si512(q.add(64 * k) as *const __m512i))
        } else {
            kquants::<0>(q)
        };
        for t in 0..N {
            let x = &xs[t];
            let xq = x.qs.as_ptr().add(b * QK) as *const i32;
            let word = |k: usize| _mm512_set1_epi32(xq.add(k).read_unaligned());
            // Two chains halve the dependency latency; integer sums are exact in any order.
            let bsum = *x.gsum.get_unchecked(2 * b) + *x.gsum.get_unchecked(2 * b + 1);
            let mut a0 = _mm512_set1_epi32(offset * bsum);
            let mut a1 = zero;
            a0 = _mm512_dpbusd_epi32(a0, w[0], word(0));
            a1 = _mm512_dpbusd_epi32(a1, w[1], word(1));
            a0 = _mm512_dpbusd_epi32(a0, w[2], word(2));
            a1 = _mm512_dpbusd_epi32(a1, w[3], word(3));
            a0 = _mm512_dpbusd_epi32(a0, w[4], word(4));
            a1 = _mm512_dpbusd_epi32(a1, w[5], word(5));
            a0 = _mm512_dpbusd_epi32(a0, w[6], word(6));
            a1 = _mm512_dpbusd_epi32(a1, w[7], word(7));
            let isum = _mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1));
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*x.d.get_unchecked(b)));
            acc[t] = _mm512_fmadd_ps(isum, scale, acc[t]);
            if F == Q4_1 {
                acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(*x.s.get_unchecked(b)), acc[t]);
            }
        }
    }
    for t in 0..N {
        _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
    }
}

#[cfg(test)]
mod tests {
    use super::Prefetch;

    #[test]
    fn prefetch_override_parses_two_byte_counts() {
        assert_eq!(Prefetch::parse("4096,1536"), Some(Prefetch::INTEL));
        assert_eq!(Prefetch::parse(" 0 , 8192"), Some(Prefetch::AMD));
        for bad in ["", "4096", "4096;1536", "a,1", "1,-2"] {
            assert_eq!(Prefetch::parse(bad), None, "{bad:?}");
        }
    }
}
