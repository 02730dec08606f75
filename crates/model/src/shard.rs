//! A model split over several ranks: Megatron-LM tensor parallelism and
//! contiguous pipeline stages.
//!
//! **Tensor parallelism** ([`Split::tensor`], after Megatron-LM, Shoeybi et
//! al. 2019): rank `r` of `size` owns query heads `[r·n_heads/size, …)`,
//! key/value heads `[r·n_kv_heads/size, …)` (so the KV cache of its heads
//! only) and the slice `[r·d_ff/size, …)` of the feed-forward width.
//! Column-parallel matrices (split output rows): `attn_q/k/v` (or the rows
//! of the three parts of a fused `attn_qkv`), `ffn_gate`, `ffn_up` (both
//! halves of a fused gate-up). Row-parallel matrices (split input columns):
//! `attn_output` (the columns of the rank's heads) and `ffn_down` (its
//! feed-forward slice). Each rank's partial `attn_output` and `ffn_down`
//! products are summed by one all-reduce ([`Collective::all_reduce_sum`]);
//! their biases are bound on rank 0 only, so they are added once. Norms
//! are replicated, the embeddings bound on the first stage's ranks and the
//! output head on the one rank that computes the logits
//! ([`Split::computes_logits`]). The heads
//! and kv heads must divide by `size`; in a quantized matrix a column split
//! must fall on block boundaries — otherwise binding fails saying so.
//!
//! **Pipeline parallelism** ([`Split::pipeline`]): stage `r` owns a
//! contiguous range of layers ([`Shard::layers`]) and their KV cache; the
//! first stage embeds, each stage sends its activations `[n_tokens,
//! d_model]` to the next, and the last computes the logits and sends them
//! to rank 0. A large step runs as micro-batches that the stages work on at
//! the same time ([`crate::micro_batches`]).
//!
//! **Both** ([`Split::new`]): `tp.size` tensor-parallel ranks in each of
//! `pp.size` stages; each stage's ranks all-reduce among themselves.
//!
//! Each rank copies only its slice of a matrix out of the mapped file (a
//! contiguous block of whole rows stays mapped, unless the kernels repack
//! it); the other ranks' rows are never read. The model's
//! [`ModelConfig`] on a rank is the rank's share
//! (`n_heads`, `n_kv_heads`, `d_ff` or `n_layers` divided), so that the
//! decoder's loops and the KV cache layout follow without further change.

use crate::collective::Collective;
use crate::config::{ArchTraits, FfnKind, ModelConfig, NormKind};
use crate::error::ModelError;
use crate::layers::{AttentionWeights, FfnWeights, Linear, Norm, Qkv};
use crate::weights::{Matrix, WeightSource};
use memwall_formats::Blob;
use std::ops::Range;

/// Rank `rank` of `size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub size: usize,
}

impl Shard {
    /// The rank's contiguous share of `n` items: `n / size` each, the first
    /// `n % size` ranks one more.
    pub fn part(&self, n: usize) -> Range<usize> {
        let (base, extra) = (n / self.size, n % self.size);
        let start = self.rank * base + self.rank.min(extra);
        start..start + base + usize::from(self.rank < extra)
    }

    /// The layers a pipeline stage owns.
    pub fn layers(&self, n_layers: usize) -> Range<usize> {
        self.part(n_layers)
    }
}

/// How a model is split across ranks: `tp.size` tensor-parallel ranks in
/// each of `pp.size` pipeline stages, `tp.size · pp.size` ranks in all.
///
/// World ranks run stage by stage: rank `stage · tp.size + t` is
/// tensor-parallel rank `t` of pipeline stage `stage`, so rank 0 (tokenizer,
/// scheduler, sampling) is in the first stage, and the ranks of one stage
/// form the group its all-reduces run in ([`Split::stage`] is the colour of
/// that group, [`Collective::split`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// This rank among the tensor-parallel ranks of its stage.
    pub tp: Shard,
    /// This rank's pipeline stage among the stages.
    pub pp: Shard,
}

