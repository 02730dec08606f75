//! `memwall plan --validate`: the planner checked against a real run.
//!
//! For each synthetic model (a shape and a weight type), this probes the
//! machine ([`crate::probe`]: streaming-read bandwidth, f32 and int8 matmul
//! peaks of memwall's own kernels), predicts the `pp N` and `tg N` tests of
//! the offline benchmark with the planner's roofline ([`super::roofline`]),
//! runs them ([`crate::bench`]) and reports predicted against measured.
//!
//! Two predictions are reported: the roofline of the probed ceilings plus
//! the probed overheads (barrier latency, element-wise rates, attention
//! FLOP/s: see [`super::roofline`]), and the same with the `this-machine`
//! entry's efficiencies (the fraction of probed bandwidth a decode step and
//! of probed matmul peak a prefill step's matmuls achieve), calibrated once
//! and stated in `data/hardware.toml`; nothing is fitted per run. The
//! ceilings are measured again right before every timed run (streaming-read
//! bandwidth over the probe's buffer, the matmul throughput of the model's
//! own weight type on the probe's `[128, 2048] · [2048, 2048]` shape, and
//! the overheads), so each
//! prediction sees the machine load its measurement sees (the development
//! machine is shared); the medians over runs are compared. The cost model is
//! built from the tensor sizes of the file the benchmark runs, with the f16
//! KV cache the benchmark uses.

use super::roofline::{decode_phase, prefill_phase, Bound, Phase};
use super::WeightType;
use crate::bench::{time_test, Test};
use crate::hardware::{Hardware, HardwareTable};
use crate::probe::{self, Ceilings};
use crate::synthetic::{write_gguf, SyntheticSpec};
use crate::PerfError;
use memwall_formats::gguf::GgufFile;
use memwall_kernels::ThreadPool;
use memwall_model::cost::{CostModel, WeightBytes};
use memwall_model::ModelConfig;
use serde::Serialize;

/// Bytes per cached K/V element of the benchmark's cache (f16).
pub const BENCH_KV_ELEM_BYTES: f64 = 2.0;

/// One predicted-against-measured comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub model: String,
    pub threads: usize,
    /// `pp128` (TTFT) or `tg32` (TPOT).
    pub test: String,
    /// `ttft_ms` or `tpot_ms`.
    pub metric: &'static str,
    /// With the calibrated efficiencies of the `this-machine` entry.
    pub predicted_ms: f64,
    pub measured_ms: f64,
    /// (predicted − measured) / measured.
    pub error: f64,
    /// The roofline of the probed ceilings (efficiency 1) with the probed
    /// overheads, and its error.
    pub roofline_ms: f64,
    pub roofline_error: f64,
    /// Of `predicted_ms`, what runs outside the matmuls' roofline:
    /// attention at its probed rate, element-wise kernels and barriers.
    pub overhead_ms: f64,
    /// The probed barrier latency, µs.
    pub barrier_us: f64,
    pub bound: Bound,
    /// The ceilings predicted against: bytes/s, matmul FLOP/s and
    /// attention FLOP/s.
    pub bandwidth: f64,
    pub peak_flops: f64,
    pub attention_flops: f64,
}

/// The prediction of one benchmark test: the phase whose step time is the
/// test's TTFT (`pp`) or TPOT (`tg`).
pub fn predict(cost: &CostModel, hw: &Hardware, weights: &WeightType, test: Test) -> Phase {
    match test {
        Test::Prompt(n) => prefill_phase(cost, hw, weights.class, 1, n),
        // tg N decodes N tokens from an empty cache: contexts 0..N.
        Test::Gen(n) => decode_phase(cost, hw, weights.class, 1, 0, n + 1),
    }
}

/// Validation settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub models: Vec<SyntheticSpec>,
    pub prompt: usize,
    pub gen: usize,
    pub threads: usize,
    pub reps: usize,
    pub seed: u64,
}

