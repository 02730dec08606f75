//! # memwall-model
//!
//! Architectures as one generic decoder ([`Model`]) with small,
//! data-described differences per architecture ([`config::ArchTraits`]);
//! weights bound by llama.cpp's GGUF names from either a GGUF file or a
//! Hugging Face directory ([`weights::WeightSource`]); and the forward pass
//! over a batch of ragged sequences whose keys and values live behind the
//! [`kv::KvCache`] trait, so the engine's paged cache plugs in unchanged.

pub mod attention;
pub mod collective;
pub mod config;
pub mod cost;
pub mod decoder;
pub mod error;
pub mod kv;
pub mod layers;
pub mod load;
pub mod rope;
pub mod rows;
pub mod shard;
pub mod weights;

pub use collective::{Collective, SingleProcess};
pub use config::{Arch, ModelConfig};
pub use decoder::{micro_batch_count, micro_batches, LogitsWanted, Model, Scratch, SeqInput, MICRO_BATCH_TOKENS};
pub use error::ModelError;
pub use kv::{ContiguousKvCache, KvCache, KvElem, SeqId};
pub use load::{load, load_split, LoadedModel};
pub use shard::{Shard, Split};