/// "tensor rank 1 of 2, pipeline stage 0 of 2" (the parts that are split).
impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tp = (self.tp.size > 1).then(|| format!("tensor rank {} of {}", self.tp.rank, self.tp.size));
        let pp = (self.pp.size > 1).then(|| format!("pipeline stage {} of {}", self.pp.rank, self.pp.size));
        match (tp, pp) {
            (Some(t), Some(p)) => write!(f, "{t}, {p}"),
            (Some(x), None) | (None, Some(x)) => f.write_str(&x),
            (None, None) => f.write_str("whole model"),
        }
    }
}

impl Default for Split {
    fn default() -> Split {
        Split::WHOLE
    }
}

impl Split {
    /// One process holds every weight.
    pub const WHOLE: Split = Split { tp: Shard { rank: 0, size: 1 }, pp: Shard { rank: 0, size: 1 } };

    /// Heads and feed-forward width split (see the module docs), one stage.
    pub fn tensor(s: Shard) -> Split {
        Split { tp: s, ..Split::WHOLE }
    }

    /// Contiguous layer ranges, one rank per stage.
    pub fn pipeline(s: Shard) -> Split {
        Split { pp: s, ..Split::WHOLE }
    }

    /// `--tp tp --pp pp` for `rank` of `world` processes.
    pub fn new(tp: usize, pp: usize, rank: usize, world: usize) -> Result<Split, ModelError> {
        let (tp, pp) = (tp.max(1), pp.max(1));
        if tp * pp != world {
            let flags = match (tp, pp) {
                (1, p) => format!("--pp {p}"),
                (t, 1) => format!("--tp {t}"),
                (t, p) => format!("--tp {t} --pp {p}"),
            };
            return Err(ModelError::Split(format!(
                "{flags} needs {} processes but {world} run: launch with `mpirun -np {0}`",
                tp * pp
            )));
        }
        Ok(Split { tp: Shard { rank: rank % tp, size: tp }, pp: Shard { rank: rank / tp, size: pp } })
    }

    /// Whether one process holds the whole model.
    pub fn is_whole(&self) -> bool {
        self.size() == 1
    }

    /// Ranks taking part (1 when whole).
    pub fn size(&self) -> usize {
        self.tp.size * self.pp.size
    }

    /// This process's rank (0 when whole).
    pub fn rank(&self) -> usize {
        self.pp.rank * self.tp.size + self.tp.rank
    }

    /// Pipeline stages (1 without pipeline parallelism).
    pub fn stages(&self) -> usize {
        self.pp.size
    }

    /// This rank's pipeline stage: the colour of its tensor-parallel group.
    pub fn stage(&self) -> usize {
        self.pp.rank
    }

    /// The layers this rank runs.
    pub fn layers(&self, n_layers: usize) -> Range<usize> {
        self.pp.layers(n_layers)
    }

    /// The rank this one receives activations from: the same
    /// tensor-parallel rank of the previous stage.
    pub fn previous_stage(&self) -> Option<usize> {
        (self.pp.rank > 0).then(|| self.rank() - self.tp.size)
    }

    /// The rank this one sends activations to: the same tensor-parallel
    /// rank of the next stage.
    pub fn next_stage(&self) -> Option<usize> {
        (self.pp.rank + 1 < self.pp.size).then(|| self.rank() + self.tp.size)
    }

    /// The one rank that computes the logits (tensor-parallel rank 0 of the
    /// last stage; rank 0 itself without a pipeline) and hands them to rank 0.
    pub fn logits_rank(&self) -> usize {
        (self.pp.size - 1) * self.tp.size
    }

    /// Whether this rank computes the logits.
    pub fn computes_logits(&self) -> bool {
        self.rank() == self.logits_rank()
    }

