//! The offline benchmark: llama-bench's tests on memwall's decoder.
//!
//! * `pp N` — one forward step over a prompt of N random tokens (empty cache,
//!   logits for the last token): prefill throughput, and its time is the
//!   time to first token (TTFT) of an N-token prompt.
//! * `tg N` — N decode steps of one random token each, from an empty cache:
//!   decode throughput; time / N is the time per output token (TPOT).
//!
//! Each test runs one untimed warm-up, then `reps` timed runs; the median is
//! reported (robust to the noise of a shared machine). The cost model gives
//! the bytes and FLOPs of the run, so
//! `MBU = bytes / time / bandwidth` and `MFU = FLOPs / time / peak`, with the
//! ceilings the probe measured at the same thread count (the int8 peak for
//! quantized weights, the f32 peak otherwise).
//!
//! **Live MBU.** On a shared host the bandwidth a VM gets moves with its
//! neighbours: on this project's Zen 5 VM a plain read at 2 threads moves
//! between ~35 and ~80 GB/s within seconds (`examples/bandwidth_trace.rs`
//! of this crate), so a probe taken once, before the tests, can be in
//! the other phase than the test it is divided into. With a [`StreamRead`]
//! the tests sample the bandwidth while they run: a tg test reads
//! [`LIVE_BYTES`] with every thread before its first step, every
//! [`LIVE_EVERY`] steps and after its last (outside the timed steps); a pp
//! test before and after its step. A run's live bandwidth is the median of
//! its samples; `mbu_live` is the median of the runs' bytes / time / live
//! bandwidth.

use crate::probe::{Ceilings, StreamRead};
use crate::synthetic::XorShift;
use crate::PerfError;
use memwall_kernels::ThreadPool;
use memwall_model::cost::{Cost, CostModel, SeqStep};
use memwall_model::{ContiguousKvCache, KvCache, KvElem, LogitsWanted, Model, Scratch, SeqInput};
use serde::Serialize;
use std::time::{Duration, Instant};

/// A benchmark test, named as llama-bench names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Prefill of N tokens in one step.
    Prompt(usize),
    /// N single-token decode steps.
    Gen(usize),
}

impl Test {
    /// `pp512`, `tg128`.
    pub fn name(&self) -> String {
        match self {
            Test::Prompt(n) => format!("pp{n}"),
            Test::Gen(n) => format!("tg{n}"),
        }
    }

    pub fn n_tokens(&self) -> usize {
        match self {
            Test::Prompt(n) | Test::Gen(n) => *n,
        }
    }

    /// Bytes and FLOPs of one run under `cost`.
    pub fn cost(&self, cost: &CostModel) -> Cost {
        match *self {
            Test::Prompt(n) => cost.step(&[SeqStep::prefill(n)]).total(),
            Test::Gen(n) => cost.decode_run(0, n),
        }
    }
}

/// One test's result: one JSON object of `memwall bench --json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub test: String,
    pub threads: usize,
    pub n_tokens: usize,
    pub reps: usize,
    /// Tokens / median time.
    pub tokens_per_s: f64,
    /// Standard deviation of tokens/s over the runs.
    pub tokens_per_s_stddev: f64,
    /// Median run time, seconds.
    pub median_s: f64,
    /// pp: the prefill's time (time to first token); tg: absent.
    pub ttft_ms: Option<f64>,
    /// tg: median time per decode step; pp: absent.
    pub tpot_ms: Option<f64>,
    /// Bytes moved per token (cost model).
    pub bytes_per_token: f64,
    /// FLOPs per token (cost model).
    pub flops_per_token: f64,
    /// Model bandwidth utilisation against `bandwidth`.
    pub mbu: Option<f64>,
    /// Model FLOP/s utilisation against `peak_flops`.
    pub mfu: Option<f64>,
    /// The ceilings used, bytes/s and FLOP/s.
    pub bandwidth: Option<f64>,
    pub peak_flops: Option<f64>,
    /// Median of the runs' MBU against the bandwidth sampled while each ran
    /// (see the module docs).
    pub mbu_live: Option<f64>,
    /// Median of the runs' live bandwidths, bytes/s.
    pub bandwidth_live: Option<f64>,
}

/// Bytes of one live bandwidth sample: far above the L3 a core sees on
/// common CPUs (32 MiB on this Zen 5 VM), so the sample streams from memory;
/// ~3-6 ms at 45-80 GB/s.
pub const LIVE_BYTES: usize = 256 << 20;

/// Decode steps of a tg test between two live bandwidth samples.
pub const LIVE_EVERY: usize = 16;

/// One timed run of a test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    /// The forward steps' time (live samples excluded).
    pub time: Duration,
    /// Median of the bandwidth samples taken during the run, bytes/s
    /// (`None` without a [`StreamRead`]).
    pub bandwidth: Option<f64>,
}

