//! Weights repacked once at load into tiles of [`TILE_ROWS`] rows, so that
//! one 512-bit register holds the same four elements of 16 rows.
//!
//! In the file's layout (`Layout::Rows`) a row is its blocks one after the
//! other, so a SIMD register can only ever hold parts of *one* row, and a
//! dot kernel pays shuffles and a horizontal reduction per row per token.
//! Repacked (`Layout::Tiles`), rows `16 i .. 16 i + 16` form tile `i`, and
//! tile `i` stores its block `b` as the 16 rows' block `b` transposed:
//!
//! ```text
//! tile block b (16 × block_bytes bytes):
//!   header:  for each 2-byte field f of the block header (d; Q4_1 also m):
//!              [f16 of row 0, f16 of row 1, ..., f16 of row 15]        32 B per field
//!   quants:  for each 4-byte word k of the block's quants (4 for Q4_0/Q4_1, 8 for Q8_0):
//!              [word k of row 0, word k of row 1, ..., word k of row 15]  64 B per word
//! ```
//!
//! So one aligned 64-byte load gives lane `j` = row `j`'s word `k`, and a
//! VNNI `vpdpbusd` against the *broadcast* word `k` of one token's
//! activations adds four products to each of 16 rows at once
//! (`avx512_tiles.rs`). Q8_0 quants are stored `q ^ 0x80` (= `q + 128`, the
//! unsigned operand `vpdpbusd` needs); 4-bit quants keep ggml's nibble order.
//! Float types (F32, F16, BF16) tile the same way with a block of one
//! element: a tile block is one column of the 16 rows, so one load gives
//! a column and the kernel multiplies it with one activation per token.
//!
//! The k-quants Q4_K, Q5_K and Q6_K are decoded at load ([`crate::kquant`])
//! and re-encoded per super-block of 16 rows ([`KTile`]): f16 `d` (and
//! `dmin`) of the 16 rows, their integer sub-block scales (and minimums) as
//! bytes, then per 32-element sub-block the quants made unsigned
//! (`u = q + 32` for Q6_K) as the same four nibble words as Q4_0, plus one
//! (Q5_K) or two (Q6_K) words of high bits laid out so that a shift and a
//! mask put them on top of the nibbles of each word `k`. Within 3% of the
//! file's size (Q6_K: the same size).
//!
//! A tile is `blocks_per_row` tile blocks, contiguous; a partial last tile
//! is padded with zero rows (`d = 0`). The bytes are exactly the file's
//! bytes rearranged: [`PackedMat::row_block`] gives any block back, so
//! nothing but the order changes, and every result stays bit-identical to
//! the scalar reference on the file's layout.

use super::huge_buffer::HugeBuffer;
use super::{Layout, MatRef};
use crate::dtype::DType;
use crate::kquant::{kblock, KBlock, QK_K};
use crate::quant::dequantize_row;
use half::f16;

/// Rows per tile: one 512-bit register of i32 or f32 lanes.
pub const TILE_ROWS: usize = 16;

/// A weight matrix `[rows, cols]` in the tiled layout (see the module docs).
pub struct PackedMat {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    /// The tiles, 2 MiB-aligned (so tile loads never split a cache line)
    /// on huge pages where the OS grants them.
    buf: HugeBuffer,
}

/// Whether `dtype` has a tiled layout.
pub fn packable(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::Q4_0 | DType::Q4_1 | DType::Q8_0)
        || KTile::of(dtype).is_some()
}

/// Bytes of one tile block (16 rows × one block of `dtype`).
pub(crate) fn tile_block_bytes(dtype: DType) -> usize {
    KTile::of(dtype).map_or(TILE_ROWS * dtype.block_bytes(), |k| k.bytes())
}

/// The tiled form of a k-quant super-block of 16 rows:
///
/// ```text
/// d    [16] f16                                  32 B
/// dmin [16] f16                 (min only)       32 B
/// sc   [groups][16] i8          (groups = 256 / group)
/// m    [groups][16] u8          (min only)
/// per 32-element sub-block c (8):
///   nibbles: 4 words × 16 rows (as Q4_0: byte i = u[i] | u[i + 16] << 4)      256 B
///   high bits (hb = 1): 1 word × 16 rows: byte i bit k = bit 4 of u[4k + i]    64 B
///   high bits (hb = 2): 2 words × 16 rows: word h, byte i, bits 2k..2k+2 =
///                       bits 4..6 of u[16h + 4k + i]                            128 B
/// ```
#[derive(Clone, Copy, Debug)]
pub(crate) struct KTile {
    /// High bits above the nibble: 0 (Q4_K), 1 (Q5_K), 2 (Q6_K).
    pub hb: usize,
    /// `u = q + off` is unsigned.
    pub off: i32,
    /// Elements per scale: 32 (Q4_K, Q5_K) or 16 (Q6_K).
    pub group: usize,
    /// Whether the type has `dmin` and minimums.
    pub min: bool,
}

