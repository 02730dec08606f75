//! The KV cache behind a small trait, so the decoder does not care whether
//! keys and values live in one contiguous buffer per sequence (this file's
//! [`ContiguousKvCache`]) or in fixed-size pages of a shared pool (the
//! engine's paged cache).
//!
//! The decoder writes each new token's K and V rows, then reads a sequence's
//! history as a list of contiguous runs of positions; attention folds the runs
//! with an online softmax, so it never needs the history in one piece.

use half::f16;
use half::slice::HalfFloatSliceExt;
use std::collections::HashMap;

/// Identifies a sequence within a cache.
pub type SeqId = u64;

/// Rows of keys or values as the cache stores them: `[n, kv_dim]` in f32
/// (exact, [`ContiguousKvCache`]), f16 (half the bytes, the paged cache), or
/// 8-bit with one f16 scale per `group` consecutive elements (a head's
/// slice of a row when `group == head_dim`; about a quarter of f32's bytes).
/// Attention widens f16 and 8-bit rows to f32 one head slice at a time.
#[derive(Clone, Copy, Debug)]
pub enum KvRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// Element `i` is `q[i] * d[i / group]`.
    Q8 {
        q: &'a [i8],
        d: &'a [f16],
        group: usize,
    },
}

impl KvRows<'_> {
    /// Number of elements (`n * kv_dim`).
    pub fn len(&self) -> usize {
        match self {
            KvRows::F32(x) => x.len(),
            KvRows::F16(x) => x.len(),
            KvRows::Q8 { q, .. } => q.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows of elements as f32: row `r` of `out` (`[rows, width]`) is
    /// elements `[at + r * stride, + width)`. For `Q8` each row must lie
    /// within one scale group.
    pub fn widen(&self, at: usize, stride: usize, width: usize, out: &mut [f32]) {
        if let KvRows::F16(x) = self {
            return memwall_kernels::attention::widen_f16(x, at, stride, width, out);
        }
        for (r, out) in out.chunks_exact_mut(width).enumerate() {
            let at = at + r * stride;
            match self {
                KvRows::F32(x) => out.copy_from_slice(&x[at..at + width]),
                KvRows::F16(_) => unreachable!("widened above"),
                KvRows::Q8 { q, d, group } => {
                    let scale = d[at / group].to_f32();
                    for (o, &v) in out.iter_mut().zip(&q[at..at + width]) {
                        *o = v as f32 * scale;
                    }
                }
            }
        }
    }
}

/// A contiguous run of cached positions of one sequence at one layer.
pub struct KvRun<'a> {
    /// Position of the first row.
    pub start: usize,
    /// `[n, kv_dim]` keys.
    pub k: KvRows<'a>,
    /// `[n, kv_dim]` values.
    pub v: KvRows<'a>,
}

/// Storage of keys and values for every layer of a set of sequences.
pub trait KvCache: Sync {
    /// Makes room for positions `[0, len)` of `seq`. Fails only when the
    /// cache cannot hold them; the caller then waits, preempts or refuses.
    fn reserve(&mut self, seq: SeqId, len: usize) -> Result<(), KvFull>;

    /// Stores `k` and `v` (`[n, kv_dim]`) at positions `[start, start + n)`
    /// of `seq` at `layer`; room must have been reserved.
    fn write(&mut self, layer: usize, seq: SeqId, start: usize, k: &[f32], v: &[f32]);

    /// Calls `f` with runs that cover positions `[0, len)` of `seq` at
    /// `layer`, in order.
    fn read(&self, layer: usize, seq: SeqId, len: usize, f: &mut dyn FnMut(KvRun<'_>));

    /// Forgets `seq` and frees its storage.
    fn release(&mut self, seq: SeqId);
}

/// The cache cannot hold the requested positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the KV cache has room for {capacity} positions, {requested} were requested")]
pub struct KvFull {
    pub requested: usize,
    pub capacity: usize,
}

/// Element type of stored keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvElem {
    /// Exact: logits match a float32 reference (transformers) bit for bit.
    F32,
    /// Half the bytes; what llama.cpp stores by default.
    F16,
}

/// One growable buffer per sequence and layer. Used for single requests and
/// tests; the engine's paged cache shares one pool among many sequences.
pub struct ContiguousKvCache {
    n_layers: usize,
    kv_dim: usize,
    max_len: usize,
    elem: KvElem,
    seqs: HashMap<SeqId, Vec<LayerKv>>,
}

/// `[len, kv_dim]` keys and values of one layer.
#[derive(Clone)]
enum LayerKv {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

impl ContiguousKvCache {
    /// A cache for sequences of at most `max_len` positions.
    pub fn new(n_layers: usize, kv_dim: usize, max_len: usize, elem: KvElem) -> Self {
        ContiguousKvCache { n_layers, kv_dim, max_len, elem, seqs: HashMap::new() }
    }
}

impl KvCache for ContiguousKvCache {
    fn reserve(&mut self, seq: SeqId, len: usize) -> Result<(), KvFull> {
        if len > self.max_len {
            return Err(KvFull { requested: len, capacity: self.max_len });
        }
        let empty = match self.elem {
            KvElem::F32 => LayerKv::F32 { k: Vec::new(), v: Vec::new() },
            KvElem::F16 => LayerKv::F16 { k: Vec::new(), v: Vec::new() },
        };
        let n = len * self.kv_dim;
        for l in self.seqs.entry(seq).or_insert_with(|| vec![empty; self.n_layers]) {
            match l {
                LayerKv::F32 { k, v } if k.len() < n => {
                    k.resize(n, 0.0);
                    v.resize(n, 0.0);
                }
                LayerKv::F16 { k, v } if k.len() < n => {
                    k.resize(n, f16::ZERO);
                    v.resize(n, f16::ZERO);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn write(&mut self, layer: usize, seq: SeqId, start: usize, k: &[f32], v: &[f32]) {
        let at = start * self.kv_dim;
        match &mut self.seqs.get_mut(&seq).expect("reserved")[layer] {
            LayerKv::F32 { k: dk, v: dv } => {
                dk[at..at + k.len()].copy_from_slice(k);
                dv[at..at + v.len()].copy_from_slice(v);
            }
            LayerKv::F16 { k: dk, v: dv } => {
                dk[at..at + k.len()].convert_from_f32_slice(k);
                dv[at..at + v.len()].convert_from_f32_slice(v);
            }
        }
    }

    fn read(&self, layer: usize, seq: SeqId, len: usize, f: &mut dyn FnMut(KvRun<'_>)) {
        let n = len * self.kv_dim;
        match &self.seqs[&seq][layer] {
            LayerKv::F32 { k, v } => f(KvRun { start: 0, k: KvRows::F32(&k[..n]), v: KvRows::F32(&v[..n]) }),
            LayerKv::F16 { k, v } => f(KvRun { start: 0, k: KvRows::F16(&k[..n]), v: KvRows::F16(&v[..n]) }),
        }
    }

    fn release(&mut self, seq: SeqId) {
        self.seqs.remove(&seq);
    }
}
