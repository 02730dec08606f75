//! The paged cache of a worker rank of a split model: rank 0's scheduler
//! and block pool decide which blocks a sequence uses, and each step's plan
//! ([`crate::engine::plan`]) carries the block tables and copy-on-write
//! copies, which the worker applies to its own blocks (the K/V of its heads
//! or layers) without a pool of its own.

use super::PagedKvCache;
use crate::block_pool::BlockId;
use memwall_model::SeqId;

impl PagedKvCache {
    /// Forgets every block table (the pool is not consulted).
    pub(crate) fn mirror_clear(&mut self) {
        self.tables.clear();
    }

    /// Makes `blocks` the table of `seq`, as rank 0 allocated it.
    pub(crate) fn mirror_table(&mut self, seq: SeqId, blocks: &[BlockId]) {
        self.tables.insert(seq, blocks.to_vec());
    }

    /// Repeats rank 0's copy-on-write copy of block `src` into `dst`.
    pub(crate) fn mirror_copy(&mut self, src: BlockId, dst: BlockId) {
        self.copy_block(src, dst);
    }
}
