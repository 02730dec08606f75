//! Micro benchmark of the matmul kernels (not a test: it asserts nothing).
//!
//! `cargo run --release -p memwall-kernels --example matmul_bench [threads] [dtype]`
//!
//! For each weight type, times `[576 x 1536]` (SmolLM-135M's `ffn_down`
//! shape, transposed: d_model x d_ff) for 1, 8 and 64 tokens on every
//! available kernel variant, and prints µs per call (the fastest of ~0.2 s of calls), plus the
//! latency of an empty `ThreadPool::run`, weight GB/s and GFLOP/s.

use memwall_kernels::matmul::{matmul_with, Isa, Layout, PackedMat};
use memwall_kernels::quant::quantize_row;
use memwall_kernels::{DType, MatRef, ThreadPool};
use std::time::Instant;

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let pool = ThreadPool::new(threads);
    let (rows, cols) = (576, 1536);
    let row: Vec<f32> = (0..cols).map(|c| ((c * 7919 % 1000) as f32 - 500.0) / 300.0).collect();
    println!("threads={threads}  [{rows} x {cols}]  detected={:?}", Isa::detect());
    // Dispatch latency of an empty job (fastest of 20k).
    let mut best = f64::INFINITY;
    for _ in 0..20_000 {
        let t = Instant::now();
        pool.run(|i, _| {
            std::hint::black_box(i);
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("empty pool.run: {:.2} us", best * 1e6);
    println!("{:>6} {:>13} {:>7} {:>10} {:>9} {:>9}", "dtype", "isa", "tokens", "us/call", "GB/s", "GFLOP/s");
    let only: Option<DType> =
        std::env::args().nth(2).and_then(|a| DType::EVERY.into_iter().find(|t| t.name().eq_ignore_ascii_case(&a)));
    for dtype in DType::EVERY.into_iter().filter(|d| only.is_none_or(|o| o == *d)) {
        let rb = dtype.row_bytes(cols).unwrap();
        let mut data = vec![0u8; rows * rb];
        if dtype.is_kquant() {
            // No k-quant quantizer: bytes of a fixed pattern with small f16 scales.
            for (i, v) in data.iter_mut().enumerate() {
                *v = (i * 7919 % 251) as u8;
            }
            let at: &[usize] = match dtype {
                DType::Q2_K => &[80, 82],
                DType::Q3_K => &[108],
                DType::Q6_K => &[208],
                _ => &[0, 2],
            };
            for b in data.chunks_exact_mut(dtype.block_bytes()) {
                for &a in at {
                    b[a..a + 2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
                }
            }
        } else {
            for r in 0..rows {
                quantize_row(dtype, &row, &mut data[r * rb..(r + 1) * rb]);
            }
        }
        let w = MatRef::new(dtype, rows, cols, &data);
        let packed = PackedMat::pack(&w);
        let layouts = std::iter::once(w).chain(packed.as_ref().map(|p| p.as_mat()));
        for (w, isa) in layouts.flat_map(|w| Isa::ALL.into_iter().filter(|i| i.available()).map(move |i| (w, i))) {
            if w.layout == Layout::Tiles && isa != Isa::Avx512 {
                continue;
            }
            for n_tokens in [1, 8, 64] {
                let x: Vec<f32> = (0..n_tokens * cols).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
                let mut y = vec![0f32; n_tokens * rows];
                // Warm up, then take the fastest call of ~0.2 s of calls: the
                // machine is shared, and the minimum is the least disturbed.
                matmul_with(isa, &pool, &w, &x, &mut y);
                let mut secs = f64::INFINITY;
                let start = Instant::now();
                while start.elapsed().as_secs_f64() < 0.2 {
                    let t = Instant::now();
                    matmul_with(isa, &pool, &w, &x, &mut y);
                    secs = secs.min(t.elapsed().as_secs_f64());
                }
                let gbs = data.len() as f64 / secs / 1e9;
                let gflops = 2.0 * (rows * cols * n_tokens) as f64 / secs / 1e9;
                println!(
                    "{:>6} {:>13} {:>7} {:>10.1} {:>9.2} {:>9.2}",
                    dtype.name(),
                    format!("{isa:?}{}", if w.layout == Layout::Tiles { "+tiles" } else { "" }),
                    n_tokens,
                    secs * 1e6,
                    gbs,
                    gflops
                );
                std::hint::black_box(&y);
            }
        }
    }
}
