//! `memwall serve`: the OpenAI-compatible HTTP server.
//!
//! ```text
//! memwall serve [--model MODEL] [--host 127.0.0.1] [--port 8080] [--api-key KEY | --api-key-file F]
//!               [--max-queue N] [--max-body-bytes N] [--max-connections N] [--header-timeout SECS]
//!               [--chat-template FILE]
//!               [--kv-memory 256MiB] [--log-prompts]
//! ```
//!
//! Binds first (so `/health` answers 503 while the model loads), loads the
//! model and starts the engine, then serves until SIGINT / SIGTERM and
//! drains. The library side is [`memwall_server`].

use crate::model_args::ModelArgs;
use crate::parallel_args::ParallelArgs;
use anyhow::{bail, Context, Result};
use memwall_engine::{Engine, EngineConfig, KvCacheConfig, KvMemory};
use memwall_server::{Ready, Server, ServerConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    parallel: ParallelArgs,
    /// Address to listen on. Loopback by default; anything else exposes the
    /// server to the network (set an API key).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on the API (/health and /metrics stay open).
    #[arg(long, value_name = "KEY", conflicts_with = "api_key_file")]
    api_key: Option<String>,
    /// Read accepted API keys from FILE, one per line.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// Generation requests in flight (queued or running) before answering 429.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_queue: u64,
    /// Largest request body in bytes before answering 413.
    #[arg(long, value_name = "N", default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// TCP connections served at once; one more is answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a connection may take to send a whole request head, after
    /// connecting or between keep-alive requests, before it is closed
    /// (frees its place among --max-connections; never cuts a streamed answer).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// A Jinja chat template file to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// Memory for the paged KV cache: a size (2GiB, 512MiB) or a fraction of
    /// available memory (0.3).
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    kv_memory: KvMemory,
    /// The model id clients name (default: the model file's name without extension).
    #[arg(long, value_name = "NAME")]
    served_model_name: Option<String>,
    /// Seconds running requests may take to finish after SIGINT / SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    shutdown_grace: u64,
    /// Write prompt text into the access log (off by default: prompts are private).
    #[arg(long)]
    log_prompts: bool,
}

fn api_keys(args: &Args) -> Result<Vec<String>> {
    if let Some(k) = &args.api_key {
        if k.trim().is_empty() {
            bail!("--api-key is empty");
        }
        return Ok(vec![k.trim().to_string()]);
    }
    let Some(path) = &args.api_key_file else { return Ok(Vec::new()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let keys: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if keys.is_empty() {
        bail!("{} holds no API key", path.display());
    }
    Ok(keys)
}

/// The warning for a server reachable beyond this machine without an API key.
fn exposure_warning(host: IpAddr, has_keys: bool) -> Option<String> {
    (!host.is_loopback() && !has_keys)
        .then(|| format!("listening on {host} without --api-key: anyone who can reach this port can use the model"))
}

pub fn run(args: Args) -> Result<()> {
    let par = args.parallel.init()?;
    if par.rank() > 0 {
        // Ranks other than 0 serve no HTTP: they run rank 0's step plans.
        return args.model.serve_worker(&par);
    }
    let keys = api_keys(&args)?;
    if let Some(warning) = exposure_warning(args.host, !keys.is_empty()) {
        tracing::warn!(host = %args.host, "{warning}");
        eprintln!("warning: {warning}");
    }
    let template = match &args.chat_template {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let memory_bytes = args.kv_memory.resolve()?;
    let config = ServerConfig {
        addr: SocketAddr::new(args.host, args.port),
        api_keys: keys,
        max_queue: args.max_queue as usize,
        max_body_bytes: args.max_body_bytes,
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_timeout: Duration::from_secs(args.header_timeout),
        log_prompts: args.log_prompts,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let comm = par.comm.clone();
    let result = runtime.block_on(async move {
        let server = Server::bind(config.clone()).await.with_context(|| format!("cannot listen on {}", config.addr))?;
        let addr = server.local_addr()?;
        let handle = server.handle();
        let mut serving = tokio::spawn(server.run(memwall_server::shutdown_signal()));
        eprintln!("memwall serve: listening on http://{addr} (loading the model…)");
        let model_args = args.model.clone();
        let path = model_args.path()?;
        let part = par.clone();
        let loading = tokio::task::spawn_blocking(move || model_args.load_part(&part));
        // A signal while loading stops the server without waiting for the model.
        let loaded = tokio::select! {
            r = loading => r.context("loading panicked")??,
            r = &mut serving => {
                r.context("the server task failed")?.context("the server failed")?;
                eprintln!("memwall serve: stopped before the model finished loading");
                return Ok(());
            }
        };
        let model_id = args.served_model_name.clone().unwrap_or_else(|| {
            path.file_stem().map_or_else(|| "memwall".to_string(), |s| s.to_string_lossy().into_owned())
        });
        let context = loaded.model.config.context_len;
        let tokenizer = Arc::new(loaded.tokenizer);
        let engine_config = EngineConfig {
            kv: KvCacheConfig { memory_bytes, ..KvCacheConfig::default() },
            threads: par.threads(args.model.threads),
            ..EngineConfig::default()
        };
        let engine = Engine::new(Arc::new(loaded.model), Arc::clone(&tokenizer), engine_config)
            .context("cannot start the engine")?;
        let capacity = engine.kv_capacity_tokens();
        let ready = Ready::new(engine, tokenizer, model_id.clone(), template, context);
        if ready.chat_template.is_none() {
            eprintln!("warning: the model has no chat template and none was given: /v1/chat/completions will refuse requests");
        }
        handle.set_ready(ready);
        eprintln!(
            "memwall serve: model `{model_id}` ready on http://{addr}/v1 (context {context}, KV cache {capacity} tokens)"
        );
        serving.await.context("the server task failed")?.context("the server failed")?;
        eprintln!("memwall serve: stopped");
        Ok(())
    });
    // Do not wait for a model load still running on a blocking thread.
    runtime.shutdown_background();
    // MPI is finalised here, on the thread that initialised it.
    drop(comm);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: Args,
    }

    #[test]
    fn binds_loopback_by_default_and_warns_when_exposed_without_a_key() {
        let cli = Cli::try_parse_from(["serve"]).unwrap();
        assert!(cli.serve.host.is_loopback(), "{}", cli.serve.host);
        assert_eq!(cli.serve.max_connections, 1024);
        assert_eq!(cli.serve.header_timeout, 30);
        assert_eq!(exposure_warning(cli.serve.host, false), None);
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(exposure_warning(any, false).is_some_and(|w| w.contains("0.0.0.0") && w.contains("--api-key")));
        assert_eq!(exposure_warning(any, true), None);
        assert_eq!(exposure_warning("::1".parse().unwrap(), false), None);
    }

    #[test]
    fn max_connections_must_be_positive() {
        assert!(Cli::try_parse_from(["serve", "--max-connections", "0"]).is_err());
        assert_eq!(Cli::try_parse_from(["serve", "--max-connections", "8"]).unwrap().serve.max_connections, 8);
    }

    #[test]
    fn header_timeout_must_be_positive() {
        assert!(Cli::try_parse_from(["serve", "--header-timeout", "0"]).is_err());
        assert_eq!(Cli::try_parse_from(["serve", "--header-timeout", "5"]).unwrap().serve.header_timeout, 5);
    }
}
