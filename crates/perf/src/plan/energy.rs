//! Energy per token from bytes moved and operations performed.
//!
//! Per-bit and per-operation figures are M. Horowitz, "Computing's energy
//! problem (and what we can do about it)", ISSCC 2014 (45 nm, 0.9 V):
//!
//! | event | energy |
//! |---|---|
//! | DRAM read, 32 bit | 640 pJ (20 pJ/bit) |
//! | int8 add / mult | 0.03 / 0.2 pJ |
//! | f16 add / mult | 0.4 / 1.1 pJ |
//! | f32 add / mult | 0.9 / 3.7 pJ |
//!
//! A multiply-add is two operations, so an operation costs half of
//! (add + mult): 0.115 pJ (int8), 0.75 pJ (f16), 2.3 pJ (f32); int4 uses the
//! int8 figure (the table has none). A chip entry may override the DRAM
//! figure (`dram_pj_per_bit`; HBM2 ≈ 3.9 pJ/bit, O'Connor et al., MICRO
//! 2017). Moving one byte from DRAM costs about 1,400 int8 operations: that
//! is the memory wall in joules. Newer process nodes lower both numbers;
//! their ratio is what the estimate is for. When the entry has a power
//! figure, the board energy (power × time) is reported beside it.

use super::roofline::Phase;
use crate::hardware::{ComputeClass, Hardware};
use serde::Serialize;

/// pJ per operation of `class` (Horowitz 2014).
pub fn pj_per_op(class: ComputeClass) -> f64 {
    match class {
        ComputeClass::F32 => (0.9 + 3.7) / 2.0,
        ComputeClass::F16 => (0.4 + 1.1) / 2.0,
        ComputeClass::Int8 | ComputeClass::Int4 => (0.03 + 0.2) / 2.0,
    }
}

/// Joules per token.
#[derive(Clone, Debug, Serialize)]
pub struct Energy {
    /// Prefill, per prompt token: bytes × pJ/bit + ops × pJ/op.
    pub prefill_j_per_token: f64,
    /// Decode, per generated token.
    pub decode_j_per_token: f64,
    /// Share of the decode energy spent moving bytes.
    pub decode_memory_share: f64,
    /// Power × decode step time / batch, when the power is known.
    pub board_decode_j_per_token: Option<f64>,
}

impl Energy {
    pub fn of(
        hw: &Hardware,
        class: ComputeClass,
        prefill: &Phase,
        decode: &Phase,
        batch: usize,
        prompt: usize,
    ) -> Energy {
        let bit = hw.dram_pj_per_bit() * 1e-12;
        let op = pj_per_op(class) * 1e-12;
        let b = batch.max(1) as f64;
        let decode_mem = decode.bytes * 8.0 * bit;
        let decode_ops = decode.flops * op;
        Energy {
            prefill_j_per_token: (prefill.bytes * 8.0 * bit + prefill.flops * op) / (b * prompt.max(1) as f64),
            decode_j_per_token: (decode_mem + decode_ops) / b,
            decode_memory_share: decode_mem / (decode_mem + decode_ops).max(f64::MIN_POSITIVE),
            board_decode_j_per_token: hw.power_w.map(|p| p * decode.time_s / b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dram_costs_about_a_thousand_int8_ops_per_byte() {
        let per_byte = crate::hardware::DEFAULT_DRAM_PJ_PER_BIT * 8.0;
        let ratio = per_byte / pj_per_op(ComputeClass::Int8);
        assert!((1000.0..2000.0).contains(&ratio), "{ratio}");
    }
}
