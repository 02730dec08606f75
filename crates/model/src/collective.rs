//! The communication a split model needs, behind one small trait.
//!
//! A model split over several processes ([`crate::shard`]) needs five
//! operations: an all-reduce (sum) after each row-parallel projection of
//! tensor parallelism (Megatron-LM), a send and a receive of activations
//! between pipeline stages, a broadcast of each step's plan from rank 0,
//! and, when both splits are combined, a split of the ranks into the
//! tensor-parallel group of each pipeline stage.
//! They sit behind [`Collective`] so that this crate never depends on MPI:
//! `memwall-dist` implements it over MPI, [`SingleProcess`] is the no-op of an
//! unsplit model (the forward pass then computes exactly what it computed
//! before splitting existed), and [`ThreadGroup`] runs several ranks as
//! threads of one process, which is how the sharding math is tested without
//! MPI.
//!
//! Every rank must call the operations in the same order with the same
//! lengths, as with MPI; all of them block until the peers take part.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};

/// Collective and point-to-point operations among the ranks of one model.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum of `x` over all ranks, left in `x` on every rank
    /// (every rank gets the same bits).
    fn all_reduce_sum(&self, x: &mut [f32]);
    /// Sends `x` to rank `to`; returns once `x` may be reused.
    fn send(&self, to: usize, x: &[f32]);
    /// Receives exactly `x.len()` values sent by rank `from`.
    fn recv(&self, from: usize, x: &mut [f32]);
    /// Replaces `buf` on every rank by rank `root`'s `buf` (any length).
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>);
    /// The ranks that pass the same `color` as a communicator of their own,
    /// ranked in their order here (`MPI_Comm_split`). Every rank calls it.
    fn split(&self, color: usize) -> Arc<dyn Collective>;
}

/// One process holding the whole model: every operation is a no-op.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _x: &mut [f32]) {}
    fn send(&self, to: usize, _x: &[f32]) {
        panic!("a single process has no rank {to} to send to");
    }
    fn recv(&self, from: usize, _x: &mut [f32]) {
        panic!("a single process has no rank {from} to receive from");
    }
    fn broadcast_bytes(&self, _root: usize, _buf: &mut Vec<u8>) {}
    fn split(&self, _color: usize) -> Arc<dyn Collective> {
        Arc::new(SingleProcess)
    }
}

/// `size` ranks as threads of one process (tests, and a reference for what
/// an implementation must do). The all-reduce adds the ranks' values in rank
/// order, so every rank gets the same bits.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
    /// Splits this rank has taken part in (each makes new groups).
    splits: AtomicUsize,
}

/// `(from, to)` → messages in order.
type Mailboxes = HashMap<(usize, usize), VecDeque<Vec<f32>>>;

struct Shared {
    size: usize,
    barrier: Barrier,
    sum: Mutex<Vec<f32>>,
    bytes: Mutex<Vec<u8>>,
    mail: Mutex<Mailboxes>,
    delivered: Condvar,
    /// Each rank's colour in the split under way.
    colors: Mutex<Vec<usize>>,
    /// `(split number, colour)` → that group's state.
    groups: Mutex<HashMap<(usize, usize), Arc<Shared>>>,
}

impl Shared {
    fn new(size: usize) -> Shared {
        Shared {
            size,
            barrier: Barrier::new(size),
            sum: Mutex::new(Vec::new()),
            bytes: Mutex::new(Vec::new()),
            mail: Mutex::new(HashMap::new()),
            delivered: Condvar::new(),
            colors: Mutex::new(vec![0; size]),
            groups: Mutex::new(HashMap::new()),
        }
    }
}

