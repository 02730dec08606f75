//! Decode-shaped matmul (one token) on a weight matrix far larger than the
//! caches, so that it measures the kernels' streaming rate from memory
//! (not a test: it asserts nothing).
//!
//! `[HUGE=1] cargo run --release -p memwall-kernels --example stream_bench [threads] [MB]`
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
    for dtype in [DType::Q4_0, DType::Q8_0, DType::Q4_1] {
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
            b[0] = 0;
            b[1] = 0x2c;
            if matches!(dtype, DType::Q4_1) {
                b[2] = 0;
                b[3] = 0x2c;
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
