//! Continuous batching as token accounting.
//!
//! Following vLLM v1's `Scheduler` and `KVCacheManager`
//! (`vllm/v1/core/sched/scheduler.py`, `kv_cache_manager.py`): there is no
//! prefill or decode phase. Every sequence has `tokens` (prompt, then
//! sampled tokens) and `num_computed` of them already in the KV cache; each
//! step gives sequences `num_tokens - num_computed` tokens each, under a
//! per-step token budget (`max_batch_tokens`), so a long prompt is prefilled
//! in chunks alongside the decodes of others (chunked prefill), and a decode
//! is simply a sequence one token behind.
//!
//! One step ([`Scheduler::schedule`]):
//! 1. Running sequences, in admission order, get their tokens and the blocks
//!    to hold them. When the pool has no block left, the running sequence of
//!    lowest priority, most recently admitted among equals, is **preempted
//!    by recompute**: its blocks are freed (full ones stay in the prefix
//!    cache, so recomputing them is usually a cache hit) and it goes back to
//!    the waiting queue with its generated tokens. A victim already
//!    scheduled in this step is taken out of it again.
//! 2. If nothing was preempted, waiting sequences are admitted in order of
//!    (priority, arrival) — lower priority values first, FCFS among equals —
//!    while budget, the running cap and free blocks allow. Admission reuses
//!    the longest prefix of full blocks found in the prefix cache (by
//!    chained block hash), always leaving at least the last token to compute.
//!
//! The result is plain data ([`SchedulerOutput`]): which sequences, which
//! tokens at which positions, which blocks, and which blocks to copy; the
//! scheduler never touches K/V values. After the model runs, the engine
//! calls [`Scheduler::finish_step`], then [`Scheduler::append_token`] or
//! [`Scheduler::remove`] for each sequence that produced logits.
//!
//! Guarantees: a request is refused at [`Scheduler::add`] if it could never
//! fit in the whole cache; otherwise the oldest running sequence always
//! progresses (it is preempted last), so every request finishes. A step
//! never asks the pool for more blocks than it has: no out-of-memory.

use crate::block_pool::{hash_block, BlockHash, BlockId};
use crate::paged_kv::PagedKvCache;
use memwall_model::{KvCache, SeqId};
use std::collections::{BTreeMap, HashMap};

/// Scheduling limits.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Tokens computed per step over all sequences (`--max-batch-tokens`).
    pub max_batch_tokens: usize,
    /// Sequences running at once.
    pub max_running: usize,
    /// Reuse cached full blocks of matching prefixes.
    pub prefix_caching: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { max_batch_tokens: 512, max_running: 64, prefix_caching: true }
    }
}

/// A sequence to schedule.
#[derive(Clone, Debug)]
pub struct SeqRequest {
    pub id: SeqId,
    pub prompt: Vec<u32>,
    /// Tokens the engine may append; bounds the blocks the sequence can need.
    pub max_new_tokens: usize,
    /// Lower values are served first; equal values FCFS.
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    #[error(
        "the request needs up to {tokens} KV positions but the whole cache holds {capacity}: \
         shorten the prompt or max tokens, or give the KV cache more memory"
    )]
    NeverFits { tokens: usize, capacity: usize },
    #[error("sequence {0} is already scheduled")]
    DuplicateId(SeqId),
    #[error("no sequence {0}")]
    UnknownSeq(SeqId),
}

/// One sequence's share of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub seq: SeqId,
    /// Position of `tokens[0]`; `[0, start)` are cached.
    pub start: usize,
    /// `[n]` tokens to compute this step.
    pub tokens: Vec<u32>,
    /// The step reaches the sequence's last token: sample after it.
    pub wants_logits: bool,
    /// The sequence's block table covering `[0, start + n)`.
    pub blocks: Vec<BlockId>,
    /// Prompt tokens taken from the prefix cache when it was admitted by this step.
    pub cached_tokens: usize,
}

