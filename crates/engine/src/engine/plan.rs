//! Rank 0's step plans for the other ranks of a split model, and the loop
//! those ranks run.
//!
//! After vLLM's `SchedulerOutput` broadcast to its workers: rank 0 owns the
//! tokenizer, the scheduler, the block pool and sampling; before each
//! forward pass it broadcasts the step as plain data (which sequences, which
//! tokens at which positions, their block tables, the copy-on-write copies
//! the scheduler made). Every other rank keeps a paged cache of the same
//! number of blocks for its heads (tensor parallelism) or layers (pipeline),
//! applies the plan to it and runs the same forward pass on its share of the
//! weights, in lockstep with rank 0. The messages are little-endian `u64`
//! words; every rank runs the same binary.

use crate::block_pool::BlockId;
use crate::paged_kv::{KvCacheConfig, KvDType, PagedKvCache};
use crate::scheduler::SchedulerOutput;
use crate::EngineError;
use memwall_kernels::ThreadPool;
use memwall_model::{Collective, LogitsWanted, Model, Scratch, SeqId, SeqInput};
use std::sync::Arc;

/// One sequence of a step, as the workers need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanSeq {
    pub seq: SeqId,
    pub start: usize,
    pub tokens: Vec<u32>,
    pub wants_logits: bool,
    /// Block table covering `[0, start + tokens.len())`.
    pub blocks: Vec<BlockId>,
}

/// What rank 0 broadcasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Once, before the first step: the cache's shape.
    Setup { num_blocks: usize, block_size: usize, dtype: KvDType },
    /// Copy these blocks, then run these sequences.
    Step { copies: Vec<(BlockId, BlockId)>, seqs: Vec<PlanSeq> },
    /// Rank 0's engine has stopped.
    Shutdown,
}

