//! # memwall-engine
//!
//! The serving core: sampling, stop conditions and the generation loop. The
//! paged KV block pool and the continuous-batching scheduler land here too.

pub mod sampler;
pub mod stop;
