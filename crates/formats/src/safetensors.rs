//! safetensors, Hugging Face's weight format: an 8-byte little-endian header
//! length `N`, `N` bytes of JSON mapping each tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to
//! the data section that follows the header), then the data. The optional
//! `"__metadata__"` entry is ignored.
//!
//! # Guarantees
//!
//! [`SafeTensors::open`] memory-maps the file and checks the whole header
//! before returning: the header length fits the file (and a 100 MB cap), the
//! JSON is valid, names are unique, every dtype is known, every tensor's
//! `[begin, end]` lies inside the data section with `begin <= end`,
//! `end - begin` equals `product(shape) * element size` (overflow-checked),
//! and no two tensors overlap. A header that lies about any of these is an
//! error naming the tensor. Each [`StTensor::data`] is then a zero-copy
//! [`Blob`] of exactly the right length. Holes between tensors and trailing
//! bytes are allowed (the reference implementation rejects them; nothing is
//! unsafe about them).
//!
//! [`SafeTensorsDir`] reads a Hugging Face model directory: either
//! `model.safetensors`, or the shards named in
//! `model.safetensors.index.json`'s `weight_map`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use memwall_kernels::DType;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::Blob;

/// Largest JSON header accepted (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A tensor element type as named in the header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StDType {
    F32,
    F16,
    BF16,
    /// Any other known safetensors dtype ("I64", "U8", "F64", "F8_E4M3", ...):
    /// parsed and size-checked, but not computable by memwall.
    Other(String),
}

/// Known dtypes other than F32/F16/BF16, with their size in bits.
const OTHER_DTYPES: [(&str, u64); 17] = [
    ("BOOL", 8),
    ("U8", 8),
    ("I8", 8),
    ("F8_E5M2", 8),
    ("F8_E4M3", 8),
    ("F8_E8M0", 8),
    ("I16", 16),
    ("U16", 16),
    ("I32", 32),
    ("U32", 32),
    ("F64", 64),
    ("I64", 64),
    ("U64", 64),
    ("C64", 64),
    ("F4", 4),
    ("F6_E2M3", 6),
    ("F6_E3M2", 6),
];

impl StDType {
    /// The dtype named `name` in a header, or `None` if unknown.
    pub fn from_name(name: &str) -> Option<StDType> {
        Some(match name {
            "F32" => StDType::F32,
            "F16" => StDType::F16,
            "BF16" => StDType::BF16,
            _ => StDType::Other(OTHER_DTYPES.iter().find(|(n, _)| *n == name)?.0.to_owned()),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            StDType::F32 => "F32",
            StDType::F16 => "F16",
            StDType::BF16 => "BF16",
            StDType::Other(name) => name,
        }
    }

    /// Bits per element.
    pub fn bits(&self) -> u64 {
        match self {
            StDType::F32 => 32,
            StDType::F16 | StDType::BF16 => 16,
            StDType::Other(name) => OTHER_DTYPES.iter().find(|(n, _)| n == name).map_or(0, |(_, b)| *b),
        }
    }

    /// The memwall compute type, if any.
    pub fn dtype(&self) -> Option<DType> {
        match self {
            StDType::F32 => Some(DType::F32),
            StDType::F16 => Some(DType::F16),
            StDType::BF16 => Some(DType::BF16),
            StDType::Other(_) => None,
        }
    }
}

impl fmt::Display for StDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a safetensors file.
#[derive(Debug, Clone)]
pub struct StTensor {
    pub name: String,
    pub dtype: StDType,
    /// Row-major, outermost first, as in torch: a `(rows, cols)` matrix is
    /// `[rows, cols]`.
    pub shape: Vec<usize>,
    /// Exactly `product(shape) * bits / 8` bytes.
    pub data: Blob,
}

/// What went wrong reading safetensors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafeTensorsError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },

    #[error("{path}: {source}")]
    InFile { path: PathBuf, source: Box<SafeTensorsError> },

    #[error("file is {len} bytes, too short for the 8-byte safetensors header length")]
    TooShort { len: u64 },

