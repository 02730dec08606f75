//! The roofline of one phase: each step takes the longer of its compute
//! time (FLOPs / peak) and its memory time (bytes moved / bandwidth), and the
//! phase is bound by whichever wall dominates (Williams, Waterman and
//! Patterson, "Roofline", CACM 2009).
//!
//! Prefill is one step over every prompt of the batch; decode is the mean
//! of the steps that generate tokens 2..=output, whose context grows from the
//! prompt length by one per step (so the KV read grows with it).

use crate::hardware::{ComputeClass, Hardware};
use memwall_model::cost::{CostModel, SeqStep};
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
    /// Step time, seconds.
    pub time_s: f64,
    pub bound: Bound,
    /// Arithmetic intensity, FLOPs per byte: the x of the roofline plot.
    pub intensity: f64,
}

impl Phase {
    /// Mean over steps of (flops, bytes).
    fn from_steps(steps: &[(f64, f64)], weight_bytes: f64, hw: &Hardware, class: ComputeClass) -> Phase {
        let (peak, bw) = (hw.peak_flops(class), hw.bandwidth());
        let n = steps.len().max(1) as f64;
        let (mut flops, mut bytes, mut compute, mut memory, mut time) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(f, b) in steps {
            let (c, m) = (f / peak, b / bw);
            flops += f;
            bytes += b;
            compute += c;
            memory += m;
            time += c.max(m);
        }
        Phase {
            flops: flops / n,
            bytes: bytes / n,
            weight_bytes,
            compute_s: compute / n,
            memory_s: memory / n,
            weights_s: weight_bytes / bw,
            time_s: time / n,
            bound: if compute > memory { Bound::Compute } else { Bound::Memory },
            intensity: flops / bytes.max(1.0),
        }
    }
}

/// `batch` prompts of `prompt` tokens in one step.
pub fn prefill_phase(cost: &CostModel, hw: &Hardware, class: ComputeClass, batch: usize, prompt: usize) -> Phase {
    let step = cost.step(&vec![SeqStep::prefill(prompt.max(1)); batch.max(1)]).total();
    Phase::from_steps(&[(step.flops, step.bytes)], weight_step_bytes(cost), hw, class)
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
    let steps: Vec<(f64, f64)> = (0..n_steps)
        .map(|i| {
            let s = cost.step(&vec![SeqStep::decode(prompt + i); batch.max(1)]).total();
            (s.flops, s.bytes)
        })
        .collect();
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

    #[test]
    fn decode_time_grows_with_the_context() {
        let hw = HardwareTable::builtin().get("a10").unwrap().clone();
        let cost = tinyllama();
        let short = decode_phase(&cost, &hw, ComputeClass::F16, 8, 16, 2);
        let long = decode_phase(&cost, &hw, ComputeClass::F16, 8, 2000, 2);
        assert!(long.time_s > short.time_s && long.weights_s == short.weights_s);
    }
}
