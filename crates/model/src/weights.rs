//! Weights bound by name from a GGUF file or a Hugging Face directory.
//!
//! Names are llama.cpp's GGUF names (`blk.{i}.attn_q.weight`); a Hugging Face
//! directory is read through a table that maps each GGUF name to its
//! transformers name, so the decoder binds one set of names for both formats.
//! Weight matrices stay where the file put them (memory-mapped, read in
//! place by the kernels), except: GPT-2's `Conv1D` matrices, stored
//! transposed by transformers, are copied once at load; and block formats
//! with tile kernels on this CPU are repacked once at load into tiles of 16
//! rows (`memwall_kernels::matmul::packed`: the same bytes in another order,
//! 2–3× fewer instructions per weight byte).

use crate::config::Arch;
use crate::error::ModelError;
use memwall_formats::gguf::GgufFile;
use memwall_formats::safetensors::{SafeTensorsDir, StDType};
use memwall_formats::Blob;
use memwall_kernels::matmul::{repack_pays, PackedMat};
use memwall_kernels::quant::dequantize_row;
use memwall_kernels::{DType, MatRef};

/// A weight matrix `[rows = d_out, cols = d_in]`, row-major, in its file's
/// element type.
pub struct Matrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    data: Data,
}

enum Data {
    /// Bytes in the mapped file.
    Mapped(Blob),
    /// Rearranged or realigned at load: f32 values.
    Owned(Vec<f32>),
    /// Repacked at load into tiles of 16 rows (boxed: keeps `Matrix` small).
    Packed(Box<PackedMat>),
}

impl Matrix {
    /// The kernels' view of this matrix.
    pub fn as_mat(&self) -> MatRef<'_> {
        match &self.data {
            Data::Packed(p) => p.as_mat(),
            _ => MatRef::new(self.dtype, self.rows, self.cols, self.bytes()),
        }
    }

    /// The bytes the kernels read (tiled: padded to a multiple of 16 rows).
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Mapped(b) => b,
            Data::Owned(v) => bytemuck_f32(v),
            Data::Packed(p) => p.bytes(),
        }
    }

    /// Dequantizes row `r` into `out` (`[cols]`).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        match &self.data {
            Data::Packed(p) => p.as_mat().dequantize_row(r, out),
            _ => dequantize_row(self.dtype, &self.bytes()[r * rb..(r + 1) * rb], out),
        }
    }

    fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).expect("checked when bound")
    }

    /// Repacked into tiles when this CPU has tile kernels for the type
    /// (`memwall_kernels::matmul::repack_pays`); as it is otherwise.
    fn packed_if_it_pays(self) -> Matrix {
        if !repack_pays(self.dtype) {
            return self;
        }
        match PackedMat::pack(&self.as_mat()) {
            Some(p) => {
                // The file's copy is not read again: keep one copy resident.
                if let Data::Mapped(b) = &self.data {
                    b.release_pages();
                }
                Matrix { data: Data::Packed(Box::new(p)), ..self }
            }
            None => self,
        }
    }
}

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// A tensor as found in a file, before it is bound to a role.
pub struct RawTensor {
    pub name: String,
    pub dtype: DType,
    /// Row-major (torch) order: `[rows, cols]` for matrices, `[n]` for vectors.
    pub shape: Vec<usize>,
    data: Data,
}

impl RawTensor {
    fn into_matrix(self, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        let found = self.shape.clone();
        let ok = match found.as_slice() {
            [r, c] => *r == rows && *c == cols,
            _ => false,
        };
        if !ok {
            return Err(ModelError::BadShape { name: self.name, found, expected: vec![rows, cols] });
        }
        let len_ok = match (&self.data, self.dtype.row_bytes(cols)) {
            (Data::Mapped(b), Some(rb)) => rb.checked_mul(rows) == Some(b.len()),
            (Data::Owned(v), Some(_)) => v.len() == rows * cols,
            (Data::Packed(_), _) | (_, None) => false,
        };
        if !len_ok {
            return Err(ModelError::BadShape { name: self.name, found, expected: vec![rows, cols] });
        }
        // The kernels load f32/f16 with their natural alignment.
        let data = match self.data {
            Data::Mapped(b) if !(b.as_ptr() as usize).is_multiple_of(4) && !self.dtype.is_quantized() => {
                let mut v = vec![0f32; rows * cols];
                let rb = self.dtype.row_bytes(cols).unwrap_or(0);
                for (r, out) in v.chunks_mut(cols).enumerate() {
                    dequantize_row(self.dtype, &b[r * rb..(r + 1) * rb], out);
                }
                return Ok(Matrix { dtype: DType::F32, rows, cols, data: Data::Owned(v) });
            }
            d => d,
        };
        Ok(Matrix { dtype: self.dtype, rows, cols, data }.packed_if_it_pays())
    }

