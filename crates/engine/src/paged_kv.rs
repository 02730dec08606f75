//! The paged KV cache: f16 (or 8-bit, [`KvDType::Q8`]) rows in fixed-size
//! blocks of a shared pool, found through per-sequence block tables (vLLM's
//! PagedAttention layout).
//!
//! ```text
//! k[layer], v[layer]: [num_blocks, block_size, kv_dim] f16 | i8 (+ f16 scale per head row)
//! table[seq]:         [ceil(len / block_size)] block ids
//! position p of seq → block table[seq][p / block_size], slot p % block_size
//! ```
//!
//! [`PagedKvCache`] implements the model's [`KvCache`]: `read` hands
//! attention one run per block (always per block, so the order in which
//! attention folds a sequence's history depends only on its length — the
//! root of batch invariance), and `reserve` grows a table from the pool when
//! the cache is used on its own. The engine's scheduler instead allocates
//! blocks itself (with prefix-cache hits and copy-on-write) before each step,
//! so `reserve` then finds the room already there.
//!
//! Memory is wasted only in each sequence's last, partly filled block: at
//! most `block_size - 1` slots per sequence.

use crate::block_pool::{BlockId, BlockPool};
use half::f16;
use half::slice::HalfFloatSliceExt;
use memwall_model::kv::{KvFull, KvRows, KvRun};
use memwall_model::{KvCache, ModelConfig, SeqId};
use std::collections::HashMap;

mod mirror;

/// Size and element type of the paged cache.
#[derive(Clone, Debug)]
pub struct KvCacheConfig {
    /// Token slots per block (vLLM's default, 16).
    pub block_size: usize,
    /// Bytes of K and V storage over all layers (`--kv-memory`).
    pub memory_bytes: usize,
    pub dtype: KvDType,
}

impl Default for KvCacheConfig {
    fn default() -> Self {
        KvCacheConfig { block_size: 16, memory_bytes: 256 << 20, dtype: KvDType::F16 }
    }
}

/// How cached K/V elements are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDType {
    /// IEEE half precision: 2 bytes per element.
    #[default]
    F16,
    /// Symmetric 8-bit with one f16 scale per head row (`amax / 127`, as
    /// ggml's Q8_0 but over `head_dim` elements): `1 + 2 / head_dim` bytes
    /// per element, about 0.52× f16 at `head_dim` 64.
    Q8,
}

impl KvDType {
    /// Bytes of one `[kv_dim]` row.
    pub fn row_bytes(self, kv_dim: usize, head_dim: usize) -> usize {
        match self {
            KvDType::F16 => kv_dim * 2,
            KvDType::Q8 => kv_dim + kv_dim / head_dim.max(1) * 2,
        }
    }
}

/// One layer's keys or values, `[num_blocks, block_size, kv_dim]`.
enum Rows {
    F16(Vec<f16>),
    /// `q`: `[num_blocks, block_size, kv_dim]`; `d`: one scale per head row,
    /// `[num_blocks, block_size, n_kv_heads]`.
    Q8 {
        q: Vec<i8>,
        d: Vec<f16>,
    },
}

impl Rows {
    fn new(dtype: KvDType, elems: usize, head_dim: usize) -> Rows {
        match dtype {
            // Zeroed allocations: pages are committed as blocks are first written.
            KvDType::F16 => Rows::F16(bytemuck::zeroed_vec(elems)),
            KvDType::Q8 => Rows::Q8 { q: vec![0; elems], d: bytemuck::zeroed_vec(elems / head_dim) },
        }
    }

    /// Stores `src` at element `at` (a row start).
    fn write(&mut self, at: usize, src: &[f32], head_dim: usize) {
        match self {
            Rows::F16(x) => x[at..at + src.len()].convert_from_f32_slice(src),
            Rows::Q8 { q, d } => {
                for (h, head) in src.chunks_exact(head_dim).enumerate() {
                    let amax = head.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = amax / 127.0;
                    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                    let start = at + h * head_dim;
                    for (o, &v) in q[start..start + head_dim].iter_mut().zip(head) {
                        *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
                    }
                    d[start / head_dim] = f16::from_f32(scale);
                }
            }
        }
    }

