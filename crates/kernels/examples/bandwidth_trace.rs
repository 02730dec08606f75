//! The memory bandwidth this machine gives over time: every `interval` ms,
//! every thread of a pool reads its share of a 512 MiB buffer on 2 MiB
//! pages once; prints one GB/s figure per sample (not a test: it asserts
//! nothing).
//!
//! `cargo run --release -p memwall-kernels --example bandwidth_trace [threads] [seconds] [interval_ms]`
//!
//! On a shared host the figure moves with the neighbours' load: on this
//! project's Zen 5 VM, 2 threads read ~35-48 GB/s most of the time and
//! ~67-75 GB/s for seconds at a time. This is why `memwall bench` samples
//! the bandwidth while its tests run (live MBU).
use memwall_kernels::matmul::HugeBuffer;
use memwall_kernels::ThreadPool;
use std::time::{Duration, Instant};

fn main() {
    let arg = |i: usize, default: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (threads, seconds, interval) = (arg(1, 2) as usize, arg(2, 60), arg(3, 200));
    let pool = ThreadPool::new(threads);
    let mut buf = HugeBuffer::zeroed(512 << 20);
    for (i, w) in buf.as_mut_slice().chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(i as u64).to_le_bytes());
    }
    let bytes = buf.as_slice();
    let begin = Instant::now();
    while begin.elapsed().as_secs() < seconds {
        let start = Instant::now();
        pool.run(|i, n| {
            let share = bytes.len().div_ceil(n);
            let part = &bytes[(i * share).min(bytes.len())..((i + 1) * share).min(bytes.len())];
            std::hint::black_box(sum_fast(part));
        });
        let gbs = bytes.len() as f64 / start.elapsed().as_secs_f64() / 1e9;
        println!("{:7.2} s {gbs:6.1} GB/s", begin.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(interval));
    }
}

/// [`sum`] with 256-bit loads where the CPU has AVX2 (as the probe reads).
fn sum_fast(x: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present.
        return unsafe { sum_avx2(x) };
    }
    sum(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(x: &[u8]) -> u64 {
    sum(x)
}

/// Sum of `x` as 64-bit words, eight independent accumulators.
#[inline(always)]
fn sum(x: &[u8]) -> u64 {
    let mut acc = [0u64; 8];
    for c in x.chunks_exact(64) {
        for (a, w) in acc.iter_mut().zip(c.chunks_exact(8)) {
            *a = a.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
    }
    acc.iter().fold(0, |a, v| a.wrapping_add(*v))
}
