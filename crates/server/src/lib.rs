//! # memwall-server
//!
//! An OpenAI-compatible HTTP API over the memwall [`Engine`], on axum and
//! tokio, in the manner of vLLM's and llama-server's OpenAI front ends:
//! `POST /v1/chat/completions`, `POST /v1/completions` (JSON or Server-Sent
//! Events), `GET /v1/models`, `POST /tokenize`, `POST /detokenize`,
//! `GET /health`, `GET /metrics` (Prometheus text).
//!
//! Design choices and guarantees:
//! - The server binds and answers before the model is loaded: `/health` and
//!   the API say 503 until [`ServerHandle::set_ready`] hands over the engine.
//! - Each generation request owns a guard that cancels it in the engine when
//!   dropped. A client that disconnects drops the response body (streaming)
//!   or the handler future (non-streaming), so its KV blocks return to the
//!   pool before the engine's next step.
//! - User input never reaches a panic: every failure is an [`ApiError`] in
//!   OpenAI's JSON shape with the right status.
//! - API keys are compared in constant time and never logged; `/health` and
//!   `/metrics` stay open for probes and scrapers.
//! - Every resource a client controls is bounded, with a clear error:
//!   connections ([`ServerConfig::max_connections`], 503), time to send a
//!   request head, first or next on a keep-alive connection
//!   ([`ServerConfig::header_timeout`], closed), request head
//!   (hyper's 100 headers / ~400 KiB, 431), body
//!   ([`ServerConfig::max_body_bytes`], 413), requests in flight
//!   ([`ServerConfig::max_queue`], 429), and per request `n`, stop strings,
//!   `top_logprobs` and prompt + output length against the context
//!   ([`params`], 400). The `model` field only names the served model: no
//!   request makes the server open a file.
//! - Shutdown stops accepting, lets running requests finish up to a
//!   deadline, then cancels what is left.
//! - One access-log line per request (target `memwall::access`), without the
//!   prompt unless [`ServerConfig::log_prompts`].

mod access;
mod auth;
mod chat;
mod completions;
mod connections;
pub mod errors;
mod generate;
mod health;
mod logprobs;
mod metrics;
mod models;
pub mod params;
mod sse;
mod tokenize;

pub use errors::ApiError;

use axum::routing::{get, post};
use axum::Router;
use memwall_engine::{Engine, RequestId};
use memwall_formats::tokenizer::Tokenizer;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// How the server listens and what it allows. `Debug` never prints the API
/// keys.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to bind, e.g. `127.0.0.1:8080` (port 0 picks a free one).
    pub addr: SocketAddr,
    /// Accepted API keys; empty means no authentication.
    pub api_keys: Vec<String>,
    /// Generation requests in flight (queued or running) before 429.
    pub max_queue: usize,
    /// Largest request body, in bytes, before 413.
    pub max_body_bytes: usize,
    /// TCP connections served at once; a connection beyond it gets a 503 and is closed.
    pub max_connections: usize,
    /// How long a connection may take to send a whole request head, counted
    /// from its accept or from the end of its previous response (idle
    /// keep-alive), before it is closed; zero: no limit. Never cuts a
    /// response being streamed.
    pub header_timeout: Duration,
    /// Put prompt text in the access log (off: never).
    pub log_prompts: bool,
    /// How long running requests may finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: Vec::new(),
            max_queue: 256,
            max_body_bytes: 4 << 20,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            log_prompts: false,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("addr", &self.addr)
            .field("api_keys", &format_args!("[{} redacted]", self.api_keys.len()))
            .field("max_queue", &self.max_queue)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("log_prompts", &self.log_prompts)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

/// What serves generation once loading is done.
pub struct Ready {
    pub engine: Engine,
    pub tokenizer: Arc<memwall_formats::tokenizer::Tokenizer>,
    /// The id `/v1/models` lists and requests must name (if they name one).
    pub model_id: String,
    /// Chat template: an override or the model's own; `None` refuses chat.
    pub chat_template: Option<String>,
    /// The model's context length, in tokens.
    pub context: usize,
    /// Unix time the model became ready.
    pub created: u64,
}