    /// Copies elements `[src, src + n)` to `[dst, dst + n)` (whole rows).
    fn copy(&mut self, src: usize, dst: usize, n: usize, head_dim: usize) {
        match self {
            Rows::F16(x) => x.copy_within(src..src + n, dst),
            Rows::Q8 { q, d } => {
                q.copy_within(src..src + n, dst);
                d.copy_within(src / head_dim..(src + n) / head_dim, dst / head_dim);
            }
        }
    }

    /// Elements `[at, at + n)` (whole rows) for attention.
    fn view(&self, at: usize, n: usize, head_dim: usize) -> KvRows<'_> {
        match self {
            Rows::F16(x) => KvRows::F16(&x[at..at + n]),
            Rows::Q8 { q, d } => {
                KvRows::Q8 { q: &q[at..at + n], d: &d[at / head_dim..(at + n) / head_dim], group: head_dim }
            }
        }
    }
}

/// How much memory the KV cache gets (`--kv-memory 2GiB`, or `0.3` for that
/// fraction of the memory available when the engine starts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KvMemory {
    Bytes(usize),
    /// Share of `MemAvailable` (Linux `/proc/meminfo`), in `(0, 1]`.
    FractionOfAvailable(f64),
}

/// A `--kv-memory` value that is neither a size nor a fraction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvMemoryError {
    #[error("cannot read {0:?} as a KV memory size: use e.g. 2GiB, 512MiB, 1000000000 or a fraction such as 0.3")]
    Parse(String),
    #[error("cannot read the available memory ({0}): give --kv-memory as a size such as 2GiB")]
    Unavailable(String),
}

impl std::str::FromStr for KvMemory {
    type Err = KvMemoryError;

    /// `2GiB`, `512MiB`, `64KiB`, `1.5GB`, `1000000` (bytes), or a fraction `0.3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || KvMemoryError::Parse(s.to_string());
        let t = s.trim();
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (num, unit) = (t[..split].trim(), t[split..].trim());
        let value: f64 = num.parse().map_err(|_| err())?;
        if !value.is_finite() || value <= 0.0 {
            return Err(err());
        }
        let scale: f64 = match unit.to_ascii_lowercase().as_str() {
            "" if value <= 1.0 && num.contains('.') => return Ok(KvMemory::FractionOfAvailable(value)),
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(err()),
        };
        Ok(KvMemory::Bytes((value * scale) as usize))
    }
}

impl KvMemory {
    /// The size in bytes, reading `/proc/meminfo` for a fraction.
    pub fn resolve(self) -> Result<usize, KvMemoryError> {
        match self {
            KvMemory::Bytes(n) => Ok(n),
            KvMemory::FractionOfAvailable(f) => {
                let info = std::fs::read_to_string("/proc/meminfo")
                    .map_err(|e| KvMemoryError::Unavailable(format!("/proc/meminfo: {e}")))?;
                let kib: f64 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("MemAvailable:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .ok_or_else(|| KvMemoryError::Unavailable("no MemAvailable in /proc/meminfo".into()))?;
                Ok((kib * 1024.0 * f) as usize)
            }
        }
    }
}

/// The configuration leaves no room for a single block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("KV memory of {memory_bytes} bytes holds no block of {block_bytes} bytes: give at least that much")]
pub struct KvTooSmall {
    pub memory_bytes: usize,
    pub block_bytes: usize,
}

/// Blocks of f16 keys and values for every layer, with the pool that hands
/// them out and the block table of every sequence.
pub struct PagedKvCache {
    pool: BlockPool,
    n_layers: usize,
    kv_dim: usize,
    head_dim: usize,
    dtype: KvDType,
    /// Per layer, `[num_blocks, block_size, kv_dim]`.
    k: Vec<Rows>,
    /// Per layer, `[num_blocks, block_size, kv_dim]`.
    v: Vec<Rows>,
    tables: HashMap<SeqId, Vec<BlockId>>,
}

/// Shape of a paged cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub n_layers: usize,
    /// `n_kv_heads * head_dim`
    pub kv_dim: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub dtype: KvDType,
}

impl KvLayout {
    /// Bytes of one block: K and V, every layer.
    pub fn block_bytes(&self) -> usize {
        2 * self.n_layers * self.block_size * self.dtype.row_bytes(self.kv_dim, self.head_dim)
    }
}

