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

use crate::probe::Ceilings;
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
}

/// Runs `test` `reps` times (after one warm-up) and returns the run times.
/// `progress()` is called after every run, the warm-up included.
pub fn time_test(
    model: &Model,
    pool: &ThreadPool,
    test: Test,
    reps: usize,
    seed: u64,
    progress: &mut dyn FnMut(),
) -> Result<Vec<Duration>, PerfError> {
    let c = &model.config;
    let mut rng = XorShift::new(seed);
    let mut scratch = Scratch::default();
    let mut times = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let n = test.n_tokens();
        let tokens: Vec<u32> = (0..n).map(|_| (rng.next_u64() % c.vocab as u64) as u32).collect();
        let mut kv = ContiguousKvCache::new(c.n_layers, c.kv_dim(), n.max(1), KvElem::F16);
        kv.reserve(0, n.max(1))
            .map_err(|e| memwall_model::ModelError::PromptTooLong { prompt: e.requested, context: e.capacity })?;
        let start = Instant::now();
        match test {
            Test::Prompt(_) => {
                let input = SeqInput { seq: 0, tokens: &tokens, start: 0, logits: LogitsWanted::Last };
                std::hint::black_box(model.forward(&[input], &mut kv, pool, &mut scratch)?);
            }
            Test::Gen(_) => {
                for (pos, t) in tokens.iter().enumerate() {
                    let input =
                        SeqInput { seq: 0, tokens: std::slice::from_ref(t), start: pos, logits: LogitsWanted::Last };
                    std::hint::black_box(model.forward(&[input], &mut kv, pool, &mut scratch)?);
                }
            }
        }
        let elapsed = start.elapsed();
        if rep > 0 {
            times.push(elapsed);
        }
        progress();
    }
    Ok(times)
}

/// Turns run times into a [`BenchResult`].
pub fn summarize(
    test: Test,
    threads: usize,
    times: &[Duration],
    cost: &CostModel,
    quantized: bool,
    ceilings: Option<&Ceilings>,
) -> BenchResult {
    let n = test.n_tokens().max(1) as f64;
    let mut secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let median = median(&secs);
    let tps: Vec<f64> = secs.iter().map(|s| n / s).collect();
    let mean = tps.iter().sum::<f64>() / tps.len().max(1) as f64;
    let var = tps.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (tps.len().max(2) - 1) as f64;
    let run = test.cost(cost);
    let bandwidth = ceilings.map(|c| c.bandwidth);
    let peak_flops = ceilings.map(|c| if quantized { c.int8_flops } else { c.f32_flops });
    BenchResult {
        test: test.name(),
        threads,
        n_tokens: test.n_tokens(),
        reps: times.len(),
        tokens_per_s: n / median,
        tokens_per_s_stddev: var.sqrt(),
        median_s: median,
        ttft_ms: matches!(test, Test::Prompt(_)).then_some(median * 1e3),
        tpot_ms: matches!(test, Test::Gen(_)).then_some(median * 1e3 / n),
        bytes_per_token: run.bytes / n,
        flops_per_token: run.flops / n,
        mbu: bandwidth.map(|b| run.bytes / median / b),
        mfu: peak_flops.map(|p| run.flops / median / p),
        bandwidth,
        peak_flops,
    }
}

fn median(sorted: &[f64]) -> f64 {
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
    fn median_of_odd_and_even() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
