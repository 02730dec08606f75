//! The two load shapes, as in vLLM's `bench serve`:
//!
//! - **closed loop** at fixed concurrency `C`: `C` workers, each sending its
//!   next request as soon as its previous one ends, so exactly `C` requests
//!   are in flight until the work runs out. Measures a server at a given
//!   batch size.
//! - **open loop** at a request rate `R`: requests arrive as a Poisson
//!   process (exponential gaps, mean `1/R`, from the seeded generator),
//!   whether or not earlier ones finished. Measures how latency grows with
//!   offered load, queueing included.
//!
//! A level stops issuing after a number of requests or after a duration;
//! requests already sent are always waited for and counted.

use crate::client::{Client, Endpoint, RequestRecord, WorkItem};
use crate::workload::poisson_gap;
use rand::rngs::StdRng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One level of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Level {
    /// Closed loop with this many requests in flight.
    Concurrency(usize),
    /// Open loop with Poisson arrivals at this many requests per second.
    Rate(f64),
}

/// When a level stops sending.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// After this many requests.
    Requests(usize),
    /// After this much time (requests in flight still finish).
    Duration(Duration),
}

/// Told about progress while a level runs (a progress bar, a log).
pub trait Observer: Send + Sync {
    /// A level starts; `expected` is its request count when known.
    fn level_started(&self, level: Level, expected: Option<usize>) {
        let _ = (level, expected);
    }
    /// A request of the current level finished (completed or failed).
    fn request_done(&self, record: &RequestRecord) {
        let _ = record;
    }
}

/// Does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// What every request of a level shares.
pub struct Shared {
    pub client: Client,
    pub endpoint: Endpoint,
    pub model: String,
    pub ignore_eos: bool,
    /// The requests, used in order and cycled when a duration needs more.
    pub items: Vec<WorkItem>,
}

/// Runs one level and returns its records and wall time (first send to last completion).
pub async fn run_level(
    shared: Arc<Shared>,
    level: Level,
    stop: Stop,
    rng: &mut StdRng,
    observer: Arc<dyn Observer>,
) -> (Vec<RequestRecord>, Duration) {
    let expected = match stop {
        Stop::Requests(n) => Some(n),
        Stop::Duration(_) => None,
    };
    observer.level_started(level, expected);
    let start = Instant::now();
    let records = match level {
        Level::Concurrency(c) => closed_loop(shared, c.max(1), stop, start, observer).await,
        Level::Rate(r) => open_loop(shared, r, stop, start, rng, observer).await,
    };
    (records, start.elapsed())
}

/// Sends request `i` and records it.
async fn one(shared: &Shared, i: usize, start: Instant, observer: &dyn Observer) -> RequestRecord {
    let item = &shared.items[i % shared.items.len()];
    let body = Client::request_body(&shared.model, shared.endpoint, item, shared.ignore_eos);
    let sent_at = start.elapsed();
    let outcome = shared.client.stream(shared.endpoint, &body).await;
    let record = RequestRecord { sent_at, outcome };
    observer.request_done(&record);
    record
}

/// Whether request number `i` may still be sent.
fn may_send(stop: Stop, i: usize, start: Instant) -> bool {
    match stop {
        Stop::Requests(n) => i < n,
        Stop::Duration(d) => start.elapsed() < d,
    }
}

async fn closed_loop(
    shared: Arc<Shared>,
    concurrency: usize,
    stop: Stop,
    start: Instant,
    observer: Arc<dyn Observer>,
) -> Vec<RequestRecord> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (shared, next, observer) = (Arc::clone(&shared), Arc::clone(&next), Arc::clone(&observer));
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if !may_send(stop, i, start) {
                        return mine;
                    }
                    mine.push((i, one(&shared, i, start, observer.as_ref()).await));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("a load worker panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

async fn open_loop(
    shared: Arc<Shared>,
    rate: f64,
    stop: Stop,
    start: Instant,
    rng: &mut StdRng,
    observer: Arc<dyn Observer>,
) -> Vec<RequestRecord> {
    let mut tasks = Vec::new();
    let mut arrival = Duration::ZERO;
    for i in 0.. {
        if i > 0 {
            arrival += poisson_gap(rate, rng);
        }
        if let Stop::Duration(d) = stop {
            if arrival >= d {
                break;
            }
        }
        if !may_send(stop, i, start) {
            break;
        }
        tokio::time::sleep_until((start + arrival).into()).await;
        let (shared, observer) = (Arc::clone(&shared), Arc::clone(&observer));
        tasks.push(tokio::spawn(async move { one(&shared, i, start, observer.as_ref()).await }));
    }
    let mut records = Vec::with_capacity(tasks.len());
    for t in tasks {
        records.push(t.await.expect("a load request panicked"));
    }
    records
}