impl PagedKvCache {
    /// An f16 cache of exactly `num_blocks` blocks.
    pub fn with_blocks(n_layers: usize, kv_dim: usize, block_size: usize, num_blocks: usize) -> Self {
        let layout = KvLayout { n_layers, kv_dim, head_dim: kv_dim, block_size, dtype: KvDType::F16 };
        Self::new(layout, num_blocks)
    }

    /// A cache of exactly `num_blocks` blocks of `layout`.
    pub fn new(layout: KvLayout, num_blocks: usize) -> Self {
        let KvLayout { n_layers, kv_dim, head_dim, block_size, dtype } = layout;
        let head_dim = if kv_dim % head_dim.max(1) == 0 { head_dim.max(1) } else { kv_dim };
        let per_layer = num_blocks * block_size * kv_dim;
        PagedKvCache {
            pool: BlockPool::new(num_blocks, block_size),
            n_layers,
            kv_dim,
            head_dim,
            dtype,
            k: (0..n_layers).map(|_| Rows::new(dtype, per_layer, head_dim)).collect(),
            v: (0..n_layers).map(|_| Rows::new(dtype, per_layer, head_dim)).collect(),
            tables: HashMap::new(),
        }
    }

    /// The layout `config` gives `model`'s cache.
    pub fn layout(model: &ModelConfig, config: &KvCacheConfig) -> KvLayout {
        KvLayout {
            n_layers: model.n_layers,
            kv_dim: model.kv_dim(),
            head_dim: model.head_dim,
            block_size: config.block_size.max(1),
            dtype: config.dtype,
        }
    }

    /// A cache for `model` holding as many blocks as `config.memory_bytes` allows.
    pub fn for_model(model: &ModelConfig, config: &KvCacheConfig) -> Result<Self, KvTooSmall> {
        let layout = Self::layout(model, config);
        let block_bytes = layout.block_bytes();
        let num_blocks = config.memory_bytes / block_bytes.max(1);
        if num_blocks == 0 {
            return Err(KvTooSmall { memory_bytes: config.memory_bytes, block_bytes });
        }
        Ok(Self::new(layout, num_blocks))
    }

    pub fn dtype(&self) -> KvDType {
        self.dtype
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn pool_mut(&mut self) -> &mut BlockPool {
        &mut self.pool
    }

    pub fn block_size(&self) -> usize {
        self.pool.block_size()
    }

    /// Token positions the whole cache can hold.
    pub fn capacity_tokens(&self) -> usize {
        self.pool.num_blocks() * self.block_size()
    }

    /// Bytes of one block (K and V, all layers).
    pub fn block_bytes(&self) -> usize {
        KvLayout {
            n_layers: self.n_layers,
            kv_dim: self.kv_dim,
            head_dim: self.head_dim,
            block_size: self.block_size(),
            dtype: self.dtype,
        }
        .block_bytes()
    }

    /// Bytes of one token position (K and V, all layers).
    pub fn token_bytes(&self) -> usize {
        self.block_bytes() / self.block_size()
    }

    /// The block table of `seq` (empty if it has none).
    pub fn table(&self, seq: SeqId) -> &[BlockId] {
        self.tables.get(&seq).map_or(&[], Vec::as_slice)
    }

    /// Sequences holding blocks.
    pub fn sequences(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.tables.keys().copied()
    }

    /// Appends blocks the caller already holds a reference to (prefix-cache
    /// hits after [`BlockPool::touch`], or fresh allocations).
    pub fn push_blocks(&mut self, seq: SeqId, blocks: &[BlockId]) {
        self.tables.entry(seq).or_default().extend_from_slice(blocks);
    }

    /// Grows `seq`'s table to cover positions `[0, len)`; all or nothing.
    /// Returns the newly allocated blocks.
    pub fn grow(&mut self, seq: SeqId, len: usize) -> Result<Vec<BlockId>, KvFull> {
        let have = self.table(seq).len();
        let need = len.div_ceil(self.block_size()).saturating_sub(have);
        let fresh = self.pool.allocate_n(need).ok_or(KvFull { requested: len, capacity: self.capacity_tokens() })?;
        self.push_blocks(seq, &fresh);
        Ok(fresh)
    }

    /// Blocks [`grow`](Self::grow) would allocate for `len` positions.
    pub fn blocks_needed(&self, seq: SeqId, len: usize) -> usize {
        len.div_ceil(self.block_size()).saturating_sub(self.table(seq).len())
    }

    /// Copy-on-write: if the block holding position `pos` of `seq` is shared
    /// with another sequence, gives `seq` a private copy (every layer) and
    /// returns `(old, new)`. Fails, changing nothing, if no block is free.
    pub fn make_writable(&mut self, seq: SeqId, pos: usize) -> Result<Option<(BlockId, BlockId)>, KvFull> {
        let i = pos / self.block_size();
        let Some(&old) = self.table(seq).get(i) else { return Ok(None) };
        if self.pool.ref_count(old) <= 1 {
            // Private already; its contents change from `pos` on.
            self.pool.uncache(old);
            return Ok(None);
        }
        let capacity = self.capacity_tokens();
        let new = self.pool.allocate().ok_or(KvFull { requested: pos + 1, capacity })?;
        self.copy_block(old, new);
        self.pool.free(old);
        self.tables.get_mut(&seq).expect("has a table")[i] = new;
        Ok(Some((old, new)))
    }

    /// Copies every layer's rows of block `src` into `dst`.
    fn copy_block(&mut self, src: BlockId, dst: BlockId) {
        let n = self.block_size() * self.kv_dim;
        let (s, d) = (src as usize * n, dst as usize * n);
        for rows in self.k.iter_mut().chain(self.v.iter_mut()) {
            rows.copy(s, d, n, self.head_dim);
        }
    }

    /// Gives `child` the blocks of `parent` (one more reference each), as
    /// for parallel samples of one prompt; writes to a shared block go
    /// through [`make_writable`](Self::make_writable).
    pub fn fork(&mut self, parent: SeqId, child: SeqId) {
        let blocks = self.table(parent).to_vec();
        for &b in &blocks {
            self.pool.touch(b);
        }
        self.release(child);
        self.tables.insert(child, blocks);
    }
}

impl KvCache for PagedKvCache {
    fn reserve(&mut self, seq: SeqId, len: usize) -> Result<(), KvFull> {
        self.grow(seq, len).map(|_| ())
    }