    /// The shape this rank computes: `config` with its heads and
    /// feed-forward width (tensor) or its layers (pipeline).
    pub fn local_config(&self, config: &ModelConfig) -> Result<ModelConfig, ModelError> {
        let mut c = config.clone();
        let (tp, pp) = (self.tp.size, self.pp.size);
        let (h, kvh, ff) = (c.n_heads, c.n_kv_heads, c.d_ff);
        if !h.is_multiple_of(tp) || !kvh.is_multiple_of(tp) || !ff.is_multiple_of(tp) {
            return Err(ModelError::Split(format!(
                "tensor parallelism over {tp} ranks needs n_heads ({h}), n_kv_heads ({kvh}) and d_ff ({ff}) \
                 to divide by {tp}: use a --tp that divides them all, or --pp"
            )));
        }
        if pp > c.n_layers {
            return Err(ModelError::Split(format!(
                "{pp} pipeline stages for {} layers: use at most --pp {0}",
                c.n_layers
            )));
        }
        c.n_heads /= tp;
        c.n_kv_heads /= tp;
        c.d_ff /= tp;
        c.n_layers = self.layers(c.n_layers).len();
        Ok(c)
    }

    /// Layer `blk`'s attention weights for this rank (`config` is the whole model's).
    pub(crate) fn bind_attention(
        &self,
        src: &WeightSource,
        blk: &str,
        config: &ModelConfig,
    ) -> Result<AttentionWeights, ModelError> {
        match self.tp.size > 1 {
            true => bind_attention_shard(src, blk, config, self.tp),
            false => AttentionWeights::bind(src, blk, config),
        }
    }

    /// Layer `blk`'s feed-forward weights for this rank.
    pub(crate) fn bind_ffn(
        &self,
        src: &WeightSource,
        blk: &str,
        config: &ModelConfig,
        traits: ArchTraits,
    ) -> Result<FfnWeights, ModelError> {
        match self.tp.size > 1 {
            true => bind_ffn_shard(src, blk, config, traits, self.tp),
            false => FfnWeights::bind(src, blk, config, traits),
        }
    }

    /// Sums `x` over the tensor-parallel ranks of this stage (`group` is
    /// their communicator); nothing without tensor parallelism.
    pub(crate) fn all_reduce(&self, group: &dyn Collective, x: &mut [f32]) {
        if self.tp.size > 1 {
            group.all_reduce_sum(x);
        }
    }
}

fn scaled(r: Range<usize>, k: usize) -> Range<usize> {
    r.start * k..r.end * k
}

fn offset(r: &Range<usize>, by: usize) -> Range<usize> {
    r.start + by..r.end + by
}

fn bind_attention_shard(
    src: &WeightSource,
    blk: &str,
    c: &ModelConfig,
    s: Shard,
) -> Result<AttentionWeights, ModelError> {
    let (d, q_dim, kv_dim, hd) = (c.d_model, c.q_dim(), c.kv_dim(), c.head_dim);
    let q = scaled(s.part(c.n_heads), hd);
    let kv = scaled(s.part(c.n_kv_heads), hd);
    let fused_rows = [q.clone(), offset(&kv, q_dim), offset(&kv, q_dim + kv_dim)];
    let qkv = match column_parallel(src, &format!("{blk}.attn_qkv"), q_dim + 2 * kv_dim, d, &fused_rows)? {
        Some(fused) => Qkv::Fused(fused),
        None => {
            let need = |name: &str, rows: usize, part: &Range<usize>| {
                let name = format!("{blk}.{name}");
                column_parallel(src, &name, rows, d, std::slice::from_ref(part))?
                    .ok_or(ModelError::MissingTensor(format!("{name}.weight")))
            };
            Qkv::Split {
                q: need("attn_q", q_dim, &q)?,
                k: need("attn_k", kv_dim, &kv)?,
                v: need("attn_v", kv_dim, &kv)?,
            }
        }
    };
    let head_norm = |name: &str| -> Result<Option<Norm>, ModelError> {
        let w = src.opt_vector(&format!("{blk}.{name}.weight"), hd)?;
        Ok(w.map(|weight| Norm { kind: NormKind::Rms, weight, bias: None, eps: c.norm_eps }))
    };
    Ok(AttentionWeights {
        qkv,
        q_norm: head_norm("attn_q_norm")?,
        k_norm: head_norm("attn_k_norm")?,
        output: row_parallel(src, &format!("{blk}.attn_output"), d, q_dim, q, s.rank == 0)?,
    })
}

