//! GGUF, the single-file model format of llama.cpp / ggml: typed key-value
//! metadata, a table of tensor infos, and an aligned data section.
//! Versions 2 and 3 (identical on disk for little-endian files) are read;
//! version 1 (32-bit counts, 2023 draft) and big-endian files are rejected
//! with an error that says so. The writer produces version 3.
//!
//! # Guarantees
//!
//! [`GgufFile::open`] memory-maps the file and validates all of it before
//! returning, so that afterwards nothing can go out of bounds:
//!
//! - every count, length and offset is checked against the bytes that remain
//!   *before* anything is allocated for it, and in-memory growth is capped
//!   (at most 2^24 metadata values, 2^20 tensors, arrays nested 4 deep), so a hostile header cannot make memwall allocate gigabytes;
//! - keys and tensor names are unique UTF-8; string *values* that are not
//!   UTF-8 are decoded lossily (U+FFFD) rather than rejected;
//! - `general.alignment` (default 32) is a non-zero power of two;
//! - each tensor has at most 4 dims, its element and byte counts fit in 63
//!   bits, its rows are whole blocks of its type, its offset is aligned, its
//!   data lies inside the file, and no two tensors' data overlap;
//! - unknown ggml type ids are an error naming the tensor and the id; known
//!   types memwall cannot compute with open fine ([`TensorInfo::dtype`] is
//!   `None`).
//!
//! Hence [`GgufFile::tensor_data`] is a zero-copy [`Blob`] and cannot fail.
//! Malformed input is always an error, never a panic.

mod cursor;
mod error;
mod ggml_type;
mod reader;
mod value;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use memwall_kernels::DType;

use crate::Blob;

pub use error::{GgufError, Problem};
pub use ggml_type::GgmlType;
pub use value::Value;
pub use writer::GgufWriter;

/// Alignment of the data section and of tensor offsets when the file does
/// not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;
/// The metadata key that sets the alignment.
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// One tensor's entry in the tensor-info table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) dimension, i.e.
    /// the columns; a `(rows, cols)` matrix is stored as `[cols, rows]`.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data: `n_elements / block_len * block_bytes`.
    pub n_bytes: usize,
}

impl TensorInfo {
    /// Product of the dims (1 for a tensor with no dims).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// The memwall compute type, or `None` if memwall cannot compute with
    /// this tensor's type.
    pub fn dtype(&self) -> Option<DType> {
        self.ggml_type.dtype()
    }
}

/// An opened, fully validated GGUF file.
pub struct GgufFile {
    blob: Blob,
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_start: u64,
}

impl GgufFile {
    /// Memory-maps and validates the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let blob = Blob::map_file(path).map_err(|source| GgufError::Open { path: path.to_owned(), source })?;
        GgufFile::from_blob(blob)
    }

    /// Validates a GGUF file already in memory.
    pub fn from_blob(blob: Blob) -> Result<GgufFile, GgufError> {
        let p = reader::parse(&blob)?;
        Ok(GgufFile {
            blob,
            version: p.version,
            alignment: p.alignment,
            metadata: p.metadata,
            key_index: p.key_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
            data_start: p.data_start,
        })
    }

    /// 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or 32 when absent.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// All key-value pairs, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of `key` (O(1)).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name` (O(1)).
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_start
    }

    /// The whole file.
    pub fn blob(&self) -> &Blob {
        &self.blob
    }

    /// The bytes of `t`, zero-copy (`t.n_bytes` long).
    ///
    /// # Panics
    ///
    /// If `t` is not one of [`Self::tensors`] (or was modified), its range
    /// may lie outside the file; that is a programming error and panics.
    /// Ranges of this file's own tensors were checked at open time.
    pub fn tensor_data(&self, t: &TensorInfo) -> Blob {
        self.try_tensor_data(t).unwrap_or_else(|| panic!("tensor '{}' is not a tensor of this GGUF file", t.name))
    }

    /// Like [`Self::tensor_data`], but `None` instead of a panic when `t`
    /// does not describe a range inside this file.
    pub fn try_tensor_data(&self, t: &TensorInfo) -> Option<Blob> {
        let start = usize::try_from(self.data_start.checked_add(t.offset)?).ok()?;
        self.blob.slice(start..start.checked_add(t.n_bytes)?)
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("bytes", &self.blob.len())
            .finish()
    }
}
