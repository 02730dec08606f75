//! The generic decoder: one forward pass over a batch of ragged sequences.
//!
//! Every supported architecture is this loop with the differences of
//! [`ArchTraits`] and whichever optional weights (biases, fused projections,
//! q/k norms) the file has:
//!
//! ```text
//! x = embed(tokens) [+ pos_embed]                        [n_tokens, d_model]
//! for each layer:
//!     h = norm(x); q, k, v = h·Wqkv (+b)                 [n_tokens, q_dim | kv_dim | kv_dim]
//!     q, k = rope(qk_norm(q, k), positions); cache k, v
//!     x += attend(q, cached k, v)·Wo (+b)
//!     x += ffn(norm(x))
//! logits = norm(x[wanted rows])·Wout                     [n_out, vocab]
//! ```
//!
//! All tokens of all sequences in the batch go through each matmul together,
//! so each weight is read once per step whatever the batch holds.

use crate::attention::attend_batch;
use crate::collective::{Collective, SingleProcess};
use crate::config::{ArchTraits, ModelConfig, RopeStyle};
use crate::error::ModelError;
use crate::kv::{KvCache, SeqId};
use crate::layers::{AttentionWeights, FfnWeights, Linear, Norm, Qkv};
use crate::rows::for_rows;
use crate::shard::Split;
use crate::weights::{Matrix, WeightSource};
use memwall_kernels::{ops, ThreadPool};
use std::sync::Arc;

/// Which logits a sequence wants from a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    /// None (a prefill chunk that does not reach the end of the prompt).
    None,
    /// The next-token logits after the last token.
    Last,
    /// Logits after every token (scoring, `memwall logits`).
    All,
}