impl ThreadGroup {
    /// One handle per rank; give handle `r` to the thread playing rank `r`.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared::new(size));
        (0..size).map(|rank| ThreadGroup { rank, shared: shared.clone(), splits: AtomicUsize::new(0) }).collect()
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, x: &mut [f32]) {
        let s = &self.shared;
        for turn in 0..s.size {
            if turn == self.rank {
                let mut sum = s.sum.lock().expect("unpoisoned");
                if turn == 0 {
                    sum.clear();
                    sum.extend_from_slice(x);
                } else {
                    sum.iter_mut().zip(x.iter()).for_each(|(a, b)| *a += b);
                }
            }
            s.barrier.wait();
        }
        x.copy_from_slice(&s.sum.lock().expect("unpoisoned"));
        // Nobody starts the next reduction before everyone has read this one.
        s.barrier.wait();
    }

    fn send(&self, to: usize, x: &[f32]) {
        let mut mail = self.shared.mail.lock().expect("unpoisoned");
        mail.entry((self.rank, to)).or_default().push_back(x.to_vec());
        self.shared.delivered.notify_all();
    }

    fn recv(&self, from: usize, x: &mut [f32]) {
        let mut mail = self.shared.mail.lock().expect("unpoisoned");
        loop {
            if let Some(m) = mail.get_mut(&(from, self.rank)).and_then(VecDeque::pop_front) {
                assert_eq!(
                    m.len(),
                    x.len(),
                    "rank {} sent {} values, rank {} expected {}",
                    from,
                    m.len(),
                    self.rank,
                    x.len()
                );
                x.copy_from_slice(&m);
                return;
            }
            mail = self.shared.delivered.wait(mail).expect("unpoisoned");
        }
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        let s = &self.shared;
        if self.rank == root {
            *s.bytes.lock().expect("unpoisoned") = buf.clone();
        }
        s.barrier.wait();
        if self.rank != root {
            buf.clone_from(&s.bytes.lock().expect("unpoisoned"));
        }
        s.barrier.wait();
    }

    fn split(&self, color: usize) -> Arc<dyn Collective> {
        let s = &self.shared;
        s.colors.lock().expect("unpoisoned")[self.rank] = color;
        s.barrier.wait();
        let colors = s.colors.lock().expect("unpoisoned").clone();
        let members: Vec<usize> = (0..s.size).filter(|&r| colors[r] == color).collect();
        let rank = members.iter().position(|&r| r == self.rank).expect("a rank is in its own group");
        let key = (self.splits.fetch_add(1, Ordering::Relaxed), color);
        let shared = s
            .groups
            .lock()
            .expect("unpoisoned")
            .entry(key)
            .or_insert_with(|| Arc::new(Shared::new(members.len())))
            .clone();
        // Nobody writes the next split's colours before everyone has read these.
        s.barrier.wait();
        Arc::new(ThreadGroup { rank, shared, splits: AtomicUsize::new(0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_group_sums_sends_and_broadcasts() {
        let handles: Vec<_> = ThreadGroup::new(3)
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let r = g.rank() as f32;
                    let mut x = vec![r, 10.0 * r];
                    g.all_reduce_sum(&mut x);
                    let mut bytes = if g.rank() == 1 { vec![7, 8, 9] } else { vec![] };
                    g.broadcast_bytes(1, &mut bytes);
                    let next = (g.rank() + 1) % 3;
                    g.send(next, &[r; 4]);
                    let mut got = [0f32; 4];
                    g.recv((g.rank() + 2) % 3, &mut got);
                    (x, bytes, got[0])
                })
            })
            .collect();
        for (rank, h) in handles.into_iter().enumerate() {
            let (x, bytes, from_prev) = h.join().unwrap();
            assert_eq!(x, vec![3.0, 30.0]);
            assert_eq!(bytes, vec![7, 8, 9]);
            assert_eq!(from_prev, ((rank + 2) % 3) as f32);
        }
    }

    #[test]
    fn thread_group_splits_into_groups_that_reduce_apart() {
        let handles: Vec<_> = ThreadGroup::new(4)
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let group = g.split(g.rank() / 2);
                    let mut x = vec![g.rank() as f32];
                    group.all_reduce_sum(&mut x);
                    (group.rank(), group.size(), x[0])
                })
            })
            .collect();
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got, [(0, 2, 1.0), (1, 2, 1.0), (0, 2, 5.0), (1, 2, 5.0)]);
    }
}
