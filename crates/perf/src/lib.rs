//! # memwall-perf
//!
//! Measuring memwall against the machine it runs on and against its peers.
//!
//! * [`probe`] measures the two ceilings of inference on this machine: the
//!   streaming-read memory bandwidth (decode is bound by it) and the peak
//!   matmul throughput of memwall's own kernels, f32 and int8 (prefill is
//!   bound by it).
//! * [`synthetic`] builds random-weight models of the exact shapes of real
//!   ones (TinyLlama-1.1B, Llama-3.2-1B, Qwen2.5-0.5B, Llama-2-7B,
//!   SmolLM2-135M) in any element type, written as GGUF files with
//!   llama.cpp's tensor names, metadata and a synthetic SentencePiece vocab,
//!   so that llama.cpp's `llama-bench` runs on the identical bytes.
//! * [`mod@bench`] is the offline benchmark, the analogue of `llama-bench`:
//!   `pp N` times a prefill of N tokens in one forward step, `tg N` times N
//!   decode steps from an empty cache; the median of `r` runs gives tokens/s,
//!   TTFT and TPOT, and the cost model ([`memwall_model::cost`]) turns times
//!   into MBU and MFU against the probe's ceilings.
//!
//! Benchmarks are measurements, not tests: nothing here asserts on time.

pub mod bench;
pub mod hardware;
pub mod plan;
pub mod probe;
pub mod synthetic;
mod vocab;

pub use bench::{BenchResult, Test};
pub use probe::Probe;
pub use synthetic::{Shape, SyntheticSpec};

/// What can go wrong while benchmarking.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("unknown model shape '{name}' (known: {known})")]
    UnknownShape { name: String, known: String },
    #[error("unknown element type '{name}' (supported: {supported})")]
    UnknownType { name: String, supported: String },
    #[error("{shape}: {what} = {n} is not a multiple of the {dtype} block length {block}")]
    BlockMismatch { shape: &'static str, what: &'static str, n: usize, dtype: &'static str, block: usize },
    #[error("bad synthetic model spec '{0}': expected SHAPE[:TYPE], e.g. tinyllama-1.1b:q4_0")]
    BadSpec(String),
    #[error(transparent)]
    Gguf(#[from] memwall_formats::gguf::GgufError),
    #[error(transparent)]
    Model(#[from] memwall_model::ModelError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Json { path: String, source: serde_json::Error },
}
