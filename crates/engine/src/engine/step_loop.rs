//! The engine thread: commands in, one batched step at a time, events out.
//!
//! ```text
//! loop:
//!     take submits / cancels (block while idle)
//!     out = scheduler.schedule(kv)               plain data: seqs, tokens, blocks
//!     logits = model.forward(out as SeqInputs)   [n_sampled, vocab]
//!     scheduler.finish_step(out)                 computed += n; cache full blocks
//!     per sampled sequence: fork samples (n > 1), sample, stream, finish or append
//! ```
//!
//! A step runs under `catch_unwind`: a panic anywhere in it (a kernel's
//! assert on a compute-pool thread, re-raised here by the pool; an
//! unexpected shape from a model file) fails the requests of that step with
//! an [`Event::Error`], frees their KV blocks and is counted in
//! [`EngineMetrics::step_panics`]; the loop then serves the next requests.
//! A split model is the exception: its other ranks may be stuck inside the
//! interrupted step's collectives, so after a panic the engine refuses
//! every request until restarted rather than hang on them.

use super::plan::{self, Plan};
use super::{max_new_tokens, Command, EngineConfig, Event, Request, RequestId};
use crate::metrics::{EngineMetrics, RequestMetrics, StepMetrics};
use crate::paged_kv::PagedKvCache;
use crate::sampler::Sampler;
use crate::scheduler::{Scheduler, SchedulerOutput, SeqRequest};
use crate::stop::{FinishReason, StopMatcher};
use memwall_formats::tokenizer::{StreamDecoder, Tokenizer};
use memwall_kernels::ThreadPool;
use memwall_model::cost::{CostModel, SeqStep, WeightBytes};
use memwall_model::{KvCache, LogitsWanted, Model, Scratch, SeqId, SeqInput};
use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One sample of a request, as the step loop tracks it.
struct Active<'t> {
    request: RequestId,
    index: usize,
    events: Sender<Event>,
    sampler: Sampler,
    decoder: StreamDecoder<'t>,
    stops: StopMatcher,
    max_new: usize,
    ignore_eos: bool,
    /// Alternatives to report per token; `None`: no logprobs.
    logprobs: Option<usize>,
    /// Samples still to fork from this one's first logits (`n - 1`).
    forks_pending: usize,
    prompt_len: usize,
    generated: usize,
    submitted: Instant,
    scheduled: Option<Instant>,
    first_token: Option<Instant>,
    cached_tokens: usize,
    request_template: Option<Request>,
}

struct StepLoop<'t> {
    model: Arc<Model>,
    tokenizer: &'t Tokenizer,
    pool: ThreadPool,
    kv: PagedKvCache,
    sched: Scheduler,
    scratch: Scratch,
    active: HashMap<SeqId, Active<'t>>,
    by_request: HashMap<RequestId, Vec<SeqId>>,
    next_seq: SeqId,
    /// Finish events held until the step's metrics are published, so that a
    /// caller who saw its request end reads metrics that include it.
    finished: Vec<(Sender<Event>, Event)>,
    metrics: Arc<Mutex<EngineMetrics>>,
    cost: CostModel,
    peak_bandwidth: Option<f64>,
    peak_flops: Option<f64>,
    /// Sequences of the step under way (set once it is scheduled), for
    /// failing them if the step panics.
    in_step: Vec<SeqId>,
    /// Why this engine refuses every request: a step of a split model
    /// panicked and its ranks may be out of step (see the module docs).
    poisoned: Option<String>,
    /// Debug builds only: make the next step panic with this message
    /// ([`super::Engine::inject_step_panic`]).
    #[cfg(debug_assertions)]
    panic_next_step: Option<String>,
}