    fn into_vector(self, n: usize) -> Result<Vec<f32>, ModelError> {
        if self.shape.iter().product::<usize>() != n || self.shape.len() > 2 {
            return Err(ModelError::BadShape { name: self.name, found: self.shape, expected: vec![n] });
        }
        let bytes = match &self.data {
            Data::Mapped(b) => &b[..],
            Data::Owned(v) => bytemuck_f32(v),
            Data::Packed(p) => p.bytes(),
        };
        let mut out = vec![0f32; n];
        if self.dtype.row_bytes(n) != Some(bytes.len()) {
            return Err(ModelError::BadShape { name: self.name, found: self.shape, expected: vec![n] });
        }
        dequantize_row(self.dtype, bytes, &mut out);
        Ok(out)
    }
}

/// Where weights come from.
pub enum WeightSource {
    Gguf(GgufFile),
    Hf { arch: Arch, dir: SafeTensorsDir },
}

impl WeightSource {
    /// The tensor with GGUF name `name`, or `None` if the model has none.
    pub fn get(&self, name: &str) -> Result<Option<RawTensor>, ModelError> {
        match self {
            WeightSource::Gguf(g) => {
                let Some(t) = g.tensor(name) else { return Ok(None) };
                let dtype = t.dtype().ok_or_else(|| ModelError::UnsupportedType {
                    name: name.to_string(),
                    ty: t.ggml_type.name().to_string(),
                })?;
                let shape = t.dims.iter().rev().map(|&d| d as usize).collect();
                Ok(Some(RawTensor { name: name.to_string(), dtype, shape, data: Data::Mapped(g.tensor_data(t)) }))
            }
            WeightSource::Hf { arch, dir } => {
                for (hf_name, transposed) in hf_names(*arch, name) {
                    let Some(t) = dir.get(&hf_name) else { continue };
                    let dtype = match &t.dtype {
                        StDType::F32 => DType::F32,
                        StDType::F16 => DType::F16,
                        StDType::BF16 => DType::BF16,
                        StDType::Other(ty) => {
                            return Err(ModelError::UnsupportedType { name: hf_name, ty: ty.clone() })
                        }
                    };
                    let raw =
                        RawTensor { name: hf_name, dtype, shape: t.shape.clone(), data: Data::Mapped(t.data.clone()) };
                    return Ok(Some(if transposed { raw.transposed() } else { raw }));
                }
                Ok(None)
            }
        }
    }

    /// Like [`get`](Self::get) but the tensor must exist.
    pub fn require(&self, name: &str) -> Result<RawTensor, ModelError> {
        self.get(name)?.ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        self.require(name)?.into_matrix(rows, cols)
    }

    pub fn opt_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Option<Matrix>, ModelError> {
        self.get(name)?.map(|t| t.into_matrix(rows, cols)).transpose()
    }

    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        self.require(name)?.into_vector(n)
    }

    pub fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        self.get(name)?.map(|t| t.into_vector(n)).transpose()
    }
}

impl RawTensor {
    /// Transposes a 2-D tensor into an owned f32 copy (GPT-2 `Conv1D`).
    fn transposed(self) -> RawTensor {
        let [r, c] = self.shape[..] else { return self };
        let Data::Mapped(b) = &self.data else { return self };
        let Some(rb) = self.dtype.row_bytes(c) else { return self };
        if b.len() != rb * r {
            return self;
        }
        let mut row = vec![0f32; c];
        let mut out = vec![0f32; r * c];
        for i in 0..r {
            dequantize_row(self.dtype, &b[i * rb..(i + 1) * rb], &mut row);
            for (j, &x) in row.iter().enumerate() {
                out[j * r + i] = x;
            }
        }
        RawTensor { name: self.name, dtype: DType::F32, shape: vec![c, r], data: Data::Owned(out) }
    }
}

/// What [`crate::shard`] needs to cut a rank's slice out of a tensor.
impl RawTensor {
    /// The tensor's bytes in its element type, row-major.
    pub(crate) fn raw_bytes(&self) -> &[u8] {
        match &self.data {
            Data::Mapped(b) => b,
            Data::Owned(v) => bytemuck_f32(v),
            Data::Packed(p) => p.bytes(),
        }
    }

    /// Bytes `range` of a tensor still in the mapped file (no copy).
    pub(crate) fn mapped_range(&self, range: std::ops::Range<usize>) -> Option<Blob> {
        match &self.data {
            Data::Mapped(b) => b.slice(range),
            _ => None,
        }
    }

    /// `bytes` of this tensor's type as a tensor of `shape` (a rank's slice).
    pub(crate) fn with_bytes(&self, bytes: Blob, shape: Vec<usize>) -> RawTensor {
        RawTensor { name: self.name.clone(), dtype: self.dtype, shape, data: Data::Mapped(bytes) }
    }

    /// Checks the shape and binds the tensor as a `[rows, cols]` matrix.
    pub(crate) fn bind_matrix(self, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        self.into_matrix(rows, cols)
    }
}

