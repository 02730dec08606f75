//! Row-wise work of a forward pass (norms, RoPE, activations, residual
//! adds) spread over the thread pool.
//!
//! Between two matmuls a prefill step normalises, rotates and activates
//! `[n_tokens, width]` tensors; done by one thread, the other threads wait
//! (at 2 threads that was about a tenth of a 512-token prefill). Each row is
//! computed by the same function whichever thread takes it, so the results
//! are bit-identical to one thread's. Small steps (decode) stay on the
//! calling thread: waking the pool would cost more than the work.

use memwall_kernels::pool::{split_range, SharedOut};
use memwall_kernels::ThreadPool;
use std::ops::Range;

/// Rows a step needs before its row-wise work is spread over the pool.
pub const MIN_ROWS: usize = 8;

/// Calls `f(rows, out_rows)` on disjoint ranges of the `out.len() / width`
/// rows of `out` (`out_rows` is `out[rows.start * width..rows.end * width]`),
/// spread over `pool` when there are at least [`MIN_ROWS`] rows.
pub fn for_rows(pool: &ThreadPool, out: &mut [f32], width: usize, f: impl Fn(Range<usize>, &mut [f32]) + Sync) {
    let rows = out.len() / width.max(1);
    if rows < MIN_ROWS || pool.n_threads() == 1 {
        f(0..rows, out);
        return;
    }
    let shared = SharedOut::new(out);
    pool.run(|i, n| {
        let r = split_range(rows, 1, i, n);
        if r.is_empty() {
            return;
        }
        // SAFETY: the threads' row ranges are disjoint and inside `out`,
        // which `run` holds borrowed until every thread is done.
        let part = unsafe { shared.slice(r.start * width, r.len() * width) };
        f(r, part);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_once_whatever_the_threads() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for rows in [0, 1, 7, 8, 9, 33] {
                let mut out = vec![0f32; rows * 3];
                for_rows(&pool, &mut out, 3, |r, part| {
                    assert_eq!(part.len(), r.len() * 3);
                    for (row, chunk) in r.zip(part.chunks_exact_mut(3)) {
                        chunk.iter_mut().for_each(|v| *v += row as f32 + 1.0);
                    }
                });
                let want: Vec<f32> = (0..rows).flat_map(|r| [r as f32 + 1.0; 3]).collect();
                assert_eq!(out, want, "{threads} threads, {rows} rows");
            }
        }
    }
}
