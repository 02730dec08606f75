//! The k-quant quantizers against ggml.
//!
//! - `matches_ggml_bytes`: byte for byte against ggml's own
//!   `quantize_row_q*_K_ref` (llama-cpp-python 0.3.36's libggml-base),
//!   recorded in `tests/data/kquant_quantize.bin` by
//!   `tools/kquant_fixtures.py`. The fixture stores recipes, not inputs; the
//!   generator below reproduces them bit for bit (checked by a hash).
//! - `round_trip_error_within_llama_cpp_bounds`: llama.cpp's
//!   `test-quantize-fns` total-error check on its synthetic cosine data.

use memwall_kernels::kquant::{quantize_row_q8_k, quantize_row_q8_k_reference, QK_K};
use memwall_kernels::quant::{dequantize_row, quantize_row};
use memwall_kernels::DType;

// ---- the fixture's input generator (see tools/kquant_fixtures.py) ----

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Sum of 4 integers uniform in [-2^20, 2^20): |g| < 2^22, exact in f32.
    fn gauss_int(&mut self) -> f32 {
        (0..4).map(|_| (self.next() >> 43) as i64 - (1 << 20)).sum::<i64>() as f32
    }

    /// Integer uniform in [-2^23, 2^23), exact in f32.
    fn uniform_int(&mut self) -> f32 {
        ((self.next() >> 40) as i64 - (1 << 23)) as f32
    }
}

/// One 256-element block from its recipe (kinds as in the Python tool).
fn make_block(kind: u32, seed: u64, scale: f32, offset: f32) -> Vec<f32> {
    let mut r = SplitMix64(seed);
    let mut x = vec![0f32; QK_K];
    if kind == 0 {
        return x;
    }
    for v in x.iter_mut() {
        *v = match kind {
            1 => r.gauss_int() * scale + offset,
            2 => r.uniform_int() * scale + offset,
            3 | 4 => r.gauss_int() * scale,
            5 => {
                let v = r.gauss_int() * scale;
                v * v.abs() + offset
            }
            _ => panic!("unknown recipe kind {kind}"),
        };
    }
    if kind == 3 {
        x[(r.next() % QK_K as u64) as usize] = offset;
    }
    if kind == 4 {
        let mask = r.next() & 0xffff;
        for g in (0..16).filter(|g| mask >> g & 1 == 1) {
            x[16 * g..16 * g + 16].fill(0.0);
        }
    }
    x
}

fn fnv1a64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| (h ^ c as u64).wrapping_mul(0x0100_0000_01b3))
}

struct Fixture {
    /// `[n_blocks * 256]`.
    input: Vec<f32>,
    /// Per type: ggml's bytes, `[n_blocks * block_bytes]`.
    ggml: Vec<(DType, Vec<u8>)>,
}

fn load_fixture() -> Fixture {
    let path = format!("{}/tests/data/kquant_quantize.bin", env!("CARGO_MANIFEST_DIR"));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&b[..4], b"MWKQ");
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let f32_at = |i: usize| f32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let (n_blocks, n_types) = (u32_at(4) as usize, u32_at(8) as usize);
    let mut at = 16;
    let mut input = Vec::with_capacity(n_blocks * QK_K);
    for _ in 0..n_blocks {
        input.extend(make_block(u32_at(at), u64_at(at + 8), f32_at(at + 16), f32_at(at + 20)));
        at += 24;
    }
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(fnv1a64(&bytes), u64_at(at), "the input generator disagrees with tools/kquant_fixtures.py");
    at += 8;
    let mut ggml = Vec::new();
    for _ in 0..n_types {
        let dtype = match u32_at(at) {
            10 => DType::Q2_K,
            11 => DType::Q3_K,
            12 => DType::Q4_K,
            13 => DType::Q5_K,
            14 => DType::Q6_K,
            id => panic!("unexpected ggml type id {id}"),
        };
        let bb = u32_at(at + 4) as usize;
        assert_eq!(bb, dtype.block_bytes());
        at += 8;
        ggml.push((dtype, b[at..at + n_blocks * bb].to_vec()));
        at += n_blocks * bb;
    }
    assert_eq!(at, b.len(), "trailing bytes in {path}");
    Fixture { input, ggml }
}

#[test]
fn matches_ggml_bytes() {
    let f = load_fixture();
    assert_eq!(f.ggml.len(), 5, "one entry per k-quant");
    for (dtype, want) in &f.ggml {
        let mut ours = vec![0u8; want.len()];
        quantize_row(*dtype, &f.input, &mut ours);
        let bb = dtype.block_bytes();
        for (blk, (o, w)) in ours.chunks_exact(bb).zip(want.chunks_exact(bb)).enumerate() {
            assert_eq!(o, w, "{dtype} block {blk} differs from ggml");
        }
    }
}

/// Quantizing each block alone gives the bytes of quantizing the whole row:
/// blocks are independent, as in ggml.
#[test]
fn blocks_are_independent() {
    let f = load_fixture();
    for (dtype, want) in &f.ggml {
        let bb = dtype.block_bytes();
        for (x, w) in f.input.chunks_exact(QK_K).zip(want.chunks_exact(bb)) {
            let mut b = vec![0u8; bb];
            quantize_row(*dtype, x, &mut b);
            assert_eq!(&b, w, "{dtype}");
        }
    }
}

