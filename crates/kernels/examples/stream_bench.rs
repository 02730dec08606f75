//! Decode-shaped matmul (one token) on a weight matrix far larger than the
//! caches, so that it measures the kernels' streaming rate from memory
//! (not a test: it asserts nothing).
//!
//! `[HUGE=1] cargo run --release -p memwall-kernels --example stream_bench [threads] [MB] [dtype]`
//!
//! With `HUGE=1` the weights are `madvise(MADV_HUGEPAGE)`d (2 MiB pages)
//! before they are written. Prints the fastest of 8 calls per type and ISA.
use memwall_kernels::matmul::{matmul_with, Isa, Layout, PackedMat};
use memwall_kernels::{DType, MatRef, ThreadPool};
use std::time::Instant;

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mb: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(300);
    let pool = ThreadPool::new(threads);
    let cols = 2048;
    let only: Option<DType> =
        std::env::args().nth(3).and_then(|a| DType::EVERY.into_iter().find(|t| t.name().eq_ignore_ascii_case(&a)));
    let types = [DType::Q4_0, DType::Q8_0, DType::Q4_1, DType::Q4_K, DType::Q6_K, DType::F16];
    for dtype in types.into_iter().filter(|d| only.is_none_or(|o| o == *d)) {
        let rb = dtype.row_bytes(cols).unwrap();
        let rows = mb * 1_000_000 / rb;
        let huge = std::env::var("HUGE").is_ok();
        let n = rows * rb;
        let layout = std::alloc::Layout::from_size_align(n.max(1), 1 << 21).unwrap();
        let ptr = unsafe { std::alloc::alloc(layout) };
        if huge {
            unsafe {
                libc::madvise(ptr as *mut libc::c_void, n, libc::MADV_HUGEPAGE);
            }
        }
        let data: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(ptr, n) };
        for (i, b) in data.chunks_exact_mut(dtype.block_bytes()).enumerate() {
            for (j, v) in b.iter_mut().enumerate() {
                *v = (i * 31 + j * 7) as u8;
            }
            // Small finite f16 scales (0x2c00 = 0.0625): d, and m / dmin.
            let scales: &[usize] = match dtype {
                DType::Q4_1 | DType::Q4_K => &[0, 2],
                DType::Q6_K => &[208],
                // F16: every weight a small normal number.
                _ => &[0],
            };
            for &at in scales {
                b[at] = if dtype == DType::F16 { (i * 31) as u8 } else { 0 };
                b[at + 1] = 0x2c;
            }
        }
        let w = MatRef::new(dtype, rows, cols, data);
        let x: Vec<f32> = (0..cols).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
        let mut y = vec![0f32; rows];
        let packed = PackedMat::pack(&w);
        let tiled = packed.as_ref().map(|p| (p.as_mat(), Isa::Avx512)).filter(|_| Isa::Avx512.available());
        let runs = [Isa::Avx2, Isa::Avx512].into_iter().filter(|i| i.available()).map(|i| (w, i)).chain(tiled);
        for (w, isa) in runs {
            let mut best = f64::INFINITY;
            for _ in 0..8 {
                let t = Instant::now();
                matmul_with(isa, &pool, &w, &x, &mut y);
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{dtype} {isa:?}{} threads={threads} {:.0} MB: {:.2} ms, {:.2} GB/s",
                if w.layout == Layout::Tiles { "+tiles" } else { "" },
                data.len() as f64 / 1e6,
                best * 1e3,
                data.len() as f64 / best / 1e9
            );
        }
    }
}
