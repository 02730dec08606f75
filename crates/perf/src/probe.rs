//! Hardware probes: the ceilings MBU and MFU are measured against.
//!
//! * **Bandwidth**: every thread of a [`ThreadPool`] sums its own contiguous
//!   share of a buffer far larger than the caches (1 GiB: this machine's
//!   hypervisor reports a 480 MiB L3), the
//!   access pattern of a matmul streaming weight rows. Best of several passes,
//!   in GB/s (10⁹ bytes per second), as STREAM and llama.cpp's analyses report.
//! * **Compute**: a `[n_tokens = 128, 2048] · [2048, 2048]` matmul through
//!   memwall's own kernels ([`memwall_kernels::matmul`]), with f32 weights
//!   (the f32 peak, used for float models) and Q8_0 weights (int8 dot
//!   products on 8-bit quantized activations, the peak of quantized models).
//!   These are the kernels' achievable peaks, not the datasheet's.
//!
//! Results serialize to JSON so a script can probe once and reuse the numbers
//! across many benchmark runs (`memwall bench --probe-file`).

use memwall_kernels::matmul::{repack_pays, PackedMat};
use memwall_kernels::quant::quantize_row;
use memwall_kernels::{matmul, DType, MatRef, ThreadPool};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Bytes the bandwidth probe streams through.
pub const BANDWIDTH_BUFFER: usize = 1 << 30;

/// Measured ceilings at one thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    pub threads: usize,
    /// Streaming-read bandwidth, bytes/s.
    pub bandwidth: f64,
    /// f32-weight matmul throughput, FLOP/s.
    pub f32_flops: f64,
    /// Q8_0-weight (int8) matmul throughput, FLOP/s.
    pub int8_flops: f64,
}

/// The probe's results for every thread count measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub cpu: String,
    pub by_threads: Vec<Ceilings>,
}

impl Probe {
    /// Measures each thread count in `threads`.
    pub fn measure(threads: &[usize], progress: &mut dyn FnMut(&str)) -> Probe {
        let mut by_threads = Vec::new();
        for &t in threads {
            let pool = ThreadPool::new(t);
            progress(&format!("probing bandwidth, {t} thread(s)"));
            let bandwidth = bandwidth(&pool, BANDWIDTH_BUFFER, 5);
            progress(&format!("probing f32 matmul, {t} thread(s)"));
            let f32_flops = matmul_flops(&pool, DType::F32, 3);
            progress(&format!("probing int8 matmul, {t} thread(s)"));
            let int8_flops = matmul_flops(&pool, DType::Q8_0, 3);
            by_threads.push(Ceilings { threads: t, bandwidth, f32_flops, int8_flops });
        }
        Probe { cpu: cpu_name(), by_threads }
    }

    /// The ceilings at `threads`, or those of the nearest thread count below
    /// (above, if none is below).
    pub fn at(&self, threads: usize) -> Option<&Ceilings> {
        let below = self.by_threads.iter().filter(|c| c.threads <= threads).max_by_key(|c| c.threads);
        below.or_else(|| self.by_threads.iter().min_by_key(|c| c.threads))
    }

    /// Whether every count in `threads` was measured.
    pub fn covers(&self, threads: &[usize]) -> bool {
        threads.iter().all(|t| self.by_threads.iter().any(|c| c.threads == *t))
    }
}

/// The CPU model name from `/proc/cpuinfo` (empty elsewhere).
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default()
}

/// Streaming-read bandwidth in bytes/s over a buffer of `bytes`, best of
/// `passes` (after one untimed pass that faults the pages in).
pub fn bandwidth(pool: &ThreadPool, bytes: usize, passes: usize) -> f64 {
    let words = bytes / 8;
    let buf: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let mut best = 0.0f64;
    for pass in 0..=passes {
        let start = Instant::now();
        let sums: Vec<std::sync::atomic::AtomicU64> = (0..pool.n_threads()).map(|_| Default::default()).collect();
        pool.run(|i, n| {
            let chunk = words.div_ceil(n);
            let part = &buf[(i * chunk).min(words)..((i + 1) * chunk).min(words)];
            sums[i].store(sum_words(part), std::sync::atomic::Ordering::Relaxed);
        });
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(&sums);
        if pass > 0 {
            best = best.max((words * 8) as f64 / secs);
        }
    }
    best
}

/// Sum of `x`, with 256-bit loads when the CPU has AVX2 (a baseline x86-64
/// build would otherwise use 128-bit loads, which one core cannot issue fast
/// enough to saturate memory on some machines).
fn sum_words(x: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present.
        return unsafe { sum_words_avx2(x) };
    }
    sum_words_portable(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_words_avx2(x: &[u64]) -> u64 {
    sum_words_portable(x)
}

/// Sum with eight independent accumulators (the compiler vectorizes it).
#[inline(always)]
fn sum_words_portable(x: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*v);
        }
    }
    let tail: u64 = chunks.remainder().iter().fold(0, |a, v| a.wrapping_add(*v));
    acc.iter().fold(tail, |a, v| a.wrapping_add(*v))
}

/// FLOP/s of a `[128, 2048] · [2048, 2048]` matmul with weights in `dtype`,
/// in the layout a model loader would give them (repacked into tiles where
/// that pays, as `memwall_model` does), best of `passes` after one warm-up.
pub fn matmul_flops(pool: &ThreadPool, dtype: DType, passes: usize) -> f64 {
    const N_TOKENS: usize = 128;
    const D: usize = 2048;
    let row: Vec<f32> = (0..D).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let rb = dtype.row_bytes(D).expect("2048 is whole blocks");
    let mut data = vec![0u8; rb * D];
    for r in data.chunks_exact_mut(rb) {
        quantize_row(dtype, &row, r);
    }
    let file = MatRef::new(dtype, D, D, &data);
    let packed = if repack_pays(dtype) { PackedMat::pack(&file) } else { None };
    let w = packed.as_ref().map_or(file, PackedMat::as_mat);
    let x: Vec<f32> = (0..N_TOKENS * D).map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5).collect();
    let mut y = vec![0f32; N_TOKENS * D];
    let flops = 2.0 * (N_TOKENS * D * D) as f64;
    let mut best = 0.0f64;
    for pass in 0..=passes {
        let start = Instant::now();
        matmul(pool, &w, &x, &mut y);
        let secs = start.elapsed().as_secs_f64();
        if pass > 0 {
            best = best.max(flops / secs);
        }
    }
    std::hint::black_box(&y);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_words_matches_a_plain_sum() {
        let x: Vec<u64> = (0..1003).map(|i| i * i).collect();
        assert_eq!(sum_words(&x), x.iter().sum::<u64>());
    }

    #[test]
    fn probes_return_positive_numbers() {
        let pool = ThreadPool::new(2);
        assert!(bandwidth(&pool, 1 << 20, 1) > 0.0);
        let p = Probe { cpu: String::new(), by_threads: vec![] };
        assert!(p.at(1).is_none());
    }

    #[test]
    fn at_picks_the_nearest_measured_count() {
        let c = |t| Ceilings { threads: t, bandwidth: t as f64, f32_flops: 0.0, int8_flops: 0.0 };
        let p = Probe { cpu: String::new(), by_threads: vec![c(1), c(2)] };
        assert_eq!(p.at(2).map(|c| c.threads), Some(2));
        assert_eq!(p.at(8).map(|c| c.threads), Some(2));
        assert!(p.covers(&[1, 2]) && !p.covers(&[4]));
    }
}
