//! The matmul kernels against an exact (f64) reference, and against each other.
//!
//! Reference: dequantize the weights to f32 (`dequantize_row`), quantize the
//! activations with the kernel's own Q8 quantizer for block formats (the
//! quantization error of x is part of the contract, not of the kernel), and
//! sum in f64. Bound for every variant, per output:
//!
//! `|y - exact| <= (n_terms + 8) * f32::EPSILON * (sum_c |w_c x_c| + sum_blocks 2 |m_b| sum |x_b|)`
//!
//! where `n_terms` is `cols` for float weights (sequential f32 sum in the
//! reference kernel) and `cols / 32` for block formats (one f32 rounding per
//! block after an exact integer sum), and the `m` term only exists for
//! Q4_1/Q5_1, whose kernels add `d*q*x` and `m*s` separately.
//!
//! K-quants (`y = (d sc) q - dmin m` per group of 16) take Q8_K activations
//! (one f32 scale per 256), so the reference is `x` as Q8_K rounds it. A
//! super-block's weight integers meet the activation integers exactly; the
//! reference kernel then rounds at most once per scale group (16 per
//! super-block, summing `sc · Σ q q_x` in f32) and twice per super-block
//! (`fma(d d_x, ...)`, `fma(-dmin d_x, ...)`, each after one rounded
//! product), the row kernels once per super-block and lane (i32 to f32,
//! `d · d_x`, the fused add) plus their horizontal sum. With the f32
//! roundings of the dequantized weights and of `q_x · d_x` that gives
//! `n_terms = cols / 128 + 16` (2 per super-block, 16 in one), and the
//! magnitude counts both parts of the weights:
//! `sum_c (|d sc q| + |dmin m|) |x_c|`. They have no quantizer, so their
//! weights are always random bytes with sane f16 scales.

use memwall_kernels::kquant::{quantize_row_q8_k, QK_K};
use memwall_kernels::matmul::{matmul, matmul_many, matmul_with, packed, Isa, PackedMat};
use memwall_kernels::quant::{dequantize_row, quantize_row, quantize_row_q8};
use memwall_kernels::{DType, MatRef, ThreadPool};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn variants() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.available()).collect()
}

/// Weights `[rows, cols]` in `dtype`: either quantized from random floats or,
/// with `raw`, random bytes with sane f16 scales (every quant bit pattern).
fn weights(dtype: DType, rows: usize, cols: usize, raw: bool, rng: &mut StdRng) -> Vec<u8> {
    let rb = dtype.row_bytes(cols).unwrap();
    let mut data = vec![0u8; rows * rb];
    if (raw && dtype.is_quantized()) || dtype.is_kquant() {
        rng.fill(&mut data[..]);
        for b in data.chunks_exact_mut(dtype.block_bytes()) {
            for &at in scale_offsets(dtype) {
                let v = half::f16::from_f32(rng.gen_range(-0.1..0.1f32));
                b[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        return data;
    }
    for r in 0..rows {
        let row: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0..1.0f32)).collect();
        quantize_row(dtype, &row, &mut data[r * rb..(r + 1) * rb]);
    }
    data
}

/// Byte offsets of the f16 scales in a block: `d` first, then `m` / `dmin`.
fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => &[0],
    }
}

/// A k-quant row's two parts `[cols]`: `(d sc q, -dmin m)` (the row with
/// `dmin` zeroed, then with `d` zeroed).
fn kquant_parts(dtype: DType, row: &[u8], cols: usize) -> (Vec<f32>, Vec<f32>) {
    let offs = scale_offsets(dtype);
    let part = |zero: usize| {
        let mut r = row.to_vec();
        if let Some(&at) = offs.get(zero) {
            for b in r.chunks_exact_mut(dtype.block_bytes()) {
                b[at..at + 2].fill(0);
            }
        }
        let mut y = vec![0f32; cols];
        dequantize_row(dtype, &r, &mut y);
        y
    };
    let minus = if offs.len() == 2 { part(0) } else { vec![0.0; cols] };
    (part(1), minus)
}

