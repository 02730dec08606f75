//! Parsing a GGUF file: header, metadata, tensor infos, then the checks that
//! make every tensor's data range safe to hand out.
//!
//! Layout (little-endian throughout, as llama.cpp's `gguf.cpp` and gguf-py):
//!
//! ```text
//! "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//! n_kv    × (string key | u32 value type | value)
//! n_tensors × (string name | u32 n_dims | u64 dims[n_dims] | u32 ggml type | u64 offset)
//! zero padding to `alignment`
//! data section: tensor data at `offset` (a multiple of `alignment`) from its start
//! ```
//!
//! A string is a `u64` byte length and the bytes (no terminator).

use std::collections::HashMap;

use super::cursor::Cursor;
use super::error::{GgufError, Problem};
use super::value::{self, Value};
use super::{GgmlType, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS};

/// Arrays nest at most this deep (llama.cpp reads no nested arrays at all).
pub(crate) const MAX_DEPTH: usize = 4;
/// Total metadata values (keys plus array elements). A value takes up to 32
/// bytes in memory however small it is on disk, so this bounds memory to
/// ~0.5 GB whatever the file says; the largest real vocabularies need ~2M.
pub(crate) const MAX_VALUES: u64 = 1 << 24;
/// Tensors per file (real models have a few thousand).
pub(crate) const MAX_TENSORS: u64 = 1 << 20;
/// Never reserve more than this many elements ahead of parsing them.
const MAX_PREALLOC: u64 = 4096;
/// Smallest encoded metadata entry: empty key, type id, one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoded tensor info: empty name, n_dims = 0, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Everything [`super::GgufFile`] holds, parsed and validated.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub data_start: u64,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor::new(bytes);
    let version = read_magic_and_version(&mut c)?;
    let n_tensors = c.u64().map_err(|p| p.at("header"))?;
    let n_kv = c.u64().map_err(|p| p.at("header"))?;
    check_count(&c, "metadata key count", n_kv, MIN_KV_BYTES, MAX_VALUES)?;
    check_count(&c, "tensor count", n_tensors, MIN_TENSOR_INFO_BYTES, MAX_TENSORS)?;

    let (metadata, key_index) = read_metadata(&mut c, n_kv)?;
    let alignment = alignment(&metadata, &key_index)?;
    let (tensors, tensor_index) = read_tensor_infos(&mut c, n_tensors)?;

    let data_start = (c.pos() as u64)
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| GgufError::BadAlignment { reason: format!("{alignment} overflows the file offset") })?;
    check_data_ranges(&tensors, data_start, alignment, bytes.len() as u64)?;
    Ok(Parsed { version, alignment, metadata, key_index, tensors, tensor_index, data_start })
}

fn read_magic_and_version(c: &mut Cursor) -> Result<u32, GgufError> {
    let magic = c.take(4).map_err(|p| p.at("header magic"))?;
    if magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic.escape_ascii().to_string() });
    }
    let version = c.u32().map_err(|p| p.at("header version"))?;
    // gguf-py writes the magic in file byte order only for little-endian
    // files; a big-endian file shows a byte-swapped small version number.
    if version & 0xFFFF == 0 && (1..=3).contains(&version.swap_bytes()) {
        return Err(GgufError::BigEndian { version: version.swap_bytes() });
    }
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    Ok(version)
}

/// Rejects a count whose smallest possible encoding would not fit in the
/// rest of the file, before anything is allocated for it.
fn check_count(c: &Cursor, what: &'static str, count: u64, min_bytes_each: u64, limit: u64) -> Result<(), GgufError> {
    let remaining = c.remaining();
    if count.checked_mul(min_bytes_each).is_none_or(|need| need > remaining) {
        return Err(Problem::CountTooLarge { what, count, min_bytes_each, remaining }.at("header"));
    }
    if count > limit {
        return Err(Problem::OverLimit { what, count, limit }.at("header"));
    }
    Ok(())
}

