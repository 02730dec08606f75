//! The connection cap (`--max-connections`): at most that many TCP
//! connections are served at once, as tower's `ConcurrencyLimit` does for
//! requests but one level down, so a flood of idle or slow connections cannot
//! exhaust file descriptors, tasks or memory.
//!
//! Each accepted connection holds a semaphore permit inside its I/O object,
//! so the permit returns exactly when hyper drops the connection. A
//! connection beyond the cap is not left waiting in the kernel's backlog: it
//! is accepted, answered with a plain HTTP 503 carrying the OpenAI-shaped
//! error, and closed, so the client learns why.
//!
//! Requests per connection are bounded by hyper's HTTP/1 defaults: at most
//! 100 headers and ~400 KiB of request head, else `431 Request Header
//! Fields Too Large`.
//!
//! Time is bounded too ([`serve`]): a connection that has not sent a whole
//! request head within [`ServerConfig::header_timeout`](crate::ServerConfig)
//! of being accepted, or of its previous response ending (an idle
//! keep-alive connection), is closed, so slow or silent clients
//! (slowloris) cannot keep connection places forever. The clock runs only
//! while the server waits for a request head: a long streamed response, or
//! a slow request body, is not cut by it.

use crate::ApiError;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How long a refused connection may take to receive its 503.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A listener that serves at most `limit` connections at once.
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limit: usize,
}

impl LimitedListener {
    pub(crate) fn new(inner: TcpListener, limit: usize) -> LimitedListener {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        LimitedListener { inner, permits: Arc::new(Semaphore::new(limit)), limit }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        loop {
            // axum's own accept retries (and backs off on) accept errors.
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => return (LimitedStream { stream, _permit: permit }, addr),
                Err(_) => {
                    tracing::debug!(%addr, limit = self.limit, "connection refused: too many connections");
                    tokio::spawn(refuse(stream, self.limit));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Serves `app` on `listener`, each connection as HTTP/1.1 with keep-alive
/// and a `header_timeout` for each request head (`None`: no timeout), until
/// `signal` completes; then stops accepting, lets every connection finish
/// its current request, and returns once all are closed (axum's
/// `serve(..).with_graceful_shutdown(..)`, plus the timeout).
pub(crate) async fn serve(
    mut listener: LimitedListener,
    app: Router,
    header_timeout: Option<Duration>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    // `signal_tx.closed()` completes once the signal fired; each connection
    // holds a `close_rx`, so `close_tx.closed()` completes once all ended.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let (io, addr) = tokio::select! {
            conn = axum::serve::Listener::accept(&mut listener) => conn,
            _ = signal_tx.closed() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let (signal_tx, close_rx) = (signal_tx.clone(), close_rx.clone());
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service));
            let mut signalled = std::pin::pin!(signal_tx.closed());
            let mut draining = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%addr, "connection closed: {e}");
                        }
                        break;
                    }
                    _ = &mut signalled, if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// Answers 503 on a connection over the cap and closes it. The request (if
/// it arrived) is read first and the socket is drained after the answer, so
/// the client sees the response rather than a connection reset.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = ApiError::too_many_connections(limit).body().to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        // Whatever part of the request is already here.
        let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

/// A served connection; its permit returns when it is dropped.
pub(crate) struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
