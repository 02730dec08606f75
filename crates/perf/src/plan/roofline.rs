//! The roofline of one phase: each step takes the longer of its compute
//! time (FLOPs / peak) and its memory time (bytes moved / bandwidth), and the
//! phase is bound by whichever wall dominates (Williams, Waterman and
//! Patterson, "Roofline", CACM 2009).
//!
//! Prefill is one step over every prompt of the batch; decode is the mean
//! of the steps that generate tokens 2..=output, whose context grows from the
//! prompt length by one per step (so the KV read grows with it).
//!
//! A step also pays what FLOPs and bytes do not measure, the cost model's
//! [`Overhead`], at the rates the chip's entry states (on this machine, what
//! the probe measured), added to the roofline because it runs between the
//! matmuls rather than overlapped with them:
//!
//! ```text
//! compute  = matmul FLOPs / peak + attention FLOPs / attention FLOP/s
//! step     = max(compute, bytes / bandwidth)
//!          + quantized elements / quantize rate      (quantized weights only)
//!          + element-wise elements / element-wise rate
//!          + barriers × barrier latency
//! ```
//!
//! An entry without an attention rate runs attention at the matmul peak, and
//! one without the other rates pays nothing for them: the pure roofline.

use crate::hardware::{ComputeClass, Hardware};
use memwall_model::cost::{CostModel, LayerKind, Overhead, SeqStep, StepCost};
use serde::Serialize;

/// The wall a phase hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    Memory,
    Compute,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Memory => "memory",
            Bound::Compute => "compute",
        }
    }
}

/// One phase's costs and time, per step (decode: mean step).
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// FLOPs of a step.
    pub flops: f64,
    /// Bytes moved by a step (weights, KV read and written, embedding rows).
    pub bytes: f64,
    /// Of which weight matrices.
    pub weight_bytes: f64,
    /// FLOPs / peak.
    pub compute_s: f64,
    /// Bytes / bandwidth.
    pub memory_s: f64,
    /// Weight bytes / bandwidth: the floor no batch or KV layout removes.
    pub weights_s: f64,
    /// Of `compute_s`, attention at its own rate (0 when the chip states none).
    pub attention_s: f64,
    /// Activation quantization and other element-wise kernels, seconds.
    pub elementwise_s: f64,
    /// Barriers × barrier latency, seconds.
    pub sync_s: f64,
    /// Overhead counts of a step.
    pub overhead: Overhead,
    /// Step time, seconds: `max(compute_s, memory_s) + elementwise_s + sync_s`.
    pub time_s: f64,
    pub bound: Bound,
    /// Arithmetic intensity, FLOPs per byte: the x of the roofline plot.
    pub intensity: f64,
}

impl Phase {
    /// Mean over `steps`.
    fn from_steps(steps: &[StepCost], weight_bytes: f64, hw: &Hardware, class: ComputeClass) -> Phase {
        let (peak, bw) = (hw.peak_flops(class), hw.bandwidth());
        let n = steps.len().max(1) as f64;
        let mut sum = Phase {
            flops: 0.0,
            bytes: 0.0,
            weight_bytes,
            compute_s: 0.0,
            memory_s: 0.0,
            weights_s: weight_bytes / bw,
            attention_s: 0.0,
            elementwise_s: 0.0,
            sync_s: 0.0,
            overhead: Overhead::default(),
            time_s: 0.0,
            bound: Bound::Memory,
            intensity: 0.0,
        };
        for step in steps {
            let total = step.total();
            let attn_flops = step.get(LayerKind::AttnKv).flops;
            let (matmul_flops, attention_s) = match hw.attention_flops() {
                Some(rate) => (total.flops - attn_flops, attn_flops / rate),
                None => (total.flops, 0.0),
            };
            let compute = matmul_flops / peak + attention_s;
            let memory = total.bytes / bw;
            let elementwise = elementwise_s(&step.overhead, step.n_tokens, hw, class);
            let sync = step.overhead.barriers * hw.barrier_s();
            sum.flops += total.flops;
            sum.bytes += total.bytes;
            sum.compute_s += compute;
            sum.memory_s += memory;
            sum.attention_s += attention_s;
            sum.elementwise_s += elementwise;
            sum.sync_s += sync;
            sum.overhead += step.overhead;
            sum.time_s += compute.max(memory) + elementwise + sync;
        }
        let o = sum.overhead;
        Phase {
            flops: sum.flops / n,
            bytes: sum.bytes / n,
            compute_s: sum.compute_s / n,
            memory_s: sum.memory_s / n,
            attention_s: sum.attention_s / n,
            elementwise_s: sum.elementwise_s / n,
            sync_s: sum.sync_s / n,
            overhead: Overhead { barriers: o.barriers / n, quantized: o.quantized / n, elementwise: o.elementwise / n },
            time_s: sum.time_s / n,
            bound: if sum.compute_s > sum.memory_s { Bound::Compute } else { Bound::Memory },
            intensity: sum.flops / sum.bytes.max(1.0),
            ..sum
        }
    }
}

