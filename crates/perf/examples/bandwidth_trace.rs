//! The memory bandwidth this machine gives over time: every `interval` ms,
//! every thread of a pool reads its share of a 512 MiB buffer on 2 MiB
//! pages once (the probe's read, [`StreamRead`]); prints one GB/s figure
//! per sample (not a test: it asserts nothing).
//!
//! `cargo run --release -p memwall-perf --example bandwidth_trace [threads] [seconds] [interval_ms]`
//!
//! On a shared host the figure moves with the neighbours' load: on this
//! project's Zen 5 VM, 2 threads read ~32-48 GB/s most of the time and
//! ~60-75 GB/s for seconds at a time. This is why `memwall bench` samples
//! the bandwidth while its tests run (live MBU). `tools/plot_bandwidth_trace.py`
//! draws the output.
use memwall_kernels::ThreadPool;
use memwall_perf::probe::StreamRead;
use std::time::{Duration, Instant};

fn main() {
    let arg = |i: usize, default: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (threads, seconds, interval) = (arg(1, 2) as usize, arg(2, 60), arg(3, 200));
    let pool = ThreadPool::new(threads);
    let reader = StreamRead::new(512 << 20);
    let begin = Instant::now();
    while begin.elapsed().as_secs() < seconds {
        let gbs = reader.pass(&pool) / 1e9;
        println!("{:7.2} s {gbs:6.1} GB/s", begin.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(interval));
    }
}
