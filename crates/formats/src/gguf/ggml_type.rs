//! Every tensor element type a GGUF file can declare, with ggml's ids, names
//! and block geometry (`ggml.h` / `ggml.c` `type_traits`, gguf-py
//! `GGML_QUANT_SIZES`).
//!
//! memwall computes with a few of them ([`DType`]); the rest are listed so a
//! file that uses them still opens and can be inspected. Ids 4 and 5
//! (Q4_2, Q4_3) were removed before GGUF existed and are not listed. The
//! interleaved repack types 31–33 and 36–38 were briefly written to files in
//! late 2024 and then withdrawn; they are listed with their original sizes so
//! such files can be inspected.

use std::fmt;

use memwall_kernels::DType;

/// A ggml tensor element type, as stored in a GGUF tensor info.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    /// Withdrawn interleaved repack of Q4_0 (id 31).
    Q4_0_4_4,
    /// Withdrawn interleaved repack of Q4_0 (id 32).
    Q4_0_4_8,
    /// Withdrawn interleaved repack of Q4_0 (id 33).
    Q4_0_8_8,
    TQ1_0,
    TQ2_0,
    /// Withdrawn interleaved repack of IQ4_NL (id 36).
    IQ4_NL_4_4,
    /// Withdrawn interleaved repack of IQ4_NL (id 37).
    IQ4_NL_4_8,
    /// Withdrawn interleaved repack of IQ4_NL (id 38).
    IQ4_NL_8_8,
    MXFP4,
    NVFP4,
    Q1_0,
}

/// (type, ggml id, name, elements per block, bytes per block).
const TABLE: [(GgmlType, u32, &str, usize, usize); 40] = {
    use GgmlType::*;
    [
        (F32, 0, "f32", 1, 4),
        (F16, 1, "f16", 1, 2),
        (Q4_0, 2, "q4_0", 32, 18),
        (Q4_1, 3, "q4_1", 32, 20),
        (Q5_0, 6, "q5_0", 32, 22),
        (Q5_1, 7, "q5_1", 32, 24),
        (Q8_0, 8, "q8_0", 32, 34),
        (Q8_1, 9, "q8_1", 32, 36),
        (Q2_K, 10, "q2_K", 256, 84),
        (Q3_K, 11, "q3_K", 256, 110),
        (Q4_K, 12, "q4_K", 256, 144),
        (Q5_K, 13, "q5_K", 256, 176),
        (Q6_K, 14, "q6_K", 256, 210),
        (Q8_K, 15, "q8_K", 256, 292),
        (IQ2_XXS, 16, "iq2_xxs", 256, 66),
        (IQ2_XS, 17, "iq2_xs", 256, 74),
        (IQ3_XXS, 18, "iq3_xxs", 256, 98),
        (IQ1_S, 19, "iq1_s", 256, 50),
        (IQ4_NL, 20, "iq4_nl", 32, 18),
        (IQ3_S, 21, "iq3_s", 256, 110),
        (IQ2_S, 22, "iq2_s", 256, 82),
        (IQ4_XS, 23, "iq4_xs", 256, 136),
        (I8, 24, "i8", 1, 1),
        (I16, 25, "i16", 1, 2),
        (I32, 26, "i32", 1, 4),
        (I64, 27, "i64", 1, 8),
        (F64, 28, "f64", 1, 8),
        (IQ1_M, 29, "iq1_m", 256, 56),
        (BF16, 30, "bf16", 1, 2),
        (Q4_0_4_4, 31, "q4_0_4x4", 32, 18),
        (Q4_0_4_8, 32, "q4_0_4x8", 32, 18),
        (Q4_0_8_8, 33, "q4_0_8x8", 32, 18),
        (TQ1_0, 34, "tq1_0", 256, 54),
        (TQ2_0, 35, "tq2_0", 256, 66),
        (IQ4_NL_4_4, 36, "iq4_nl_4x4", 32, 18),
        (IQ4_NL_4_8, 37, "iq4_nl_4x8", 32, 18),
        (IQ4_NL_8_8, 38, "iq4_nl_8x8", 32, 18),
        (MXFP4, 39, "mxfp4", 32, 17),
        (NVFP4, 40, "nvfp4", 64, 36),
        (Q1_0, 41, "q1_0", 128, 18),
    ]
};

