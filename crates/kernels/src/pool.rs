//! A persistent thread pool with low-latency dispatch.
//!
//! Decode runs hundreds of small operations per token, so a job must start in
//! a few microseconds: the workers are spawned once, and between jobs they
//! spin for a short while (`SPIN`, yielding the CPU after
//! the first microseconds) before parking on a condition variable —
//! the same spin-then-sleep scheme as ggml's threadpool and OpenMP's
//! `OMP_WAIT_POLICY`. The caller thread takes part as thread index 0 and
//! [`ThreadPool::run`] returns only when every thread has finished, which is
//! what makes it sound to hand the workers a borrowed closure.
//!
//! Wake-ups and completion use a "Dekker" handshake on `SeqCst` atomics: a
//! sleeper registers itself before re-checking the condition under the mutex,
//! and the waker only takes the mutex when someone is registered, so the fast
//! path (everybody still spinning) never touches a lock.
//!
//! A panic inside the job is caught on every thread and re-raised in the
//! caller once all threads have stopped. A `run` called from inside a job
//! (of any pool) runs its closure inline as `f(0, 1)` on the calling thread,
//! so nested parallel code is correct, just not parallel at the inner level.

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle thread spins before it parks.
const SPIN: Duration = Duration::from_micros(200);
/// `PAUSE` instructions before the spinning thread starts yielding its CPU
/// (about 2 µs; one `PAUSE` is ~80 cycles on recent Intel cores). Short,
/// because on an oversubscribed machine the thread we wait for may need
/// this very CPU.
const SPIN_PAUSES: u32 = 64;

type Job<'a> = dyn Fn(usize, usize) + Sync + 'a;

struct Shared {
    n_threads: usize,
    /// Bumped once per job; workers run the job when it changes.
    generation: AtomicUsize,
    /// The current job, valid while `pending > 0` (set before `generation`).
    job: Mutex<Option<&'static Job<'static>>>,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    /// Threads sleeping on `cv` (workers waiting for work, or the caller
    /// waiting for `pending == 0`).
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    shutdown: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// One per thread, for [`ThreadPool::run_chunks`].
    cursors: Box<[Cursor]>,
}

impl Shared {
    /// Spin on `done()` (yielding the CPU after the first few microseconds,
    /// so an oversubscribed machine can run the thread we wait for), then,
    /// after `SPIN`, sleep until it holds.
    fn wait_until(&self, done: impl Fn() -> bool) {
        let start = Instant::now();
        let mut i = 0u32;
        while !done() {
            i = i.wrapping_add(1);
            if i < SPIN_PAUSES {
                std::hint::spin_loop();
                continue;
            }
            thread::yield_now();
            if start.elapsed() > SPIN {
                let mut g = lock(&self.lock);
                self.sleepers.fetch_add(1, SeqCst);
                while !done() {
                    g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                self.sleepers.fetch_sub(1, SeqCst);
                return;
            }
        }
    }

    fn wake(&self) {
        if self.sleepers.load(SeqCst) > 0 {
            let _g = lock(&self.lock);
            self.cv.notify_all();
        }
    }
}

thread_local! {
    /// Whether this thread is executing a pool job (see the module docs).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as inside a job until dropped.
struct InJob(bool);

impl InJob {
    fn enter() -> Self {
        InJob(IN_JOB.replace(true))
    }
}

impl Drop for InJob {
    fn drop(&mut self) {
        IN_JOB.set(self.0);
    }
}

/// Lock, ignoring poisoning: no invariant of ours spans a panic.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Persistent worker threads; see the module docs.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes concurrent `run` calls from different threads.
    dispatch: Mutex<()>,
}

impl ThreadPool {
    /// A pool of `n_threads` threads in total, the caller included
    /// (`n_threads - 1` are spawned; 0 is treated as 1).
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            n_threads,
            generation: AtomicUsize::new(0),
            job: Mutex::new(None),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
            cursors: (0..n_threads).map(|_| Cursor(AtomicUsize::new(0))).collect(),
        });
        let workers = (1..n_threads)
            .map(|i| {
                let s = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("memwall-{i}"))
                    .spawn(move || worker(&s, i))
                    .expect("spawn thread-pool worker")
            })
            .collect();
        ThreadPool { shared, workers, dispatch: Mutex::new(()) }
    }

    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Run `f(i, n)` on every thread `i` in `0..n` (the caller is `i = 0`)
    /// and return when all have finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        if self.shared.n_threads == 1 || IN_JOB.get() {
            f(0, 1);
            return;
        }
        let _in_job = InJob::enter();
        let _d = lock(&self.dispatch);
        self.dispatch(f);
    }

    /// [`ThreadPool::run`]'s job on every thread; the caller holds
    /// `self.dispatch` and is marked as inside a job.
    fn dispatch<F: Fn(usize, usize) + Sync>(&self, f: F) {
        let s = &*self.shared;
        let n = s.n_threads;
        let job: &Job<'_> = &f;
        // SAFETY: the reference is cleared and every worker is done with it
        // (pending == 0) before this function returns or unwinds.
        let job: &'static Job<'static> = unsafe { std::mem::transmute::<&Job<'_>, &'static Job<'static>>(job) };
        *lock(&s.job) = Some(job);
        s.pending.store(n - 1, SeqCst);
        s.generation.fetch_add(1, SeqCst);
        s.wake();
        let mine = panic::catch_unwind(AssertUnwindSafe(|| f(0, n)));
        s.wait_until(|| s.pending.load(SeqCst) == 0);
        *lock(&s.job) = None;
        if let Err(p) = mine {
            panic::resume_unwind(p);
        }
        let worker_panic = lock(&s.panic).take();
        if let Some(p) = worker_panic {
            panic::resume_unwind(p);
        }
    }
}