/// The transformers names of GGUF tensor `name` for `arch`, each with whether
/// transformers stores it transposed.
fn hf_names(arch: Arch, name: &str) -> Vec<(String, bool)> {
    let gpt2 = arch == Arch::Gpt2;
    if let Some(rest) = name.strip_prefix("blk.") {
        let Some((layer, suffix)) = rest.split_once('.') else { return vec![] };
        let (hf, transposed): (&[&str], bool) = match (gpt2, suffix) {
            (false, "attn_norm.weight") => (&["input_layernorm.weight"], false),
            (false, "attn_q.weight") => (&["self_attn.q_proj.weight"], false),
            (false, "attn_q.bias") => (&["self_attn.q_proj.bias"], false),
            (false, "attn_k.weight") => (&["self_attn.k_proj.weight"], false),
            (false, "attn_k.bias") => (&["self_attn.k_proj.bias"], false),
            (false, "attn_v.weight") => (&["self_attn.v_proj.weight"], false),
            (false, "attn_v.bias") => (&["self_attn.v_proj.bias"], false),
            (false, "attn_qkv.weight") => (&["self_attn.qkv_proj.weight"], false),
            (false, "attn_q_norm.weight") => (&["self_attn.q_norm.weight"], false),
            (false, "attn_k_norm.weight") => (&["self_attn.k_norm.weight"], false),
            (false, "attn_output.weight") => (&["self_attn.o_proj.weight"], false),
            (false, "ffn_norm.weight") => (&["post_attention_layernorm.weight"], false),
            (false, "ffn_gate.weight") => (&["mlp.gate_proj.weight"], false),
            (false, "ffn_up.weight") => (&["mlp.up_proj.weight", "mlp.gate_up_proj.weight"], false),
            (false, "ffn_down.weight") => (&["mlp.down_proj.weight"], false),
            (true, "attn_norm.weight") => (&["ln_1.weight"], false),
            (true, "attn_norm.bias") => (&["ln_1.bias"], false),
            (true, "attn_qkv.weight") => (&["attn.c_attn.weight"], true),
            (true, "attn_qkv.bias") => (&["attn.c_attn.bias"], false),
            (true, "attn_output.weight") => (&["attn.c_proj.weight"], true),
            (true, "attn_output.bias") => (&["attn.c_proj.bias"], false),
            (true, "ffn_norm.weight") => (&["ln_2.weight"], false),
            (true, "ffn_norm.bias") => (&["ln_2.bias"], false),
            (true, "ffn_up.weight") => (&["mlp.c_fc.weight"], true),
            (true, "ffn_up.bias") => (&["mlp.c_fc.bias"], false),
            (true, "ffn_down.weight") => (&["mlp.c_proj.weight"], true),
            (true, "ffn_down.bias") => (&["mlp.c_proj.bias"], false),
            _ => return vec![],
        };
        let prefixes: &[&str] = if gpt2 { &["transformer.h", "h"] } else { &["model.layers"] };
        return prefixes
            .iter()
            .flat_map(|p| hf.iter().map(move |s| (format!("{p}.{layer}.{s}"), transposed)))
            .collect();
    }
    let hf: &[&str] = match (gpt2, name) {
        (false, "token_embd.weight") => &["model.embed_tokens.weight"],
        (false, "output_norm.weight") => &["model.norm.weight"],
        (_, "output.weight") => &["lm_head.weight"],
        (true, "token_embd.weight") => &["transformer.wte.weight", "wte.weight"],
        (true, "position_embd.weight") => &["transformer.wpe.weight", "wpe.weight"],
        (true, "output_norm.weight") => &["transformer.ln_f.weight", "ln_f.weight"],
        (true, "output_norm.bias") => &["transformer.ln_f.bias", "ln_f.bias"],
        _ => &[],
    };
    hf.iter().map(|s| (s.to_string(), false)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_conv1d_names_are_transposed() {
        let names = hf_names(Arch::Gpt2, "blk.3.attn_qkv.weight");
        assert_eq!(names[0], ("transformer.h.3.attn.c_attn.weight".to_string(), true));
        assert_eq!(hf_names(Arch::Qwen3, "blk.0.attn_k_norm.weight")[0].0, "model.layers.0.self_attn.k_norm.weight");
        assert!(hf_names(Arch::Llama, "blk.x").is_empty());
    }

    #[test]
    fn transpose_moves_elements() {
        let vals: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let bytes: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = RawTensor {
            name: "t".into(),
            dtype: DType::F32,
            shape: vec![2, 3],
            data: Data::Mapped(Blob::from_vec(bytes)),
        };
        let m = t.transposed().into_matrix(3, 2).unwrap();
        let mut row = [0f32; 2];
        m.row_into(1, &mut row);
        assert_eq!(row, [1.0, 4.0]);
    }
}
