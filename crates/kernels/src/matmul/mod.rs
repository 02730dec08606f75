//! Matrix products with weights read in place: `y[t][r] = sum_c w[r][c] * x[t][c]`.
//!
//! Design (after ggml's `ggml_compute_forward_mul_mat` and its `vec_dot`
//! kernels in `ggml-cpu/quants.c` / `arch/x86/quants.c`):
//!
//! - Quantized weights are never expanded to f32. For Q4_0/Q5_0/Q8_0 the
//!   activations are quantized once per call to 8-bit blocks of 32 (ggml's
//!   Q8_0), for Q4_1/Q5_1 to Q8_1 (with `s = d * sum(q)`, which carries the
//!   weight offset `m`); then each block contributes
//!   `d_w * d_x * sum_i(q_w[i] * q_x[i])` (`+ m_w * s_x`) by fused
//!   multiply-adds, the integer part exact. Activation scales stay f32 (ggml rounds them to f16).
//!   K-quant weights take ggml's Q8_K activations instead
//!   ([`crate::kquant::quantize_row_q8_k`], bit-identical to ggml's
//!   `quantize_row_q8_K_ref`): one f32 scale per 256-element super-block,
//!   so a whole super-block of weights meets the activations in exact
//!   integers and costs two float operations against `d` and `dmin`
//!   (`reference::dot_kquant`), as `ggml_vec_dot_q*_K_q8_K` does.
//! - F32/F16/BF16 weights are converted in registers and multiplied with the
//!   f32 activations (FMA).
//! - Two layouts ([`Layout`]). **Tiles** (the default on CPUs with AVX-512
//!   VNNI, for F32/F16/BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K): weights
//!   repacked once at load so one register holds 16 rows ([`packed`]); the
//!   kernels (`avx512_tiles.rs`) take 16 rows × up to 8 tokens per call,
//!   unpack every weight byte once for all of them and need no horizontal
//!   sums: measured 2.5–3.5× the throughput of the row kernels on 8–64
//!   tokens (prefill, batched decode) and as fast on one token
//!   (`examples/matmul_bench.rs`, `examples/stream_bench.rs`). **Rows**
//!   (the file's layout; other CPUs, the other types, or `memwall bench
//!   --no-repack`): per-row dot kernels, `TOKEN_TILE` (4) tokens per call.
//! - Each thread starts on its own contiguous range of output rows (a
//!   multiple of [`ROW_TILE`], or whole tiles), takes it in chunks of about
//!   32 KiB of weights and then helps with what is left of the others'
//!   ([`ThreadPool::run_chunks`]); for each tile of rows it multiplies
//!   every token of the batch: each weight byte is read from memory once
//!   per call whatever `n_tokens` is.
//!
//! Guarantees:
//! - **Batch invariance**: `y[t][r]` is one call of the same dot kernel on
//!   (row `r`, token `t`) whose accumulation order depends only on `cols`,
//!   so it is bit-identical whatever `n_tokens`, the thread count or the
//!   other tokens are.
//! - Every SIMD kernel has a scalar twin in [`reference`]; `tests/matmul.rs`
//!   holds them together and states the error bounds. The tile kernels run
//!   the reference's float operations in its order, so they equal it bit
//!   for bit (tested on random data of odd sizes).
//!
//! The instruction set is detected once ([`Isa::detect`]); [`matmul_with`]
//! forces one (for tests and benchmarks).

use crate::dtype::DType;
use crate::kquant::{quantize_row_q8_k, QK_K};
use crate::pool::{split_range, SharedOut, ThreadPool};
use crate::quant::{quantize_row_q8, Q8Row, QK};
use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_kquant;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_tiles;
mod huge_buffer;
pub mod packed;
pub mod reference;

pub use huge_buffer::HugeBuffer;
pub use packed::{PackedMat, TILE_ROWS};

/// How far ahead of the block being multiplied the quantized row kernels
/// prefetch weight bytes (T0), and the tile kernels on Intel CPUs (T1,
/// into L2; `avx512_tiles::Prefetch` holds each CPU's plan and why).
///
/// Measured on the project's earlier 2-core Xeon VM (`examples/stream_bench.rs`,
/// 300 MB of Q4_0 weights, one token, one thread): no prefetch 2.3 GB/s,
/// 512 B 2.5, 2 KiB 3.7, 4 KiB and more 4.5–6 GB/s. The hardware
/// prefetchers stop at every 4 KiB page and a page walk under nested
/// paging is slow, so without a software prefetch about a page ahead each
/// page starts cold.
pub(crate) const PREFETCH_BYTES: usize = 4096;