impl KTile {
    pub fn of(dtype: DType) -> Option<KTile> {
        match dtype {
            DType::Q4_K => Some(KTile { hb: 0, off: 0, group: 32, min: true }),
            DType::Q5_K => Some(KTile { hb: 1, off: 0, group: 32, min: true }),
            DType::Q6_K => Some(KTile { hb: 2, off: 32, group: 16, min: false }),
            _ => None,
        }
    }
    fn groups(self) -> usize {
        QK_K / self.group
    }
    /// Offset of the scales.
    pub fn sc(self) -> usize {
        32 * (1 + usize::from(self.min))
    }
    /// Offset of the minimums.
    pub fn m(self) -> usize {
        self.sc() + TILE_ROWS * self.groups()
    }
    /// Offset of the first sub-block's quants.
    pub fn header(self) -> usize {
        self.sc() + TILE_ROWS * self.groups() * (1 + usize::from(self.min))
    }
    /// Bytes of one sub-block's quants.
    pub fn sub(self) -> usize {
        256 + 64 * self.hb
    }
    pub fn bytes(self) -> usize {
        self.header() + 8 * self.sub()
    }

    /// Writes row `j`'s super-block `k` into tile block `dst`.
    fn write(self, k: &KBlock, j: usize, dst: &mut [u8]) {
        dst[2 * j..2 * j + 2].copy_from_slice(&f16::from_f32(k.d).to_bits().to_le_bytes());
        if self.min {
            dst[32 + 2 * j..32 + 2 * j + 2].copy_from_slice(&f16::from_f32(k.dmin).to_bits().to_le_bytes());
        }
        let step = self.group / 16;
        for g in 0..self.groups() {
            dst[self.sc() + TILE_ROWS * g + j] = k.sc[g * step] as i8 as u8;
            if self.min {
                dst[self.m() + TILE_ROWS * g + j] = k.m[g * step] as u8;
            }
        }
        for c in 0..8 {
            let sub = &mut dst[self.header() + c * self.sub()..];
            for e in 0..32 {
                let u = (k.q[32 * c + e] as i32 + self.off) as u8;
                let p = e % 16;
                sub[64 * (p / 4) + 4 * j + p % 4] |= (u & 0x0f) << (4 * (e / 16));
                let (word, bit) = match self.hb {
                    1 => (0, e / 4),
                    _ => (e / 16, 2 * ((e % 16) / 4)),
                };
                if self.hb > 0 {
                    sub[256 + 64 * word + 4 * j + e % 4] |= (u >> 4) << bit;
                }
            }
        }
    }

    /// Row `j`'s super-block from tile block `src`: `(d, dmin, sc[16], m[16], q[256])`.
    fn read(self, src: &[u8], j: usize) -> KBlock {
        let f = |at: usize| f16::from_bits(u16::from_le_bytes([src[at], src[at + 1]])).to_f32();
        let mut k = KBlock { d: f(2 * j), dmin: 0.0, sc: [0; 16], m: [0; 16], q: [0; QK_K] };
        if self.min {
            k.dmin = f(32 + 2 * j);
        }
        for g in 0..16 {
            let tg = g * 16 / self.group;
            k.sc[g] = src[self.sc() + TILE_ROWS * tg + j] as i8 as i32;
            if self.min {
                k.m[g] = src[self.m() + TILE_ROWS * tg + j] as i32;
            }
        }
        for c in 0..8 {
            let sub = &src[self.header() + c * self.sub()..];
            for e in 0..32 {
                let p = e % 16;
                let mut u = (sub[64 * (p / 4) + 4 * j + p % 4] >> (4 * (e / 16))) & 0x0f;
                if self.hb > 0 {
                    let (word, bit) = if self.hb == 1 { (0, e / 4) } else { (e / 16, 2 * ((e % 16) / 4)) };
                    let mask = (1u8 << self.hb) - 1;
                    u |= ((sub[256 + 64 * word + 4 * j + e % 4] >> bit) & mask) << 4;
                }
                k.q[32 * c + e] = (u as i32 - self.off) as i8;
            }
        }
        k
    }
}

