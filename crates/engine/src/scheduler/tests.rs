//! Toy-config tests asserting exact block ids, reference counts and eviction
//! order (after vLLM's `tests/v1/core/test_prefix_caching.py`).

use super::*;

/// `blocks` blocks of `bs` slots, one layer, `kv_dim` 1.
fn kv(blocks: usize, bs: usize) -> PagedKvCache {
    PagedKvCache::with_blocks(1, 1, bs, blocks)
}

fn sched(budget: usize, max_running: usize) -> Scheduler {
    Scheduler::new(SchedulerConfig { max_batch_tokens: budget, max_running, prefix_caching: true })
}

fn req(id: SeqId, prompt: Vec<u32>, max_new: usize) -> SeqRequest {
    SeqRequest { id, prompt, max_new_tokens: max_new, priority: 0 }
}

/// Runs a step and "samples" `token` for every sequence that wanted logits.
fn step(s: &mut Scheduler, kv: &mut PagedKvCache, token: u32) -> SchedulerOutput {
    let out = s.schedule(kv);
    s.finish_step(&out, kv);
    for seq in out.seqs.iter().filter(|q| q.wants_logits) {
        s.append_token(seq.seq, token).unwrap();
    }
    out
}

fn shape(out: &SchedulerOutput) -> Vec<(SeqId, usize, usize, bool, Vec<BlockId>)> {
    out.seqs.iter().map(|s| (s.seq, s.start, s.tokens.len(), s.wants_logits, s.blocks.clone())).collect()
}

#[test]
fn chunked_prefill_then_decode() {
    let (mut s, mut kv) = (sched(6, 4), kv(8, 4));
    s.add(req(1, (0..10).collect(), 5), &kv).unwrap();
    assert_eq!(shape(&step(&mut s, &mut kv, 99)), vec![(1, 0, 6, false, vec![0, 1])]);
    assert_eq!(shape(&step(&mut s, &mut kv, 99)), vec![(1, 6, 4, true, vec![0, 1, 2])]);
    assert_eq!(shape(&step(&mut s, &mut kv, 99)), vec![(1, 10, 1, true, vec![0, 1, 2])]);
    assert_eq!(s.tokens(1).unwrap().len(), 12);
    assert_eq!(s.computed_tokens(), 11);
    // The two full blocks are cached, the partial one is not.
    assert_eq!(kv.pool().num_cached(), 2);
    assert!(s.remove(1, &mut kv));
    assert_eq!(kv.pool().num_free(), 8);
}

#[test]
fn budget_is_shared_decodes_first() {
    let (mut s, mut kv) = (sched(5, 4), kv(16, 4));
    s.add(req(1, vec![1, 2], 8), &kv).unwrap();
    step(&mut s, &mut kv, 7);
    s.add(req(2, (0..9).collect(), 8), &kv).unwrap();
    // Sequence 1 decodes one token; sequence 2 gets the other four of the budget.
    let out = step(&mut s, &mut kv, 7);
    assert_eq!(shape(&out), vec![(1, 2, 1, true, vec![0]), (2, 0, 4, false, vec![1])]);
    assert_eq!(out.num_tokens, 5);
}

#[test]
fn prefix_hit_reuses_exact_blocks_and_skips_their_tokens() {
    let (mut s, mut kv) = (sched(64, 4), kv(8, 4));
    s.add(req(1, (0..9).collect(), 2), &kv).unwrap();
    assert_eq!(shape(&step(&mut s, &mut kv, 50)), vec![(1, 0, 9, true, vec![0, 1, 2])]);
    s.remove(1, &mut kv);
    // Released last block first: free queue is the untouched blocks, then 2, 1, 0.
    assert_eq!(kv.pool().free_queue(), vec![3, 4, 5, 6, 7, 2, 1, 0]);
    let mut prompt: Vec<u32> = (0..8).collect();
    prompt.extend([70, 71, 72]);
    s.add(req(2, prompt, 2), &kv).unwrap();
    let out = step(&mut s, &mut kv, 50);
    assert_eq!(shape(&out), vec![(2, 8, 3, true, vec![0, 1, 3])]);
    assert_eq!(out.seqs[0].cached_tokens, 8);
    assert_eq!((kv.pool().ref_count(0), kv.pool().ref_count(1), kv.pool().ref_count(3)), (1, 1, 1));
    // Two sequences share the cached blocks; the refcount counts both.
    s.add(req(3, (0..5).collect(), 2), &kv).unwrap();
    assert_eq!(shape(&step(&mut s, &mut kv, 50)), vec![(2, 11, 1, true, vec![0, 1, 3]), (3, 4, 1, true, vec![0, 4])]);
    assert_eq!(kv.pool().ref_count(0), 2);
    s.remove(2, &mut kv);
    s.remove(3, &mut kv);
    assert!((0..8).all(|b| kv.pool().ref_count(b) == 0));
}

