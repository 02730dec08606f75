//! The access log: one `tracing` line per request (target
//! `memwall::access`) with id, route, status, token counts, TTFT and total
//! time, and the per-status request counter of `/metrics`.
//!
//! Plain requests are logged by the [`log`] middleware when the response is
//! ready. Generation requests log later, when their [`AccessRecord`] is
//! dropped at the end of the stream (a streamed response's status is sent
//! before its tokens); they mark their response [`Deferred`].

use crate::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who a request is, for handlers that log it themselves.
#[derive(Clone, Debug)]
pub struct RequestCtx {
    pub id: u64,
    pub route: String,
    pub start: Instant,
}

/// Marks a response whose access line is written by an [`AccessRecord`].
#[derive(Clone, Copy, Debug)]
pub struct Deferred;

pub async fn log(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let ctx = RequestCtx {
        id: state.next_id.fetch_add(1, Ordering::Relaxed),
        route: format!("{} {}", req.method(), req.uri().path()),
        start: Instant::now(),
    };
    req.extensions_mut().insert(ctx.clone());
    let resp = next.run(req).await;
    if resp.extensions().get::<Deferred>().is_none() {
        let status = resp.status().as_u16();
        state.metrics.count_status(status);
        let error = resp.extensions().get::<crate::ApiError>().map(|e| e.message.as_str()).unwrap_or("");
        tracing::info!(
            target: "memwall::access",
            id = ctx.id,
            route = %ctx.route,
            status,
            total_ms = ms(ctx.start.elapsed()),
            error,
            "request"
        );
    }
    resp
}

/// The access line of one generation request, written on drop.
pub struct AccessRecord {
    pub state: Arc<AppState>,
    pub ctx: RequestCtx,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub ttft: Option<Duration>,
    /// `stop`, `length`, `cancelled` or `error` once known.
    pub outcome: &'static str,
    /// The prompt text, only when `--log-prompts` is on.
    pub prompt: Option<String>,
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        // The status was 200 when headers went out; a client that left early
        // shows as outcome `cancelled`.
        let status = if self.outcome == "error" { 500 } else { 200 };
        self.state.metrics.count_status(status);
        tracing::info!(
            target: "memwall::access",
            id = self.ctx.id,
            route = %self.ctx.route,
            status,
            outcome = self.outcome,
            prompt_tokens = self.prompt_tokens,
            generated_tokens = self.generated_tokens,
            ttft_ms = self.ttft.map(ms),
            total_ms = ms(self.ctx.start.elapsed()),
            prompt = self.prompt.as_deref(),
            "request"
        );
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