type Metadata = (Vec<(String, Value)>, HashMap<String, usize>);

fn read_metadata(c: &mut Cursor, n_kv: u64) -> Result<Metadata, GgufError> {
    let mut metadata = Vec::with_capacity(n_kv.min(MAX_PREALLOC) as usize);
    let mut index = HashMap::with_capacity(n_kv.min(MAX_PREALLOC) as usize);
    let mut budget = MAX_VALUES - n_kv; // n_kv <= MAX_VALUES was checked
    for i in 0..n_kv {
        let key = c.strict_string().map_err(|p| p.at(format!("metadata key #{i}")))?;
        let at = || format!("metadata key #{i} '{key}'");
        let type_id = c.u32().map_err(|p| p.at(at()))?;
        let value = read_value(c, type_id, 0, &mut budget).map_err(|p| p.at(at()))?;
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { index: i, key });
        }
        index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }
    Ok((metadata, index))
}

/// Reads one value of type `type_id`. `depth` counts enclosing arrays;
/// `budget` is how many more array elements may be created.
fn read_value(c: &mut Cursor, type_id: u32, depth: usize, budget: &mut u64) -> Result<Value, Problem> {
    Ok(match type_id {
        value::TYPE_U8 => Value::U8(c.u8()?),
        value::TYPE_I8 => Value::I8(c.u8()? as i8),
        value::TYPE_U16 => Value::U16(c.u16()?),
        value::TYPE_I16 => Value::I16(c.u16()? as i16),
        value::TYPE_U32 => Value::U32(c.u32()?),
        value::TYPE_I32 => Value::I32(c.u32()? as i32),
        value::TYPE_U64 => Value::U64(c.u64()?),
        value::TYPE_I64 => Value::I64(c.u64()? as i64),
        value::TYPE_F32 => Value::F32(f32::from_bits(c.u32()?)),
        value::TYPE_F64 => Value::F64(f64::from_bits(c.u64()?)),
        // Like llama.cpp, any non-zero byte is true.
        value::TYPE_BOOL => Value::Bool(c.u8()? != 0),
        // Token strings in the wild are occasionally not UTF-8; one bad token
        // should not make a model unloadable, so invalid bytes become U+FFFD.
        value::TYPE_STRING => Value::String(String::from_utf8_lossy(c.string_bytes()?).into_owned()),
        value::TYPE_ARRAY => {
            if depth >= MAX_DEPTH {
                return Err(Problem::TooDeep(MAX_DEPTH));
            }
            let elem_type = c.u32()?;
            let min_bytes_each = value::min_encoded_len(elem_type).ok_or(Problem::UnknownValueType(elem_type))?;
            let count = c.u64()?;
            let remaining = c.remaining();
            if count.checked_mul(min_bytes_each).is_none_or(|need| need > remaining) {
                return Err(Problem::CountTooLarge { what: "array length", count, min_bytes_each, remaining });
            }
            if count > *budget {
                return Err(Problem::OverLimit { what: "array length", count, limit: *budget });
            }
            *budget -= count;
            let mut items = Vec::with_capacity(count.min(MAX_PREALLOC) as usize);
            for _ in 0..count {
                items.push(read_value(c, elem_type, depth + 1, budget)?);
            }
            Value::Array(items)
        }
        other => return Err(Problem::UnknownValueType(other)),
    })
}

fn alignment(metadata: &[(String, Value)], index: &HashMap<String, usize>) -> Result<u64, GgufError> {
    let Some(&i) = index.get(super::KEY_ALIGNMENT) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let value = &metadata[i].1;
    check_alignment(value)
}

/// `general.alignment` must be a non-zero power of two (llama.cpp requires a
/// `u32`; any unsigned integer type is accepted here).
pub(crate) fn check_alignment(value: &Value) -> Result<u64, GgufError> {
    let align = value.as_u64().ok_or_else(|| GgufError::BadAlignment {
        reason: format!("expected an unsigned integer, found {} {value}", value.type_name()),
    })?;
    if !align.is_power_of_two() {
        return Err(GgufError::BadAlignment { reason: format!("{align} is not a non-zero power of two") });
    }
    Ok(align)
}