/// One sequence's share of a step: `tokens` at positions `start..`.
#[derive(Clone, Copy, Debug)]
pub struct SeqInput<'a> {
    pub seq: SeqId,
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`; positions `[0, start)` are already cached.
    pub start: usize,
    pub logits: LogitsWanted,
}

impl SeqInput<'_> {
    /// Rows of logits this input wants.
    pub fn logit_rows(&self) -> usize {
        match self.logits {
            LogitsWanted::None => 0,
            LogitsWanted::Last => self.tokens.len().min(1),
            LogitsWanted::All => self.tokens.len(),
        }
    }
}

/// Tokens per pipeline micro-batch at least: a step of fewer than twice
/// as many runs as one batch.
///
/// Each micro-batch reads its stage's weights once more, so cutting pays
/// only when a micro-batch is still compute-bound: around the roofline's
/// ridge point, where the FLOPs per weight byte of `k` tokens (`2k` per
/// weight, ~3.6k per byte of Q4_0) reach the CPU's FLOP/s per byte/s of
/// bandwidth (14 int8 FLOP/B on this 2-core machine, similar on larger
/// CPUs), i.e. `k ≈ 4`. Measured with `--pp 2` on TinyLlama Q4_0 (one core
/// per stage, 8 requests in flight): decode steps of 8 tokens cut in two
/// run 12% faster than whole (ITL p50 107 vs 122 ms); a batch-1 decode
/// step is never cut.
pub const MICRO_BATCH_TOKENS: usize = 4;

/// Micro-batches per pipeline stage at most.
const MICRO_BATCHES_PER_STAGE: usize = 2;

/// Tokens per micro-batch (the last may have fewer) of a step of
/// `n_tokens` over `stages`: `⌈n_tokens / m⌉` for `m` as [`micro_batches`]
/// says, `n_tokens` when the step runs as one batch.
fn micro_batch_len(n_tokens: usize, stages: usize) -> usize {
    let m = match stages {
        0 | 1 => 1,
        _ => (n_tokens / MICRO_BATCH_TOKENS).clamp(1, MICRO_BATCHES_PER_STAGE * stages),
    };
    n_tokens.div_ceil(m)
}

/// How many micro-batches [`micro_batches`] cuts a step of `n_tokens` into.
pub fn micro_batch_count(n_tokens: usize, stages: usize) -> usize {
    n_tokens.div_ceil(micro_batch_len(n_tokens, stages).max(1)).max(1)
}

/// `inputs` cut into the micro-batches a pipeline of `stages` runs them as,
/// in order: `m = n_tokens / MICRO_BATCH_TOKENS` (at most
/// `2 · stages`, one batch for a single stage) of `⌈n_tokens / m⌉` tokens
/// each, the last one shorter. A sequence may be cut into consecutive token
/// ranges (a long prefill): a later range attends to the earlier one's
/// cache, which the same stage wrote a micro-batch before; only the last
/// range asks for a `Last` sequence's logits. Every rank cuts the same
/// inputs the same way, and the wanted logit rows keep their input order.
///
/// Why cut at all: with one batch the stages take turns. With `m`
/// micro-batches a step takes `m + stages - 1` turns of `1/m` of the work
/// each, when compute bounds it (a prefill, a large batch); a micro-batch
/// reads its stage's weights again, so small, memory-bound decode steps
/// stay whole.
pub fn micro_batches<'a>(inputs: &[SeqInput<'a>], stages: usize) -> Vec<Vec<SeqInput<'a>>> {
    let n: usize = inputs.iter().map(|i| i.tokens.len()).sum();
    let per = micro_batch_len(n, stages);
    if per >= n {
        return vec![inputs.to_vec()];
    }
    let (mut batches, mut batch, mut room) = (Vec::with_capacity(n.div_ceil(per)), Vec::new(), per);
    for input in inputs {
        let mut rest = *input;
        while !rest.tokens.is_empty() {
            let take = rest.tokens.len().min(room);
            let (head, tail) = rest.tokens.split_at(take);
            let logits = match (tail.is_empty(), rest.logits) {
                (false, LogitsWanted::Last) => LogitsWanted::None,
                (_, wanted) => wanted,
            };
            batch.push(SeqInput { tokens: head, logits, ..rest });
            rest = SeqInput { tokens: tail, start: rest.start + take, ..rest };
            room -= take;
            if room == 0 {
                batches.push(std::mem::take(&mut batch));
                room = per;
            }
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

struct Layer {
    attn_norm: Norm,
    attn: AttentionWeights,
    ffn_norm: Norm,
    ffn: FfnWeights,
}

/// A loaded decoder, ready to run.
pub struct Model {
    /// The shape this process computes: the whole model's, or its rank's
    /// share when split (see [`crate::shard`]).
    pub config: ModelConfig,
    /// How the model is split across ranks, and how the ranks talk.
    split: Split,
    /// Every rank (plans, pipeline hand-offs, logits).
    comm: Arc<dyn Collective>,
    /// The tensor-parallel ranks of this rank's pipeline stage (all-reduces).
    tp_comm: Arc<dyn Collective>,
    traits: ArchTraits,
    /// `None` for learned positions.
    rope: Option<RopeStyle>,
    /// `[rope_dim / 2]`
    inv_freq: Vec<f32>,
    /// `[vocab, d_model]`, on the ranks that embed (the first pipeline
    /// stage) or multiply it as the tied output head.
    token_embd: Option<Matrix>,
    /// `[context_len, d_model]`, GPT-2 only.
    position_embd: Option<Matrix>,
    layers: Vec<Layer>,
    output_norm: Norm,
    /// `[vocab, d_model]`, on the rank that computes the logits
    /// ([`Split::computes_logits`]); `None` there when tied to `token_embd`.
    output: Option<Linear>,
}

/// Called with `(name, layer, tensor)` at named points of the forward pass,
/// as llama.cpp's `cb(cur, "attn_norm", il)`: lets a divergence from a
/// reference implementation be found layer by layer. Tensors are
/// `[n_tokens, width]`, row-major.
pub type TraceFn = dyn FnMut(&str, usize, &[f32]) + Send;

/// Reusable buffers of a forward pass, grown to the largest batch seen.
#[derive(Default)]
pub struct Scratch {
    /// Optional tensor hook (see [`TraceFn`]); `None` costs nothing.
    pub trace: Option<Box<TraceFn>>,
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    rows: Vec<f32>,
    logits: Vec<f32>,
    /// Each token's RoPE cosines and sines `[n, rot_dim]` ([`ops::rope_angles`]).
    rope: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

impl Model {
    /// Binds every weight of `config`'s architecture from `src`.
    /// `progress(done, total)` is called after each layer.
    pub fn bind(
        src: &WeightSource,
        config: ModelConfig,
        rope: Option<RopeStyle>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Model, ModelError> {
        Self::bind_split(src, config, rope, Split::WHOLE, Arc::new(SingleProcess), progress)
    }

    /// Binds this rank's share of the weights of `config`'s architecture
    /// (every weight when `split` is [`Split::WHOLE`]); the ranks talk
    /// through `comm`.
    pub fn bind_split(
        src: &WeightSource,
        config: ModelConfig,
        rope: Option<RopeStyle>,
        split: Split,
        comm: Arc<dyn Collective>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Model, ModelError> {
        let local = split.local_config(&config)?;
        let c = &config;
        let traits = c.arch.traits();
        // Each rank binds only what it multiplies: the embeddings on the
        // first stage, the output head on the one rank that computes logits.
        let embeds = split.stage() == 0;
        let output = match split.computes_logits() {
            true => Linear::opt_bind(src, "output", c.vocab, c.d_model)?,
            false => None,
        };
        let tied = split.computes_logits() && output.is_none();
        let token_embd = match embeds || tied {
            true => Some(src.matrix("token_embd.weight", c.vocab, c.d_model)?),
            false => None,
        };
        let position_embd = match traits.learned_positions && embeds {
            true => Some(src.matrix("position_embd.weight", c.context_len, c.d_model)?),
            false => None,
        };
        let own = split.layers(c.n_layers);
        let mut layers = Vec::with_capacity(own.len());
        for i in own.clone() {
            let blk = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: Norm::bind(src, &format!("{blk}.attn_norm"), c.d_model, traits.norm, c.norm_eps)?,
                attn: split.bind_attention(src, &blk, c)?,
                ffn_norm: Norm::bind(src, &format!("{blk}.ffn_norm"), c.d_model, traits.norm, c.norm_eps)?,
                ffn: split.bind_ffn(src, &blk, c, traits)?,
            });
            progress(i + 1 - own.start, own.len());
        }
        let output_norm = Norm::bind(src, "output_norm", c.d_model, traits.norm, c.norm_eps)?;
        let mut inv_freq = crate::rope::inv_freq(c);
        // Llama 3 GGUF files store the frequency scaling as factors.
        if let Some(factors) = src.opt_vector("rope_freqs.weight", c.rope_dim / 2)? {
            for (f, s) in inv_freq.iter_mut().zip(factors) {
                *f /= s;
            }
        }
        let rope = if traits.learned_positions { None } else { rope };
        let config = local;
        // With both splits each stage's ranks all-reduce among themselves.
        let tp_comm = match split.tp.size > 1 && split.stages() > 1 {
            true => comm.split(split.stage()),
            false => comm.clone(),
        };
        Ok(Model {
            config,
            split,
            comm,
            tp_comm,
            traits,
            rope,
            inv_freq,
            token_embd,
            position_embd,
            layers,
            output_norm,
            output,
        })
    }

    /// How this model is split across ranks.
    pub fn split(&self) -> Split {
        self.split
    }

    /// How this model's ranks talk ([`SingleProcess`] when whole).
    pub fn collective(&self) -> &Arc<dyn Collective> {
        &self.comm
    }

    /// Bytes of weights one forward step reads (every matrix once, the
    /// embedding one row per token, not counted).
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self.layers.iter().map(|l| l.attn.weight_bytes() + l.ffn.weight_bytes()).sum();
        let head = match (&self.output, &self.token_embd) {
            _ if !self.split.computes_logits() => 0,
            (Some(out), _) => out.weight_bytes(),
            (None, Some(tied)) => tied.bytes().len(),
            (None, None) => 0,
        };
        layers + head
    }

    /// Every weight matrix, for accounting and warming.
    fn matrices(&self) -> impl Iterator<Item = &Matrix> {
        let layers = self.layers.iter().flat_map(|l| {
            let qkv: Vec<&Matrix> = match &l.attn.qkv {
                Qkv::Split { q, k, v } => vec![&q.w, &k.w, &v.w],
                Qkv::Fused(f) => vec![&f.w],
            };
            let ffn = l.ffn.gate.iter().chain([&l.ffn.up, &l.ffn.down]).map(|lin| &lin.w);
            qkv.into_iter().chain([&l.attn.output.w]).chain(ffn)
        });
        self.token_embd.iter().chain(self.position_embd.iter()).chain(layers).chain(self.output.iter().map(|o| &o.w))
    }

    /// Reads one byte of every page of every weight so that the file is in
    /// memory before the first token (a cold start otherwise pays for page
    /// faults inside the first forward pass). `progress(done, total)` in bytes.
    pub fn warm(&self, progress: &mut dyn FnMut(u64, u64)) {
        const PAGE: usize = 4096;
        let total: u64 = self.matrices().map(|m| m.bytes().len() as u64).sum();
        let mut done = 0u64;
        let mut sink = 0u8;
        for m in self.matrices() {
            for chunk in m.bytes().chunks(1 << 22) {
                sink ^= chunk.iter().step_by(PAGE).fold(0u8, |a, &b| a ^ b);
                done += chunk.len() as u64;
                progress(done, total);
            }
        }
        std::hint::black_box(sink);
    }

    /// Total bytes of the weight matrices this rank holds (all the file
    /// holds when whole).
    pub fn total_weight_bytes(&self) -> usize {
        self.matrices().map(|m| m.bytes().len()).sum()
    }

    /// Runs one step over `inputs` and returns the wanted logits,
    /// `[n_out, vocab]`, in input order (every position of an `All` input,
    /// one row for a `Last` input). Split models: every rank calls this with
    /// the same inputs; rank 0 gets the logits, and so does the rank that
    /// computes them ([`Split::logits_rank`]); the other ranks get an empty slice.
    ///
    /// A pipeline runs the step as micro-batches ([`micro_batches`]): each
    /// stage hands micro-batch `m` on and starts on `m + 1` while the next
    /// stage works on `m`, and the last stage sends all logits to rank 0 at
    /// the end of the step (so no send waits on a rank that is itself
    /// sending). Every layer sees the same rows as in one batch, so the
    /// logits are bit-identical to an unsplit step.
    pub fn forward<'s>(
        &self,
        inputs: &[SeqInput<'_>],
        kv: &mut dyn KvCache,
        pool: &ThreadPool,
        s: &'s mut Scratch,
    ) -> Result<&'s [f32], ModelError> {
        let c = &self.config;
        let n: usize = inputs.iter().map(|i| i.tokens.len()).sum();
        let _span = tracing::trace_span!("forward", n_seqs = inputs.len(), n_tokens = n).entered();
        for input in inputs {
            let end = input.start + input.tokens.len();
            if end > c.context_len {
                return Err(ModelError::PromptTooLong { prompt: end, context: c.context_len });
            }
            if let Some(&id) = input.tokens.iter().find(|&&t| t as usize >= c.vocab) {
                return Err(ModelError::TokenOutOfRange { id, vocab: c.vocab });
            }
            kv.reserve(input.seq, end)
                .map_err(|e| ModelError::PromptTooLong { prompt: e.requested, context: e.capacity })?;
        }
        let split = self.split;
        let rows: usize = inputs.iter().map(SeqInput::logit_rows).sum();
        let len = if split.computes_logits() || split.rank() == 0 { rows * c.vocab } else { 0 };
        grow(&mut s.logits, len);
        let mut at = 0;
        for batch in micro_batches(inputs, split.stages()) {
            at += self.forward_stage(&batch, kv, pool, s, at);
        }
        let from = split.logits_rank();
        if len > 0 && from != 0 {
            match split.rank() {
                0 => self.comm.recv(from, &mut s.logits[..len]),
                _ => self.comm.send(0, &s.logits[..len]),
            }
        }
        Ok(&s.logits[..len])
    }

    /// This rank's part of one (micro-)batch: embeds it (first stage) or
    /// receives its activations, runs this rank's layers, then sends the
    /// activations on or (the logits rank) writes its logits at
    /// `s.logits[logits_at..]`. Returns how many logit values it wrote.
    fn forward_stage(
        &self,
        inputs: &[SeqInput<'_>],
        kv: &mut dyn KvCache,
        pool: &ThreadPool,
        s: &mut Scratch,
        logits_at: usize,
    ) -> usize {
        let c = &self.config;
        let (d, q_dim, kv_dim) = (c.d_model, c.q_dim(), c.kv_dim());
        let n: usize = inputs.iter().map(|i| i.tokens.len()).sum();
        let positions: Vec<usize> = inputs.iter().flat_map(|i| i.start..i.start + i.tokens.len()).collect();

        // Embedding, or the previous pipeline stage's activations.
        let x = grow(&mut s.x, n * d);
        if let Some(prev) = self.split.previous_stage() {
            self.comm.recv(prev, x);
        } else {
            let embd = self.token_embd.as_ref().expect("the first stage binds the embedding");
            let tokens = inputs.iter().flat_map(|i| i.tokens.iter());
            for ((row, &t), &pos) in x.chunks_exact_mut(d).zip(tokens).zip(&positions) {
                embd.row_into(t as usize, row);
                if let Some(pe) = &self.position_embd {
                    let h = grow(&mut s.h, d);
                    pe.row_into(pos, h);
                    for (a, b) in row.iter_mut().zip(h.iter()) {
                        *a += b;
                    }
                }
            }
        }

        // RoPE angles once per step, shared by every head and layer.
        if self.rope.is_some() {
            let rot = 2 * self.inv_freq.len();
            let rope = grow(&mut s.rope, n * rot);
            for_rows(pool, rope, rot, |rows, cs| {
                for (cs, &pos) in cs.chunks_exact_mut(rot).zip(&positions[rows]) {
                    ops::rope_angles(pos, &self.inv_freq, cs);
                }
            });
        }
        let ff_width = if self.layers.first().is_some_and(|l| l.ffn.gate.is_none()) { 2 * c.d_ff } else { c.d_ff };
        grow(&mut s.h, n * d);
        grow(&mut s.q, n * q_dim);
        grow(&mut s.k, n * kv_dim);
        grow(&mut s.v, n * kv_dim);
        grow(&mut s.attn, n * q_dim.max(d));
        grow(&mut s.gate, n * c.d_ff);
        grow(&mut s.up, n * ff_width);
        for (il, layer) in self.layers.iter().enumerate() {
            let x = &mut s.x[..n * d];
            let h = &mut s.h[..n * d];
            let (q, k, v) = (&mut s.q[..n * q_dim], &mut s.k[..n * kv_dim], &mut s.v[..n * kv_dim]);

            // Attention.
            layer.attn_norm.apply_rows(pool, x, h);
            trace(&mut s.trace, "attn_norm", il, h);
            match &layer.attn.qkv {
                Qkv::Split { q: wq, k: wk, v: wv } => Linear::forward_many([wq, wk, wv], pool, h, [q, k, v]),
                Qkv::Fused(w) => {
                    let width = q_dim + 2 * kv_dim;
                    let qkv = grow(&mut s.qkv, n * width);
                    w.forward(pool, h, qkv);
                    for (t, row) in qkv.chunks_exact(width).enumerate() {
                        q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&row[..q_dim]);
                        k[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&row[q_dim..q_dim + kv_dim]);
                        v[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&row[q_dim + kv_dim..]);
                    }
                }
            }
            let rope = &s.rope[..];
            self.position_heads(pool, q, n, rope, layer.attn.q_norm.as_ref());
            self.position_heads(pool, k, n, rope, layer.attn.k_norm.as_ref());
            trace(&mut s.trace, "q_rope", il, q);
            trace(&mut s.trace, "k_rope", il, k);
            trace(&mut s.trace, "v", il, v);
            let mut at = 0;
            for input in inputs {
                let rows = at..at + input.tokens.len();
                kv.write(
                    il,
                    input.seq,
                    input.start,
                    &k[rows.start * kv_dim..rows.end * kv_dim],
                    &v[rows.start * kv_dim..rows.end * kv_dim],
                );
                at = rows.end;
            }
            let attn = &mut s.attn[..n * q_dim];
            attend_batch(pool, c, inputs, &*kv, il, q, attn);
            trace(&mut s.trace, "attn_out", il, attn);
            layer.attn.output.forward(pool, attn, h);
            self.split.all_reduce(&*self.tp_comm, h);
            add_into(pool, x, h, d);

            // Feed-forward.
            layer.ffn_norm.apply_rows(pool, x, h);
            let out = &mut s.attn[..n * d];
            layer.ffn.forward(pool, h, &mut s.gate, &mut s.up, out);
            self.split.all_reduce(&*self.tp_comm, out);
            trace(&mut s.trace, "ffn_out", il, out);
            add_into(pool, x, out, d);
            trace(&mut s.trace, "l_out", il, x);
        }

        if let Some(next) = self.split.next_stage() {
            self.comm.send(next, &s.x[..n * d]);
            return 0;
        }
        if !self.split.computes_logits() {
            return 0;
        }
        // Output rows.
        let mut wanted = Vec::new();
        let mut at = 0;
        for input in inputs {
            match input.logits {
                LogitsWanted::None => {}
                LogitsWanted::Last => wanted.extend(input.tokens.len().checked_sub(1).map(|last| at + last)),
                LogitsWanted::All => wanted.extend(at..at + input.tokens.len()),
            }
            at += input.tokens.len();
        }
        let rows = grow(&mut s.rows, wanted.len() * d);
        for (dst, &r) in rows.chunks_exact_mut(d).zip(&wanted) {
            self.output_norm.apply(&s.x[r * d..(r + 1) * d], dst);
        }
        let len = wanted.len() * c.vocab;
        let logits = &mut s.logits[logits_at..logits_at + len];
        match &self.output {
            Some(out) => out.forward(pool, rows, logits),
            None => {
                let tied = self.token_embd.as_ref().expect("the logits rank binds the tied head");
                memwall_kernels::matmul(pool, &tied.as_mat(), rows, logits)
            }
        }
        len
    }

    /// Applies the optional per-head norm and RoPE to `x` (`[n, n_h * head_dim]`,
    /// row `t` rotated by `rope`'s row `t`, `[n, rot_dim]`).
    fn position_heads(&self, pool: &ThreadPool, x: &mut [f32], n: usize, rope: &[f32], norm: Option<&Norm>) {
        if norm.is_none() && self.rope.is_none() {
            return;
        }
        let hd = self.config.head_dim;
        let width = x.len() / n.max(1);
        let rot = 2 * self.inv_freq.len();
        for_rows(pool, x, width, |rows, x| {
            for (t, row) in rows.zip(x.chunks_exact_mut(width)) {
                for head in row.chunks_exact_mut(hd) {
                    if let Some(norm) = norm {
                        norm.apply_in_place(head);
                    }
                    match self.rope {
                        Some(RopeStyle::Neox) => ops::rope_neox(head, &rope[t * rot..(t + 1) * rot]),
                        Some(RopeStyle::Interleaved) => ops::rope_interleaved(head, &rope[t * rot..(t + 1) * rot]),
                        None => {}
                    }
                }
            }
        });
    }

    pub fn traits(&self) -> ArchTraits {
        self.traits
    }
}

fn trace(hook: &mut Option<Box<TraceFn>>, name: &str, layer: usize, t: &[f32]) {
    if let Some(f) = hook {
        f(name, layer, t);
    }
}

/// `x += y`, both `[n, d]` (rows spread over `pool`).
fn add_into(pool: &ThreadPool, x: &mut [f32], y: &[f32], d: usize) {
    for_rows(pool, x, d, |rows, x| {
        for (a, b) in x.iter_mut().zip(&y[rows.start * d..]) {
            *a += b;
        }
    });
}