/// Bytes of header (f16 fields) and of quants in one block of `dtype`
/// (float types: one element, no header).
fn split(dtype: DType) -> (usize, usize) {
    let quants = match dtype {
        DType::F32 | DType::F16 | DType::BF16 => dtype.block_bytes(),
        DType::Q8_0 => 32,
        _ => 16,
    };
    (dtype.block_bytes() - quants, quants)
}

/// The byte of a tile block that holds byte `i` of row `j`'s block (float
/// types: the 16 rows' element of one column, in row order).
fn tiled_offset(dtype: DType, j: usize, i: usize) -> usize {
    if !dtype.is_quantized() {
        return dtype.block_bytes() * j + i;
    }
    let (header, _) = split(dtype);
    if i < header {
        // Field i / 2, byte i % 2.
        (i / 2) * 2 * TILE_ROWS + 2 * j + i % 2
    } else {
        let q = i - header;
        header * TILE_ROWS + (q / 4) * 4 * TILE_ROWS + 4 * j + q % 4
    }
}

/// What a quant byte is stored as: Q8_0's signed quants offset to unsigned.
fn stored(dtype: DType, header: bool, v: u8) -> u8 {
    if dtype == DType::Q8_0 && !header {
        v ^ 0x80
    } else {
        v
    }
}