    fn write(&mut self, layer: usize, seq: SeqId, start: usize, k: &[f32], v: &[f32]) {
        let (bs, kd, hd) = (self.block_size(), self.kv_dim, self.head_dim);
        let table = &self.tables[&seq];
        let (kl, vl) = (&mut self.k[layer], &mut self.v[layer]);
        for (t, (kr, vr)) in k.chunks_exact(kd).zip(v.chunks_exact(kd)).enumerate() {
            let pos = start + t;
            let at = (table[pos / bs] as usize * bs + pos % bs) * kd;
            kl.write(at, kr, hd);
            vl.write(at, vr, hd);
        }
    }

    fn read(&self, layer: usize, seq: SeqId, len: usize, f: &mut dyn FnMut(KvRun<'_>)) {
        let (bs, kd, hd) = (self.block_size(), self.kv_dim, self.head_dim);
        let (kl, vl) = (&self.k[layer], &self.v[layer]);
        for (i, &b) in self.table(seq).iter().enumerate().take(len.div_ceil(bs)) {
            let n = bs.min(len - i * bs);
            let at = b as usize * bs * kd;
            f(KvRun { start: i * bs, k: kl.view(at, n * kd, hd), v: vl.view(at, n * kd, hd) });
        }
    }

    /// Drops `seq`'s references, last block first, so that a sequence's
    /// later blocks are evicted before its prefix.
    fn release(&mut self, seq: SeqId) {
        if let Some(table) = self.tables.remove(&seq) {
            for &b in table.iter().rev() {
                self.pool.free(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_blocks() {
        let mut kv = PagedKvCache::with_blocks(2, 3, 2, 4);
        kv.reserve(7, 3).unwrap();
        assert_eq!(kv.table(7), &[0, 1]);
        let k: Vec<f32> = (0..9).map(|x| x as f32).collect();
        let v: Vec<f32> = (0..9).map(|x| -(x as f32)).collect();
        kv.write(1, 7, 0, &k, &v);
        let mut runs = Vec::new();
        kv.read(1, 7, 3, &mut |r| {
            let (KvRows::F16(k), KvRows::F16(v)) = (r.k, r.v) else { panic!("f16 rows") };
            runs.push((r.start, k.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), v.len()));
        });
        assert_eq!(runs, vec![(0, k[..6].to_vec(), 6), (2, k[6..].to_vec(), 3)]);
        kv.release(7);
        assert_eq!(kv.pool().num_free(), 4);
    }

    #[test]
    fn fork_shares_and_write_copies() {
        let mut kv = PagedKvCache::with_blocks(1, 1, 2, 4);
        kv.reserve(1, 3).unwrap();
        kv.write(0, 1, 0, &[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        kv.fork(1, 2);
        assert_eq!(kv.table(2), &[0, 1]);
        assert_eq!((kv.pool().ref_count(0), kv.pool().ref_count(1)), (2, 2));
        // The child writes position 3, in the shared second block: it gets a copy.
        assert_eq!(kv.make_writable(2, 3), Ok(Some((1, 2))));
        assert_eq!(kv.table(2), &[0, 2]);
        assert_eq!((kv.pool().ref_count(1), kv.pool().ref_count(2)), (1, 1));
        kv.write(0, 2, 3, &[9.0], &[9.0]);
        let mut seen = Vec::new();
        kv.read(0, 2, 4, &mut |r| {
            let KvRows::F16(k) = r.k else { panic!() };
            seen.extend(k.iter().map(|x| x.to_f32()));
        });
        assert_eq!(seen, vec![1.0, 2.0, 3.0, 9.0]);
        // The parent's block is untouched.
        let mut parent = Vec::new();
        kv.read(0, 1, 3, &mut |r| {
            let KvRows::F16(k) = r.k else { panic!() };
            parent.extend(k.iter().map(|x| x.to_f32()));
        });
        assert_eq!(parent, vec![1.0, 2.0, 3.0]);
        kv.release(1);
        kv.release(2);
        assert_eq!(kv.pool().num_free(), 4);
    }

    #[test]
    fn q8_rows_round_trip_and_copy_with_their_scales() {
        let layout = KvLayout { n_layers: 1, kv_dim: 4, head_dim: 2, block_size: 2, dtype: KvDType::Q8 };
        let mut kv = PagedKvCache::new(layout, 3);
        assert_eq!(kv.block_bytes(), 2 * 2 * (4 + 2 * 2));
        kv.reserve(1, 2).unwrap();
        let k = [1.0, -0.5, 100.0, 3.0, 0.0, 0.0, -7.0, 7.0];
        kv.write(0, 1, 0, &k, &k);
        kv.fork(1, 2);
        assert_eq!(kv.make_writable(2, 1), Ok(Some((0, 1))));
        for seq in [1, 2] {
            let mut got = [0f32; 8];
            // Each head's slice (2 elements, one scale group) as a row.
            kv.read(0, seq, 2, &mut |r| r.k.widen(0, 2, 2, &mut got));
            for (i, (g, w)) in got.iter().zip(&k).enumerate() {
                // Half a quantization step of the head's largest element, plus the f16 scale.
                let head_max = k[i / 2 * 2].abs().max(k[i / 2 * 2 + 1].abs());
                assert!((g - w).abs() <= head_max / 254.0 + head_max * 1e-3, "seq {seq}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn kv_memory_sizes_parse() {
        assert_eq!("2GiB".parse(), Ok(KvMemory::Bytes(2 << 30)));
        assert_eq!("512 MiB".parse(), Ok(KvMemory::Bytes(512 << 20)));
        assert_eq!("1.5GB".parse(), Ok(KvMemory::Bytes(1_500_000_000)));
        assert_eq!("4096".parse(), Ok(KvMemory::Bytes(4096)));
        assert_eq!("0.3".parse(), Ok(KvMemory::FractionOfAvailable(0.3)));
        assert!("lots".parse::<KvMemory>().is_err());
        assert!("-1GiB".parse::<KvMemory>().is_err());
        assert!("2XB".parse::<KvMemory>().is_err());
    }

    #[test]
    fn reserve_is_all_or_nothing() {
        let mut kv = PagedKvCache::with_blocks(1, 1, 4, 2);
        assert_eq!(kv.reserve(1, 9), Err(KvFull { requested: 9, capacity: 8 }));
        assert!(kv.table(1).is_empty());
        assert_eq!(kv.pool().num_free(), 2);
    }
}
