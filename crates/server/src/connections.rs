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
//! Requests per connection are bounded by hyper's HTTP/1 defaults, which
//! axum keeps: at most 100 headers and ~400 KiB of request head, else
//! `431 Request Header Fields Too Large`.

use crate::ApiError;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