static REPACK: AtomicBool = AtomicBool::new(true);

/// Whether loaders should repack weights of type `dtype` into tiles
/// ([`PackedMat::pack`]): the CPU has the tile kernels (AVX-512 VNNI) for
/// that type, and repacking is not switched off ([`set_repack`]).
/// `MEMWALL_NO_REPACK=1` in the environment switches it off too.
pub fn repack_pays(dtype: DType) -> bool {
    static ENV_OFF: OnceLock<bool> = OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| std::env::var_os("MEMWALL_NO_REPACK").is_some_and(|v| v != "0"));
    REPACK.load(Ordering::Relaxed) && !env_off && packed::packable(dtype) && Isa::detect() == Isa::Avx512
}

/// Switches repacking at load on or off for the whole process (`memwall
/// bench --no-repack` measures the file's own layout).
pub fn set_repack(enabled: bool) {
    REPACK.store(enabled, Ordering::Relaxed);
}

/// Output rows processed together for every token of the batch.
pub const ROW_TILE: usize = 4;

/// How a matrix's bytes are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The file's layout: row after row, each row its blocks in order.
    Rows,
    /// Repacked at load into tiles of [`TILE_ROWS`] rows ([`packed`]).
    Tiles,
}

/// A weight matrix `[rows = d_out, cols = d_in]` in `dtype`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub dtype: DType,
    /// `d_out`
    pub rows: usize,
    /// `d_in`; a multiple of the block length for block formats.
    pub cols: usize,
    pub layout: Layout,
    /// [`Layout::Rows`]: `rows * dtype.row_bytes(cols)` bytes, each row
    /// whole blocks. [`Layout::Tiles`]: the same for `rows` rounded up to a
    /// multiple of [`TILE_ROWS`].
    pub data: &'a [u8],
}

impl<'a> MatRef<'a> {
    /// A row-major matrix.
    pub fn new(dtype: DType, rows: usize, cols: usize, data: &'a [u8]) -> MatRef<'a> {
        MatRef { dtype, rows, cols, layout: Layout::Rows, data }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).expect("cols is a whole number of blocks")
    }