    #[error("header length {header_len} exceeds {what} ({limit} bytes)")]
    HeaderTooLarge { header_len: u64, what: &'static str, limit: u64 },

    #[error("invalid JSON header: {0}")]
    BadJson(serde_json::Error),

    #[error("tensor '{tensor}' appears twice")]
    DuplicateName { tensor: String },

    #[error("tensor '{tensor}': unknown dtype '{dtype}'")]
    UnknownDType { tensor: String, dtype: String },

    #[error("tensor '{tensor}': data_offsets [{begin}, {end}] do not lie inside the {data_len}-byte data section")]
    BadOffsets { tensor: String, begin: u64, end: u64, data_len: u64 },

    #[error("tensor '{tensor}': shape {shape:?} of {dtype} overflows or is not a whole number of bytes")]
    ShapeOverflow { tensor: String, shape: Vec<u64>, dtype: StDType },

    #[error("tensor '{tensor}': shape {shape:?} of {dtype} needs {expected} bytes but data_offsets span {got}")]
    SizeMismatch { tensor: String, shape: Vec<usize>, dtype: StDType, expected: u64, got: u64 },

    #[error("tensors '{first}' and '{second}' overlap in the data section")]
    Overlap { first: String, second: String },

    #[error("no model.safetensors or model.safetensors.index.json in {dir}")]
    NoWeights { dir: PathBuf },

    #[error("{path}: invalid index: {reason}")]
    BadIndex { path: PathBuf, reason: String },

    #[error("shard file name '{name}' must be a plain file name inside the model directory")]
    BadShardName { name: String },

    #[error("tensor '{tensor}' is listed in the index under {file} but that file does not contain it")]
    MissingTensor { tensor: String, file: String },
}

/// One parsed safetensors file.
#[derive(Debug, Clone)]
pub struct SafeTensors {
    tensors: Vec<StTensor>,
}

impl SafeTensors {
    /// Memory-maps and validates the file at `path`.
    pub fn open(path: &Path) -> Result<SafeTensors, SafeTensorsError> {
        let blob = Blob::map_file(path).map_err(|source| SafeTensorsError::Open { path: path.to_owned(), source })?;
        SafeTensors::from_blob(blob)
    }

    /// Validates a safetensors file already in memory.
    pub fn from_blob(blob: Blob) -> Result<SafeTensors, SafeTensorsError> {
        let file_len = blob.len() as u64;
        let len_bytes: [u8; 8] =
            blob.get(..8).and_then(|b| b.try_into().ok()).ok_or(SafeTensorsError::TooShort { len: file_len })?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > file_len - 8 {
            return Err(SafeTensorsError::HeaderTooLarge {
                header_len,
                what: "the rest of the file",
                limit: file_len - 8,
            });
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(SafeTensorsError::HeaderTooLarge { header_len, what: "the limit", limit: MAX_HEADER_BYTES });
        }
        // Both fit in usize: they are at most the length of an in-memory blob.
        let data_start = 8 + header_len as usize;
        let header: Header = serde_json::from_slice(&blob[8..data_start]).map_err(SafeTensorsError::BadJson)?;
        let data = blob.slice(data_start..blob.len()).unwrap_or_else(|| Blob::from_vec(Vec::new()));
        let mut placed =
            header.0.into_iter().map(|(name, entry)| entry.into_tensor(name, &data)).collect::<Result<Vec<_>, _>>()?;
        check_overlap(&mut placed)?;
        let tensors = placed.into_iter().map(|(_, t)| t).collect();
        Ok(SafeTensors { tensors })
    }

    /// All tensors, in data-section order.
    pub fn tensors(&self) -> &[StTensor] {
        &self.tensors
    }

    /// The tensor named `name` (linear search).
    pub fn get(&self, name: &str) -> Option<&StTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// The header's tensor entries in file order; duplicate names are an error
/// (a plain JSON map would keep only the last).
struct Header(Vec<(String, Entry)>);

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Header, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut entries = Vec::new();
                let mut seen = HashSet::new();
                while let Some(name) = map.next_key::<String>()? {
                    if name == "__metadata__" {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    if !seen.insert(name.clone()) {
                        return Err(de::Error::custom(format!("tensor '{name}' appears twice")));
                    }
                    let entry =
                        map.next_value::<Entry>().map_err(|e| de::Error::custom(format!("tensor '{name}': {e}")))?;
                    entries.push((name, entry));
                }
                Ok(Header(entries))
            }
        }
        d.deserialize_map(HeaderVisitor)
    }
}

impl Entry {
    /// The tensor and its begin offset in the data section.
    fn into_tensor(self, name: String, data: &Blob) -> Result<(u64, StTensor), SafeTensorsError> {
        let Some(dtype) = StDType::from_name(&self.dtype) else {
            return Err(SafeTensorsError::UnknownDType { tensor: name, dtype: self.dtype });
        };
        let (begin, end) = self.data_offsets;
        let data_len = data.len() as u64;
        if begin > end || end > data_len {
            return Err(SafeTensorsError::BadOffsets { tensor: name, begin, end, data_len });
        }
        let bits = self
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.bits()))
            .filter(|bits| bits.is_multiple_of(8));
        let shape: Option<Vec<usize>> = self.shape.iter().map(|&d| usize::try_from(d).ok()).collect();
        let (Some(bits), Some(shape)) = (bits, shape) else {
            return Err(SafeTensorsError::ShapeOverflow { tensor: name, shape: self.shape, dtype });
        };
        if bits / 8 != end - begin {
            return Err(SafeTensorsError::SizeMismatch {
                tensor: name,
                shape,
                dtype,
                expected: bits / 8,
                got: end - begin,
            });
        }
        // In range: end <= data_len, which is a usize.
        let data = data.slice(begin as usize..end as usize).ok_or(SafeTensorsError::BadOffsets {
            tensor: name.clone(),
            begin,
            end,
            data_len,
        })?;
        Ok((begin, StTensor { name, dtype, shape, data }))
    }
}