/// llama.cpp's `generate_data`: `0.1 + amplitude * cos(i + offset)`.
fn generate_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| (0.1f64 + f64::from(2.0f32 * (i as f32 + offset).cos())) as f32).collect()
}

/// llama.cpp's `array_rmse` (which is `sqrt(sum of squares) / n`).
fn array_rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x - y) * f64::from(x - y)).sum();
    (sum.sqrt() as f32) / a.len() as f32
}

#[test]
fn round_trip_error_within_llama_cpp_bounds() {
    // test-quantize-fns: MAX_QUANTIZATION_TOTAL_ERROR{,_2BITS,_3BITS}.
    let x = generate_data(0.0, 32 * 128);
    for (dtype, bound) in
        [(DType::Q2_K, 0.0075), (DType::Q3_K, 0.0040), (DType::Q4_K, 0.002), (DType::Q5_K, 0.002), (DType::Q6_K, 0.002)]
    {
        let mut q = vec![0u8; dtype.row_bytes(x.len()).unwrap()];
        let mut y = vec![0f32; x.len()];
        quantize_row(dtype, &x, &mut q);
        dequantize_row(dtype, &q, &mut y);
        let err = array_rmse(&x, &y);
        assert!(err < bound, "{dtype}: total error {err} >= {bound}");
    }
}

/// More bits, less error: each type's RMSE on Gaussian-like data is below
/// the next-coarser type's (a quantizer that ignores its bits fails this).
#[test]
fn error_decreases_with_bits() {
    let x: Vec<f32> = (0..16).flat_map(|s| make_block(1, 100 + s, 2f32.powi(-21), 0.0)).collect();
    let mut last = f32::INFINITY;
    for dtype in DType::K_QUANTS {
        let mut q = vec![0u8; dtype.row_bytes(x.len()).unwrap()];
        let mut y = vec![0f32; x.len()];
        quantize_row(dtype, &x, &mut q);
        dequantize_row(dtype, &q, &mut y);
        let err = array_rmse(&x, &y);
        assert!(err < last * 0.75, "{dtype}: error {err} not well below the coarser type's {last}");
        last = err;
    }
}

// ---- Q8_K, the activations of the k-quant matmuls ----

/// `quantize_row_q8_k`'s signature: `(x, qs, d, bsums)`.
type Quantizer = fn(&[f32], &mut [i8], &mut [f32], &mut [i32]);

/// `quantize_row_q8_k` (and its scalar reference) against ggml's own
/// `quantize_row_q8_K_ref`, bit for bit: `tests/data/q8_k.bin`, written by
/// `tools/q8_k_fixture.py` (input and ggml's `block_q8_K`s), covers
/// Gaussian blocks at four scales, an outlier, ties (`iscale = 1`, values
/// `k + 0.5`), `+max` before `-max`, an all-zero and a constant block.
#[test]
fn q8_k_matches_ggml() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/q8_k.bin")).unwrap();
    assert_eq!(&bytes[..4], b"Q8KF");
    let nb = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let n = nb * QK_K;
    let x: Vec<f32> = bytes[8..8 + 4 * n].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let blocks = &bytes[8 + 4 * n..];
    assert_eq!(blocks.len(), nb * (4 + QK_K + 32));
    for (name, f) in [("simd", quantize_row_q8_k as Quantizer), ("reference", quantize_row_q8_k_reference)] {
        let (mut qs, mut d, mut bsums) = (vec![0i8; n], vec![0f32; nb], vec![0i32; n / 16]);
        f(&x, &mut qs, &mut d, &mut bsums);
        for (b, want) in blocks.chunks_exact(4 + QK_K + 32).enumerate() {
            let wd = f32::from_le_bytes(want[..4].try_into().unwrap());
            assert_eq!(d[b].to_bits(), wd.to_bits(), "{name} block {b}: d");
            let wq: Vec<i8> = want[4..4 + QK_K].iter().map(|&v| v as i8).collect();
            assert_eq!(&qs[b * QK_K..(b + 1) * QK_K], &wq[..], "{name} block {b}: qs");
            let ws: Vec<i32> =
                want[4 + QK_K..].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect();
            assert_eq!(&bsums[16 * b..16 * b + 16], &ws[..], "{name} block {b}: bsums");
        }
    }
}

/// The SIMD Q8_K quantizer is its scalar reference on random blocks with
/// repeated magnitudes of both signs.
#[test]
fn q8_k_simd_is_the_reference() {
    let mut r = SplitMix64(11);
    let n = 64 * QK_K;
    let mut x: Vec<f32> = (0..n).map(|_| r.gauss_int() * 1e-6).collect();
    for b in 0..64 {
        let i = (r.next() % QK_K as u64) as usize;
        let j = (r.next() % QK_K as u64) as usize;
        let v = 9.0 * (b as f32 + 1.0);
        x[b * QK_K + i] = if b % 2 == 0 { v } else { -v };
        x[b * QK_K + j] = if b % 3 == 0 { v } else { -v };
    }
    let q = |f: Quantizer| {
        let (mut qs, mut d, mut bsums) = (vec![0i8; n], vec![0f32; n / QK_K], vec![0i32; n / 16]);
        f(&x, &mut qs, &mut d, &mut bsums);
        (qs, d.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bsums)
    };
    assert_eq!(q(quantize_row_q8_k), q(quantize_row_q8_k_reference));
}
