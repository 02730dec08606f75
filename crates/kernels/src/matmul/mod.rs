//! Matrix products with weights read in place: `y[t][r] = sum_c w[r][c] * x[t][c]`.
//!
//! Design (after ggml's `ggml_compute_forward_mul_mat` and its `vec_dot`
//! kernels in `ggml-cpu/quants.c` / `arch/x86/quants.c`):
//!
//! - Quantized weights are never expanded to f32. For Q4_0/Q5_0/Q8_0 the
//!   activations are quantized once per call to 8-bit blocks of 32 (ggml's
//!   Q8_0), for Q4_1/Q5_1 to Q8_1 (with `s = d * sum(q)`, which carries the
//!   weight offset `m`); then each block contributes
//!   `d_w * d_x * sum_i(q_w[i] * q_x[i])` (`+ m_w * s_x`), the integer part
//!   exact. Activation scales stay f32 (ggml rounds them to f16).
//! - F32/F16/BF16 weights are converted in registers and multiplied with the
//!   f32 activations (FMA).
//! - Each thread owns a contiguous range of output rows (a multiple of
//!   [`ROW_TILE`]) and, for each tile of rows, multiplies every token of the
//!   batch: each weight byte is read from memory once per call whatever
//!   `n_tokens` is. Block-format kernels take `TOKEN_TILE` (4) tokens per
//!   call and unpack each weight block once for all of them.
//!
//! Guarantees:
//! - **Batch invariance**: `y[t][r]` is one call of the same dot kernel on
//!   (row `r`, token `t`) whose accumulation order depends only on `cols`,
//!   so it is bit-identical whatever `n_tokens`, the thread count or the
//!   other tokens are.
//! - Every SIMD kernel has a scalar twin in [`reference`]; `tests/matmul.rs`
//!   holds them together and states the error bounds.
//!
//! The instruction set is detected once ([`Isa::detect`]); [`matmul_with`]
//! forces one (for tests and benchmarks).

use crate::dtype::DType;
use crate::pool::{split_range, SharedOut, ThreadPool};
use crate::quant::{group_sums_q8, quantize_row_q8, Q8Row, QK};
use std::cell::RefCell;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_kquant;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod reference;

/// How far ahead of the block being multiplied the quantized kernels
/// prefetch weight bytes (`_mm_prefetch`, T0).
///
/// Measured on this 2-core Xeon VM (`examples/stream_bench.rs`, 300 MB of
/// Q4_0 weights, one token, one thread): no prefetch 2.3 GB/s, 512 B 2.5,
/// 2 KiB 3.7, 4 KiB and more 4.5–6 GB/s. The hardware prefetchers stop at
/// every 4 KiB page and a page walk under nested paging is slow, so
/// without a software prefetch about a page ahead each page starts cold.
pub(crate) const PREFETCH_BYTES: usize = 4096;

/// Output rows processed together for every token of the batch.
pub const ROW_TILE: usize = 4;

/// A weight matrix `[rows = d_out, cols = d_in]` stored row-major in `dtype`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub dtype: DType,
    /// `d_out`
    pub rows: usize,
    /// `d_in`; a multiple of the block length for block formats.
    pub cols: usize,
    /// `rows * dtype.row_bytes(cols)` bytes; each row is whole blocks.
    pub data: &'a [u8],
}

impl<'a> MatRef<'a> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).expect("cols is a whole number of blocks")
    }

    /// Row `r`: `row_bytes()` bytes.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    fn check(&self) {
        let rb = self.dtype.row_bytes(self.cols);
        assert!(rb.is_some(), "{}: cols {} is not a whole number of blocks", self.dtype, self.cols);
        assert_eq!(
            Some(self.data.len()),
            rb.and_then(|rb| rb.checked_mul(self.rows)),
            "{} matrix [{}, {}]: wrong data length",
            self.dtype,
            self.rows,
            self.cols
        );
    }
}

/// A dot-kernel variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable scalar code (the reference).
    Reference,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL + VNNI (on top of AVX2): Q4_0, Q4_1, Q8_0;
    /// the other types run their AVX2 kernels.
    Avx512,
}

impl Isa {
    /// Every variant, best last.
    pub const ALL: [Isa; 3] = [Isa::Reference, Isa::Avx2, Isa::Avx512];

    /// The best variant this CPU runs, detected once.
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::ALL.into_iter().rev().find(|i| i.available()).unwrap_or(Isa::Reference))
    }

    /// Whether this CPU can run the variant.
    pub fn available(self) -> bool {
        match self {
            Isa::Reference => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }
}

/// Dot of one weight row with quantized activations.
/// SAFETY contract: the row is whole blocks matching `x`, and the CPU has the variant's features.
pub(crate) type QDot = unsafe fn(w: &[u8], x: &Q8Row) -> f32;
/// Dot of one weight row with f32 activations `[cols]`.
pub(crate) type FDot = unsafe fn(w: &[u8], x: &[f32]) -> f32;
/// Four tokens at once; each result bit-identical to the [`QDot`] of its token.
pub(crate) type QDot4 = unsafe fn(w: &[u8], x: [&Q8Row; 4]) -> [f32; 4];

/// Tokens handed to a kernel at once.
const TOKEN_TILE: usize = 4;