/// Runs the validation; `progress` receives status lines.
pub fn run(s: &Settings, progress: &mut dyn FnMut(&str)) -> Result<Vec<Row>, PerfError> {
    let base = HardwareTable::builtin().get("this-machine").expect("built-in entry").clone();
    let pool = ThreadPool::new(s.threads);
    let mut rows = Vec::new();
    for spec in &s.models {
        let stem = spec.file_stem();
        let path = std::env::temp_dir().join(format!("memwall-plan-validate-{}-{stem}.gguf", std::process::id()));
        progress(&format!("{stem}: writing synthetic model"));
        write_gguf(spec, &path, s.seed, &mut |_, _| {})?;
        let result = validate_file(s, spec, &path, &base, &pool, progress);
        std::fs::remove_file(&path).ok();
        rows.extend(result?);
    }
    Ok(rows)
}

fn validate_file(
    s: &Settings,
    spec: &SyntheticSpec,
    path: &std::path::Path,
    base: &Hardware,
    pool: &ThreadPool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>, PerfError> {
    let stem = spec.file_stem();
    let g = GgufFile::open(path)?;
    let config = ModelConfig::from_gguf(&g)?;
    let cost = CostModel::new(config.clone(), WeightBytes::from_gguf(&g, &config), BENCH_KV_ELEM_BYTES);
    drop(g);
    progress(&format!("{stem}: loading"));
    let loaded = memwall_model::load(path, &mut |_, _| {})?;
    loaded.model.warm(&mut |_, _| {});
    let weights = WeightType::parse(spec.dtype.name()).expect("every DType is a weight type");
    let mut rows = Vec::new();
    for test in [Test::Prompt(s.prompt), Test::Gen(s.gen)] {
        progress(&format!("{stem}: {}", test.name()));
        let per_token = if matches!(test, Test::Gen(_)) { test.n_tokens() as f64 } else { 1.0 };
        let (mut measured, mut predicted, mut raw, mut bws, mut peaks) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut overheads, mut barriers, mut attention) = (vec![], vec![], vec![]);
        let mut bound = Bound::Memory;
        for rep in 0..s.reps {
            // Ceilings right before the run: the shared machine's load changes.
            let flops = probe::matmul_flops(pool, spec.dtype, 2);
            let ceilings = Ceilings {
                threads: s.threads,
                bandwidth: probe::bandwidth(pool, probe::BANDWIDTH_BUFFER, 2),
                f32_flops: flops,
                int8_flops: flops,
                barrier_s: probe::barrier_latency(pool, 5),
                quantize_rate: probe::quantize_rate(5),
                elementwise_rate: probe::elementwise_rate(5),
                attention_flops: probe::attention_flops(pool, &config, 5),
            };
            let hw = base.with_probe(&ceilings, "");
            let t = time_test(&loaded.model, pool, test, 1, s.seed + rep as u64, None, &mut || {})?;
            measured.push(t[0].time.as_secs_f64() * 1e3 / per_token);
            let p = predict(&cost, &hw, &weights, test);
            predicted.push(p.time_s * 1e3);
            overheads.push((p.attention_s + p.elementwise_s + p.sync_s) * 1e3);
            barriers.push(ceilings.barrier_s * 1e6);
            attention.push(ceilings.attention_flops);
            raw.push(predict(&cost, &hw.uncalibrated(), &weights, test).time_s * 1e3);
            bound = p.bound;
            bws.push(ceilings.bandwidth);
            peaks.push(flops);
        }
        let (predicted, measured, raw) = (median(predicted), median(measured), median(raw));
        rows.push(Row {
            model: stem.clone(),
            threads: s.threads,
            test: test.name(),
            metric: if matches!(test, Test::Prompt(_)) { "ttft_ms" } else { "tpot_ms" },
            predicted_ms: predicted,
            measured_ms: measured,
            error: (predicted - measured) / measured,
            roofline_ms: raw,
            roofline_error: (raw - measured) / measured,
            overhead_ms: median(overheads),
            barrier_us: median(barriers),
            bound,
            bandwidth: median(bws),
            peak_flops: median(peaks),
            attention_flops: median(attention),
        });
    }
    Ok(rows)
}

fn median(mut s: Vec<f64>) -> f64 {
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The targets of issue 6: TPOT within 15%, TTFT within 25%.
pub fn within_target(r: &Row) -> bool {
    let limit = if r.metric == "tpot_ms" { 0.15 } else { 0.25 };
    r.error.abs() <= limit
}
