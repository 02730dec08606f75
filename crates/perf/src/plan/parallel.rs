//! What splitting a model over ranks costs on the link between them
//! (`memwall plan --tp N` / `--pp N`).
//!
//! Tensor parallelism (Megatron-LM, as `memwall_model::shard`) does two
//! all-reduces of the `[n_tokens, d_model]` f32 activations per layer per
//! step. memwall's all-reduce gathers every rank's part and adds the parts
//! in rank order on every rank (`memwall_dist`: the sum must not depend on
//! the message size, which MPI_Allreduce's algorithm choice does): a ring
//! all-gather, N−1 steps each paying the link latency α and moving the
//! whole message M at bandwidth β: t = (N−1)(α + M/β). At 2 ranks that moves
//! the same bytes as a ring all-reduce (2(N−1) steps of M/N) with half its
//! messages; beyond, N/2 times its bytes. Decode messages are a few KB, so
//! on Ethernet the latency term dominates.
//! A pipeline hands the activations on N−1 times per step (in each of its
//! micro-batches, `memwall_model::micro_batches`) and sends the logits back
//! once: t = m(N−1)α + (N−1)M/β + α + logits/β for m micro-batches of a
//! step whose activations are M bytes (link time only: what the stages'
//! overlap saves is compute, not modelled here). With tensor parallelism
//! inside each stage (`--tp T --pp P`, T·P ranks), each stage's T ranks
//! all-reduce its layers' activations: the two costs add.

use memwall_model::ModelConfig;
use serde::Serialize;

/// A link between ranks.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Link {
    /// Bits per second each way.
    pub bits_per_s: f64,
    /// One message's latency in seconds.
    pub latency_s: f64,
}

impl Link {
    /// `25GbE`-style names or a number of Gb/s; `latency_us` in microseconds.
    pub fn parse(gbit: &str, latency_us: f64) -> Result<Link, String> {
        let g = gbit.trim().to_ascii_lowercase();
        let g = g.trim_end_matches("gbe").trim_end_matches("gb/s").trim_end_matches("gbit");
        let gbit: f64 = g.trim().parse().map_err(|_| format!("link speed '{gbit}': give Gb/s, e.g. 25 or 100"))?;
        if !(gbit > 0.0 && latency_us >= 0.0) {
            return Err("the link needs a positive speed and a non-negative latency".into());
        }
        Ok(Link { bits_per_s: gbit * 1e9, latency_s: latency_us * 1e-6 })
    }

    fn bytes_per_s(&self) -> f64 {
        self.bits_per_s / 8.0
    }
}

/// Communication of one step on the link.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepComm {
    /// Messages a rank waits for per step (all-reduces, or hand-offs).
    pub messages: usize,
    /// Bytes each rank sends per step.
    pub bytes_per_rank: f64,
    /// Seconds of latency per step.
    pub latency_s: f64,
    /// Seconds of transfer per step.
    pub transfer_s: f64,
}

impl StepComm {
    pub fn seconds(&self) -> f64 {
        self.latency_s + self.transfer_s
    }
}

/// Tensor parallelism over `ranks`: one step of `tokens` tokens.
pub fn tensor_parallel(c: &ModelConfig, ranks: usize, tokens: usize, link: Link) -> StepComm {
    let n = ranks.max(1) as f64;
    let message = (tokens * c.d_model * 4) as f64;
    let all_reduces = 2 * c.n_layers;
    let hops = n - 1.0;
    let per_rank = hops * message;
    StepComm {
        messages: all_reduces,
        bytes_per_rank: all_reduces as f64 * per_rank,
        latency_s: all_reduces as f64 * hops * link.latency_s,
        transfer_s: all_reduces as f64 * per_rank / link.bytes_per_s(),
    }
}

/// Pipeline over `stages`: one step of `tokens` tokens (cut into
/// micro-batches as memwall cuts it), `logits` rows back.
pub fn pipeline(c: &ModelConfig, stages: usize, tokens: usize, logits: usize, link: Link) -> StepComm {
    let hops = stages.max(1) - 1;
    let micro = memwall_model::micro_batch_count(tokens, stages);
    let activations = (hops * tokens * c.d_model * 4) as f64;
    let back = if hops > 0 { (logits * c.vocab * 4) as f64 } else { 0.0 };
    let messages = hops * micro + usize::from(hops > 0);
    StepComm {
        messages,
        bytes_per_rank: (activations + back) / stages.max(1) as f64,
        latency_s: messages as f64 * link.latency_s,
        transfer_s: (activations + back) / link.bytes_per_s(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tinyllama() -> ModelConfig {
        crate::synthetic::Shape::by_name("tinyllama-1.1b").unwrap().config()
    }

    #[test]
    fn gathered_all_reduce_of_a_decode_token() {
        let link = Link::parse("25GbE", 10.0).unwrap();
        let t = tensor_parallel(&tinyllama(), 2, 1, link);
        // 44 all-reduces of 8 KiB; at 2 ranks each sends its 8 KiB once.
        assert_eq!(t.messages, 44);
        assert_eq!(t.bytes_per_rank, 44.0 * 8192.0);
        assert!((t.latency_s - 44.0 * 10e-6).abs() < 1e-12);
        assert!((t.transfer_s - 44.0 * 8192.0 / 3.125e9).abs() < 1e-12);
        // 4 ranks: 3 steps of the whole message.
        let t4 = tensor_parallel(&tinyllama(), 4, 1, link);
        assert_eq!(t4.bytes_per_rank, 44.0 * 3.0 * 8192.0);
        assert!((t4.latency_s - 44.0 * 3.0 * 10e-6).abs() < 1e-12);
        assert_eq!(tensor_parallel(&tinyllama(), 1, 1, link).seconds(), 0.0);
    }

    #[test]
    fn pipeline_hands_on_and_returns_logits() {
        let link = Link::parse("100", 2.0).unwrap();
        let p = pipeline(&tinyllama(), 2, 1, 1, link);
        assert_eq!(p.messages, 2);
        assert!((p.transfer_s - (8192.0 + 128000.0) / 12.5e9).abs() < 1e-12);
        assert!(Link::parse("fast", 1.0).is_err());
        // A 512-token prefill over 2 stages runs as 4 micro-batches: 4 hand-offs, logits once.
        assert_eq!(memwall_model::micro_batch_count(512, 2), 4);
        assert_eq!(pipeline(&tinyllama(), 2, 512, 1, link).messages, 5);
    }
}