/// Seconds of the element-wise work of a step of `n_tokens` at `hw`'s
/// rates: activation quantization only for weights that run on integer dot
/// products; each spread over `hw`'s threads in a step large enough for
/// memwall to spread it (`PAR_QUANTIZE_TOKENS`, `rows::MIN_ROWS`).
fn elementwise_s(o: &Overhead, n_tokens: usize, hw: &Hardware, class: ComputeClass) -> f64 {
    let threads = hw.threads.unwrap_or(1).max(1) as f64;
    let spread = |min_tokens: usize| if n_tokens >= min_tokens { threads } else { 1.0 };
    let quantizes = matches!(class, ComputeClass::Int8 | ComputeClass::Int4);
    let quantize = match hw.quantize_rate() {
        Some(rate) if quantizes => o.quantized / rate / spread(memwall_kernels::matmul::PAR_QUANTIZE_TOKENS),
        _ => 0.0,
    };
    let other = hw.elementwise_rate().map_or(0.0, |rate| o.elementwise / rate);
    quantize + other / spread(memwall_model::rows::MIN_ROWS)
}

/// `batch` prompts of `prompt` tokens in one step.
pub fn prefill_phase(cost: &CostModel, hw: &Hardware, class: ComputeClass, batch: usize, prompt: usize) -> Phase {
    let step = cost.step(&vec![SeqStep::prefill(prompt.max(1)); batch.max(1)]);
    Phase::from_steps(&[step], weight_step_bytes(cost), hw, class)
}

/// The decode steps after a `prompt`-token prefill, `batch` sequences in
/// lock-step, until each has `output` tokens (at least one step is timed).
pub fn decode_phase(
    cost: &CostModel,
    hw: &Hardware,
    class: ComputeClass,
    batch: usize,
    prompt: usize,
    output: usize,
) -> Phase {
    let n_steps = output.saturating_sub(1).max(1);
    let steps: Vec<StepCost> =
        (0..n_steps).map(|i| cost.step(&vec![SeqStep::decode(prompt + i); batch.max(1)])).collect();
    Phase::from_steps(&steps, weight_step_bytes(cost), hw, class)
}

