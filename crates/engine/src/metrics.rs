//! What the engine measures: per request (the user-facing latencies of
//! DESIGN.md: queue time, TTFT, TPOT) and per step (batch shape, time, KV
//! pool occupancy, preemptions, bytes moved and MBU from the cost model
//! "weights read once per step + K/V rows read by attention").
//!
//! The server's `/metrics` and the offline benchmark read
//! [`EngineMetrics`] snapshots; nothing here is on the per-token path
//! except a few additions per step.

use std::time::Duration;

/// Timings and counts of one finished sample of a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestMetrics {
    /// From submit to the first step that computed any of its tokens.
    pub queue_time: Duration,
    /// From submit to the first generated token.
    pub ttft: Duration,
    /// Mean time per generated token after the first.
    pub tpot: Duration,
    /// From submit to the end.
    pub e2e: Duration,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt tokens served from the prefix cache at admission (not computed).
    pub cached_tokens: usize,
    /// Times the sequence was preempted and recomputed.
    pub preemptions: u32,
}

impl RequestMetrics {
    /// Generated tokens per second after the first token (0 when undefined).
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.generated_tokens < 2 || self.tpot.is_zero() {
            return 0.0;
        }
        1.0 / self.tpot.as_secs_f64()
    }
}

/// One step of the engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepMetrics {
    /// Sequences in the batch.
    pub seqs: usize,
    /// Tokens computed (prefill chunks + decodes).
    pub tokens: usize,
    /// Of which sampled a next token.
    pub sampled: usize,
    pub step_time: Duration,
    pub kv_blocks_used: usize,
    pub kv_blocks_free: usize,
    /// Blocks findable by the prefix cache (referenced or not).
    pub kv_blocks_cached: usize,
    pub preemptions: usize,
    /// Bytes the step moved by the model's cost model
    /// ([`memwall_model::cost`]): every weight once, each scheduled
    /// sequence's cached K/V once per layer, the new rows written.
    pub bytes_moved: u64,
    /// FLOPs of the step by the same cost model.
    pub flops: f64,
    /// `bytes_moved / step_time / peak bandwidth`, when the peak is known.
    pub mbu: Option<f64>,
    /// `flops / step_time / peak FLOP/s`, when the peak is known.
    pub mfu: Option<f64>,
}

/// Running totals and the last step, as a snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineMetrics {
    pub steps: u64,
    pub last_step: StepMetrics,
    /// Tokens computed by the model (prefix-cache hits excluded).
    pub computed_tokens: u64,
    /// Tokens sampled.
    pub generated_tokens: u64,
    pub preemptions: u64,
    pub requests_finished: u64,
    pub requests_cancelled: u64,
    /// Steps that panicked; their requests failed with an error event (and
    /// count as cancelled above) while the engine kept serving.
    pub step_panics: u64,
    pub running: usize,
    pub waiting: usize,
    /// Blocks referenced by a sequence now (updated after every step and
    /// every batch of submits and cancels).
    pub kv_blocks_used: usize,
    pub kv_blocks_total: usize,
    pub kv_block_size: usize,
    /// Bytes of one block (K and V, all layers).
    pub kv_block_bytes: usize,
    /// Σ over steps of allocated token slots (used blocks × block size).
    pub kv_slots_allocated: u64,
    /// Σ over steps of slots holding a computed token.
    pub kv_slots_filled: u64,
    /// Time spent in steps.
    pub busy: Duration,
}

impl EngineMetrics {
    /// Token positions the KV cache holds.
    pub fn kv_capacity_tokens(&self) -> usize {
        self.kv_blocks_total * self.kv_block_size
    }

    /// Share of allocated KV bytes that held no token, averaged over steps:
    /// `1 - filled / allocated` (0 when nothing was allocated).
    pub fn kv_waste(&self) -> f64 {
        if self.kv_slots_allocated == 0 {
            return 0.0;
        }
        1.0 - self.kv_slots_filled as f64 / self.kv_slots_allocated as f64
    }

    pub(crate) fn record(&mut self, step: StepMetrics, slots_allocated: u64, slots_filled: u64) {
        self.steps += 1;
        self.computed_tokens += step.tokens as u64;
        self.generated_tokens += step.sampled as u64;
        self.preemptions += step.preemptions as u64;
        self.kv_slots_allocated += slots_allocated;
        self.kv_slots_filled += slots_filled;
        self.busy += step.step_time;
        self.last_step = step;
    }
}