/// What one step runs: plain data for the model runner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerOutput {
    pub seqs: Vec<ScheduledSeq>,
    /// Sequences preempted (blocks freed, back in the queue) by this step.
    pub preempted: Vec<SeqId>,
    /// Copy-on-write copies made by this step, `(from, to)`.
    pub copies: Vec<(BlockId, BlockId)>,
    /// Sum of `tokens.len()`.
    pub num_tokens: usize,
}

#[derive(Clone, Debug)]
struct Sequence {
    tokens: Vec<u32>,
    /// `prompt + max_new_tokens`.
    max_len: usize,
    num_computed: usize,
    priority: i32,
    arrival: u64,
    /// Chained hashes of the full blocks of `tokens` computed so far.
    hashes: Vec<BlockHash>,
    /// Leading blocks of the table registered in the prefix cache.
    num_registered: usize,
    running: bool,
    preemptions: u32,
}

/// Queues, running set and token accounting (see the module docs).
pub struct Scheduler {
    config: SchedulerConfig,
    seqs: HashMap<SeqId, Sequence>,
    /// `(priority, arrival) → seq`.
    waiting: BTreeMap<(i32, u64), SeqId>,
    /// In admission order.
    running: Vec<SeqId>,
    next_arrival: u64,
    computed_tokens: u64,
    preemptions: u64,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        let config = SchedulerConfig {
            max_batch_tokens: config.max_batch_tokens.max(1),
            max_running: config.max_running.max(1),
            ..config
        };
        Scheduler {
            config,
            seqs: HashMap::new(),
            waiting: BTreeMap::new(),
            running: Vec::new(),
            next_arrival: 0,
            computed_tokens: 0,
            preemptions: 0,
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Queues a sequence, or refuses one that could never fit in `kv`.
    pub fn add(&mut self, req: SeqRequest, kv: &PagedKvCache) -> Result<(), ScheduleError> {
        if req.prompt.is_empty() {
            return Err(ScheduleError::EmptyPrompt);
        }
        if self.seqs.contains_key(&req.id) {
            return Err(ScheduleError::DuplicateId(req.id));
        }
        let max_len = req.prompt.len() + req.max_new_tokens;
        if max_len > kv.capacity_tokens() {
            return Err(ScheduleError::NeverFits { tokens: max_len, capacity: kv.capacity_tokens() });
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.waiting.insert((req.priority, arrival), req.id);
        let seq = Sequence {
            tokens: req.prompt,
            max_len,
            num_computed: 0,
            priority: req.priority,
            arrival,
            hashes: Vec::new(),
            num_registered: 0,
            running: false,
            preemptions: 0,
        };
        self.seqs.insert(req.id, seq);
        Ok(())
    }

    /// Plans one step (see the module docs).
    pub fn schedule(&mut self, kv: &mut PagedKvCache) -> SchedulerOutput {
        let mut out = SchedulerOutput::default();
        let mut budget = self.config.max_batch_tokens;
        let mut i = 0;
        'running: while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let seq = &self.seqs[&id];
            let n = (seq.tokens.len() - seq.num_computed).min(budget);
            if n == 0 {
                i += 1;
                continue;
            }
            loop {
                if let Some(copy) = self.allocate(id, n, kv) {
                    out.copies.extend(copy);
                    budget -= n;
                    self.push_scheduled(&mut out, id, n, 0, kv);
                    i += 1;
                    break;
                }
                let victim = self.victim();
                let at = self.running.iter().position(|&r| r == victim).expect("running");
                self.preempt(victim, kv);
                out.preempted.push(victim);
                // A victim of lower priority may have been scheduled already.
                if let Some(p) = out.seqs.iter().position(|s| s.seq == victim) {
                    let undone = out.seqs.remove(p);
                    budget += undone.tokens.len();
                    out.num_tokens -= undone.tokens.len();
                }
                if at < i {
                    i -= 1;
                }
                if victim == id {
                    // `running[i]` is now the next sequence.
                    continue 'running;
                }
            }
        }
        if out.preempted.is_empty() {
            self.admit_waiting(&mut out, budget, kv);
        }
        out
    }

    fn admit_waiting(&mut self, out: &mut SchedulerOutput, mut budget: usize, kv: &mut PagedKvCache) {
        let bs = kv.block_size();
        while budget > 0 && self.running.len() < self.config.max_running {
            let Some((&key, &id)) = self.waiting.iter().next() else { break };
            let prefix_caching = self.config.prefix_caching;
            let seq = self.seqs.get_mut(&id).expect("waiting sequences exist");
            let hits = if prefix_caching { find_prefix(seq, kv, bs) } else { Vec::new() };
            let computed = hits.len() * bs;
            let n = (seq.tokens.len() - computed).min(budget);
            let revived = hits.iter().filter(|&&b| kv.pool().ref_count(b) == 0).count();
            let need = (computed + n).div_ceil(bs) - hits.len();
            if need + revived > kv.pool().num_free() {
                break;
            }
            for &b in &hits {
                kv.pool_mut().touch(b);
            }
            kv.push_blocks(id, &hits);
            seq.num_computed = computed;
            seq.num_registered = hits.len();
            seq.running = true;
            self.waiting.remove(&key);
            self.running.push(id);
            let copy = self.allocate(id, n, kv);
            debug_assert!(copy.is_some(), "blocks were counted");
            budget -= n;
            self.push_scheduled(out, id, n, computed, kv);
        }
    }

    /// Gives `id` blocks for its next `n` tokens (copying a shared partial
    /// block first); `None`, changing nothing, if the pool is short.
    fn allocate(&mut self, id: SeqId, n: usize, kv: &mut PagedKvCache) -> Option<Option<(BlockId, BlockId)>> {
        let start = self.seqs[&id].num_computed;
        let bs = kv.block_size();
        let shared =
            !start.is_multiple_of(bs) && kv.table(id).get(start / bs).is_some_and(|&b| kv.pool().ref_count(b) > 1);
        if kv.blocks_needed(id, start + n) + shared as usize > kv.pool().num_free() {
            return None;
        }
        let copy = if shared { kv.make_writable(id, start).ok()? } else { None };
        kv.grow(id, start + n).ok()?;
        Some(copy)
    }

    fn push_scheduled(&mut self, out: &mut SchedulerOutput, id: SeqId, n: usize, cached: usize, kv: &PagedKvCache) {
        let seq = &self.seqs[&id];
        let start = seq.num_computed;
        out.seqs.push(ScheduledSeq {
            seq: id,
            start,
            tokens: seq.tokens[start..start + n].to_vec(),
            wants_logits: start + n == seq.tokens.len(),
            blocks: kv.table(id).to_vec(),
            cached_tokens: cached,
        });
        out.num_tokens += n;
    }

    /// The running sequence to preempt: lowest priority (highest value),
    /// then most recently admitted.
    fn victim(&self) -> SeqId {
        let (at, _) = self
            .running
            .iter()
            .enumerate()
            .max_by_key(|&(i, id)| (self.seqs[id].priority, i))
            .expect("a sequence is running");
        self.running[at]
    }

    fn preempt(&mut self, id: SeqId, kv: &mut PagedKvCache) {
        kv.release(id);
        self.running.retain(|&r| r != id);
        let seq = self.seqs.get_mut(&id).expect("running sequences exist");
        seq.num_computed = 0;
        seq.num_registered = 0;
        seq.running = false;
        seq.preemptions += 1;
        self.waiting.insert((seq.priority, seq.arrival), id);
        self.preemptions += 1;
    }

    /// Records that `out` ran: advances computed tokens and registers the
    /// blocks that became full in the prefix cache.
    pub fn finish_step(&mut self, out: &SchedulerOutput, kv: &mut PagedKvCache) {
        let bs = kv.block_size();
        for s in &out.seqs {
            self.computed_tokens += s.tokens.len() as u64;
            let Some(seq) = self.seqs.get_mut(&s.seq) else { continue };
            seq.num_computed = s.start + s.tokens.len();
            if !self.config.prefix_caching {
                continue;
            }
            let full = seq.num_computed / bs;
            ensure_hashes(seq, full, bs);
            let table = kv.table(s.seq).to_vec();
            for (b, h) in table[seq.num_registered..full].iter().zip(&seq.hashes[seq.num_registered..full]) {
                kv.pool_mut().cache(*b, *h);
            }
            seq.num_registered = full;
        }
    }

    /// Appends a sampled token to a sequence whose last step wanted logits.
    pub fn append_token(&mut self, id: SeqId, token: u32) -> Result<(), ScheduleError> {
        let seq = self.seqs.get_mut(&id).ok_or(ScheduleError::UnknownSeq(id))?;
        seq.tokens.push(token);
        Ok(())
    }

    /// Forgets a finished or cancelled sequence and frees its blocks at once
    /// (full ones stay in the prefix cache). Returns whether it existed.
    pub fn remove(&mut self, id: SeqId, kv: &mut PagedKvCache) -> bool {
        let Some(seq) = self.seqs.remove(&id) else { return false };
        if seq.running {
            self.running.retain(|&r| r != id);
        } else {
            self.waiting.remove(&(seq.priority, seq.arrival));
        }
        kv.release(id);
        true
    }

    /// Starts `child` as a copy of running `parent` sharing all its blocks
    /// (parallel samples); the first write into a shared partial block
    /// copies it.
    pub fn fork(&mut self, parent: SeqId, child: SeqId, kv: &mut PagedKvCache) -> Result<(), ScheduleError> {
        if self.seqs.contains_key(&child) {
            return Err(ScheduleError::DuplicateId(child));
        }
        let mut seq = self.seqs.get(&parent).ok_or(ScheduleError::UnknownSeq(parent))?.clone();
        if !seq.running {
            return Err(ScheduleError::UnknownSeq(parent));
        }
        seq.arrival = self.next_arrival;
        self.next_arrival += 1;
        seq.preemptions = 0;
        kv.fork(parent, child);
        self.seqs.insert(child, seq);
        self.running.push(child);
        Ok(())
    }

    /// Tokens of a sequence (prompt and appended).
    pub fn tokens(&self, id: SeqId) -> Option<&[u32]> {
        self.seqs.get(&id).map(|s| s.tokens.as_slice())
    }

    /// Positions of a sequence already in the cache.
    pub fn num_computed(&self, id: SeqId) -> Option<usize> {
        self.seqs.get(&id).map(|s| s.num_computed)
    }

    /// Longest the sequence may grow (prompt + max new tokens).
    pub fn max_len(&self, id: SeqId) -> Option<usize> {
        self.seqs.get(&id).map(|s| s.max_len)
    }

    /// Times the sequence was preempted.
    pub fn preemptions_of(&self, id: SeqId) -> Option<u32> {
        self.seqs.get(&id).map(|s| s.preemptions)
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn is_idle(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Tokens computed by the model since the start (prefix-cache hits excluded).
    pub fn computed_tokens(&self) -> u64 {
        self.computed_tokens
    }

    /// Preemptions since the start.
    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }
}

/// Extends `seq.hashes` to its first `n` full blocks.
fn ensure_hashes(seq: &mut Sequence, n: usize, bs: usize) {
    while seq.hashes.len() < n {
        let i = seq.hashes.len();
        let h = hash_block(seq.hashes.last().copied(), &seq.tokens[i * bs..(i + 1) * bs]);
        seq.hashes.push(h);
    }
}

/// The cached blocks of `seq`'s longest cached prefix of full blocks,
/// leaving at least its last token to compute.
fn find_prefix(seq: &mut Sequence, kv: &PagedKvCache, bs: usize) -> Vec<BlockId> {
    let max_blocks = (seq.tokens.len() - 1) / bs;
    ensure_hashes(seq, max_blocks, bs);
    seq.hashes[..max_blocks].iter().map_while(|&h| kv.pool().lookup(h)).collect()
}

#[cfg(test)]
mod tests;