pub(super) fn run(
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    kv: PagedKvCache,
    sched: Scheduler,
    config: EngineConfig,
    metrics: Arc<Mutex<EngineMetrics>>,
    commands: Receiver<Command>,
) {
    let kv_elem_bytes =
        kv.block_bytes() as f64 / (2 * kv.block_size() * model.config.n_layers * model.config.kv_dim()).max(1) as f64;
    let cost = cost_model(&model, config.weights, kv_elem_bytes);
    let (num_blocks, block_size, dtype) = (kv.pool().num_blocks(), kv.block_size(), kv.dtype());
    plan::broadcast(&model, &Plan::Setup { num_blocks, block_size, dtype });
    let mut l = StepLoop {
        model,
        tokenizer: &tokenizer,
        pool: ThreadPool::new(config.threads.max(1)),
        kv,
        sched,
        scratch: Scratch::default(),
        active: HashMap::new(),
        by_request: HashMap::new(),
        next_seq: 0,
        finished: Vec::new(),
        metrics,
        peak_bandwidth: config.peak_bandwidth,
        peak_flops: config.peak_flops,
        cost,
        in_step: Vec::new(),
        poisoned: None,
        #[cfg(debug_assertions)]
        panic_next_step: None,
    };
    loop {
        if l.sched.is_idle() {
            let open = commands.recv().is_ok_and(|c| l.handle(c));
            if !open {
                break;
            }
        }
        let mut open = true;
        while let Ok(c) = commands.try_recv() {
            open &= l.handle(c);
        }
        if !open {
            break;
        }
        if !l.sched.is_idle() {
            l.step();
        }
        l.publish_occupancy();
        l.flush_finished();
    }
    let all: Vec<RequestId> = l.by_request.keys().copied().collect();
    for id in all {
        l.cancel(id);
    }
    l.publish_occupancy();
    l.flush_finished();
    // The other ranks of a poisoned split model may never take this plan:
    // waiting for them would hang the engine's shutdown.
    if l.poisoned.is_none() {
        plan::broadcast(&l.model, &Plan::Shutdown);
    }
}

impl<'t> StepLoop<'t> {
    /// Applies a command; `false` on shutdown.
    fn handle(&mut self, c: Command) -> bool {
        match c {
            Command::Submit { id, request, events } => self.submit(id, request, events),
            Command::Cancel(id) => self.cancel(id),
            #[cfg(debug_assertions)]
            Command::PanicNextStep(message) => self.panic_next_step = Some(message),
            Command::Shutdown => return false,
        }
        true
    }

    fn submit(&mut self, id: RequestId, r: Request, events: Sender<Event>) {
        if let Some(why) = &self.poisoned {
            let _ = events.send(Event::Error(why.clone()));
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let max_new = max_new_tokens(&r, self.model.config.context_len);
        let req = SeqRequest { id: seq, prompt: r.prompt.clone(), max_new_tokens: max_new, priority: r.priority };
        if let Err(e) = self.sched.add(req, &self.kv) {
            let _ = events.send(Event::Error(e.to_string()));
            return;
        }
        let a = self.new_active(id, 0, &r, events, Instant::now());
        self.active.insert(seq, Active { forks_pending: r.n - 1, request_template: Some(r), ..a });
        self.by_request.entry(id).or_default().push(seq);
    }

    fn new_active(
        &self,
        request: RequestId,
        index: usize,
        r: &Request,
        events: Sender<Event>,
        at: Instant,
    ) -> Active<'t> {
        let mut sampling = r.params.sampling.clone();
        sampling.seed = sampling.seed.map(|s| s.wrapping_add(index as u64));
        Active {
            request,
            index,
            events,
            sampler: Sampler::new(sampling),
            decoder: StreamDecoder::new(self.tokenizer),
            stops: StopMatcher::new(r.params.stop.clone()),
            max_new: max_new_tokens(r, self.model.config.context_len),
            ignore_eos: r.params.ignore_eos,
            logprobs: r.params.logprobs,
            forks_pending: 0,
            prompt_len: r.prompt.len(),
            generated: 0,
            submitted: at,
            scheduled: None,
            first_token: None,
            cached_tokens: 0,
            request_template: None,
        }
    }

    fn cancel(&mut self, id: RequestId) {
        for seq in self.by_request.get(&id).cloned().unwrap_or_default() {
            self.finish(seq, FinishReason::Cancelled, false);
        }
    }