/// A share's next unit in a [`ThreadPool::run_chunks`] job, alone on its
/// cache lines (a thread bumps its own cursor for every chunk; a
/// neighbour's cursor must not share the line).
#[repr(align(128))]
struct Cursor(AtomicUsize);

impl ThreadPool {
    /// Calls `f(range)` on disjoint, non-empty ranges that cover `0..len`
    /// exactly once, spread over the pool. The units are cut into one contiguous
    /// share per thread ([`split_range`] with `align`); each thread walks
    /// its own share front to back in chunks of `chunk` units (rounded up
    /// to a multiple of `align`), then takes the chunks still left in the
    /// other shares. So a thread streams its own weight rows as with a
    /// static split, and one that finishes early (it started later, or
    /// its memory was slower) takes over the tail of a slower one's share
    /// instead of waiting for it: the end of a decode matmul was about 4%
    /// of a TinyLlama token at 2 threads, one thread idle.
    pub fn run_chunks(&self, len: usize, align: usize, chunk: usize, f: impl Fn(Range<usize>) + Sync) {
        let align = align.max(1);
        let chunk = chunk.max(1).next_multiple_of(align);
        let shares = self.n_threads();
        if len == 0 {
            return;
        }
        if shares == 1 || IN_JOB.get() {
            return f(0..len);
        }
        let _in_job = InJob::enter();
        let _d = lock(&self.dispatch);
        // The pool's cursors are this job's while `dispatch` is held.
        let cursors = &self.shared.cursors;
        cursors.iter().for_each(|c| c.0.store(0, Relaxed));
        self.dispatch(|i, _| {
            for k in 0..shares {
                let s = (i + k) % shares;
                let share = split_range(len, align, s, shares);
                loop {
                    let at = cursors[s].0.fetch_add(chunk, Relaxed);
                    if at >= share.len() {
                        break;
                    }
                    let start = share.start + at;
                    f(start..(start + chunk).min(share.end));
                }
            }
        });
    }
}