fn bind_ffn_shard(
    src: &WeightSource,
    blk: &str,
    c: &ModelConfig,
    traits: ArchTraits,
    s: Shard,
) -> Result<FfnWeights, ModelError> {
    let (d, ff) = (c.d_model, c.d_ff);
    let part = s.part(ff);
    let gate = match traits.ffn {
        FfnKind::SwiGlu => column_parallel(src, &format!("{blk}.ffn_gate"), ff, d, std::slice::from_ref(&part))?,
        FfnKind::Gelu => None,
    };
    let up_name = format!("{blk}.ffn_up");
    let up = match traits.ffn == FfnKind::SwiGlu && gate.is_none() {
        // Gate and up fused as `[2 d_ff, d_model]`, gate first: this rank's rows of each.
        true => column_parallel(src, &up_name, 2 * ff, d, &[part.clone(), offset(&part, ff)])?,
        false => column_parallel(src, &up_name, ff, d, std::slice::from_ref(&part))?,
    };
    Ok(FfnWeights {
        kind: traits.ffn,
        gate,
        up: up.ok_or(ModelError::MissingTensor(format!("{up_name}.weight")))?,
        down: row_parallel(src, &format!("{blk}.ffn_down"), d, ff, part, s.rank == 0)?,
    })
}

/// The rows `parts` (concatenated in order) of `[d_out, d_in]` linear
/// `prefix`, with the same entries of its bias; `None` if the file has no
/// such weight.
fn column_parallel(
    src: &WeightSource,
    prefix: &str,
    d_out: usize,
    d_in: usize,
    parts: &[Range<usize>],
) -> Result<Option<Linear>, ModelError> {
    let Some(w) = slice_matrix(src, &format!("{prefix}.weight"), d_out, d_in, parts, 0..d_in)? else {
        return Ok(None);
    };
    let b = src.opt_vector(&format!("{prefix}.bias"), d_out)?;
    let b = b.map(|b| parts.iter().flat_map(|p| b[p.clone()].iter().copied()).collect());
    Ok(Some(Linear { w, b }))
}

/// The input columns `cols` of `[d_out, d_in]` linear `prefix`; its bias
/// only if `with_bias` (one rank adds it to the sum).
fn row_parallel(
    src: &WeightSource,
    prefix: &str,
    d_out: usize,
    d_in: usize,
    cols: Range<usize>,
    with_bias: bool,
) -> Result<Linear, ModelError> {
    let name = format!("{prefix}.weight");
    let w = slice_matrix(src, &name, d_out, d_in, std::slice::from_ref(&(0..d_out)), cols)?
        .ok_or(ModelError::MissingTensor(name))?;
    let b = match with_bias {
        true => src.opt_vector(&format!("{prefix}.bias"), d_out)?,
        false => None,
    };
    Ok(Linear { w, b })
}

