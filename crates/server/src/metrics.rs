//! `GET /metrics`: Prometheus text exposition (format 0.0.4), names
//! prefixed `memwall_`.
//!
//! The server keeps what it sees per request (latency histograms from each
//! finished sample's [`RequestMetrics`], token and status counters); the
//! engine's [`EngineMetrics`](memwall_engine::EngineMetrics) snapshot gives
//! the gauges (running, waiting, KV blocks) and the step totals
//! (preemptions, last step's MBU). Rendering is written out by hand: the
//! format is a few lines per metric.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use memwall_engine::RequestMetrics;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 16] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Cumulative counts are computed at render; these are per bucket.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| s <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += s;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    ttft: Histogram,
    tpot: Histogram,
    e2e: Histogram,
    queue: Histogram,
    by_status: BTreeMap<u16, u64>,
    prompt_tokens: u64,
    generated_tokens: u64,
    cached_tokens: u64,
}

/// What the server counts itself.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    inner: Mutex<Inner>,
}

impl ServerMetrics {
    pub fn count_status(&self, status: u16) {
        if let Ok(mut m) = self.inner.lock() {
            *m.by_status.entry(status).or_default() += 1;
        }
    }

    /// A request's prompt, counted once however many samples it has.
    pub fn observe_prompt(&self, tokens: usize) {
        if let Ok(mut m) = self.inner.lock() {
            m.prompt_tokens += tokens as u64;
        }
    }

    /// One finished sample.
    pub fn observe_sample(&self, r: &RequestMetrics) {
        let Ok(mut m) = self.inner.lock() else { return };
        m.generated_tokens += r.generated_tokens as u64;
        m.cached_tokens += r.cached_tokens as u64;
        m.queue.observe(r.queue_time);
        if r.generated_tokens > 0 {
            m.ttft.observe(r.ttft);
            m.e2e.observe(r.e2e);
        }
        if r.generated_tokens > 1 {
            m.tpot.observe(r.tpot);
        }
    }
}

fn scalar(out: &mut String, kind: &str, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

pub async fn render(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut out = String::with_capacity(8192);
    {
        let m = state.metrics.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.ttft.render(
            &mut out,
            "memwall_time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
        );
        m.tpot.render(
            &mut out,
            "memwall_time_per_output_token_seconds",
            "Mean inter-token latency after the first token, per sample.",
        );
        m.e2e.render(
            &mut out,
            "memwall_e2e_request_latency_seconds",
            "Time from arrival to the last token, per sample.",
        );
        m.queue.render(
            &mut out,
            "memwall_request_queue_time_seconds",
            "Time from arrival to the first scheduled step.",
        );
        let name = "memwall_requests_total";
        let _ = writeln!(out, "# HELP {name} HTTP requests answered, by status.\n# TYPE {name} counter");
        for (status, n) in &m.by_status {
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
        }
        scalar(
            &mut out,
            "counter",
            "memwall_prompt_tokens_total",
            "Prompt tokens of accepted requests.",
            m.prompt_tokens,
        );
        scalar(&mut out, "counter", "memwall_generation_tokens_total", "Tokens generated.", m.generated_tokens);
        scalar(
            &mut out,
            "counter",
            "memwall_prefix_cache_hit_tokens_total",
            "Prompt tokens served from the prefix cache.",
            m.cached_tokens,
        );
    }
    let ready = state.ready.get();
    scalar(&mut out, "gauge", "memwall_model_ready", "1 once the model is loaded.", u8::from(ready.is_some()));
    if let Some(ready) = ready {
        let e = ready.engine.metrics();
        scalar(
            &mut out,
            "counter",
            "memwall_preemptions_total",
            "Sequences preempted for lack of KV blocks.",
            e.preemptions,
        );
        scalar(&mut out, "counter", "memwall_engine_steps_total", "Engine steps run.", e.steps);
        scalar(
            &mut out,
            "counter",
            "memwall_engine_requests_cancelled_total",
            "Requests cancelled in the engine.",
            e.requests_cancelled,
        );
        scalar(
            &mut out,
            "counter",
            "memwall_engine_step_panics_total",
            "Engine steps that panicked; their requests failed and the engine kept serving.",
            e.step_panics,
        );
        scalar(&mut out, "gauge", "memwall_requests_running", "Requests in the running batch.", e.running);
        scalar(&mut out, "gauge", "memwall_requests_waiting", "Requests waiting for admission.", e.waiting);
        scalar(&mut out, "gauge", "memwall_kv_blocks_used", "KV blocks referenced by a sequence.", e.kv_blocks_used);
        scalar(
            &mut out,
            "gauge",
            "memwall_kv_blocks_cached",
            "KV blocks findable by the prefix cache.",
            e.last_step.kv_blocks_cached,
        );
        scalar(&mut out, "gauge", "memwall_kv_blocks_total", "KV blocks in the pool.", e.kv_blocks_total);
        scalar(
            &mut out,
            "gauge",
            "memwall_last_step_mbu",
            "Model bandwidth utilisation of the last step (0 when unknown).",
            e.last_step.mbu.unwrap_or(0.0),
        );
        scalar(
            &mut out,
            "gauge",
            "memwall_last_step_seconds",
            "Duration of the last step.",
            e.last_step.step_time.as_secs_f64(),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