fn worker(s: &Shared, i: usize) {
    let mut seen = 0usize;
    loop {
        s.wait_until(|| s.generation.load(SeqCst) != seen || s.shutdown.load(SeqCst));
        if s.shutdown.load(SeqCst) {
            return;
        }
        seen = s.generation.load(SeqCst);
        let _in_job = InJob::enter();
        let job = lock(&s.job).expect("job set before generation");
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| job(i, s.n_threads))) {
            lock(&s.panic).get_or_insert(p);
        }
        if s.pending.fetch_sub(1, SeqCst) == 1 {
            s.wake();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        {
            let _g = lock(&self.shared.lock);
            self.shared.cv.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Chunk `i` of `n` contiguous chunks of `0..len`, as even as possible, with
/// every boundary except `len` itself a multiple of `align` (`align >= 1`).
/// The chunks cover `0..len` exactly; some may be empty.
pub fn split_range(len: usize, align: usize, i: usize, n: usize) -> Range<usize> {
    let align = align.max(1);
    let units = len.div_ceil(align);
    let per = units / n;
    let extra = units % n;
    let start = i * per + i.min(extra);
    let end = start + per + usize::from(i < extra);
    (start * align).min(len)..(end * align).min(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_once_per_job() {
        for n in [1, 2, 3, 5] {
            let pool = ThreadPool::new(n);
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(|i, nt| {
                    assert_eq!(nt, n);
                    hits[i].fetch_add(1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1));
            }
        }
    }

    #[test]
    fn wakes_after_parking() {
        let pool = ThreadPool::new(3);
        let sum = AtomicUsize::new(0);
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(5));
            pool.run(|i, _| {
                sum.fetch_add(i + 1, SeqCst);
            });
        }
        assert_eq!(sum.load(SeqCst), 18);
    }

    #[test]
    fn worker_panic_reaches_caller_and_pool_survives() {
        let pool = ThreadPool::new(3);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(|i, _| assert!(i != 2, "boom"));
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(|_, _| {
            count.fetch_add(1, SeqCst);
        });
        assert_eq!(count.load(SeqCst), 3);
    }

    #[test]
    fn concurrent_callers_are_serialized() {
        let pool = ThreadPool::new(3);
        let count = AtomicUsize::new(0);
        thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| {
                    for _ in 0..300 {
                        pool.run(|_, _| {
                            count.fetch_add(1, SeqCst);
                        });
                    }
                });
            }
        });
        assert_eq!(count.load(SeqCst), 2 * 300 * 3);
    }

    #[test]
    fn pool_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ThreadPool>();
    }

    #[test]
    fn nested_run_executes_inline() {
        let pool = ThreadPool::new(2);
        let inner = ThreadPool::new(3);
        let count = AtomicUsize::new(0);
        pool.run(|_, _| {
            pool.run(|i, n| {
                assert_eq!((i, n), (0, 1));
                count.fetch_add(1, SeqCst);
            });
            inner.run(|_, n| {
                assert_eq!(n, 1);
                count.fetch_add(1, SeqCst);
            });
        });
        assert_eq!(count.load(SeqCst), 4);
    }

    #[test]
    fn run_chunks_covers_every_unit_once_in_aligned_chunks() {
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool::new(threads);
            for (len, align, chunk) in [(0, 1, 1), (1, 1, 4), (37, 1, 3), (64, 4, 8), (50, 4, 5), (1000, 16, 1)] {
                let hits: Vec<AtomicUsize> = (0..len).map(|_| AtomicUsize::new(0)).collect();
                pool.run_chunks(len, align, chunk, |r| {
                    assert!(r.start.is_multiple_of(align) && r.start < r.end, "{r:?}");
                    for u in r {
                        hits[u].fetch_add(1, SeqCst);
                    }
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{threads} threads, len {len}");
            }
        }
        // A stuck thread's share is finished by the other: the caller's
        // first chunk waits until the worker has done more than its own 32
        // units (without stealing it would give up after 30 s).
        let pool = ThreadPool::new(2);
        let by_worker = AtomicUsize::new(0);
        let main = thread::current().id();
        pool.run_chunks(64, 1, 1, |r| {
            if thread::current().id() != main {
                by_worker.fetch_add(r.len(), SeqCst);
                return;
            }
            let start = Instant::now();
            while by_worker.load(SeqCst) <= 32 && start.elapsed() < Duration::from_secs(30) {
                thread::sleep(Duration::from_millis(1));
            }
        });
        assert!(by_worker.load(SeqCst) > 32, "the worker took {} units", by_worker.load(SeqCst));
    }

    #[test]
    fn split_range_covers_and_aligns() {
        for len in 0..50 {
            for align in [1, 4, 7] {
                for n in 1..6 {
                    let mut next = 0;
                    for i in 0..n {
                        let r = split_range(len, align, i, n);
                        assert_eq!(r.start, next);
                        assert!(r.start.is_multiple_of(align) || r.start == len);
                        next = r.end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }
}

/// An output buffer whose disjoint parts are written by the threads of one
/// [`ThreadPool::run`] (a matmul's row ranges, attention's per-head rows).
/// It only carries the pointer; callers promise the disjointness.
#[derive(Clone, Copy)]
pub struct SharedOut<'a> {
    ptr: *mut f32,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: threads write disjoint elements, and `run` joins them before the
// borrow `'a` of the buffer ends.
unsafe impl Sync for SharedOut<'_> {}
unsafe impl Send for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    pub fn new(out: &'a mut [f32]) -> Self {
        SharedOut { ptr: out.as_mut_ptr(), len: out.len(), _borrow: std::marker::PhantomData }
    }

    /// A pointer to element `i`.
    ///
    /// # Safety
    /// `i < len`, and no other thread touches element `i` meanwhile.
    pub unsafe fn at(self, i: usize) -> *mut f32 {
        debug_assert!(i < self.len);
        unsafe { self.ptr.add(i) }
    }

    /// Elements `[start, start + n)`.
    ///
    /// # Safety
    /// The range lies inside the buffer and no other thread touches it
    /// while the returned slice lives.
    pub unsafe fn slice(self, start: usize, n: usize) -> &'a mut [f32] {
        assert!(start + n <= self.len, "SharedOut: {start}+{n} outside {}", self.len);
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), n) }
    }
}