/// Activations as the kernel sees them: exact for float weights, Q8-rounded
/// for block formats (Q8_K for k-quants); with the per-block sums `s` (`[n / 32]`, f16-rounded as
/// ggml stores them) that Q4_1/Q5_1 multiply by their offsets `m`.
fn effective_x(dtype: DType, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    if !dtype.is_quantized() {
        return (x.to_vec(), vec![]);
    }
    let n = x.len();
    if dtype.is_kquant() {
        let (mut qs, mut d, mut bsums) = (vec![0i8; n], vec![0f32; n / QK_K], vec![0i32; n / 16]);
        quantize_row_q8_k(x, &mut qs, &mut d, &mut bsums);
        return (qs.iter().enumerate().map(|(i, &q)| q as f32 * d[i / QK_K]).collect(), vec![]);
    }
    let (mut qs, mut d, mut s) = (vec![0i8; n], vec![0f32; n / 32], vec![0f32; n / 32]);
    quantize_row_q8(x, &mut qs, &mut d, &mut s);
    (qs.iter().enumerate().map(|(i, &q)| q as f32 * d[i / 32]).collect(), s)
}

fn check_against_exact(dtype: DType, rows: usize, cols: usize, n_tokens: usize, raw: bool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = weights(dtype, rows, cols, raw, &mut rng);
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.gen_range(-2.0..2.0f32)).collect();
    let w = MatRef::new(dtype, rows, cols, &data);
    let mut wf = vec![0f32; rows * cols];
    for r in 0..rows {
        dequantize_row(dtype, w.row(r), &mut wf[r * cols..(r + 1) * cols]);
    }
    let (xe, sums): (Vec<Vec<f32>>, Vec<Vec<f32>>) = x.chunks(cols).map(|t| effective_x(dtype, t)).unzip();
    let n_terms = if dtype.is_kquant() {
        cols / 128 + 16
    } else if dtype.is_quantized() {
        cols / 32
    } else {
        cols
    };
    let pool = ThreadPool::new(2);
    for isa in variants() {
        let mut y = vec![f32::NAN; n_tokens * rows];
        matmul_with(isa, &pool, &w, &x, &mut y);
        for t in 0..n_tokens {
            for r in 0..rows {
                let (wr, xt) = (&wf[r * cols..(r + 1) * cols], &xe[t][..]);
                let mut exact: f64 = wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
                let mut mag: f64 = wr.iter().zip(xt).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                    // w = d q + m: the kernel adds m * s, with ggml's f16 s,
                    // in place of m * sum(x).
                    for (b, blk) in w.row(r).chunks_exact(dtype.block_bytes()).enumerate() {
                        let m = half::f16::from_le_bytes([blk[2], blk[3]]).to_f32() as f64;
                        let xb = &xt[b * 32..(b + 1) * 32];
                        let sum_x: f64 = xb.iter().map(|&v| v as f64).sum();
                        exact += m * (sums[t][b] as f64 - sum_x);
                        let sx: f64 = xb.iter().map(|v| v.abs() as f64).sum();
                        mag += 2.0 * m.abs() * sx;
                    }
                }
                if dtype.is_kquant() {
                    let (plus, minus) = kquant_parts(dtype, w.row(r), cols);
                    mag = (0..cols).map(|c| (plus[c].abs() as f64 + minus[c].abs() as f64) * xt[c].abs() as f64).sum();
                }
                let bound = (n_terms + 8) as f64 * f32::EPSILON as f64 * mag + 1e-30;
                let got = y[t * rows + r] as f64;
                assert!(
                    (got - exact).abs() <= bound,
                    "{isa:?} {dtype} [{rows}x{cols}] t={t} r={r}: {got} vs {exact} (bound {bound})"
                );
            }
        }
    }
}

/// Batch invariance: every output is bit-identical whether its token runs
/// alone or in the batch, and whatever the thread count.
fn check_batch_invariance(dtype: DType, rows: usize, cols: usize, n_tokens: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = weights(dtype, rows, cols, false, &mut rng);
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.gen_range(-2.0..2.0f32)).collect();
    let w = MatRef::new(dtype, rows, cols, &data);
    let (p1, p3) = (ThreadPool::new(1), ThreadPool::new(3));
    for isa in variants() {
        let mut batch = vec![0f32; n_tokens * rows];
        matmul_with(isa, &p3, &w, &x, &mut batch);
        for t in 0..n_tokens {
            let mut one = vec![0f32; rows];
            matmul_with(isa, &p1, &w, &x[t * cols..(t + 1) * cols], &mut one);
            let b: Vec<u32> = batch[t * rows..(t + 1) * rows].iter().map(|v| v.to_bits()).collect();
            let o: Vec<u32> = one.iter().map(|v| v.to_bits()).collect();
            assert_eq!(b, o, "{isa:?} {dtype} token {t}");
        }
    }
}