    /// Runs one step; a panic in it fails the step's requests (see the
    /// module docs) instead of ending the engine thread.
    fn step(&mut self) {
        self.in_step.clear();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.run_step())) {
            self.recover(panic_message(payload.as_ref()));
        }
        self.in_step.clear();
    }

    fn run_step(&mut self) {
        let t0 = Instant::now();
        let out = self.sched.schedule(&mut self.kv);
        self.in_step.extend(out.seqs.iter().map(|s| s.seq));
        let _span = tracing::debug_span!("step", seqs = out.seqs.len(), tokens = out.num_tokens).entered();
        if out.seqs.is_empty() {
            if out.preempted.is_empty() {
                // Cannot happen while admitted requests fit the cache; never spin.
                self.fail_all("the scheduler could not place any sequence in the KV cache".into());
            }
            return;
        }
        plan::broadcast(&self.model, &Plan::step(&out));
        for s in &out.seqs {
            if let Some(a) = self.active.get_mut(&s.seq) {
                if a.scheduled.is_none() {
                    a.scheduled = Some(t0);
                    a.cached_tokens = s.cached_tokens;
                }
            }
        }
        let inputs: Vec<SeqInput> = out
            .seqs
            .iter()
            .map(|s| SeqInput {
                seq: s.seq,
                tokens: &s.tokens,
                start: s.start,
                logits: if s.wants_logits { LogitsWanted::Last } else { LogitsWanted::None },
            })
            .collect();
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.model.forward(&inputs, &mut self.kv, &self.pool, &mut scratch);
        #[cfg(debug_assertions)]
        if let Some(message) = self.panic_next_step.take() {
            // On a pool thread, as a kernel's assert would: the pool re-raises it here.
            self.pool.run(|i, n| {
                if i + 1 == n {
                    panic!("{message}");
                }
            });
        }
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                self.scratch = scratch;
                let seqs: Vec<SeqId> = out.seqs.iter().map(|s| s.seq).collect();
                for seq in seqs {
                    self.fail(seq, e.to_string());
                }
                return;
            }
        };
        self.sched.finish_step(&out, &mut self.kv);
        let vocab = self.model.config.vocab;
        let sampled: Vec<SeqId> = out.seqs.iter().filter(|s| s.wants_logits).map(|s| s.seq).collect();
        for (row, &seq) in logits.chunks_exact(vocab).zip(&sampled) {
            for s in self.fork(seq) {
                self.sample(s, row);
            }
        }
        self.scratch = scratch;
        self.record(&out, sampled.len(), t0);
    }

    /// `seq` and, on its first logits, the samples forked from it.
    fn fork(&mut self, seq: SeqId) -> Vec<SeqId> {
        let Some(a) = self.active.get_mut(&seq) else { return vec![] };
        let (n, template) = (std::mem::take(&mut a.forks_pending), a.request_template.take());
        let (request, events, submitted, scheduled, cached) =
            (a.request, a.events.clone(), a.submitted, a.scheduled, a.cached_tokens);
        let mut seqs = vec![seq];
        let Some(r) = template else { return seqs };
        for index in 1..=n {
            let child = self.next_seq;
            self.next_seq += 1;
            if self.sched.fork(seq, child, &mut self.kv).is_err() {
                continue;
            }
            let a = self.new_active(request, index, &r, events.clone(), submitted);
            self.active.insert(child, Active { scheduled, cached_tokens: cached, ..a });
            self.by_request.entry(request).or_default().push(child);
            seqs.push(child);
        }
        seqs
    }

    /// Samples `seq`'s next token from `logits` (`[vocab]`), streams it and
    /// either finishes the sequence or appends the token.
    fn sample(&mut self, seq: SeqId, logits: &[f32]) {
        let (Some(a), Some(history)) = (self.active.get_mut(&seq), self.sched.tokens(seq)) else { return };
        let sampled = a.sampler.sample(logits, history, a.logprobs);
        let (token, logprobs) = (sampled.token, sampled.logprobs);
        a.generated += 1;
        a.first_token.get_or_insert_with(Instant::now);
        let eog = !a.ignore_eos && self.tokenizer.is_eog(token);
        let (text, stopped) = if eog {
            (String::new(), true)
        } else {
            let step = a.stops.push(&a.decoder.push(token));
            (step.emit, step.stopped)
        };
        let listening = a.events.send(Event::Token { index: a.index, id: token, text, logprobs }).is_ok();
        let full = a.prompt_len + a.generated >= self.model.config.context_len;
        if !listening {
            self.finish(seq, FinishReason::Cancelled, false);
        } else if stopped {
            // An end-of-generation token flushes held text; a stop string does not.
            self.finish(seq, FinishReason::Stop, eog);
        } else if a.generated >= a.max_new || full {
            self.finish(seq, FinishReason::Length, true);
        } else {
            let _ = self.sched.append_token(seq, token);
        }
    }

    /// Ends one sample: flushes text if asked, reports, frees its blocks.
    fn finish(&mut self, seq: SeqId, reason: FinishReason, flush: bool) {
        let Some(mut a) = self.active.remove(&seq) else { return };
        let preemptions = self.sched.preemptions_of(seq).unwrap_or(0);
        self.sched.remove(seq, &mut self.kv);
        if let Some(seqs) = self.by_request.get_mut(&a.request) {
            seqs.retain(|&s| s != seq);
            if seqs.is_empty() {
                self.by_request.remove(&a.request);
            }
        }
        if flush {
            let tail = a.decoder.finish();
            let step = a.stops.push(&tail);
            let mut text = step.emit;
            if !step.stopped {
                text.push_str(&a.stops.finish());
            }
            if !text.is_empty() {
                let _ = a.events.send(Event::Text { index: a.index, text });
            }
        }
        let end = Instant::now();
        let first = a.first_token.unwrap_or(end);
        let metrics = RequestMetrics {
            queue_time: a.scheduled.unwrap_or(end) - a.submitted,
            ttft: first - a.submitted,
            tpot: if a.generated > 1 { (end - first) / (a.generated as u32 - 1) } else { Default::default() },
            e2e: end - a.submitted,
            prompt_tokens: a.prompt_len,
            generated_tokens: a.generated,
            cached_tokens: a.cached_tokens,
            preemptions,
        };
        // Samples never forked (cancelled before the prompt's logits) end too.
        for index in a.index + 1..=a.index + a.forks_pending {
            let unborn = RequestMetrics { generated_tokens: 0, ttft: Default::default(), ..metrics.clone() };
            self.finished.push((a.events.clone(), Event::Finished { index, reason, metrics: unborn }));
        }
        self.finished.push((a.events, Event::Finished { index: a.index, reason, metrics }));
        if let Ok(mut m) = self.metrics.lock() {
            let ended = 1 + a.forks_pending as u64;
            match reason {
                FinishReason::Cancelled => m.requests_cancelled += ended,
                _ => m.requests_finished += ended,
            }
        }
    }

    fn fail(&mut self, seq: SeqId, message: String) {
        if let Some(a) = self.active.get(&seq) {
            let _ = a.events.send(Event::Error(message));
        }
        self.finish(seq, FinishReason::Cancelled, false);
    }

    /// Fails every sample of request `id` with one error event.
    fn fail_request(&mut self, id: RequestId, message: &str) {
        let seqs = self.by_request.get(&id).cloned().unwrap_or_default();
        if let Some(a) = seqs.first().and_then(|s| self.active.get(s)) {
            let _ = a.events.send(Event::Error(message.to_string()));
        }
        for seq in seqs {
            self.finish(seq, FinishReason::Cancelled, false);
        }
    }

    /// After a step panicked: fails the requests of the step (all of them
    /// if it panicked before its batch was known), frees their blocks and
    /// any a half-done step left to no request, and counts the panic.
    fn recover(&mut self, panic: String) {
        let split = self.model.split().size() > 1;
        let seqs = match self.in_step.is_empty() || split {
            true => self.active.keys().copied().collect(),
            false => std::mem::take(&mut self.in_step),
        };
        let requests: BTreeSet<RequestId> = seqs.iter().filter_map(|s| self.active.get(s)).map(|a| a.request).collect();
        tracing::error!(%panic, requests = requests.len(), split, "an engine step panicked: failing its requests");
        let message = match split {
            false => {
                format!("internal error in the engine step: {panic}; the request was aborted, the server keeps serving")
            }
            true => format!(
                "internal error in the engine step: {panic}; the ranks of this split model may be out of step, \
                 so the engine refuses every request until memwall is restarted"
            ),
        };
        for id in requests {
            self.fail_request(id, &message);
        }
        // Sequences the step made but no request owns yet (a fork cut short)
        // or whose finish was interrupted: nothing would ever free them.
        let orphans: Vec<SeqId> = self.kv.sequences().filter(|s| !self.active.contains_key(s)).collect();
        for seq in orphans {
            if !self.sched.remove(seq, &mut self.kv) {
                self.kv.release(seq);
            }
        }
        self.scratch = Scratch::default();
        if split {
            self.poisoned = Some(message);
        }
        if let Ok(mut m) = self.metrics.lock() {
            m.step_panics += 1;
        }
    }

    fn fail_all(&mut self, message: String) {
        let seqs: Vec<SeqId> = self.active.keys().copied().collect();
        for seq in seqs {
            self.fail(seq, message.clone());
        }
    }

    /// Sends the held finish events (and drops the senders, closing the
    /// handles of requests whose samples are all done).
    fn flush_finished(&mut self) {
        for (events, e) in self.finished.drain(..) {
            let _ = events.send(e);
        }
    }

    /// Current pool and queue occupancy into the shared metrics.
    fn publish_occupancy(&self) {
        if let Ok(mut m) = self.metrics.lock() {
            m.kv_blocks_used = self.kv.pool().num_used();
            m.running = self.sched.num_running();
            m.waiting = self.sched.num_waiting();
        }
    }

    fn record(&mut self, out: &SchedulerOutput, sampled: usize, t0: Instant) {
        let step_time = t0.elapsed();
        let pool = self.kv.pool();
        let bs = self.kv.block_size();
        let filled: usize = self.kv.sequences().filter_map(|s| self.sched.num_computed(s)).sum();
        let allocated = pool.num_used() * bs;
        let batch: Vec<SeqStep> = out
            .seqs
            .iter()
            .map(|s| SeqStep { context: s.start, new_tokens: s.tokens.len(), logits: usize::from(s.wants_logits) })
            .collect();
        let cost = self.cost.step(&batch).total();
        let secs = step_time.as_secs_f64().max(1e-9);
        let step = StepMetrics {
            seqs: out.seqs.len(),
            tokens: out.num_tokens,
            sampled,
            step_time,
            kv_blocks_used: pool.num_used(),
            kv_blocks_free: pool.num_free(),
            kv_blocks_cached: pool.num_cached(),
            preemptions: out.preempted.len(),
            bytes_moved: cost.bytes as u64,
            flops: cost.flops,
            mbu: self.peak_bandwidth.map(|bw| cost.bytes / secs / bw),
            mfu: self.peak_flops.map(|peak| cost.flops / secs / peak),
        };
        if let Ok(mut m) = self.metrics.lock() {
            m.record(step, allocated as u64, filled.min(allocated) as u64);
        }
    }
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => "a panic without a message".to_string(),
    }
}

/// The model's cost model; without per-kind weight sizes, every weight byte
/// is counted as one lump read once per step.
fn cost_model(model: &Model, weights: Option<WeightBytes>, kv_elem_bytes: f64) -> CostModel {
    let weights = weights.unwrap_or(WeightBytes {
        attn_per_layer: 0.0,
        mlp_per_layer: 0.0,
        norms_per_layer: 0.0,
        output: model.weight_bytes() as f64,
        embedding_row: 0.0,
    });
    CostModel::new(model.config.clone(), weights, kv_elem_bytes)
}
