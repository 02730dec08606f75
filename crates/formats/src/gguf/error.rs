//! Errors of the GGUF reader and writer.
//!
//! Every message names the piece of the file that is wrong (the metadata key
//! or the tensor) and the numbers involved, so a user can tell a truncated
//! download from a hostile or buggy file.

use std::path::PathBuf;

/// What went wrong while reading or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },

    #[error("cannot write GGUF: {0}")]
    Write(#[from] std::io::Error),

    #[error("bad magic (expected 'GGUF', found '{found}'): not a GGUF file")]
    BadMagic { found: String },

    #[error(
        "big-endian GGUF (version {version} stored byte-swapped): memwall reads \
         little-endian GGUF only; convert the file on a little-endian machine"
    )]
    BigEndian { version: u32 },

    #[error("unsupported GGUF version {version}: memwall reads versions 2 and 3{}", version_hint(.version))]
    UnsupportedVersion { version: u32 },

    /// A structural problem at a named place (`at`: "header",
    /// "metadata key #12 'foo'", "tensor #3 'blk.0.attn_q.weight'", ...).
    #[error("{at}: {problem}")]
    Malformed { at: String, problem: Problem },

    #[error("metadata key #{index} '{key}' appears twice")]
    DuplicateKey { index: u64, key: String },

    #[error("general.alignment: {reason}")]
    BadAlignment { reason: String },

    #[error("tensor '{tensor}': {n_dims} dimensions, more than the 4 GGML allows")]
    TooManyDims { tensor: String, n_dims: u64 },

    #[error("tensor '{tensor}': dims overflow ({dims:?} elements or bytes do not fit in 63 bits)")]
    DimsOverflow { tensor: String, dims: Vec<u64> },

    #[error("tensor '{tensor}': unknown ggml type id {type_id}")]
    UnknownGgmlType { tensor: String, type_id: u32 },

    #[error(
        "tensor '{tensor}': rows of {row_len} elements are not a whole number of \
         {ggml_type} blocks ({block_len} elements each)"
    )]
    PartialBlock { tensor: String, ggml_type: &'static str, row_len: u64, block_len: usize },

    #[error("duplicate tensor name '{tensor}'")]
    DuplicateTensor { tensor: String },

    #[error("tensor '{tensor}': tensor offset not aligned ({offset} is not a multiple of {alignment})")]
    MisalignedOffset { tensor: String, offset: u64, alignment: u64 },

    #[error("truncated file: tensor '{tensor}' data ends at byte {end} but the file has {file_len} bytes")]
    TensorOutOfFile { tensor: String, end: u64, file_len: u64 },

    #[error("tensors '{first}' and '{second}' overlap in the data section")]
    Overlap { first: String, second: String },

    #[error("tensor '{tensor}': expected {expected} bytes of data, got {got}")]
    WrongDataSize { tensor: String, expected: u64, got: u64 },

    #[error("metadata key '{key}': {reason}")]
    BadValue { key: String, reason: String },
}

fn version_hint(version: &u32) -> &'static str {
    if *version == 1 {
        " (version 1 is the August 2023 draft format; re-convert the model with a current llama.cpp)"
    } else {
        ""
    }
}

/// A low-level problem found while decoding bytes; [`GgufError::Malformed`]
/// adds where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("truncated file: needs {needed} bytes at offset {offset} but the file has {file_len} bytes")]
    Truncated { offset: u64, needed: u64, file_len: u64 },

    #[error("string length {len} exceeds the {remaining} remaining file bytes")]
    StringTooLong { len: u64, remaining: u64 },

    #[error("name is not valid UTF-8")]
    BadUtf8,

    #[error("unknown metadata value type id {0}")]
    UnknownValueType(u32),

    #[error("arrays nested deeper than {0} levels")]
    TooDeep(usize),

    #[error(
        "{what} {count} needs at least {min_bytes_each} bytes each but only \
         {remaining} file bytes remain"
    )]
    CountTooLarge { what: &'static str, count: u64, min_bytes_each: u64, remaining: u64 },

    #[error("{what} {count} exceeds memwall's limit of {limit}")]
    OverLimit { what: &'static str, count: u64, limit: u64 },
}

impl Problem {
    /// Attaches the place where the problem was found.
    pub(crate) fn at(self, at: impl Into<String>) -> GgufError {
        GgufError::Malformed { at: at.into(), problem: self }
    }
}