/// Tiled weights: every variant (the AVX-512 tile kernels, and the others
/// through the rows given back) computes exactly the scalar reference on
/// the file's layout, bit for bit, whatever the number of tokens in the
/// call and the thread count.
fn check_tiled_is_reference(dtype: DType, rows: usize, cols: usize, n_tokens: usize, raw: bool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = weights(dtype, rows, cols, raw, &mut rng);
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.gen_range(-2.0..2.0f32)).collect();
    let w = MatRef::new(dtype, rows, cols, &data);
    let p = PackedMat::pack(&w).expect("packable");
    let (p1, p3) = (ThreadPool::new(1), ThreadPool::new(3));
    let mut want = vec![0f32; n_tokens * rows];
    matmul_with(Isa::Reference, &p1, &w, &x, &mut want);
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    // K-quant tiles hold decoded integers: only the tile kernels read them.
    let isas = variants().into_iter().filter(|&i| !dtype.is_kquant() || i == Isa::Avx512);
    for isa in isas {
        let mut got = vec![0f32; n_tokens * rows];
        matmul_with(isa, &p3, &p.as_mat(), &x, &mut got);
        if isa == Isa::Avx512 || isa == Isa::Reference {
            assert_eq!(bits(&got), bits(&want), "{isa:?} {dtype} [{rows}x{cols}] x {n_tokens}");
        }
        for t in 0..n_tokens {
            let mut one = vec![0f32; rows];
            matmul_with(isa, &p1, &p.as_mat(), &x[t * cols..(t + 1) * cols], &mut one);
            assert_eq!(bits(&one), bits(&got[t * rows..(t + 1) * rows]), "{isa:?} {dtype} token {t}");
        }
    }
}

/// `matmul_many` (one quantization and one dispatch for matrices sharing
/// their input, when their kernels allow) gives every matrix the bits of
/// its own `matmul`: tiled or not, types mixed (Q4_K with Q6_K fuse; Q4_0
/// with Q4_K do not), any row counts, 1 or 3 threads.
fn check_many_is_each(dtypes: &[DType], rows: &[usize], blocks: usize, n_tokens: usize, tiled: bool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let cols = cols_of(DType::Q4_K, blocks);
    let data: Vec<Vec<u8>> = dtypes.iter().zip(rows).map(|(&d, &r)| weights(d, r, cols, true, &mut rng)).collect();
    let packs: Vec<Option<PackedMat>> = dtypes
        .iter()
        .zip(rows)
        .zip(&data)
        .map(|((&d, &r), bytes)| tiled.then(|| PackedMat::pack(&MatRef::new(d, r, cols, bytes))).flatten())
        .collect();
    let mats: Vec<MatRef> = dtypes
        .iter()
        .zip(rows)
        .zip(&data)
        .zip(&packs)
        .map(|(((&d, &r), bytes), p)| p.as_ref().map_or(MatRef::new(d, r, cols, bytes), PackedMat::as_mat))
        .collect();
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.gen_range(-2.0..2.0f32)).collect();
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for threads in [1, 3] {
        let pool = ThreadPool::new(threads);
        let mut got: Vec<Vec<f32>> = rows.iter().map(|&r| vec![f32::NAN; n_tokens * r]).collect();
        let mut ys: Vec<&mut [f32]> = got.iter_mut().map(|y| &mut y[..]).collect();
        matmul_many(&pool, &mats, &x, &mut ys);
        for (m, w) in mats.iter().enumerate() {
            let mut want = vec![0f32; n_tokens * w.rows];
            matmul(&pool, w, &x, &mut want);
            assert_eq!(
                bits(&got[m]),
                bits(&want),
                "matrix {m} of {dtypes:?} {rows:?}, {threads} threads, tiled {tiled}"
            );
        }
    }
}

/// The types with a tiled layout.
const TILED: [DType; 9] =
    [DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K];

fn any_dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::EVERY.to_vec())
}

