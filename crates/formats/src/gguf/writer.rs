//! Writing GGUF version 3 files (little-endian), laid out as llama.cpp's
//! `gguf_write_to_file` does: header, metadata, tensor infos, zero padding to
//! the alignment, then each tensor's data padded to the alignment, in the
//! order the tensors were added.
//!
//! Everything the reader checks is checked when a key or tensor is added,
//! so a file written here always reads back.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::Path;

use super::error::GgufError;
use super::reader::{check_alignment, tensor_bytes, MAX_DEPTH};
use super::value::{self, Value};
use super::{GgmlType, DEFAULT_ALIGNMENT, KEY_ALIGNMENT};

/// Builds a GGUF file in memory, then writes it.
///
/// ```
/// use memwall_formats::gguf::{GgmlType, GgufWriter};
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", "llama")?;
/// w.add_tensor("x", &[2, 1], GgmlType::F32, &[0u8; 8])?;
/// let bytes = w.to_bytes();
/// # Ok::<(), memwall_formats::gguf::GgufError>(())
/// ```
#[derive(Debug, Clone)]
pub struct GgufWriter {
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter { alignment: DEFAULT_ALIGNMENT, metadata: Vec::new(), tensors: Vec::new(), names: HashSet::new() }
    }

    /// Sets the data alignment (a non-zero power of two) and records it as
    /// `general.alignment` (u32).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self, GgufError> {
        self.add_metadata(KEY_ALIGNMENT, Value::U32(alignment))
    }

    /// The alignment the file will be written with.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Adds a key, or replaces the value of an existing key in place (so a
    /// file never gets duplicate keys). Array elements must share one type
    /// and nest at most 4 deep; `general.alignment` must be a non-zero power
    /// of two and sets the alignment.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Result<&mut Self, GgufError> {
        let key = key.into();
        let value = value.into();
        check_value(&key, &value, 0)?;
        if key == KEY_ALIGNMENT {
            self.alignment = check_alignment(&value)?;
        }
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        Ok(self)
    }

    /// Adds a tensor; `dims` in ggml order (`dims[0]` = columns), `data`
    /// exactly `n_elements / block_len * block_bytes` bytes. Copies `data`.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: &[u8],
    ) -> Result<&mut Self, GgufError> {
        self.add_tensor_owned(name, dims, ggml_type, data.to_vec())
    }

    /// [`Self::add_tensor`] without the copy.
    pub fn add_tensor_owned(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        let expected = tensor_bytes(&name, dims, ggml_type)?;
        if data.len() != expected {
            return Err(GgufError::WrongDataSize { tensor: name, expected: expected as u64, got: data.len() as u64 });
        }
        if !self.names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        self.tensors.push(PendingTensor { name, dims: dims.to_vec(), ggml_type, data });
        Ok(self)
    }

    /// Writes the file to `out`.
    pub fn write_to(&self, mut out: impl Write) -> Result<(), GgufError> {
        let mut header = Vec::new();
        self.write_header(&mut header)?;
        let padded = align_up(header.len() as u64, self.alignment);
        header.resize(padded as usize, 0);
        out.write_all(&header)?;
        for t in &self.tensors {
            out.write_all(&t.data)?;
            let pad = align_up(t.data.len() as u64, self.alignment) - t.data.len() as u64;
            io::copy(&mut io::repeat(0).take(pad), &mut out)?;
        }
        out.flush()?;
        Ok(())
    }

    /// Writes the file to `path` (created or truncated).
    pub fn write_file(&self, path: &Path) -> Result<(), GgufError> {
        let file = std::fs::File::create(path).map_err(|source| GgufError::Open { path: path.to_owned(), source })?;
        self.write_to(io::BufWriter::new(file))
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        self.write_to(&mut out).expect("writing GGUF into a Vec");
        out
    }

    fn write_header(&self, w: &mut Vec<u8>) -> io::Result<()> {
        w.write_all(b"GGUF")?;
        w.write_all(&3u32.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_str(w, key)?;
            w.write_all(&value.type_id().to_le_bytes())?;
            write_value(w, value)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(w, &t.name)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&t.ggml_type.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset = align_up(offset + t.data.len() as u64, self.alignment);
        }
        Ok(())
    }
}

fn align_up(n: u64, alignment: u64) -> u64 {
    n.div_ceil(alignment) * alignment
}

fn check_value(key: &str, value: &Value, depth: usize) -> Result<(), GgufError> {
    let Value::Array(items) = value else {
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        return Err(GgufError::BadValue {
            key: key.to_owned(),
            reason: format!("arrays nested deeper than {MAX_DEPTH}"),
        });
    }
    if let Some(first) = items.first() {
        if let Some(odd) = items.iter().find(|v| v.type_id() != first.type_id()) {
            return Err(GgufError::BadValue {
                key: key.to_owned(),
                reason: format!("array mixes {} and {} elements", first.type_name(), odd.type_name()),
            });
        }
    }
    items.iter().try_for_each(|v| check_value(key, v, depth + 1))
}

fn write_str(w: &mut Vec<u8>, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut Vec<u8>, value: &Value) -> io::Result<()> {
    match value {
        Value::U8(v) => w.write_all(&v.to_le_bytes()),
        Value::I8(v) => w.write_all(&v.to_le_bytes()),
        Value::U16(v) => w.write_all(&v.to_le_bytes()),
        Value::I16(v) => w.write_all(&v.to_le_bytes()),
        Value::U32(v) => w.write_all(&v.to_le_bytes()),
        Value::I32(v) => w.write_all(&v.to_le_bytes()),
        Value::U64(v) => w.write_all(&v.to_le_bytes()),
        Value::I64(v) => w.write_all(&v.to_le_bytes()),
        Value::F32(v) => w.write_all(&v.to_le_bytes()),
        Value::F64(v) => w.write_all(&v.to_le_bytes()),
        Value::Bool(v) => w.write_all(&[u8::from(*v)]),
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            // An empty array has no element to take the type from; u8 is as
            // good as any (the reader returns an empty array either way).
            let elem_type = items.first().map_or(value::TYPE_U8, Value::type_id);
            w.write_all(&elem_type.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| write_value(w, item))
        }
    }
}
