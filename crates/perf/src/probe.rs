//! Hardware probes: the ceilings MBU and MFU are measured against.
//!
//! * **Bandwidth**: every thread of a [`ThreadPool`] sums its own contiguous
//!   share of a buffer far larger than the caches (1 GiB: the Xeon VM of
//!   the project's first sessions reported a 480 MiB L3, the Zen 5 VM
//!   32 MiB), the access pattern of a matmul streaming weight rows
//!   ([`StreamRead`]; `memwall bench` also samples it during its tests,
//!   [`mod@crate::bench`]). Best of several passes,
//!   in GB/s (10⁹ bytes per second), as STREAM and llama.cpp's analyses report.
//! * **Compute**: a `[n_tokens = 128, 2048] · [2048, 2048]` matmul through
//!   memwall's own kernels ([`mod@memwall_kernels::matmul`]), with f32 weights
//!   (the f32 peak, used for float models) and Q8_0 weights (int8 dot
//!   products on 8-bit quantized activations, the peak of quantized models).
//!   These are the kernels' achievable peaks, not the datasheet's.
//! * **Overheads** (the terms of [`memwall_model::cost::Overhead`]): the
//!   latency of one thread-pool dispatch and barrier (an empty job, mean of
//!   many back to back: what each matmul of a decode step pays on top of
//!   its bytes); the single-thread rates of activation quantization and of
//!   the decoder's other element-wise kernels (norms, RoPE, SwiGLU, residual
//!   adds, in the proportions of a TinyLlama layer, on cache-resident rows);
//!   and the FLOP/s of memwall's causal attention over a 128-token prompt
//!   (TinyLlama's heads; `plan --validate` probes each model's own), which
//!   runs in f32 far below the matmul peak.
//!
//! Results serialize to JSON so a script can probe once and reuse the numbers
//! across many benchmark runs (`memwall bench --probe-file`).

use memwall_kernels::matmul::{repack_pays, PackedMat};
use memwall_kernels::quant::quantize_row;
use memwall_kernels::{matmul, DType, MatRef, ThreadPool};
use memwall_model::ModelConfig;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Bytes the bandwidth probe streams through.
pub const BANDWIDTH_BUFFER: usize = 1 << 30;

/// Measured ceilings at one thread count. The overhead fields are 0 when
/// not measured (probe files written before they existed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    pub threads: usize,
    /// Streaming-read bandwidth, bytes/s.
    pub bandwidth: f64,
    /// f32-weight matmul throughput, FLOP/s.
    pub f32_flops: f64,
    /// Q8_0-weight (int8) matmul throughput, FLOP/s.
    pub int8_flops: f64,
    /// One thread-pool dispatch and barrier, seconds.
    #[serde(default)]
    pub barrier_s: f64,
    /// Activation quantization to 8 bits on one thread, elements/s.
    #[serde(default)]
    pub quantize_rate: f64,
    /// The other element-wise kernels of a layer on one thread, elements/s.
    #[serde(default)]
    pub elementwise_rate: f64,
    /// Causal attention over a 128-token prompt, FLOP/s.
    #[serde(default)]
    pub attention_flops: f64,
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
            // A pass takes ~30 ms; filling the buffer costs more than 20 of them.
            // The best of many rides out moments when the shared host is busy.
            let bandwidth = bandwidth(&pool, BANDWIDTH_BUFFER, 20);
            progress(&format!("probing f32 matmul, {t} thread(s)"));
            let f32_flops = matmul_flops(&pool, DType::F32, 3);
            progress(&format!("probing int8 matmul, {t} thread(s)"));
            let int8_flops = matmul_flops(&pool, DType::Q8_0, 3);
            progress(&format!("probing barriers and element-wise kernels, {t} thread(s)"));
            by_threads.push(Ceilings {
                threads: t,
                bandwidth,
                f32_flops,
                int8_flops,
                barrier_s: barrier_latency(&pool, 5),
                quantize_rate: quantize_rate(5),
                elementwise_rate: elementwise_rate(5),
                attention_flops: attention_flops(&pool, &attention_probe_config(), 5),
            });
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
/// `passes` (after one untimed pass).
///
/// The buffer sits on 2 MiB pages, as repacked weights do
/// ([`memwall_kernels::matmul::HugeBuffer`]): on 4 KiB pages every page
/// costs a TLB miss under nested paging and restarts the hardware
/// prefetchers, and this very loop read 16.4 / 31.5 GB/s at 1 / 2 threads
/// on the project's earlier Xeon VM against 19.3 / 36-38 on huge pages — a
/// ceiling the tile kernels (33-35 GB/s at 2 threads, `stream_bench`)
/// would have passed. A reader with the kernels' software prefetches read
/// 17.5-18.2 / 34 there, slower than the plain loop.
pub fn bandwidth(pool: &ThreadPool, bytes: usize, passes: usize) -> f64 {
    let reader = StreamRead::new(bytes);
    reader.pass(pool);
    (0..passes).map(|_| reader.pass(pool)).fold(0.0, f64::max)
}