    /// Row `r` (`row_bytes()` bytes) of a row-major matrix; panics for
    /// [`Layout::Tiles`] (use [`MatRef::row_into`]).
    pub fn row(&self, r: usize) -> &'a [u8] {
        assert_eq!(self.layout, Layout::Rows, "a tiled matrix has no contiguous rows");
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Row `r` dequantized into `out` (`[cols]`), whatever the layout.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match self.layout {
            Layout::Rows => crate::quant::dequantize_row(self.dtype, self.row(r), out),
            Layout::Tiles => packed::dequantize_tiled_row(self, r, out),
        }
    }

    fn check(&self) {
        let rb = self.dtype.row_bytes(self.cols);
        assert!(rb.is_some(), "{}: cols {} is not a whole number of blocks", self.dtype, self.cols);
        let len = rb.and_then(|rb| match self.layout {
            Layout::Rows => rb.checked_mul(self.rows),
            Layout::Tiles => packed::tiled_len(self.dtype, self.rows, self.cols),
        });
        assert_eq!(
            Some(self.data.len()),
            len,
            "{} matrix [{}, {}] ({:?}): wrong data length",
            self.dtype,
            self.rows,
            self.cols,
            self.layout
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

/// `ys[m] = ws[m] · x` for matrices that read the same input `x`
/// (`[n_tokens, cols]`, every `ws[m].cols` equal; `ys[m]`: `[n_tokens,
/// ws[m].rows]`): a layer's Q, K and V, or its gate and up.
///
/// When every matrix is tiled with a quantized tile kernel and all take
/// the same activations (all k-quants, or none), `x` is quantized once and
/// one pool dispatch covers the tiles of all of them: a decode step then
/// pays one quantization, one start and one end of the threads instead of
/// one per matrix. Otherwise one [`matmul`] per matrix. The same bits
/// either way (each output is the same kernel on the same activations).
pub fn matmul_many(pool: &ThreadPool, ws: &[MatRef], x: &[f32], ys: &mut [&mut [f32]]) {
    assert_eq!(ws.len(), ys.len(), "one output per matrix");
    #[cfg(target_arch = "x86_64")]
    if fused_tiles(pool, ws, x, ys) {
        return;
    }
    for (w, y) in ws.iter().zip(ys.iter_mut()) {
        matmul(pool, w, x, y);
    }
}

/// [`matmul_many`]'s one dispatch, when it applies (returns whether it did).
#[cfg(target_arch = "x86_64")]
fn fused_tiles(pool: &ThreadPool, ws: &[MatRef], x: &[f32], ys: &mut [&mut [f32]]) -> bool {
    let Some(first) = ws.first() else { return true };
    let same_input = |w: &MatRef| {
        w.layout == Layout::Tiles && w.cols == first.cols && w.dtype.is_kquant() == first.dtype.is_kquant()
    };
    if ws.len() < 2 || Isa::detect() != Isa::Avx512 || first.cols == 0 || !ws.iter().all(same_input) {
        return false;
    }
    let Some(kernels) = ws.iter().map(|w| avx512_tiles::tile_kernel(w.dtype)).collect::<Option<Vec<_>>>() else {
        return false;
    };
    assert_eq!(x.len() % first.cols, 0, "x is not [n_tokens, {}]", first.cols);
    let n_tokens = x.len() / first.cols;
    for (w, y) in ws.iter().zip(ys.iter()) {
        w.check();
        assert_eq!(y.len(), n_tokens * w.rows, "y is not [{n_tokens}, {}]", w.rows);
    }
    let mats: Vec<(MatRef, SharedOut)> = ws.iter().copied().zip(ys.iter_mut().map(|y| SharedOut::new(y))).collect();
    run_quant_tiles(pool, &mats, &kernels, x, n_tokens);
    true
}

/// Quantized tiles (AVX-512) of one or more matrices that read the same
/// `x` (`[n_tokens, cols]`, equal `cols`, all taking the activations
/// `mats[0]` takes): `x` quantized once, `kernels[m]` on matrix `m`'s tiles
/// ([`run_tiled`]).
#[cfg(target_arch = "x86_64")]
fn run_quant_tiles(
    pool: &ThreadPool,
    mats: &[(MatRef, SharedOut<'_>)],
    kernels: &[avx512_tiles::TileDot],
    x: &[f32],
    n_tokens: usize,
) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.quantize(pool, &mats[0].0, x);
        // Token rows are built once per call, not per tile.
        let xs: Vec<Q8Row> = (0..n_tokens).map(|t| s.token(t)).collect();
        run_tiled(pool, mats, n_tokens, |m, tile, t0, o| {
            // SAFETY: the caller found Avx512 available; every matrix's
            // tiles have the token rows' block count and gsum is filled.
            unsafe { kernels[m](tile, &xs[t0..t0 + o.len()], o) }
        });
    });
}

/// Quantized activations of one call, reused across calls: the fields of
/// [`Q8Row`] for every token (`[n_tokens, ...]`, token after token).
#[derive(Default)]
struct Q8Scratch {
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    gsum: Vec<i32>,
    qsum32: Vec<f32>,
    n_tokens: usize,
}

thread_local! {
    /// Quantized activations of the calling thread.
    static SCRATCH: RefCell<Q8Scratch> = RefCell::new(Q8Scratch::default());
}

/// Tokens a call needs before its activations are quantized by every
/// thread of the pool (each quantizes whole tokens, so the bits do not
/// depend on the split); fewer stay on the calling thread.
pub const PAR_QUANTIZE_TOKENS: usize = 16;

/// One thread's share of the quantized activations: whole tokens of every
/// field of [`Q8Scratch`].
struct Q8Part<'a> {
    x: &'a [f32],
    qs: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    gsum: &'a mut [i32],
    qsum32: &'a mut [f32],
}

impl Q8Part<'_> {
    /// Quantizes `x` into the other fields: Q8_K (with `bsums` in `gsum`
    /// and their sums per 32 in `qsum32`) when `kquant`, else Q8_0/Q8_1
    /// (with each 16's exact sum in `gsum` when it is not empty).
    fn quantize(self, kquant: bool) {
        if kquant {
            quantize_row_q8_k(self.x, self.qs, self.d, self.gsum);
            for (o, g) in self.qsum32.iter_mut().zip(self.gsum.chunks_exact(2)) {
                *o = (g[0] + g[1]) as f32;
            }
            return;
        }
        quantize_row_q8(self.x, self.qs, self.d, self.s);
        for (o, q) in self.gsum.iter_mut().zip(self.qs.chunks_exact(16)) {
            *o = q.iter().map(|&v| v as i32).sum::<i32>();
        }
    }
}

