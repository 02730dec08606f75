//! Random workloads through the scheduler and a small paged pool, with a
//! shadow of what each block slot holds: every request finishes or is
//! cancelled, no block leaks, reference counts always equal the number of
//! tables holding a block and return to zero, and every cached position a
//! step relies on (prefix hits, forks, copies on write) holds the
//! sequence's own token.

use memwall_engine::block_pool::BlockId;
use memwall_engine::scheduler::{ScheduleError, Scheduler, SchedulerConfig, SeqRequest};
use memwall_engine::PagedKvCache;
use memwall_model::SeqId;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Debug)]
enum Action {
    /// A request: which shared prefix, suffix tokens, max new tokens, priority.
    Submit {
        prefix: usize,
        suffix: Vec<u32>,
        max_new: usize,
        priority: i32,
    },
    /// Cancel the `k`-th live sequence (modulo their number).
    Cancel(usize),
    /// Fork the next sequence that samples into `n` more.
    Fork,
    Step,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..3usize, prop::collection::vec(0..4u32, 0..20), 1..12usize, -1..2i32)
            .prop_map(|(prefix, suffix, max_new, priority)| Action::Submit { prefix, suffix, max_new, priority }),
        1 => any::<usize>().prop_map(Action::Cancel),
        1 => Just(Action::Fork),
        6 => Just(Action::Step),
    ]
}

struct World {
    sched: Scheduler,
    kv: PagedKvCache,
    /// `(block, slot) → token` as the model would have written it.
    shadow: HashMap<(BlockId, usize), u32>,
    live: BTreeSet<SeqId>,
    generated: HashMap<SeqId, (usize, usize)>,
    next: SeqId,
    fork_next: bool,
    finished: usize,
    cancelled: usize,
}

impl World {
    fn step(&mut self) {
        let bs = self.kv.block_size();
        let out = self.sched.schedule(&mut self.kv);
        for &(from, to) in &out.copies {
            for slot in 0..bs {
                match self.shadow.get(&(from, slot)).copied() {
                    Some(t) => self.shadow.insert((to, slot), t),
                    None => self.shadow.remove(&(to, slot)),
                };
            }
        }
        for s in &out.seqs {
            let tokens = self.sched.tokens(s.seq).unwrap().to_vec();
            assert_eq!(s.blocks, self.kv.table(s.seq), "output carries the block table");
            assert!(s.blocks.len() * bs >= s.start + s.tokens.len(), "blocks cover the step");
            for (p, token) in tokens.iter().enumerate().take(s.start) {
                let at = (s.blocks[p / bs], p % bs);
                assert_eq!(self.shadow.get(&at), Some(token), "seq {} position {p}: cached slot is wrong", s.seq);
            }
            for p in s.start..s.start + s.tokens.len() {
                let b = s.blocks[p / bs];
                assert_eq!(self.kv.pool().ref_count(b), 1, "seq {} writes shared block {b}", s.seq);
                self.shadow.insert((b, p % bs), s.tokens[p - s.start]);
            }
        }
        self.sched.finish_step(&out, &mut self.kv);
        for s in out.seqs.iter().filter(|s| s.wants_logits) {
            if std::mem::take(&mut self.fork_next) {
                let child = self.next;
                self.next += 1;
                self.sched.fork(s.seq, child, &mut self.kv).unwrap();
                self.live.insert(child);
                self.generated.insert(child, self.generated[&s.seq]);
                self.advance(child);
            }
            self.advance(s.seq);
        }
        self.check_refcounts();
    }

    fn advance(&mut self, seq: SeqId) {
        let (done, max) = self.generated[&seq];
        let token = (seq as u32 * 7 + done as u32) % 5;
        if done + 1 >= max {
            assert!(self.sched.remove(seq, &mut self.kv));
            self.live.remove(&seq);
            self.finished += 1;
        } else {
            self.sched.append_token(seq, token).unwrap();
            self.generated.insert(seq, (done + 1, max));
        }
    }

    fn check_refcounts(&self) {
        let mut holders: HashMap<BlockId, u32> = HashMap::new();
        for seq in self.kv.sequences() {
            for &b in self.kv.table(seq) {
                *holders.entry(b).or_default() += 1;
            }
        }
        let pool = self.kv.pool();
        for b in 0..pool.num_blocks() as BlockId {
            assert_eq!(pool.ref_count(b), holders.get(&b).copied().unwrap_or(0), "block {b}");
        }
        assert_eq!(pool.num_free() + holders.len(), pool.num_blocks());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_workloads_finish_without_leaks(
        blocks in 6..20usize,
        budget in 1..40usize,
        max_running in 1..6usize,
        actions in prop::collection::vec(action(), 1..120),
    ) {
        let prefixes: Vec<Vec<u32>> = (0..3).map(|i| (0..(9 + 4 * i)).map(|j| ((i + j) % 3) as u32).collect()).collect();
        let mut w = World {
            sched: Scheduler::new(SchedulerConfig { max_batch_tokens: budget, max_running, prefix_caching: true }),
            kv: PagedKvCache::with_blocks(1, 1, 4, blocks),
            shadow: HashMap::new(),
            live: BTreeSet::new(),
            generated: HashMap::new(),
            next: 0,
            fork_next: false,
            finished: 0,
            cancelled: 0,
        };
        let mut accepted = 0;
        for a in actions {
            match a {
                Action::Submit { prefix, suffix, max_new, priority } => {
                    let mut prompt = prefixes[prefix].clone();
                    prompt.extend(suffix);
                    let id = w.next;
                    w.next += 1;
                    let req = SeqRequest { id, prompt, max_new_tokens: max_new, priority };
                    match w.sched.add(req, &w.kv) {
                        Ok(()) => {
                            accepted += 1;
                            w.live.insert(id);
                            w.generated.insert(id, (0, max_new));
                        }
                        Err(ScheduleError::NeverFits { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                Action::Cancel(k) => {
                    if let Some(&seq) = w.live.iter().nth(k % w.live.len().max(1)) {
                        assert!(w.sched.remove(seq, &mut w.kv));
                        w.live.remove(&seq);
                        w.cancelled += 1;
                        w.check_refcounts();
                    }
                }
                Action::Fork => w.fork_next = true,
                Action::Step => w.step(),
            }
        }
        // Drain: everything accepted must finish.
        let mut steps = 0;
        while !w.sched.is_idle() {
            w.step();
            steps += 1;
            prop_assert!(steps < 10_000, "no progress: {} live", w.live.len());
        }
        prop_assert!(w.live.is_empty());
        // Every accepted request and every fork ended exactly once.
        prop_assert_eq!(w.finished + w.cancelled, w.generated.len());
        prop_assert!(w.generated.len() >= accepted);
        let pool = w.kv.pool();
        prop_assert_eq!(pool.num_free(), pool.num_blocks(), "blocks leaked");
        prop_assert!((0..pool.num_blocks() as BlockId).all(|b| pool.ref_count(b) == 0));
        prop_assert_eq!(w.kv.sequences().count(), 0);
    }
}