/// Sorts tensors (with their begin offsets) by offset and rejects
/// overlapping ranges (empty tensors overlap nothing).
fn check_overlap(tensors: &mut [(u64, StTensor)]) -> Result<(), SafeTensorsError> {
    tensors.sort_by_key(|(begin, _)| *begin);
    let mut furthest: Option<(u64, &str)> = None; // (end, name) of the furthest-reaching tensor so far
    for (begin, t) in tensors.iter() {
        if t.data.is_empty() {
            continue;
        }
        let end = begin + t.data.len() as u64;
        if let Some((f_end, f_name)) = furthest {
            if f_end > *begin {
                return Err(SafeTensorsError::Overlap { first: f_name.to_owned(), second: t.name.clone() });
            }
        }
        if furthest.is_none_or(|(f_end, _)| end > f_end) {
            furthest = Some((end, &t.name));
        }
    }
    Ok(())
}

/// A Hugging Face model directory's weights: `model.safetensors`, or the
/// shards listed in `model.safetensors.index.json` (`weight_map`: tensor
/// name → shard file name). Shard names must be plain file names inside the
/// directory ("../x" and absolute paths are rejected). Every tensor of every
/// listed shard is available; each `weight_map` entry must be found in the
/// shard it names, and a name may appear in only one shard.
#[derive(Debug, Clone)]
pub struct SafeTensorsDir {
    tensors: Vec<StTensor>,
    index: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct IndexJson {
    weight_map: std::collections::BTreeMap<String, String>,
}

impl SafeTensorsDir {
    pub fn open(dir: &Path) -> Result<SafeTensorsDir, SafeTensorsError> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let (shards, weight_map) = if index_path.is_file() {
            let weight_map = read_index(&index_path)?;
            let mut shards: Vec<&String> = weight_map.values().collect();
            shards.sort();
            shards.dedup();
            for name in &shards {
                check_shard_name(name)?;
            }
            let shards = shards.into_iter().map(|s| (s.clone(), dir.join(s))).collect::<Vec<_>>();
            (shards, weight_map)
        } else if single.is_file() {
            (vec![("model.safetensors".to_owned(), single)], Default::default())
        } else {
            return Err(SafeTensorsError::NoWeights { dir: dir.to_owned() });
        };

        let mut tensors = Vec::new();
        let mut index = HashMap::new();
        let mut shard_of = HashMap::new();
        for (shard, path) in &shards {
            let file = SafeTensors::open(path).map_err(|e| match e {
                // Already names the file.
                SafeTensorsError::Open { .. } => e,
                e => SafeTensorsError::InFile { path: path.clone(), source: Box::new(e) },
            })?;
            for t in file.tensors {
                if index.insert(t.name.clone(), tensors.len()).is_some() {
                    return Err(SafeTensorsError::InFile {
                        path: path.clone(),
                        source: Box::new(SafeTensorsError::DuplicateName { tensor: t.name }),
                    });
                }
                shard_of.insert(t.name.clone(), shard.as_str());
                tensors.push(t);
            }
        }
        for (tensor, file) in &weight_map {
            if shard_of.get(tensor.as_str()) != Some(&file.as_str()) {
                return Err(SafeTensorsError::MissingTensor { tensor: tensor.clone(), file: file.clone() });
            }
        }
        Ok(SafeTensorsDir { tensors, index })
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&StTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// All tensor names, shard by shard in data order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// All tensors, shard by shard in data order.
    pub fn tensors(&self) -> &[StTensor] {
        &self.tensors
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

fn read_index(path: &Path) -> Result<std::collections::BTreeMap<String, String>, SafeTensorsError> {
    let bad = |reason: String| SafeTensorsError::BadIndex { path: path.to_owned(), reason };
    let text = std::fs::read(path).map_err(|source| SafeTensorsError::Open { path: path.to_owned(), source })?;
    let index: IndexJson = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    Ok(index.weight_map)
}

fn check_shard_name(name: &str) -> Result<(), SafeTensorsError> {
    let mut components = Path::new(name).components();
    let plain = matches!(components.next(), Some(Component::Normal(_)))
        && components.next().is_none()
        && !name.contains(['/', '\\']);
    if plain {
        Ok(())
    } else {
        Err(SafeTensorsError::BadShardName { name: name.to_owned() })
    }
}