impl GgmlType {
    /// Every known type, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|row| row.0)
    }

    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        // The table lists every variant exactly once (tested), in declaration
        // order, so the discriminant is the index.
        &TABLE[self as usize]
    }

    /// The type with ggml id `id`, or `None` for ids ggml never assigned or
    /// that memwall does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.1 == id).map(|row| row.0)
    }

    /// The ggml id stored in GGUF files.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name (`ggml_type_name`): "f32", "q4_0", "q4_K", ...
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// The type with this ggml name (case-insensitive).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.2.eq_ignore_ascii_case(name)).map(|row| row.0)
    }

    /// Elements per block (1 for plain numbers).
    pub fn block_len(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.row().4
    }

    /// Bytes of `n_elements` elements, or `None` if they are not a whole
    /// number of blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let block_len = self.block_len() as u64;
        if !n_elements.is_multiple_of(block_len) {
            return None;
        }
        (n_elements / block_len).checked_mul(self.block_bytes() as u64)
    }

    /// The memwall compute type, or `None` if memwall cannot compute with it.
    pub fn dtype(self) -> Option<DType> {
        Some(match self {
            GgmlType::F32 => DType::F32,
            GgmlType::F16 => DType::F16,
            GgmlType::BF16 => DType::BF16,
            GgmlType::Q4_0 => DType::Q4_0,
            GgmlType::Q4_1 => DType::Q4_1,
            GgmlType::Q5_0 => DType::Q5_0,
            GgmlType::Q5_1 => DType::Q5_1,
            GgmlType::Q8_0 => DType::Q8_0,
            GgmlType::Q2_K => DType::Q2_K,
            GgmlType::Q3_K => DType::Q3_K,
            GgmlType::Q4_K => DType::Q4_K,
            GgmlType::Q5_K => DType::Q5_K,
            GgmlType::Q6_K => DType::Q6_K,
            _ => return None,
        })
    }

    /// The GGUF type that stores a memwall compute type.
    pub fn from_dtype(dtype: DType) -> GgmlType {
        match dtype {
            DType::F32 => GgmlType::F32,
            DType::F16 => GgmlType::F16,
            DType::BF16 => GgmlType::BF16,
            DType::Q4_0 => GgmlType::Q4_0,
            DType::Q4_1 => GgmlType::Q4_1,
            DType::Q5_0 => GgmlType::Q5_0,
            DType::Q5_1 => GgmlType::Q5_1,
            DType::Q8_0 => GgmlType::Q8_0,
            DType::Q2_K => GgmlType::Q2_K,
            DType::Q3_K => GgmlType::Q3_K,
            DType::Q4_K => GgmlType::Q4_K,
            DType::Q5_K => GgmlType::Q5_K,
            DType::Q6_K => GgmlType::Q6_K,
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_discriminant() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.0 as usize, i, "{} out of order", row.2);
            assert_eq!(GgmlType::from_id(row.1), Some(row.0));
            assert_eq!(GgmlType::from_name(row.2), Some(row.0));
        }
        let mut ids: Vec<u32> = TABLE.iter().map(|r| r.1).collect();
        ids.dedup();
        assert_eq!(ids.len(), TABLE.len());
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(5), None);
        assert_eq!(GgmlType::from_id(1000), None);
    }

    #[test]
    fn dtypes_agree_with_kernels() {
        for d in DType::EVERY {
            let t = GgmlType::from_dtype(d);
            assert_eq!(t.dtype(), Some(d));
            assert_eq!(t.block_len(), d.block_len());
            assert_eq!(t.block_bytes(), d.block_bytes());
            assert_eq!(t.name(), d.name());
        }
        assert_eq!(GgmlType::all().filter(|t| t.dtype().is_some()).count(), DType::EVERY.len());
    }

    #[test]
    fn bytes_for_rejects_partial_blocks_and_overflow() {
        assert_eq!(GgmlType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
        assert_eq!(GgmlType::F64.bytes_for(u64::MAX), None);
    }
}