/// A buffer far larger than the caches that the threads of a pool read
/// through, each its own contiguous share (the access pattern of a matmul
/// streaming weight rows): one [`StreamRead::pass`] is one bandwidth sample.
pub struct StreamRead {
    buf: memwall_kernels::matmul::HugeBuffer,
}

impl StreamRead {
    /// A reader of `bytes` (rounded down to whole 8-byte words), filled with
    /// non-zero data.
    pub fn new(bytes: usize) -> StreamRead {
        let mut buf = memwall_kernels::matmul::HugeBuffer::zeroed(bytes / 8 * 8);
        for (i, w) in buf.as_mut_slice().chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        }
        StreamRead { buf }
    }

    /// Reads the whole buffer once with every thread of `pool`; bytes/s.
    pub fn pass(&self, pool: &ThreadPool) -> f64 {
        // SAFETY: every bit pattern is a valid u64; the buffer is 2 MiB
        // aligned, so the prefix is empty and the words are all of it.
        let (_, words, _) = unsafe { self.buf.as_slice().align_to::<u64>() };
        let n_words = words.len();
        let sums: Vec<std::sync::atomic::AtomicU64> = (0..pool.n_threads()).map(|_| Default::default()).collect();
        let start = Instant::now();
        pool.run(|i, n| {
            let chunk = n_words.div_ceil(n);
            let part = &words[(i * chunk).min(n_words)..((i + 1) * chunk).min(n_words)];
            sums[i].store(sum_words(part), std::sync::atomic::Ordering::Relaxed);
        });
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(&sums);
        (n_words * 8) as f64 / secs
    }
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

/// Seconds per [`ThreadPool::run`] of an empty job (dispatch, wake-up and
/// the closing barrier), mean of 2000 back-to-back runs, median of `passes`.
/// 0 with one thread, where a job runs inline.
pub fn barrier_latency(pool: &ThreadPool, passes: usize) -> f64 {
    const RUNS: u32 = 2000;
    if pool.n_threads() == 1 {
        return 0.0;
    }
    median_secs(passes, || {
        for _ in 0..RUNS {
            pool.run(|i, _| {
                std::hint::black_box(i);
            });
        }
    }) / RUNS as f64
}

/// Tokens and widths of the element-wise probes: a 16-token tile of a
/// TinyLlama layer (`d_model` 2048, 32 heads and 4 KV heads of 64, `d_ff`
/// 5632), small enough to stay in L2 as a prefill tile's activations do.
const EW_TOKENS: usize = 16;
const EW_D: usize = 2048;
const EW_HEAD: usize = 64;
const EW_KV: usize = 256;
const EW_FF: usize = 5632;

/// Activation elements quantized per second on one thread
/// ([`memwall_kernels::quant::quantize_row_q8`], what every quantized matmul
/// runs on its input), median of `passes`.
pub fn quantize_rate(passes: usize) -> f64 {
    const QK: usize = 32;
    let x = probe_row(EW_TOKENS * EW_D);
    let (mut qs, mut d, mut s) = (vec![0i8; x.len()], vec![0f32; x.len() / QK], vec![0f32; x.len() / QK]);
    let secs = median_secs(passes, || {
        for _ in 0..8 {
            memwall_kernels::quant::quantize_row_q8(&x, &mut qs, &mut d, &mut s);
        }
        std::hint::black_box((&qs, &d));
    });
    (8 * x.len()) as f64 / secs
}

/// Elements per second of the decoder's other element-wise kernels on one
/// thread, counted as [`memwall_model::cost::Overhead::elementwise`] counts
/// them: per token two RMS norms and two residual adds over `d_model`, RoPE
/// over Q and K, and SwiGLU over `d_ff` (the KV write is counted at this
/// rate too). Median of `passes`.
pub fn elementwise_rate(passes: usize) -> f64 {
    use memwall_kernels::ops;
    let x = probe_row(EW_TOKENS * EW_D);
    let weight = probe_row(EW_D);
    let (gate, up) = (probe_row(EW_TOKENS * EW_FF), probe_row(EW_TOKENS * EW_FF));
    let inv_freq: Vec<f32> = (0..EW_HEAD / 2).map(|i| 10000f32.powf(-2.0 * i as f32 / EW_HEAD as f32)).collect();
    let (mut h, mut q, mut k) = (x.clone(), x.clone(), probe_row(EW_TOKENS * EW_KV));
    let mut act = vec![0f32; EW_TOKENS * EW_FF];
    let mut cs = vec![0f32; EW_TOKENS * EW_HEAD];
    for (t, cs) in cs.chunks_exact_mut(EW_HEAD).enumerate() {
        ops::rope_angles(t, &inv_freq, cs);
    }
    let secs = median_secs(passes, || {
        for _ in 0..2 {
            for (xr, hr) in x.chunks_exact(EW_D).zip(h.chunks_exact_mut(EW_D)) {
                ops::rms_norm(xr, &weight, 1e-5, hr);
            }
            for (a, b) in h.iter_mut().zip(&x) {
                *a += b;
            }
        }
        // As the decoder: each token's angles once, then every head of Q and K.
        for ((q, k), cs) in q.chunks_exact_mut(EW_D).zip(k.chunks_exact_mut(EW_KV)).zip(cs.chunks_exact_mut(EW_HEAD)) {
            for head in q.chunks_exact_mut(EW_HEAD).chain(k.chunks_exact_mut(EW_HEAD)) {
                ops::rope_interleaved(head, cs);
            }
        }
        ops::swiglu(&gate, &up, &mut act);
        std::hint::black_box((&h, &q, &k, &act));
    });
    // Per token: 2 · (norm + add over d_model), RoPE over q_dim + kv_dim, SwiGLU over d_ff.
    let per_token = 4 * EW_D + (EW_D + EW_KV) + EW_FF;
    (EW_TOKENS * per_token) as f64 / secs
}