impl PackedMat {
    /// Repacks a row-major matrix; `None` when its type has no tiled layout
    /// or it is already tiled.
    pub fn pack(w: &MatRef) -> Option<PackedMat> {
        if !packable(w.dtype) || w.layout != Layout::Rows {
            return None;
        }
        w.check();
        let bb = w.dtype.block_bytes();
        let nb = w.cols / w.dtype.block_len();
        let tbb = tile_block_bytes(w.dtype);
        let len = w.rows.div_ceil(TILE_ROWS) * nb * tbb;
        let mut buf = HugeBuffer::zeroed(len);
        let out = buf.as_mut_slice();
        let rb = nb * bb;
        let ktile = KTile::of(w.dtype);
        let (header, _) = split(w.dtype);
        let flip = if w.dtype == DType::Q8_0 { 0x8080_8080u32 } else { 0 };
        for r in 0..w.rows {
            let (tile, j) = (r / TILE_ROWS, r % TILE_ROWS);
            for b in 0..nb {
                let src = &w.data[r * rb + b * bb..r * rb + (b + 1) * bb];
                let dst = &mut out[(tile * nb + b) * tbb..(tile * nb + b + 1) * tbb];
                if let Some(kt) = ktile {
                    kt.write(&kblock(w.dtype, src), j, dst);
                    continue;
                }
                if !w.dtype.is_quantized() {
                    dst[bb * j..bb * (j + 1)].copy_from_slice(src);
                    continue;
                }
                // Whole fields and words at a time (see `tiled_offset`).
                for f in (0..header).step_by(2) {
                    let o = tiled_offset(w.dtype, j, f);
                    dst[o..o + 2].copy_from_slice(&src[f..f + 2]);
                }
                for q in (header..bb).step_by(4) {
                    let v = u32::from_le_bytes([src[q], src[q + 1], src[q + 2], src[q + 3]]) ^ flip;
                    let o = tiled_offset(w.dtype, j, q);
                    dst[o..o + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        Some(PackedMat { dtype: w.dtype, rows: w.rows, cols: w.cols, buf })
    }

    /// The kernels' view.
    pub fn as_mat(&self) -> MatRef<'_> {
        MatRef { dtype: self.dtype, rows: self.rows, cols: self.cols, layout: Layout::Tiles, data: self.bytes() }
    }

    /// The tiled bytes (a multiple of 16 rows, padding included).
    pub fn bytes(&self) -> &[u8] {
        self.buf.as_slice()
    }
}

/// Bytes of a tiled matrix of `dtype` `[rows, cols]`.
pub(crate) fn tiled_len(dtype: DType, rows: usize, cols: usize) -> Option<usize> {
    let nb = cols / dtype.block_len();
    rows.div_ceil(TILE_ROWS).checked_mul(nb)?.checked_mul(tile_block_bytes(dtype))
}

/// Block `b` of row `r` of a tiled matrix of a 32-element type, in the
/// file's layout, into `out` (`block_bytes` bytes).
fn row_block(w: &MatRef, r: usize, b: usize, out: &mut [u8]) {
    let bb = w.dtype.block_bytes();
    let (header, _) = split(w.dtype);
    let nb = w.cols / w.dtype.block_len();
    let base = ((r / TILE_ROWS) * nb + b) * TILE_ROWS * bb;
    for (i, o) in out[..bb].iter_mut().enumerate() {
        *o = stored(w.dtype, i < header, w.data[base + tiled_offset(w.dtype, r % TILE_ROWS, i)]);
    }
}

/// Row `r` of a tiled matrix of a 32-element type in the file's layout,
/// into `out` (`row_bytes`); `false` for k-quants, whose tiles hold their
/// decoded integers, not the file's bit packing.
pub(crate) fn row_into(w: &MatRef, r: usize, out: &mut [u8]) -> bool {
    if KTile::of(w.dtype).is_some() {
        return false;
    }
    let bb = w.dtype.block_bytes();
    for (b, o) in out.chunks_exact_mut(bb).enumerate() {
        row_block(w, r, b, o);
    }
    true
}

/// Row `r` of a tiled matrix dequantized into `out` (`[cols]`), bit-exact
/// with [`dequantize_row`] on the file's row.
pub(crate) fn dequantize_tiled_row(w: &MatRef, r: usize, out: &mut [f32]) {
    let Some(kt) = KTile::of(w.dtype) else {
        let mut row = vec![0u8; w.row_bytes()];
        row_into(w, r, &mut row);
        return dequantize_row(w.dtype, &row, out);
    };
    let nb = w.cols / QK_K;
    for (b, y) in out.chunks_exact_mut(QK_K).enumerate() {
        let base = ((r / TILE_ROWS) * nb + b) * kt.bytes();
        let k = kt.read(&w.data[base..base + kt.bytes()], r % TILE_ROWS);
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let (dl, ml) = (k.d * k.sc[g] as f32, k.dmin * k.m[g] as f32);
            for (o, &q) in y.iter_mut().zip(&k.q[16 * g..16 * g + 16]) {
                *o = dl * q as f32 - ml;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_a_permutation_of_the_tile_block() {
        for dtype in [DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let bb = dtype.block_bytes();
            let mut seen = vec![false; TILE_ROWS * bb];
            for j in 0..TILE_ROWS {
                for i in 0..bb {
                    let o = tiled_offset(dtype, j, i);
                    assert!(!seen[o], "{dtype}: offset {o} twice");
                    seen[o] = true;
                }
            }
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn packing_round_trips_every_row() {
        for dtype in [DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let (rows, cols) = (37, 96);
            let rb = dtype.row_bytes(cols).unwrap();
            let data: Vec<u8> = (0..rows * rb).map(|i| (i * 7919 % 251) as u8).collect();
            let w = MatRef::new(dtype, rows, cols, &data);
            let p = PackedMat::pack(&w).unwrap();
            assert_eq!(p.bytes().len(), 48 * rb);
            let mut row = vec![0u8; rb];
            for r in 0..rows {
                assert!(row_into(&p.as_mat(), r, &mut row));
                assert_eq!(row, &data[r * rb..(r + 1) * rb], "{dtype} row {r}");
            }
        }
    }

    #[test]
    fn kquant_tiles_keep_every_integer() {
        for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
            let (rows, cols) = (19, 512);
            let rb = dtype.row_bytes(cols).unwrap();
            let mut data: Vec<u8> = (0..rows * rb).map(|i| (i * 7919 % 251) as u8).collect();
            // Finite f16 scales (d, dmin): 0x2c00 = 0.0625.
            let at: &[usize] = if dtype == DType::Q6_K { &[208] } else { &[0, 2] };
            for b in data.chunks_exact_mut(dtype.block_bytes()) {
                for &a in at {
                    b[a..a + 2].copy_from_slice(&0x2c00u16.to_le_bytes());
                }
            }
            let w = MatRef::new(dtype, rows, cols, &data);
            let p = PackedMat::pack(&w).unwrap();
            let (mut want, mut got) = (vec![0f32; cols], vec![0f32; cols]);
            for r in 0..rows {
                dequantize_row(dtype, &data[r * rb..(r + 1) * rb], &mut want);
                dequantize_tiled_row(&p.as_mat(), r, &mut got);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{dtype} row {r}");
            }
        }
    }
}