/// `v` (`n_tokens` equal parts) cut at the token boundaries of `ranges`.
fn split_tokens<'a, T>(mut v: &'a mut [T], n_tokens: usize, ranges: &[Range<usize>]) -> Vec<&'a mut [T]> {
    let per = v.len() / n_tokens.max(1);
    ranges
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut v).split_at_mut(r.len() * per);
            v = tail;
            head
        })
        .collect()
}

impl Q8Scratch {
    /// Quantizes `x` (`[n_tokens, cols]`) with what `w`'s kernels read:
    /// Q8_K for k-quants, Q8_0/Q8_1 (plus group sums for tiles) otherwise;
    /// a call of [`PAR_QUANTIZE_TOKENS`] or more on every thread of `pool`.
    fn quantize(&mut self, pool: &ThreadPool, w: &MatRef, x: &[f32]) {
        let n = x.len();
        let n_tokens = n / w.cols;
        self.n_tokens = n_tokens;
        let kquant = w.dtype.is_kquant();
        let gsums = kquant || w.layout == Layout::Tiles;
        self.qs.resize(n, 0);
        self.d.resize(n / if kquant { QK_K } else { QK }, 0.0);
        self.s.resize(if kquant { 0 } else { n / QK }, 0.0);
        self.gsum.resize(if gsums { n / 16 } else { 0 }, 0);
        self.qsum32.resize(if kquant { n / 32 } else { 0 }, 0.0);
        let threads = if n_tokens >= PAR_QUANTIZE_TOKENS { pool.n_threads() } else { 1 };
        if threads == 1 {
            // The calling thread alone (every decode step): no parts to build.
            let (qs, d, s) = (&mut self.qs[..], &mut self.d[..], &mut self.s[..]);
            let (gsum, qsum32) = (&mut self.gsum[..], &mut self.qsum32[..]);
            return Q8Part { x, qs, d, s, gsum, qsum32 }.quantize(kquant);
        }
        let ranges: Vec<Range<usize>> = (0..threads).map(|i| split_range(n_tokens, 1, i, threads)).collect();
        let x_parts = ranges.iter().map(|r| &x[r.start * w.cols..r.end * w.cols]);
        let parts: Vec<Mutex<Option<Q8Part>>> = x_parts
            .zip(split_tokens(&mut self.qs, n_tokens, &ranges))
            .zip(split_tokens(&mut self.d, n_tokens, &ranges))
            .zip(split_tokens(&mut self.s, n_tokens, &ranges))
            .zip(split_tokens(&mut self.gsum, n_tokens, &ranges))
            .zip(split_tokens(&mut self.qsum32, n_tokens, &ranges))
            .map(|(((((x, qs), d), s), gsum), qsum32)| Mutex::new(Some(Q8Part { x, qs, d, s, gsum, qsum32 })))
            .collect();
        let take = |i: usize| parts[i].lock().ok().and_then(|mut p| p.take());
        // Thread i of n takes parts i, i + n, …: all of them whoever runs
        // (a call from inside a pool job runs here alone, as thread 0 of 1).
        pool.run(|i, n| {
            for part in (i..threads).step_by(n).filter_map(take) {
                part.quantize(kquant);
            }
        });
    }

    /// Token `t`'s row: every field is `n_tokens` equal parts.
    fn token(&self, t: usize) -> Q8Row<'_> {
        fn part<T>(v: &[T], t: usize, n: usize) -> &[T] {
            let len = v.len() / n;
            &v[t * len..(t + 1) * len]
        }
        let n = self.n_tokens;
        Q8Row {
            qs: part(&self.qs, t, n),
            d: part(&self.d, t, n),
            s: part(&self.s, t, n),
            gsum: part(&self.gsum, t, n),
            qsum32: part(&self.qsum32, t, n),
        }
    }
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
    if w.layout == Layout::Tiles {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            // Token rows are built once per call, not per tile.
            if let Some(kernel) = avx512_tiles::float_tile_kernel(w.dtype) {
                let xs: Vec<&[f32]> = x.chunks_exact(w.cols).collect();
                return run_tiled(pool, &[(*w, SharedOut::new(y))], n_tokens, |_, tile, t0, o| {
                    // SAFETY: Avx512 is available; tile and token rows match.
                    unsafe { kernel(tile, &xs[t0..t0 + o.len()], o) }
                });
            }
            if let Some(kernel) = avx512_tiles::tile_kernel(w.dtype) {
                return run_quant_tiles(pool, &[(*w, SharedOut::new(y))], &[kernel], x, n_tokens);
            }
        }
        // No tile kernel for this variant (tests, other CPUs): back to rows.
        // Loaders only tile on CPUs with the tile kernels, so this is rare.
        let mut rows = vec![0u8; w.rows * w.row_bytes()];
        for (r, out) in rows.chunks_exact_mut(w.row_bytes()).enumerate() {
            assert!(packed::row_into(w, r, out), "{} tiles need the AVX-512 tile kernels", w.dtype);
        }
        return matmul_with(isa, pool, &MatRef::new(w.dtype, w.rows, w.cols, &rows), x, y);
    }
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
            s.quantize(pool, w, x);
            let s = &*s;
            let tok = |t: usize| s.token(t);
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

