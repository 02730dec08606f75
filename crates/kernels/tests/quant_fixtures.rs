//! Golden tests against gguf-py (`gguf.quants`), which is bit-exact with
//! ggml's `quantize_row_*_ref` / `dequantize_row_*` for these types.
//! Fixtures: `tests/data/quant_<type>.bin`, made by `tools/make_quant_fixtures.py`.

use memwall_kernels::quant::{dequantize_row, quantize_row, quantize_row_q8};
use memwall_kernels::DType;

struct Fixture {
    rows: usize,
    cols: usize,
    input: Vec<f32>,
    quant: Vec<u8>,
    dequant: Vec<f32>,
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn load(dtype: DType) -> Fixture {
    let path = format!("{}/tests/data/quant_{}.bin", env!("CARGO_MANIFEST_DIR"), dtype.name());
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&b[..4], b"MWQF");
    let u = |i: usize| u32::from_le_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize;
    let (rows, cols, nq) = (u(0), u(1), u(2));
    let n = rows * cols * 4;
    let (input, rest) = b[16..].split_at(n);
    let (quant, dequant) = rest.split_at(nq);
    assert_eq!(dequant.len(), n);
    Fixture { rows, cols, input: f32s(input), quant: quant.to_vec(), dequant: f32s(dequant) }
}

const TYPES: [DType; 7] = [DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0];

#[test]
fn quantize_row_matches_gguf_py_bytes() {
    for dtype in TYPES {
        let f = load(dtype);
        let rb = dtype.row_bytes(f.cols).unwrap();
        assert_eq!(f.quant.len(), f.rows * rb);
        for r in 0..f.rows {
            let mut q = vec![0u8; rb];
            quantize_row(dtype, &f.input[r * f.cols..(r + 1) * f.cols], &mut q);
            let want = &f.quant[r * rb..(r + 1) * rb];
            if q != want {
                let b = dtype.block_bytes();
                let i = (0..rb).find(|&i| q[i] != want[i]).unwrap();
                panic!(
                    "{dtype} row {r} block {}: ours {:?} gguf-py {:?}",
                    i / b,
                    &q[i / b * b..][..b],
                    &want[i / b * b..][..b]
                );
            }
        }
    }
}

#[test]
fn dequantize_row_matches_gguf_py_bits() {
    for dtype in TYPES {
        let f = load(dtype);
        let rb = dtype.row_bytes(f.cols).unwrap();
        for r in 0..f.rows {
            let mut y = vec![0f32; f.cols];
            dequantize_row(dtype, &f.quant[r * rb..(r + 1) * rb], &mut y);
            for (c, (a, b)) in y.iter().zip(&f.dequant[r * f.cols..]).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{dtype} row {r} col {c}: {a} vs {b}");
            }
        }
    }
}

/// The matmul's activation quantizer gives ggml's Q8_0 quants and scales;
/// its block sums are ggml's Q8_1 `s`, rounded to f16 like the scale.
#[test]
fn activation_quants_are_ggml_q8_0() {
    let f = load(DType::Q8_0);
    let n = f.rows * f.cols;
    let (mut qs, mut d, mut s) = (vec![0i8; n], vec![0f32; n / 32], vec![0f32; n / 32]);
    quantize_row_q8(&f.input, &mut qs, &mut d, &mut s);
    for (b, (qb, want)) in qs.chunks_exact(32).zip(f.quant.chunks_exact(34)).enumerate() {
        let want_q: Vec<i8> = want[2..].iter().map(|&v| v as i8).collect();
        assert_eq!(qb, &want_q[..], "block {b}");
        assert_eq!(half::f16::from_f32(d[b]).to_bits(), u16::from_le_bytes([want[0], want[1]]));
        let sum_q = qb.iter().map(|&q| q as i32).sum::<i32>() as f32;
        let sum = d[b] * sum_q;
        assert_eq!(half::f16::from_f32(s[b]).to_f32(), s[b], "block {b}: s is not an f16 value");
        if sum.abs() > 65504.0 {
            // Beyond f16's range ggml's `s` is infinite too.
            assert!(s[b].is_infinite() && s[b].signum() == sum.signum(), "block {b}: s = {}", s[b]);
        } else {
            // `s` rounds the unrounded scale times sum(q); `d` itself is
            // rounded to f16 (absolute error up to 2^-25 for tiny scales).
            let bound = sum.abs() / 512.0 + sum_q.abs() * 2f32.powi(-24) + 1e-7;
            assert!((s[b] - sum).abs() <= bound, "block {b}: s = {} vs d * sum(q) = {sum}", s[b]);
        }
    }
}

/// The k-quant decoders against gguf-py's, bit for bit, on random blocks
/// (every quant and scale bit pattern, finite f16 scales).
/// Fixtures: `tests/data/kquant_<type>.bin` (see `tools/make_quant_fixtures.py`).
#[test]
fn kquant_dequantize_matches_gguf_py_bits() {
    for dtype in DType::K_QUANTS {
        let path = format!("{}/tests/data/kquant_{}.bin", env!("CARGO_MANIFEST_DIR"), dtype.name());
        let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(&b[..4], b"MWKF");
        let u = |i: usize| u32::from_le_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize;
        let (n_blocks, bb) = (u(0), u(1));
        assert_eq!(bb, dtype.block_bytes());
        let (raw, want) = b[16..].split_at(n_blocks * bb);
        let want = f32s(want);
        let mut y = vec![0f32; n_blocks * 256];
        dequantize_row(dtype, raw, &mut y);
        for (i, (a, w)) in y.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), w.to_bits(), "{dtype} block {} element {}: {a} vs {w}", i / 256, i % 256);
        }
    }
}