/// FLOP/s of memwall's causal attention ([`memwall_model::attention`]) over
/// a 128-token prompt of one layer with `config`'s heads (f16 cache),
/// counted as the cost model counts it: `4 · q_dim · Σ positions attended`.
/// Median of `passes`.
pub fn attention_flops(pool: &ThreadPool, config: &ModelConfig, passes: usize) -> f64 {
    use memwall_model::{ContiguousKvCache, KvCache, KvElem, LogitsWanted, SeqInput};
    const N: usize = 128;
    let (q_dim, kv_dim) = (config.q_dim(), config.kv_dim());
    let mut kv = ContiguousKvCache::new(1, kv_dim, N, KvElem::F16);
    kv.reserve(0, N).expect("room for the probe's prompt");
    kv.write(0, 0, 0, &probe_row(N * kv_dim), &probe_row(N * kv_dim));
    let q = probe_row(N * q_dim);
    let mut out = vec![0f32; N * q_dim];
    let tokens = [0u32; N];
    let input = SeqInput { seq: 0, tokens: &tokens, start: 0, logits: LogitsWanted::None };
    let secs = median_secs(passes, || {
        memwall_model::attention::attend_batch(pool, config, &[input], &kv, 0, &q, &mut out);
        std::hint::black_box(&out);
    });
    4.0 * q_dim as f64 * (N * (N + 1) / 2) as f64 / secs
}

/// The shape [`Probe::measure`] probes attention on: TinyLlama-1.1B's
/// (32 query heads and 4 KV heads of 64).
pub fn attention_probe_config() -> ModelConfig {
    crate::synthetic::Shape::by_name("tinyllama-1.1b").expect("built-in shape").config()
}

/// `[n]` values in [-0.5, 0.5), deterministic.
fn probe_row(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

/// Median wall time of `passes` runs of `f`, seconds, after one untimed
/// run. The median, not the best: these probes are short, and the time of a
/// step on a shared machine includes the load a best-of pass would filter
/// out (the single-threaded ones are not otherwise slowed by other work).
fn median_secs(passes: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..passes.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
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
    fn overhead_probes_return_positive_numbers() {
        let pool = ThreadPool::new(2);
        assert!(barrier_latency(&pool, 1) > 0.0);
        assert_eq!(barrier_latency(&ThreadPool::new(1), 1), 0.0);
        assert!(quantize_rate(1) > 0.0 && elementwise_rate(1) > 0.0);
        assert!(attention_flops(&pool, &attention_probe_config(), 1) > 0.0);
    }

    #[test]
    fn old_probe_files_parse_with_overheads_unmeasured() {
        let old = r#"{"cpu":"x","by_threads":[{"threads":2,"bandwidth":1e10,"f32_flops":1e11,"int8_flops":2e11}]}"#;
        let p: Probe = serde_json::from_str(old).unwrap();
        let c = p.at(2).unwrap();
        assert_eq!((c.int8_flops, c.barrier_s, c.attention_flops), (2e11, 0.0, 0.0));
        let new = Ceilings { barrier_s: 3e-6, quantize_rate: 1e9, ..c.clone() };
        let round: Ceilings = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(round, new);
    }

    #[test]
    fn at_picks_the_nearest_measured_count() {
        let c = |t| Ceilings { threads: t, bandwidth: t as f64, ..Default::default() };
        let p = Probe { cpu: String::new(), by_threads: vec![c(1), c(2)] };
        assert_eq!(p.at(2).map(|c| c.threads), Some(2));
        assert_eq!(p.at(8).map(|c| c.threads), Some(2));
        assert!(p.covers(&[1, 2]) && !p.covers(&[4]));
    }
}
