//! # memwall-kernels
//!
//! Numbers in, numbers out. This crate knows nothing about files or models: it
//! holds the element types (f32, f16, bf16 and the GGUF block formats), their
//! quantize / dequantize routines, the matrix products on quantized weights
//! (never expanded to f32 in memory; repacked once into 16-row tiles where
//! the CPU has tile kernels, `matmul::packed`), the small per-token
//! operations of a decoder (norms, RoPE, activations, softmax) and the
//! persistent thread pool they run on.
//!
//! Decode reads every weight once per token, so the matmul kernels are written
//! to stream weight rows exactly once per call, whatever the number of tokens
//! in the batch: each thread owns a contiguous range of output rows and
//! multiplies every token of the batch against each row while it is in cache.
//!
//! Every SIMD kernel has a scalar reference beside it and a test that holds
//! the two together on random inputs of odd sizes.

pub mod attention;
pub mod dtype;
pub mod exp;
pub mod kquant;
pub mod kquant_quantize;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;

pub use dtype::DType;
pub use matmul::{matmul, MatRef};
pub use pool::ThreadPool;