/// Rows `rows` (concatenated) and columns `cols` of `[n_rows, n_cols]`
/// matrix `name`, copied out of the file except for one block of whole rows
/// of a mapped tensor, which stays mapped.
fn slice_matrix(
    src: &WeightSource,
    name: &str,
    n_rows: usize,
    n_cols: usize,
    rows: &[Range<usize>],
    cols: Range<usize>,
) -> Result<Option<Matrix>, ModelError> {
    let Some(t) = src.get(name)? else { return Ok(None) };
    let dt = t.dtype;
    let shape_err =
        || ModelError::BadShape { name: name.to_string(), found: t.shape.clone(), expected: vec![n_rows, n_cols] };
    let row_bytes = dt.row_bytes(n_cols).ok_or_else(shape_err)?;
    if t.shape != [n_rows, n_cols] || t.raw_bytes().len() != row_bytes * n_rows {
        return Err(shape_err());
    }
    let (Some(c0), Some(c1)) = (dt.row_bytes(cols.start), dt.row_bytes(cols.end)) else {
        return Err(ModelError::Split(format!(
            "{name}: this rank's columns {cols:?} do not fall on the {}-element blocks of {}; \
             use a --tp that keeps each rank's share a multiple of {0}, or --pp",
            dt.block_len(),
            dt.name()
        )));
    };
    let n_local: usize = rows.iter().map(|r| r.len()).sum();
    let whole_rows = cols == (0..n_cols);
    let data = match (rows, whole_rows) {
        ([r], true) => t.mapped_range(r.start * row_bytes..r.end * row_bytes),
        _ => None,
    };
    let data = data.unwrap_or_else(|| {
        let bytes = t.raw_bytes();
        let mut out = Vec::with_capacity(n_local * (c1 - c0));
        for r in rows.iter().flat_map(|r| r.clone()) {
            out.extend_from_slice(&bytes[r * row_bytes + c0..r * row_bytes + c1]);
        }
        Blob::from_vec(out)
    });
    t.with_bytes(data, vec![n_local, cols.len()]).bind_matrix(n_local, cols.len()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_everything_once() {
        for size in 1..5 {
            let mut next = 0;
            for rank in 0..size {
                let p = Shard { rank, size }.part(10);
                assert_eq!(p.start, next);
                assert!(p.len() == 10 / size || p.len() == 10 / size + 1);
                next = p.end;
            }
            assert_eq!(next, 10);
        }
    }

    #[test]
    fn split_asks_for_matching_world_and_divisible_heads() {
        assert_eq!(Split::new(1, 1, 0, 1).unwrap(), Split::WHOLE);
        assert_eq!(Split::new(2, 1, 1, 2).unwrap(), Split::tensor(Shard { rank: 1, size: 2 }));
        assert!(Split::new(2, 1, 0, 3).unwrap_err().to_string().contains("mpirun -np 2"));
        let e = Split::new(2, 2, 0, 2).unwrap_err().to_string();
        assert!(e.contains("--tp 2 --pp 2") && e.contains("mpirun -np 4"), "{e}");
        // Two stages of two tensor-parallel ranks: world ranks run stage by stage.
        let grid: Vec<Split> = (0..4).map(|r| Split::new(2, 2, r, 4).unwrap()).collect();
        assert_eq!(
            grid.iter().map(|s| (s.stage(), s.tp.rank, s.rank())).collect::<Vec<_>>(),
            [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]
        );
        assert_eq!(grid.iter().map(|s| s.next_stage()).collect::<Vec<_>>(), [Some(2), Some(3), None, None]);
        assert_eq!(grid.iter().map(|s| s.previous_stage()).collect::<Vec<_>>(), [None, None, Some(0), Some(1)]);
        assert_eq!(grid.iter().filter(|s| s.computes_logits()).map(|s| s.rank()).collect::<Vec<_>>(), [2]);
        assert_eq!(grid[3].to_string(), "tensor rank 1 of 2, pipeline stage 1 of 2");
        assert_eq!(Split::WHOLE.to_string(), "whole model");
        let smollm2 = ModelConfig {
            arch: crate::Arch::Llama,
            vocab: 49152,
            d_model: 576,
            n_layers: 30,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            d_ff: 1536,
            norm_eps: 1e-5,
            context_len: 8192,
            rope_theta: 1e5,
            rope_dim: 64,
            rope_scaling: None,
        };
        let e = Split::tensor(Shard { rank: 0, size: 2 }).local_config(&smollm2).unwrap_err().to_string();
        assert!(e.contains("n_heads (9)") && e.contains("--pp"), "{e}");
        let c = Split::tensor(Shard { rank: 2, size: 3 }).local_config(&smollm2).unwrap();
        assert_eq!((c.n_heads, c.n_kv_heads, c.d_ff, c.n_layers), (3, 1, 512, 30));
        let c = Split::pipeline(Shard { rank: 1, size: 4 }).local_config(&smollm2).unwrap();
        assert_eq!(c.n_layers, 8);
        assert_eq!(Split::pipeline(Shard { rank: 1, size: 4 }).layers(30), 8..16);
        let c = Split::new(3, 2, 4, 6).unwrap().local_config(&smollm2).unwrap();
        assert_eq!((c.n_heads, c.n_kv_heads, c.d_ff, c.n_layers), (3, 1, 512, 15));
    }
}
