//! Fixed-size KV blocks: allocation, reference counts and the prefix cache's
//! block-hash index.
//!
//! Following vLLM v1's `BlockPool` (`vllm/v1/core/block_pool.py`): every
//! block is either referenced (`ref_count > 0`) or on one **free queue**, a
//! doubly linked list threaded through the block ids. A block that held a
//! full, hashed block of tokens keeps its hash when its last reference goes:
//! it stays findable by the prefix cache until allocation reaches it at the
//! head of the queue and evicts it. So the free queue is also the LRU order
//! of cached blocks, and eviction happens only when space is needed.
//!
//! Guarantees:
//! - `allocate`, `free`, `touch`, `lookup` are O(1) (no scan, no search).
//! - Allocation takes the head of the free queue; freed blocks go to the
//!   tail, so ids are handed out in a deterministic order (tests assert them).
//! - A block is on the free queue iff its reference count is zero.
//! - At most one block holds a given hash (a duplicate full block simply
//!   stays uncached).
//!
//! The pool holds metadata only; the f16 rows live in
//! [`crate::paged_kv::KvStorage`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Index of a block in the pool, `[0, num_blocks)`.
pub type BlockId = u32;

/// Identity of a full block of tokens: a hash chained over every token of
/// the sequence up to the end of that block (the parent block's hash and
/// this block's tokens). 64 bits; a collision would reuse a wrong block, at
/// odds of about `n² / 2⁶⁴` for `n` distinct cached blocks.
pub type BlockHash = u64;

/// Hash of a full block: `hash(parent hash, tokens)`. `parent` is `None` for
/// the first block of a sequence.
pub fn hash_block(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
    // SipHash with fixed keys: deterministic within a build.
    let mut h = std::hash::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

const NONE: u32 = u32::MAX;

/// Metadata of `num_blocks` blocks of `block_size` token slots each.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    ref_count: Vec<u32>,
    /// The hash of a cached (full, registered) block.
    hash: Vec<Option<BlockHash>>,
    /// Free queue links, `NONE`-terminated.
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    n_free: usize,
    cached: HashMap<BlockHash, BlockId>,
    evictions: u64,
}