enum Kernel {
    Quant(QDot, Option<QDot4>),
    Float(FDot),
}

fn kernel(isa: Isa, dtype: DType) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx2 => return avx2::kernel(dtype),
        Isa::Avx512 => return avx512::kernel(dtype),
        Isa::Reference => {}
    }
    let _ = isa;
    reference::kernel(dtype)
}

/// `y[t][r] = sum_c w[r][c] * x[t][c]` on the detected instruction set.
///
/// `x`: `[n_tokens, cols]`, `y`: `[n_tokens, rows]`. Panics when the shapes
/// disagree (a caller bug).
pub fn matmul(pool: &ThreadPool, w: &MatRef, x: &[f32], y: &mut [f32]) {
    matmul_with(Isa::detect(), pool, w, x, y);
}

/// Quantized activations: `(qs, d, s, xs16)` as in [`Q8Row`].
type Q8Scratch = (Vec<i8>, Vec<f32>, Vec<f32>, Vec<f32>);

thread_local! {
    /// Quantized activations of the calling thread, reused across calls.
    static SCRATCH: RefCell<Q8Scratch> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new(), Vec::new())) };
}

/// [`matmul`] on a given variant. Panics if `!isa.available()`.
pub fn matmul_with(isa: Isa, pool: &ThreadPool, w: &MatRef, x: &[f32], y: &mut [f32]) {
    assert!(isa.available(), "{isa:?} is not supported by this CPU");
    w.check();
    if w.rows == 0 || w.cols == 0 {
        y.fill(0.0);
        return;
    }
    assert_eq!(x.len() % w.cols, 0, "x is not [n_tokens, {}]", w.cols);
    let n_tokens = x.len() / w.cols;
    assert_eq!(y.len(), n_tokens * w.rows, "y is not [{n_tokens}, {}]", w.rows);
    let out = SharedOut::new(y);
    // Row bytes once per call: `MatRef::row` divides by the block length,
    // which cost ~15% of SmolLM2's decode when done per row.
    let rb = w.row_bytes();
    let row = |r: usize| &w.data[r * rb..(r + 1) * rb];
    match kernel(isa, w.dtype) {
        Kernel::Float(dot) => run_tiles(pool, w, n_tokens, out, |r, t0, o| {
            for (k, o) in o.iter_mut().enumerate() {
                let t = t0 + k;
                // SAFETY: row and x have matching lengths; isa is available.
                *o = unsafe { dot(row(r), &x[t * w.cols..(t + 1) * w.cols]) };
            }
        }),
        Kernel::Quant(dot, dot4) => SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (qs, d, sums, xs16) = &mut *s;
            let nb = x.len() / QK;
            qs.resize(x.len(), 0);
            d.resize(nb, 0.0);
            sums.resize(nb, 0.0);
            quantize_row_q8(x, qs, d, sums);
            let g16 = if w.dtype.is_kquant() { 2 } else { 0 };
            xs16.resize(g16 * nb, 0.0);
            if g16 > 0 {
                group_sums_q8(qs, d, xs16);
            }
            let bpr = w.cols / QK;
            let tok = |t: usize| {
                let b = t * bpr..(t + 1) * bpr;
                let g = g16 * b.start..g16 * b.end;
                Q8Row { qs: &qs[b.start * QK..b.end * QK], d: &d[b.clone()], s: &sums[b], xs16: &xs16[g] }
            };
            run_tiles(pool, w, n_tokens, out, |r, t0, o| match (dot4, o.len()) {
                // SAFETY: rows are whole blocks matching the token rows; isa is available.
                (Some(dot4), TOKEN_TILE) => {
                    let x = [tok(t0), tok(t0 + 1), tok(t0 + 2), tok(t0 + 3)];
                    o.copy_from_slice(&unsafe { dot4(row(r), [&x[0], &x[1], &x[2], &x[3]]) });
                }
                _ => {
                    for (k, o) in o.iter_mut().enumerate() {
                        *o = unsafe { dot(row(r), &tok(t0 + k)) };
                    }
                }
            })
        }),
    }
}

/// Split the rows over the pool; each thread walks its rows in tiles of
/// [`ROW_TILE`] and, per tile, the tokens in groups of [`TOKEN_TILE`]:
/// `dot(r, t0, out)` fills `out[k] = y[t0 + k][r]`.
fn run_tiles(
    pool: &ThreadPool,
    w: &MatRef,
    n_tokens: usize,
    out: SharedOut<'_>,
    dot: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let rows = w.rows;
    pool.run(|i, n| {
        let mine = split_range(rows, ROW_TILE, i, n);
        let mut r0 = mine.start;
        while r0 < mine.end {
            let r1 = (r0 + ROW_TILE).min(mine.end);
            for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
                let nt = TOKEN_TILE.min(n_tokens - t0);
                for r in r0..r1 {
                    let mut v = [0f32; TOKEN_TILE];
                    dot(r, t0, &mut v[..nt]);
                    for (k, &v) in v[..nt].iter().enumerate() {
                        // SAFETY: (t, r) is inside y and owned by this thread only.
                        unsafe { *out.at((t0 + k) * rows + r) = v };
                    }
                }
            }
            r0 = r1;
        }
    });
}