/// Runs `test` `reps` times (after one warm-up) and returns the runs,
/// sampling the bandwidth during each with `live` when given (see the
/// module docs). `progress()` is called after every run, the warm-up included.
pub fn time_test(
    model: &Model,
    pool: &ThreadPool,
    test: Test,
    reps: usize,
    seed: u64,
    live: Option<&StreamRead>,
    progress: &mut dyn FnMut(),
) -> Result<Vec<Run>, PerfError> {
    let c = &model.config;
    let mut rng = XorShift::new(seed);
    let mut scratch = Scratch::default();
    let mut runs = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let n = test.n_tokens();
        let tokens: Vec<u32> = (0..n).map(|_| (rng.next_u64() % c.vocab as u64) as u32).collect();
        let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), n.max(1), KvElem::F16);
        kv.reserve(0, n.max(1))
            .map_err(|e| memwall_model::ModelError::PromptTooLong { prompt: e.requested, context: e.capacity })?;
        let mut samples = Vec::new();
        let sample = |samples: &mut Vec<f64>| samples.extend(live.map(|l| l.pass(pool)));
        let mut time = Duration::ZERO;
        let mut step = |inputs: &[SeqInput<'_>], kv: &mut ContiguousKvCache| {
            let start = Instant::now();
            let out = model.forward(inputs, kv, pool, &mut scratch).map(|l| std::hint::black_box(l.len()));
            time += start.elapsed();
            out
        };
        match test {
            Test::Prompt(_) => {
                sample(&mut samples);
                step(&[SeqInput { seq: 0, tokens: &tokens, start: 0, logits: LogitsWanted::Last }], &mut kv)?;
            }
            Test::Gen(_) => {
                for (pos, t) in tokens.iter().enumerate() {
                    if pos % LIVE_EVERY == 0 {
                        sample(&mut samples);
                    }
                    let tokens = std::slice::from_ref(t);
                    step(&[SeqInput { seq: 0, tokens, start: pos, logits: LogitsWanted::Last }], &mut kv)?;
                }
            }
        }
        sample(&mut samples);
        if rep > 0 {
            runs.push(Run { time, bandwidth: live.map(|_| median(&mut samples)) });
        }
        progress();
    }
    Ok(runs)
}

/// Turns run times into a [`BenchResult`].
pub fn summarize(
    test: Test,
    threads: usize,
    runs: &[Run],
    cost: &CostModel,
    quantized: bool,
    ceilings: Option<&Ceilings>,
) -> BenchResult {
    let n = test.n_tokens().max(1) as f64;
    let mut secs: Vec<f64> = runs.iter().map(|r| r.time.as_secs_f64()).collect();
    let median_s = median(&mut secs);
    let tps: Vec<f64> = secs.iter().map(|s| n / s).collect();
    let mean = tps.iter().sum::<f64>() / tps.len().max(1) as f64;
    let var = tps.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (tps.len().max(2) - 1) as f64;
    let run = test.cost(cost);
    let bandwidth = ceilings.map(|c| c.bandwidth);
    let peak_flops = ceilings.map(|c| if quantized { c.int8_flops } else { c.f32_flops });
    // Live: each run against its own samples, then the median of the runs
    // (none unless every run was sampled).
    let live: Option<(Vec<f64>, Vec<f64>)> = runs
        .iter()
        .map(|r| r.bandwidth.map(|bw| (bw, run.bytes / r.time.as_secs_f64() / bw)))
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().unzip());
    let (bandwidth_live, mbu_live) = match live {
        Some((mut bw, mut mbu)) if !bw.is_empty() => (Some(median(&mut bw)), Some(median(&mut mbu))),
        _ => (None, None),
    };
    BenchResult {
        test: test.name(),
        threads,
        n_tokens: test.n_tokens(),
        reps: runs.len(),
        tokens_per_s: n / median_s,
        tokens_per_s_stddev: var.sqrt(),
        median_s,
        ttft_ms: matches!(test, Test::Prompt(_)).then_some(median_s * 1e3),
        tpot_ms: matches!(test, Test::Gen(_)).then_some(median_s * 1e3 / n),
        bytes_per_token: run.bytes / n,
        flops_per_token: run.flops / n,
        mbu: bandwidth.map(|b| run.bytes / median_s / b),
        mfu: peak_flops.map(|p| run.flops / median_s / p),
        bandwidth,
        peak_flops,
        mbu_live,
        bandwidth_live,
    }
}

/// The median of `v`, which it sorts.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let sorted = &*v;
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names() {
        assert_eq!(Test::Prompt(512).name(), "pp512");
        assert_eq!(Test::Gen(128).name(), "tg128");
    }

    #[test]
    fn live_mbu_is_each_run_against_its_own_bandwidth() {
        let c = crate::synthetic::Shape::by_name("tinyllama-1.1b").expect("a known shape").config();
        let weights = memwall_model::cost::WeightBytes::uniform(&c, memwall_kernels::DType::Q4_0);
        let cost = CostModel::new(c, weights, 2.0);
        let test = Test::Gen(4);
        let bytes = test.cost(&cost).bytes;
        // Run 1 is twice as fast as run 2 in a phase with twice the bandwidth:
        // both used the same share of what they had.
        let runs = [
            Run { time: Duration::from_secs(1), bandwidth: Some(2.0 * bytes) },
            Run { time: Duration::from_secs(2), bandwidth: Some(bytes) },
            Run { time: Duration::from_secs(4), bandwidth: Some(bytes / 8.0) },
        ];
        let r = summarize(test, 1, &runs, &cost, true, None);
        // Per run: 0.5, 0.5, 2.0; median 0.5. Bandwidths: median `bytes`.
        assert_eq!(r.mbu_live, Some(0.5));
        assert_eq!(r.bandwidth_live, Some(bytes));
        assert_eq!(r.mbu, None);
        let unsampled = [Run { time: Duration::from_secs(1), bandwidth: None }];
        assert_eq!(summarize(test, 1, &unsampled, &cost, true, None).mbu_live, None);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&mut [9.0, 1.0, 4.0, 2.0]), 3.0);
    }
}