impl Plan {
    pub fn step(out: &SchedulerOutput) -> Plan {
        let seqs = out
            .seqs
            .iter()
            .map(|s| PlanSeq {
                seq: s.seq,
                start: s.start,
                tokens: s.tokens.clone(),
                wants_logits: s.wants_logits,
                blocks: s.blocks.clone(),
            })
            .collect();
        Plan::Step { copies: out.copies.clone(), seqs }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w: Vec<u64> = Vec::new();
        match self {
            Plan::Setup { num_blocks, block_size, dtype } => {
                let dt = match dtype {
                    KvDType::F16 => 0,
                    KvDType::Q8 => 1,
                };
                w.extend([0, *num_blocks as u64, *block_size as u64, dt]);
            }
            Plan::Step { copies, seqs } => {
                w.extend([1, copies.len() as u64]);
                w.extend(copies.iter().flat_map(|&(a, b)| [a as u64, b as u64]));
                w.push(seqs.len() as u64);
                for s in seqs {
                    w.extend([s.seq, s.start as u64, s.wants_logits as u64, s.tokens.len() as u64]);
                    w.extend(s.tokens.iter().map(|&t| t as u64));
                    w.push(s.blocks.len() as u64);
                    w.extend(s.blocks.iter().map(|&b| b as u64));
                }
            }
            Plan::Shutdown => w.push(2),
        }
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// `None` for bytes no [`encode`](Self::encode) produced.
    pub fn decode(bytes: &[u8]) -> Option<Plan> {
        let words: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect();
        let mut it = words.into_iter();
        let mut next = || it.next();
        let plan = match next()? {
            0 => {
                let (num_blocks, block_size) = (next()? as usize, next()? as usize);
                let dtype = match next()? {
                    0 => KvDType::F16,
                    1 => KvDType::Q8,
                    _ => return None,
                };
                Plan::Setup { num_blocks, block_size, dtype }
            }
            1 => {
                let n = next()? as usize;
                let copies = (0..n).map(|_| Some((next()? as BlockId, next()? as BlockId))).collect::<Option<_>>()?;
                let n = next()? as usize;
                let mut seqs = Vec::with_capacity(n);
                for _ in 0..n {
                    let (seq, start, wants_logits) = (next()?, next()? as usize, next()? != 0);
                    let nt = next()? as usize;
                    let tokens = (0..nt).map(|_| next().map(|t| t as u32)).collect::<Option<_>>()?;
                    let nb = next()? as usize;
                    let blocks = (0..nb).map(|_| next().map(|b| b as BlockId)).collect::<Option<_>>()?;
                    seqs.push(PlanSeq { seq, start, tokens, wants_logits, blocks });
                }
                Plan::Step { copies, seqs }
            }
            2 => Plan::Shutdown,
            _ => return None,
        };
        Some(plan)
    }
}

/// Rank 0: sends `plan` to the other ranks of `model`, if it is split.
pub(crate) fn broadcast(model: &Model, plan: &Plan) {
    if model.split().size() > 1 {
        model.collective().broadcast_bytes(0, &mut plan.encode());
    }
}

fn receive(comm: &dyn Collective) -> Result<Plan, EngineError> {
    let mut buf = Vec::new();
    comm.broadcast_bytes(0, &mut buf);
    Plan::decode(&buf).ok_or_else(|| EngineError::Failed("rank 0 sent a step plan this rank cannot read".into()))
}

/// A rank other than 0 of a split model: runs rank 0's plans until it shuts
/// down. `threads` is the size of this rank's compute pool.
pub fn run_worker(model: Arc<Model>, threads: usize) -> Result<(), EngineError> {
    let comm = model.collective().clone();
    let Plan::Setup { num_blocks, block_size, dtype } = receive(&*comm)? else {
        return Err(EngineError::Failed("rank 0 sent a step before the cache's shape".into()));
    };
    let config = KvCacheConfig { block_size, dtype, ..KvCacheConfig::default() };
    let mut kv = PagedKvCache::new(PagedKvCache::layout(&model.config, &config), num_blocks);
    let pool = ThreadPool::new(threads.max(1));
    let mut scratch = Scratch::default();
    // One rank computes the logits (and sends them to rank 0).
    let logits_here = model.split().computes_logits();
    loop {
        let (copies, seqs) = match receive(&*comm)? {
            Plan::Step { copies, seqs } => (copies, seqs),
            Plan::Shutdown => return Ok(()),
            Plan::Setup { .. } => return Err(EngineError::Failed("rank 0 sent the cache's shape twice".into())),
        };
        kv.mirror_clear();
        for (src, dst) in copies {
            kv.mirror_copy(src, dst);
        }
        for s in &seqs {
            kv.mirror_table(s.seq, &s.blocks);
        }
        let inputs: Vec<SeqInput> = seqs
            .iter()
            .map(|s| SeqInput {
                seq: s.seq,
                tokens: &s.tokens,
                start: s.start,
                logits: if s.wants_logits && logits_here { LogitsWanted::Last } else { LogitsWanted::None },
            })
            .collect();
        // An input error is rank 0's error too (same inputs, checked before
        // any communication), and rank 0 reports it to the request.
        let _ = model.forward(&inputs, &mut kv, &pool, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip() {
        let plans = [
            Plan::Setup { num_blocks: 100, block_size: 16, dtype: KvDType::Q8 },
            Plan::Step {
                copies: vec![(3, 9)],
                seqs: vec![
                    PlanSeq { seq: 7, start: 0, tokens: vec![1, 2, 3], wants_logits: true, blocks: vec![4] },
                    PlanSeq { seq: 8, start: 40, tokens: vec![5], wants_logits: false, blocks: vec![0, 1, 2] },
                ],
            },
            Plan::Step { copies: vec![], seqs: vec![] },
            Plan::Shutdown,
        ];
        for p in plans {
            assert_eq!(Plan::decode(&p.encode()), Some(p));
        }
        assert_eq!(Plan::decode(&[9, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Plan::decode(&Plan::Shutdown.encode()[..4]), None);
    }
}