impl BlockPool {
    /// A pool whose blocks are all free, queued in id order.
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        assert!(num_blocks < NONE as usize, "too many blocks");
        let n = num_blocks as u32;
        let mut pool = BlockPool {
            block_size: block_size.max(1),
            ref_count: vec![0; num_blocks],
            hash: vec![None; num_blocks],
            prev: vec![NONE; num_blocks],
            next: vec![NONE; num_blocks],
            head: NONE,
            tail: NONE,
            n_free: 0,
            cached: HashMap::new(),
            evictions: 0,
        };
        for id in 0..n {
            pool.push_tail(id);
        }
        pool
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.ref_count.len()
    }

    /// Blocks that can be allocated now (unreferenced, cached or not).
    pub fn num_free(&self) -> usize {
        self.n_free
    }

    /// Blocks referenced by at least one sequence.
    pub fn num_used(&self) -> usize {
        self.num_blocks() - self.n_free
    }

    /// Blocks findable by the prefix cache (referenced or not).
    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    /// Cached blocks evicted to make room since the pool was created.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn ref_count(&self, id: BlockId) -> u32 {
        self.ref_count[id as usize]
    }

    /// The hash a block is cached under, if any.
    pub fn block_hash(&self, id: BlockId) -> Option<BlockHash> {
        self.hash[id as usize]
    }

    /// The free queue from head (next to be allocated) to tail.
    pub fn free_queue(&self) -> Vec<BlockId> {
        let mut out = Vec::with_capacity(self.n_free);
        let mut at = self.head;
        while at != NONE {
            out.push(at);
            at = self.next[at as usize];
        }
        out
    }

    /// Takes the head of the free queue with one reference, evicting its
    /// cached hash if it had one. `None` when every block is referenced.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let id = self.head;
        if id == NONE {
            return None;
        }
        self.unlink(id);
        if let Some(h) = self.hash[id as usize].take() {
            self.cached.remove(&h);
            self.evictions += 1;
        }
        self.ref_count[id as usize] = 1;
        Some(id)
    }

    /// `n` blocks, or none at all if fewer than `n` are free.
    pub fn allocate_n(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.n_free {
            return None;
        }
        Some((0..n).map(|_| self.allocate().expect("counted")).collect())
    }

    /// Adds a reference (a prefix-cache hit or a fork); takes the block off
    /// the free queue if it was unreferenced.
    pub fn touch(&mut self, id: BlockId) {
        if self.ref_count[id as usize] == 0 {
            self.unlink(id);
        }
        self.ref_count[id as usize] += 1;
    }

    /// Drops a reference; the last one puts the block at the tail of the
    /// free queue (keeping its hash, so it stays a prefix-cache candidate).
    pub fn free(&mut self, id: BlockId) {
        let rc = &mut self.ref_count[id as usize];
        debug_assert!(*rc > 0, "block {id} freed twice");
        if *rc == 0 {
            return;
        }
        *rc -= 1;
        if *rc == 0 {
            self.push_tail(id);
        }
    }

    /// The cached block holding `hash`, if any.
    pub fn lookup(&self, hash: BlockHash) -> Option<BlockId> {
        self.cached.get(&hash).copied()
    }

    /// Registers a full block under `hash` unless another block already
    /// holds that hash or this one is already cached.
    pub fn cache(&mut self, id: BlockId, hash: BlockHash) {
        if self.hash[id as usize].is_some() || self.cached.contains_key(&hash) {
            return;
        }
        self.hash[id as usize] = Some(hash);
        self.cached.insert(hash, id);
    }

    /// Forgets a block's hash (its contents are about to change).
    pub fn uncache(&mut self, id: BlockId) {
        if let Some(h) = self.hash[id as usize].take() {
            self.cached.remove(&h);
        }
    }

    fn push_tail(&mut self, id: BlockId) {
        self.prev[id as usize] = self.tail;
        self.next[id as usize] = NONE;
        if self.tail == NONE {
            self.head = id;
        } else {
            self.next[self.tail as usize] = id;
        }
        self.tail = id;
        self.n_free += 1;
    }

    fn unlink(&mut self, id: BlockId) {
        let (p, n) = (self.prev[id as usize], self.next[id as usize]);
        if p == NONE {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NONE {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[id as usize] = NONE;
        self.next[id as usize] = NONE;
        self.n_free -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_in_id_order_and_frees_to_the_tail() {
        let mut p = BlockPool::new(4, 16);
        assert_eq!(p.allocate_n(3), Some(vec![0, 1, 2]));
        assert_eq!(p.num_free(), 1);
        assert_eq!(p.allocate_n(2), None, "all or nothing");
        p.free(1);
        p.free(0);
        assert_eq!(p.free_queue(), vec![3, 1, 0]);
        assert_eq!(p.allocate(), Some(3));
        assert_eq!(p.allocate(), Some(1));
    }

    #[test]
    fn cached_blocks_are_evicted_lru_only_when_needed() {
        let mut p = BlockPool::new(3, 2);
        let b = p.allocate_n(3).unwrap();
        let h: Vec<BlockHash> = (0..3).map(|i| hash_block(None, &[i, i])).collect();
        for i in 0..3 {
            p.cache(b[i], h[i]);
        }
        // Freed in order 2, 0, 1: LRU order.
        p.free(2);
        p.free(0);
        p.free(1);
        assert_eq!(p.num_cached(), 3);
        // A hit takes block 0 off the queue without evicting anything.
        assert_eq!(p.lookup(h[0]), Some(0));
        p.touch(0);
        assert_eq!(p.ref_count(0), 1);
        assert_eq!(p.free_queue(), vec![2, 1]);
        // Allocation evicts the least recently freed cached block first.
        assert_eq!(p.allocate(), Some(2));
        assert_eq!(p.lookup(h[2]), None);
        assert_eq!(p.evictions(), 1);
        assert_eq!(p.lookup(h[1]), Some(1));
    }

    #[test]
    fn a_hash_is_held_by_one_block() {
        let mut p = BlockPool::new(2, 2);
        let h = hash_block(None, &[1, 2]);
        p.allocate_n(2).unwrap();
        p.cache(0, h);
        p.cache(1, h);
        assert_eq!(p.lookup(h), Some(0));
        assert_eq!(p.block_hash(1), None);
    }

    #[test]
    fn chained_hashes_depend_on_the_prefix() {
        let a = hash_block(None, &[1, 2]);
        let b = hash_block(None, &[3, 4]);
        assert_ne!(hash_block(Some(a), &[5, 6]), hash_block(Some(b), &[5, 6]));
        assert_eq!(hash_block(Some(a), &[5, 6]), hash_block(Some(a), &[5, 6]));
    }
}