/// Work a thread takes at a time ([`ThreadPool::run_chunks`]): units
/// (tiles or rows) of `unit_bytes` of weights each, as many as make about
/// [`CHUNK_WORK`] bytes of weights × token passes, at least one.
fn chunk_units(unit_bytes: usize, n_tokens: usize) -> usize {
    (CHUNK_WORK / (unit_bytes * n_tokens).max(1)).max(1)
}

/// Weight bytes × tokens of one chunk of a matmul: 32 KiB is ~2 µs of one
/// thread's decode stream (one 16-row tile of a 2048-column Q4_0 matrix).
/// Taking a chunk is one locked add, ~0.7% of a TinyLlama decode step in
/// `perf`; chunks shrinking from a quarter of the share (fewer adds)
/// measured 2–3% slower, so the ends of the threads' work matter more.
const CHUNK_WORK: usize = 32 << 10;

/// Tiled weights of one or more matrices (`mats`: each with its output
/// `[n_tokens, rows]`): the threads take chunks of tiles
/// ([`chunk_units`]), numbered across the matrices in order, and, per
/// tile, run the tokens in groups of [`avx512_tiles::TILE_TOKENS`], so a
/// tile's weights (16 rows) stay in L1/L2 while every token passes them.
/// `kernel(m, tile, t0, out)` fills `out[k][j] = y_m[t0 + k][16 i + j]`
/// for `out.len()` tokens from `t0`, tile `i` of matrix `m`.
#[cfg(target_arch = "x86_64")]
fn run_tiled(
    pool: &ThreadPool,
    mats: &[(MatRef, SharedOut<'_>)],
    n_tokens: usize,
    kernel: impl Fn(usize, &[u8], usize, &mut [[f32; TILE_ROWS]]) + Sync,
) {
    use avx512_tiles::TILE_TOKENS;
    let tile_bytes = |w: &MatRef| w.cols / w.dtype.block_len() * packed::tile_block_bytes(w.dtype);
    let n_tiles: usize = mats.iter().map(|(w, _)| w.rows.div_ceil(TILE_ROWS)).sum();
    let biggest = mats.iter().map(|(w, _)| tile_bytes(w)).max().unwrap_or(0);
    pool.run_chunks(n_tiles, 1, chunk_units(biggest, n_tokens), |tiles| {
        for unit in tiles {
            // Matrix `m` and its tile: the matrices' tiles follow each other.
            let (mut m, mut tile) = (0, unit);
            while tile >= mats[m].0.rows.div_ceil(TILE_ROWS) {
                tile -= mats[m].0.rows.div_ceil(TILE_ROWS);
                m += 1;
            }
            let (w, out) = &mats[m];
            let (rows, tb) = (w.rows, tile_bytes(w));
            let data = &w.data[tile * tb..(tile + 1) * tb];
            let r0 = tile * TILE_ROWS;
            let valid = TILE_ROWS.min(rows - r0);
            for t0 in (0..n_tokens).step_by(TILE_TOKENS) {
                let nt = TILE_TOKENS.min(n_tokens - t0);
                let mut o = [[0f32; TILE_ROWS]; TILE_TOKENS];
                kernel(m, data, t0, &mut o[..nt]);
                for (k, o) in o[..nt].iter().enumerate() {
                    // SAFETY: rows r0.. of token t0 + k are inside y_m and owned by this thread only.
                    unsafe { out.slice((t0 + k) * rows + r0, valid) }.copy_from_slice(&o[..valid]);
                }
            }
        }
    });
}

/// Split the rows over the pool in chunks ([`chunk_units`]); each thread walks its rows in tiles of
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
    let chunk = chunk_units(w.row_bytes(), n_tokens);
    pool.run_chunks(rows, ROW_TILE, chunk, |mine| {
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