/// Columns of about `blocks` 32-element blocks, rounded up to the type's block.
fn cols_of(dtype: DType, blocks: usize) -> usize {
    (blocks * 32).div_ceil(dtype.block_len()) * dtype.block_len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_variant_matches_exact_dot(
        dtype in any_dtype(), rows in 1usize..38, blocks in 1usize..17,
        n_tokens in 1usize..8, raw in any::<bool>(), seed in any::<u64>(),
    ) {
        check_against_exact(dtype, rows, cols_of(dtype, blocks), n_tokens, raw, seed);
    }

    #[test]
    fn float_weights_with_odd_cols(
        dtype in prop::sample::select(vec![DType::F32, DType::F16, DType::BF16]),
        rows in 1usize..20, cols in 1usize..300, n_tokens in 1usize..4, seed in any::<u64>(),
    ) {
        check_against_exact(dtype, rows, cols, n_tokens, false, seed);
    }

    // 16+ tokens: the activations are quantized by every thread of the pool.
    #[test]
    fn outputs_are_batch_invariant(
        dtype in any_dtype(), rows in 1usize..38, blocks in 1usize..9,
        n_tokens in 2usize..24, seed in any::<u64>(),
    ) {
        check_batch_invariance(dtype, rows, cols_of(dtype, blocks), n_tokens, seed);
    }

    #[test]
    fn tiled_weights_compute_the_reference_exactly(
        dtype in prop::sample::select(TILED.to_vec()),
        rows in 1usize..50, blocks in 1usize..17, n_tokens in 1usize..20, raw in any::<bool>(), seed in any::<u64>(),
    ) {
        prop_assert!(packed::packable(dtype));
        check_tiled_is_reference(dtype, rows, cols_of(dtype, blocks), n_tokens, raw, seed);
    }

    #[test]
    fn matmul_many_equals_one_matmul_each(
        mix in prop::sample::select(vec![
            vec![DType::Q4_0, DType::Q4_0, DType::Q4_0],
            vec![DType::Q8_0, DType::Q8_0],
            vec![DType::Q4_K, DType::Q4_K, DType::Q6_K],
            vec![DType::Q5_K, DType::Q6_K],
            vec![DType::Q4_0, DType::Q4_K],
            vec![DType::Q4_1, DType::Q8_0, DType::Q2_K],
        ]),
        rows in prop::collection::vec(1usize..40, 3), blocks in 1usize..4, n_tokens in 1usize..20,
        tiled in any::<bool>(), seed in any::<u64>(),
    ) {
        check_many_is_each(&mix, &rows[..mix.len()], blocks, n_tokens, tiled, seed);
    }

    #[test]
    fn dequantize_row_accepts_any_bytes(dtype in any_dtype(), blocks in 1usize..5, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = blocks * dtype.block_len();
        let mut src = vec![0u8; dtype.row_bytes(n).unwrap()];
        rng.fill(&mut src[..]);
        let mut dst = vec![0f32; n];
        dequantize_row(dtype, &src, &mut dst);
    }
}

#[test]
fn large_shape_all_types() {
    for (i, dtype) in DType::EVERY.into_iter().enumerate() {
        check_against_exact(dtype, 67, 1536, 3, false, i as u64);
        check_against_exact(dtype, 13, 512, 2, true, 100 + i as u64);
    }
}

#[test]
fn empty_batch_is_a_no_op() {
    let data = vec![0u8; 4 * DType::Q4_0.row_bytes(64).unwrap()];
    let w = MatRef::new(DType::Q4_0, 4, 64, &data);
    let mut y: Vec<f32> = vec![];
    memwall_kernels::matmul(&ThreadPool::new(2), &w, &[], &mut y);
}

#[test]
#[should_panic(expected = "wrong data length")]
fn short_weight_data_is_rejected() {
    let data = vec![0u8; 10];
    let w = MatRef::new(DType::Q8_0, 1, 32, &data);
    memwall_kernels::matmul(&ThreadPool::new(1), &w, &[0.0; 32], &mut [0.0]);
}

/// Tiled kernels at model-like shapes (24 and 48 blocks per row, token
/// counts around the 8-token group).
#[test]
fn tiled_model_shapes() {
    for dtype in TILED {
        for (rows, cols, n) in [(576, 768, 1), (192, 768, 22), (1536, 768, 3), (576, 1536, 9)] {
            check_tiled_is_reference(dtype, rows, cols, n, false, 7);
        }
    }
}