impl Ready {
    /// Builds the serving state; the chat template falls back to the
    /// tokenizer's own when `chat_template` is `None`.
    pub fn new(
        engine: Engine,
        tokenizer: Arc<Tokenizer>,
        model_id: String,
        chat_template: Option<String>,
        context: usize,
    ) -> Ready {
        let chat_template = chat_template.or_else(|| tokenizer.chat_template().map(str::to_string));
        Ready { engine, tokenizer, model_id, chat_template, context, created: unix_now() }
    }

    /// Positions a request may use: the smaller of the context and the KV cache.
    pub(crate) fn limit(&self) -> usize {
        self.context.min(self.engine.kv_capacity_tokens())
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    config: ServerConfig,
    ready: OnceLock<Arc<Ready>>,
    in_flight: AtomicUsize,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    /// Engine ids of generation requests in flight, to cancel at the deadline.
    live: Mutex<HashSet<RequestId>>,
    metrics: metrics::ServerMetrics,
}

impl AppState {
    pub(crate) fn ready(&self) -> Result<&Arc<Ready>, ApiError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(ApiError::shutting_down());
        }
        self.ready.get().ok_or_else(ApiError::loading)
    }
}

/// A cloneable handle to a server's state: mark it ready, read its metrics.
#[derive(Clone)]
pub struct ServerHandle {
    state: Arc<AppState>,
}

impl ServerHandle {
    /// Hands over the engine; from now on `/health` is 200 and the API serves.
    /// A second call is ignored.
    pub fn set_ready(&self, ready: Ready) {
        let _ = self.state.ready.set(Arc::new(ready));
    }

    /// The engine, once ready (for tests and the CLI).
    pub fn ready(&self) -> Option<Arc<Ready>> {
        self.state.ready.get().cloned()
    }

    /// Generation requests in flight.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::Relaxed)
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Binds `config.addr`. The server answers 503 until marked ready.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(config.addr).await?;
        let state = Arc::new(AppState {
            config,
            ready: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            live: Mutex::new(HashSet::new()),
            metrics: metrics::ServerMetrics::default(),
        });
        Ok(Server { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle { state: Arc::clone(&self.state) }
    }

    /// Serves until `shutdown` completes, then drains: no new connections,
    /// running requests get `shutdown_grace` to finish, then are cancelled.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let app = router(Arc::clone(&state));
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            shutdown.await;
            let _ = signalled_tx.send(());
        };
        let listener = connections::LimitedListener::new(self.listener, state.config.max_connections);
        let header_timeout = Some(state.config.header_timeout).filter(|t| !t.is_zero());
        let mut serving = tokio::spawn(async move {
            connections::serve(listener, app, header_timeout, graceful).await;
            Ok(())
        });
        tokio::select! {
            r = &mut serving => return join_result(r),
            _ = signalled_rx => {}
        }
        tracing::info!(in_flight = state.in_flight.load(Ordering::Relaxed), "shutting down: draining requests");
        state.shutting_down.store(true, Ordering::Relaxed);
        if let Ok(r) = tokio::time::timeout(state.config.shutdown_grace, &mut serving).await {
            return join_result(r);
        }
        let ids: Vec<RequestId> = state.live.lock().map(|l| l.iter().copied().collect()).unwrap_or_default();
        tracing::warn!(cancelled = ids.len(), "shutdown deadline reached: cancelling running requests");
        if let Some(ready) = state.ready.get() {
            for id in ids {
                ready.engine.cancel(id);
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), &mut serving).await {
            Ok(r) => join_result(r),
            Err(_) => {
                serving.abort();
                Ok(())
            }
        }
    }
}

fn join_result(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    r.map_err(std::io::Error::other)?
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The routes, with auth on the API and the access log on everything.
fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::get_one))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), auth::require_key));
    Router::new()
        .merge(api)
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::render))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), access::log))
        .with_state(state)
}

async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