type Tensors = (Vec<TensorInfo>, HashMap<String, usize>);

fn read_tensor_infos(c: &mut Cursor, n_tensors: u64) -> Result<Tensors, GgufError> {
    let mut tensors = Vec::with_capacity(n_tensors.min(MAX_PREALLOC) as usize);
    let mut index = HashMap::with_capacity(n_tensors.min(MAX_PREALLOC) as usize);
    for i in 0..n_tensors {
        let name = c.strict_string().map_err(|p| p.at(format!("tensor #{i}")))?;
        let at = || format!("tensor #{i} '{name}'");
        let n_dims = c.u32().map_err(|p| p.at(at()))?;
        if n_dims as usize > MAX_DIMS {
            return Err(GgufError::TooManyDims { tensor: name, n_dims: n_dims.into() });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64().map_err(|p| p.at(at()))?);
        }
        let type_id = c.u32().map_err(|p| p.at(at()))?;
        let offset = c.u64().map_err(|p| p.at(at()))?;
        let info = tensor_info(name, dims, type_id, offset)?;
        if index.contains_key(&info.name) {
            return Err(GgufError::DuplicateTensor { tensor: info.name });
        }
        index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }
    Ok((tensors, index))
}

fn tensor_info(name: String, dims: Vec<u64>, type_id: u32, offset: u64) -> Result<TensorInfo, GgufError> {
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownGgmlType { tensor: name, type_id });
    };
    let n_bytes = tensor_bytes(&name, &dims, ggml_type)?;
    Ok(TensorInfo { name, dims, ggml_type, offset, n_bytes })
}

/// Validates a tensor's shape and returns its size in bytes. Zero-sized
/// dimensions are allowed (as in llama.cpp) and give an empty tensor.
pub(crate) fn tensor_bytes(name: &str, dims: &[u64], ggml_type: GgmlType) -> Result<usize, GgufError> {
    if dims.len() > MAX_DIMS {
        return Err(GgufError::TooManyDims { tensor: name.to_owned(), n_dims: dims.len() as u64 });
    }
    let overflow = || GgufError::DimsOverflow { tensor: name.to_owned(), dims: dims.to_vec() };
    // ggml stores dims as int64_t: every dim and the element count must fit.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64))
        .ok_or_else(overflow)?;
    let row_len = dims.first().copied().unwrap_or(1);
    let block_len = ggml_type.block_len();
    if !row_len.is_multiple_of(block_len as u64) {
        return Err(GgufError::PartialBlock {
            tensor: name.to_owned(),
            ggml_type: ggml_type.name(),
            row_len,
            block_len,
        });
    }
    ggml_type
        .bytes_for(n_elements)
        .filter(|&n| n <= i64::MAX as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(overflow)
}

/// Every tensor's data must be aligned, inside the file, and disjoint from
/// every other tensor's.
fn check_data_ranges(tensors: &[TensorInfo], data_start: u64, alignment: u64, file_len: u64) -> Result<(), GgufError> {
    for t in tensors {
        if !t.offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedOffset { tensor: t.name.clone(), offset: t.offset, alignment });
        }
        let end = data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes as u64));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(GgufError::TensorOutOfFile {
                    tensor: t.name.clone(),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_offset.sort_by_key(|t| t.offset);
    let mut furthest: Option<&TensorInfo> = None;
    for t in by_offset {
        if let Some(prev) = furthest {
            // Cannot overflow: both ranges were checked to end inside the file.
            if prev.offset + prev.n_bytes as u64 > t.offset {
                return Err(GgufError::Overlap { first: prev.name.clone(), second: t.name.clone() });
            }
        }
        if furthest.is_none_or(|f| t.offset + t.n_bytes as u64 > f.offset + f.n_bytes as u64) {
            furthest = Some(t);
        }
    }
    Ok(())
}
