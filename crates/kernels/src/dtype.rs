//! Element types of weights and activations.
//!
//! Block formats follow ggml exactly (`ggml-common.h`): a row of `n` elements
//! is stored as `n / block_len` consecutive blocks of `block_bytes` bytes.

use std::fmt;

/// An element type that memwall can compute with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// 32 elements: f16 scale `d`, 16 bytes of 4-bit quants; x = d * (q - 8).
    Q4_0,
    /// 32 elements: f16 `d`, f16 `m`, 16 bytes of 4-bit quants; x = d * q + m.
    Q4_1,
    /// 32 elements: f16 `d`, 4 bytes of high bits, 16 bytes of low nibbles; x = d * (q - 16).
    Q5_0,
    /// 32 elements: f16 `d`, f16 `m`, 4 bytes of high bits, 16 bytes of low nibbles; x = d * q + m.
    Q5_1,
    /// 32 elements: f16 `d`, 32 signed bytes; x = d * q.
    Q8_0,
    /// 256 elements (k-quant, see [`crate::kquant`]): 4-bit (scale, min) per 16, 2-bit quants, f16 `d`, `dmin`.
    Q2_K,
    /// 256 elements: 3-bit quants (2 low bits + a high-bit mask), 6-bit scales per 16, f16 `d`.
    Q3_K,
    /// 256 elements: f16 `d`, `dmin`, 6-bit (scale, min) per 32, 4-bit quants.
    Q4_K,
    /// 256 elements: as Q4_K plus a fifth quant bit.
    Q5_K,
    /// 256 elements: 6-bit quants (4 low + 2 high bits), i8 scales per 16, f16 `d`.
    Q6_K,
}

impl DType {
    /// The float and 32-element block types: every one can be quantized to
    /// ([`crate::quant::quantize_row`]) and computed with.
    pub const ALL: [DType; 8] =
        [DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0];

    /// The k-quants (256-element super-blocks), quantized to by
    /// [`crate::kquant_quantize`].
    pub const K_QUANTS: [DType; 5] = [DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K];

    /// Every type: [`DType::ALL`] then [`DType::K_QUANTS`].
    pub const EVERY: [DType; 13] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    /// Elements per block (1 for plain floats).
    pub const fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => 32,
            DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q8_0 => 34,
            DType::Q2_K => 84,
            DType::Q3_K => 110,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
        }
    }

    pub const fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Whether this is a k-quant (256-element super-blocks).
    pub const fn is_kquant(self) -> bool {
        self.block_len() == 256
    }

    /// Bytes of a row of `n` elements, or `None` when `n` is not a whole
    /// number of blocks or the size overflows.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_len()) {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }

    /// The lower-case name used on the command line and in GGUF tooling.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q8_0 => "q8_0",
            DType::Q2_K => "q2_K",
            DType::Q3_K => "q3_K",
            DType::Q4_K => "q4_K",
            DType::Q5_K => "q5_K",
            DType::Q6_K => "q6_K",
        }
    }

    /// The type named `name` (case-insensitive), one of [`DType::EVERY`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::EVERY.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_bytes_rejects_partial_blocks() {
        assert_eq!(DType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(DType::Q4_0.row_bytes(33), None);
        assert_eq!(DType::F16.row_bytes(3), Some(6));
        assert_eq!(DType::Q8_0.row_bytes(usize::MAX - 31), None);
    }

    #[test]
    fn names_round_trip() {
        for t in DType::EVERY {
            assert_eq!(DType::from_name(t.name()), Some(t));
        }
    }
}