#[test]
fn last_prompt_token_is_always_computed() {
    let (mut s, mut kv) = (sched(64, 4), kv(8, 4));
    s.add(req(1, (0..8).collect(), 2), &kv).unwrap();
    step(&mut s, &mut kv, 50);
    s.remove(1, &mut kv);
    s.add(req(2, (0..8).collect(), 2), &kv).unwrap();
    // Both blocks are cached, but the logits need the last token: one hit.
    assert_eq!(shape(&step(&mut s, &mut kv, 50)), vec![(2, 4, 4, true, vec![0, 2])]);
}

#[test]
fn cached_blocks_are_evicted_least_recently_used_first() {
    let (mut s, mut kv) = (sched(64, 4), kv(4, 2));
    s.add(req(1, vec![1, 2, 3], 1), &kv).unwrap();
    step(&mut s, &mut kv, 9);
    s.remove(1, &mut kv); // block 0 cached ([1, 2]); 1 holds a partial block
    s.add(req(2, vec![5, 6, 7], 1), &kv).unwrap();
    step(&mut s, &mut kv, 9);
    assert_eq!(kv.table(2), &[2, 3]);
    s.remove(2, &mut kv); // block 2 cached ([5, 6])
    assert_eq!(kv.pool().free_queue(), vec![1, 0, 3, 2]);
    assert_eq!(kv.pool().num_cached(), 2);
    // Three fresh blocks: 1 and 3 were never cached, 0 is the LRU cached one.
    s.add(req(3, vec![8, 8, 8, 8, 8], 1), &kv).unwrap();
    step(&mut s, &mut kv, 9);
    assert_eq!(kv.table(3), &[1, 0, 3]);
    assert_eq!(kv.pool().evictions(), 1);
    assert_eq!(kv.pool().lookup(hash_block(None, &[5, 6])), Some(2), "the most recent stays");
    assert_eq!(kv.pool().lookup(hash_block(None, &[1, 2])), None);
}

#[test]
fn full_pool_preempts_the_most_recent_then_recomputes_from_cache() {
    let (mut s, mut kv) = (sched(64, 4), kv(4, 2));
    s.add(req(1, vec![1, 2, 3], 4), &kv).unwrap();
    s.add(req(2, vec![4, 5, 6], 4), &kv).unwrap();
    assert_eq!(shape(&step(&mut s, &mut kv, 9)), vec![(1, 0, 3, true, vec![0, 1]), (2, 0, 3, true, vec![2, 3])]);
    // Both append at position 3, still inside their second block.
    step(&mut s, &mut kv, 9);
    // Position 4 needs a third block each: sequence 2 (most recent) is preempted.
    let out = step(&mut s, &mut kv, 9);
    assert_eq!(out.preempted, vec![2]);
    assert_eq!(shape(&out), vec![(1, 4, 1, true, vec![0, 1, 3])]);
    assert_eq!(s.preemptions_of(2), Some(1));
    // Its full blocks stayed cached: block 2 ([4, 5]) is free but findable.
    assert_eq!(kv.pool().lookup(hash_block(None, &[4, 5])), Some(2));
    s.remove(1, &mut kv);
    // Back in: block 2 is a hit; block 3 ([6, 9]) was evicted when sequence 1 took it.
    assert_eq!(kv.pool().free_queue(), vec![2, 3, 1, 0]);
    let out = step(&mut s, &mut kv, 9);
    assert_eq!(shape(&out), vec![(2, 2, 3, true, vec![2, 3, 1])]);
    assert_eq!(out.seqs[0].cached_tokens, 2);
    assert_eq!(s.tokens(2).unwrap(), &[4, 5, 6, 9, 9, 9][..]);
}

