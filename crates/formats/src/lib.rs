//! # memwall-formats
//!
//! Bytes on disk to typed views. Model files are untrusted input: every
//! offset, size and count read from a file is checked against the file before
//! it is used, so a malformed or truncated file is an error that names the
//! problem, never a panic, an out-of-bounds read or a huge allocation.
//!
//! Weights are never copied on load: a [`Blob`] is a reference-counted view
//! into a memory-mapped file, so the model reads quantized blocks in place.

pub mod blob;
pub mod chat_template;
pub mod gguf;
pub mod safetensors;
pub mod tokenizer;

pub use blob::Blob;