/// Weight bytes one step reads.
pub fn weight_step_bytes(cost: &CostModel) -> f64 {
    cost.weights.per_step(cost.config.n_layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::HardwareTable;
    use memwall_kernels::DType;
    use memwall_model::cost::WeightBytes;
    use memwall_model::ModelConfig;

    fn tinyllama() -> CostModel {
        let c = crate::synthetic::Shape::by_name("tinyllama-1.1b").unwrap().config();
        CostModel::new(c.clone(), WeightBytes::uniform(&c, DType::F16), 2.0)
    }

    #[test]
    fn decode_hits_the_memory_wall_and_prefill_the_compute_wall() {
        let hw = HardwareTable::builtin().get("a10").unwrap().clone();
        let cost = tinyllama();
        let d = decode_phase(&cost, &hw, ComputeClass::F16, 1, 512, 128);
        assert_eq!(d.bound, Bound::Memory);
        assert!(d.time_s >= d.weights_s && d.time_s == d.memory_s);
        let p = prefill_phase(&cost, &hw, ComputeClass::F16, 1, 2048);
        assert_eq!(p.bound, Bound::Compute);
        assert!(p.intensity > hw.peak_flops(ComputeClass::F16) / hw.bandwidth());
    }

    /// TinyLlama's shape with `layers` layers and width `d_model`, Q8_0.
    fn shape(layers: usize, d_model: usize) -> CostModel {
        let c = ModelConfig { n_layers: layers, d_model, ..tinyllama().config };
        CostModel::new(c.clone(), WeightBytes::uniform(&c, DType::Q8_0), 2.0)
    }

    fn with_barrier(us: f64) -> Hardware {
        Hardware { barrier_us: Some(us), ..HardwareTable::builtin().get("a10").unwrap().clone() }
    }

    #[test]
    fn sync_time_is_barriers_per_layer_times_latency_whatever_the_width() {
        let (plain, slow) = (with_barrier(0.0), with_barrier(5.0));
        let sync = |cost: &CostModel| {
            let d = decode_phase(cost, &slow, ComputeClass::Int8, 1, 16, 8);
            let p = prefill_phase(cost, &slow, ComputeClass::Int8, 1, 64);
            let d0 = decode_phase(cost, &plain, ComputeClass::Int8, 1, 16, 8);
            let p0 = prefill_phase(cost, &plain, ComputeClass::Int8, 1, 64);
            assert!((d.time_s - d0.time_s - d.sync_s).abs() < 1e-12);
            assert!((p.time_s - p0.time_s - p.sync_s).abs() < 1e-12);
            // One prefill step and one mean decode step meet the same barriers.
            assert!((d.sync_s - p.sync_s).abs() < 1e-12);
            d.sync_s
        };
        // 22 layers · 5 dispatches + the output projection, 5 µs each.
        assert!((sync(&shape(22, 2048)) - 111.0 * 5e-6).abs() < 1e-12);
        assert!((sync(&shape(44, 2048)) - 221.0 * 5e-6).abs() < 1e-12);
        assert_eq!(sync(&shape(22, 576)), sync(&shape(22, 2048)));
    }

    #[test]
    fn element_wise_time_follows_the_stated_rates() {
        let cost = shape(22, 2048);
        let a10 = HardwareTable::builtin().get("a10").unwrap().clone();
        let rated = Hardware { quantize_gelems: Some(0.5), elementwise_gelems: Some(1.0), ..a10.clone() };
        let p = prefill_phase(&cost, &rated, ComputeClass::Int8, 1, 128);
        let o = p.overhead;
        assert!((p.elementwise_s - (o.quantized / 0.5e9 + o.elementwise / 1e9)).abs() < 1e-12);
        // Float weights take f32 activations: nothing to quantize.
        let f = prefill_phase(&cost, &rated, ComputeClass::F16, 1, 128);
        assert!((f.elementwise_s - o.elementwise / 1e9).abs() < 1e-12);
        // Two threads: a 128-token prefill spreads both over them, a decode
        // token does not.
        let two = Hardware { threads: Some(2), ..rated.clone() };
        let p2 = prefill_phase(&cost, &two, ComputeClass::Int8, 1, 128);
        assert!((p2.elementwise_s - p.elementwise_s / 2.0).abs() < 1e-12);
        let d1 = decode_phase(&cost, &rated, ComputeClass::Int8, 1, 128, 1);
        let d2 = decode_phase(&cost, &two, ComputeClass::Int8, 1, 128, 1);
        assert_eq!(d1.elementwise_s, d2.elementwise_s);
        // An entry that states no rates is the pure roofline.
        let pure = prefill_phase(&cost, &a10, ComputeClass::Int8, 1, 128);
        assert_eq!((pure.elementwise_s, pure.sync_s, pure.attention_s), (0.0, 0.0, 0.0));
        assert_eq!(pure.time_s, pure.compute_s.max(pure.memory_s));
    }

    #[test]
    fn attention_runs_at_its_own_rate_where_stated() {
        let cost = shape(22, 2048);
        let a10 = HardwareTable::builtin().get("a10").unwrap().clone();
        let slow_attention = Hardware { attention_tflops: Some(0.01), ..a10.clone() };
        let step = cost.step(&[SeqStep::prefill(128)]);
        let attn = step.get(LayerKind::AttnKv).flops;
        let peak = a10.peak_flops(ComputeClass::Int8);
        let p = prefill_phase(&cost, &slow_attention, ComputeClass::Int8, 1, 128);
        assert!((p.attention_s - attn / 1e10).abs() < 1e-12);
        assert!((p.compute_s - ((step.total().flops - attn) / peak + attn / 1e10)).abs() < 1e-12);
        let at_peak = prefill_phase(&cost, &a10, ComputeClass::Int8, 1, 128);
        assert!((at_peak.compute_s - step.total().flops / peak).abs() < 1e-12);
    }

    #[test]
    fn decode_time_grows_with_the_context() {
        let hw = HardwareTable::builtin().get("a10").unwrap().clone();
        let cost = tinyllama();
        let short = decode_phase(&cost, &hw, ComputeClass::F16, 8, 16, 2);
        let long = decode_phase(&cost, &hw, ComputeClass::F16, 8, 2000, 2);
        assert!(long.time_s > short.time_s && long.weights_s == short.weights_s);
    }
}