#[test]
fn request_that_can_never_fit_is_refused() {
    let (mut s, kv) = (sched(64, 4), kv(4, 2));
    assert_eq!(s.add(req(1, vec![1; 6], 3), &kv), Err(ScheduleError::NeverFits { tokens: 9, capacity: 8 }));
    assert_eq!(s.add(req(1, vec![], 3), &kv), Err(ScheduleError::EmptyPrompt));
    s.add(req(1, vec![1; 6], 2), &kv).unwrap();
    assert_eq!(s.add(req(1, vec![1], 1), &kv), Err(ScheduleError::DuplicateId(1)));
}

#[test]
fn priority_then_fcfs_and_running_cap() {
    let (mut s, mut kv) = (sched(64, 2), kv(16, 4));
    s.add(req(1, vec![1], 4), &kv).unwrap();
    s.add(SeqRequest { priority: -1, ..req(2, vec![2], 4) }, &kv).unwrap();
    s.add(req(3, vec![3], 4), &kv).unwrap();
    let ids: Vec<SeqId> = step(&mut s, &mut kv, 0).seqs.iter().map(|q| q.seq).collect();
    assert_eq!(ids, vec![2, 1]);
    assert_eq!(s.num_waiting(), 1);
}

#[test]
fn forked_samples_share_blocks_until_they_write() {
    let (mut s, mut kv) = (sched(64, 4), kv(8, 4));
    s.add(req(1, (0..6).collect(), 4), &kv).unwrap();
    let out = s.schedule(&mut kv);
    s.finish_step(&out, &mut kv);
    // Two samples from the prompt's logits.
    s.fork(1, 2, &mut kv).unwrap();
    s.append_token(1, 40).unwrap();
    s.append_token(2, 41).unwrap();
    assert_eq!((kv.pool().ref_count(0), kv.pool().ref_count(1)), (2, 2));
    // Both write position 6, in shared block 1: the parent copies first, then the child owns block 1.
    let out = step(&mut s, &mut kv, 42);
    assert_eq!(out.copies, vec![(1, 2)]);
    assert_eq!(shape(&out), vec![(1, 6, 1, true, vec![0, 2]), (2, 6, 1, true, vec![0, 1])]);
    assert_eq!((kv.pool().ref_count(0), kv.pool().ref_count(1), kv.pool().ref_count(2)), (2, 1, 1));
    s.remove(1, &mut kv);
    s.remove(2, &mut kv);
    assert_eq!(kv.pool().num_free(), 8);
}

#[test]
fn preemption_takes_the_lowest_priority_even_if_older() {
    let (mut s, mut kv) = (sched(64, 4), kv(4, 2));
    s.add(SeqRequest { priority: 1, ..req(1, vec![1, 2, 3], 4) }, &kv).unwrap();
    step(&mut s, &mut kv, 9);
    s.add(req(2, vec![4, 5, 6], 4), &kv).unwrap();
    assert_eq!(shape(&step(&mut s, &mut kv, 9)), vec![(1, 3, 1, true, vec![0, 1]), (2, 0, 3, true, vec![2, 3])]);
    // Sequence 1 needs a third block: it is the victim (priority 1 > 0) and
    // sequence 2 still runs in the same step.
    let out = step(&mut s, &mut kv, 9);
    assert_eq!(out.preempted, vec![1]);
    assert_eq!(shape(&out), vec![(2, 3, 1, true, vec![2, 3])]);
}

#[test]
fn a_victim_scheduled_earlier_in_the_step_is_unscheduled() {
    let (mut s, mut kv) = (sched(64, 4), kv(4, 2));
    s.add(SeqRequest { priority: 1, ..req(1, vec![1], 6) }, &kv).unwrap();
    step(&mut s, &mut kv, 9);
    s.add(req(2, vec![4, 5, 6], 5), &kv).unwrap();
    assert_eq!(shape(&step(&mut s, &mut kv, 9)), vec![(1, 1, 1, true, vec![0]), (2, 0, 3, true, vec![1, 2])]);
    assert_eq!(shape(&step(&mut s, &mut kv, 9)), vec![(1, 2, 1, true, vec![0, 3]), (2, 3, 1, true, vec![1, 2])]);
    // Sequence 1 fits in its block and is scheduled first; sequence 2 then
    // needs a block, preempts 1 (lower priority), and 1's share is undone.
    let out = step(&mut s, &mut kv, 9);
    assert_eq!(out.preempted, vec![1]);
    assert_eq!(shape(&out), vec![(2, 4, 1, true, vec![1, 2, 3])]);
    assert_eq!(out.num_tokens, 1);
    assert_eq!(s.num_computed(1), Some(0));
    assert_eq!(kv.pool().free_queue(), vec![0]);
}
