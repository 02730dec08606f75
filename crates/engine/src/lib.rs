//! # memwall-engine
//!
//! The serving core. An [`Engine`] runs many requests at once: a paged KV
//! cache of f16 blocks ([`paged_kv`], over the [`block_pool`] with its prefix
//! cache and copy-on-write), a continuous-batching [`scheduler`] that is only
//! token accounting (chunked prefill, preemption by recompute), and a step
//! loop that runs one batched forward pass per step and samples each request
//! with its own seeded [`Sampler`]. One request or many take the same path:
//! `memwall generate` and `memwall chat` submit to an engine too (a chat turn
//! reuses the earlier turns' blocks through the prefix cache). [`bench`]
//! measures offline throughput.

pub mod bench;
pub mod block_pool;
pub mod engine;
pub mod metrics;
pub mod paged_kv;
pub mod params;
pub mod sampler;
pub mod scheduler;
pub mod stop;

pub use engine::{Completion, Engine, EngineConfig, EngineError, Event, Request, RequestHandle, RequestId};
pub use metrics::{EngineMetrics, RequestMetrics, StepMetrics};
pub use paged_kv::{KvCacheConfig, KvDType, KvMemory, PagedKvCache};
pub use params::{GenerateParams, MAX_LOGPROBS};
pub use sampler::{Sampler, SamplingParams, TokenLogprobs};
pub use scheduler::{Scheduler, SchedulerConfig, SchedulerOutput};
pub use stop::FinishReason;
