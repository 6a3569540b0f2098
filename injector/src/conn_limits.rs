//! Limits on the webhook's connections once they are accepted: how many may
//! be open at once, and how long one may sit without traffic. With the TLS
//! handshake timeout (axum-server's, 10 s), hyper's header-read timeout
//! and the body-read timeout of the handler, a client that opens
//! connections and sends nothing, half its headers or half a body cannot
//! hold them for long nor exhaust the process.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// The limits, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole request head (request line and headers), HTTP/1.1.
    pub header_read: Duration,
    /// Whole request body, from the end of the headers.
    pub body_read: Duration,
    /// No byte in either direction for this long closes the connection,
    /// kept-alive ones included.
    pub idle: Duration,
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Of those, most still in their TLS handshake (see
    /// [`crate::handshakes`]).
    pub max_handshakes: usize,
}

/// Wraps every accepted TCP stream (before TLS) in [`Guarded`], or closes
/// it when [`Limits::max_connections`] are already open.
#[derive(Clone)]
pub struct Limiter {
    permits: Arc<Semaphore>,
    idle: Duration,
    wait: Duration,
    metrics: Arc<Metrics>,
}

/// How long a new webhook connection waits for a slot that a displaced
/// connection (see [`crate::handshakes`]) is giving up. The waiters are
/// themselves bounded by the handshake share.
pub const DISPLACED_SLOT_WAIT: Duration = Duration::from_millis(250);

impl Limiter {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            idle: limits.idle,
            wait: Duration::ZERO,
            metrics,
        }
    }

    /// A connection that finds every slot taken waits `wait` for one.
    pub fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for Limiter {
    type Stream = Guarded;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Guarded, S)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let permits = self.permits.clone();
        let (idle, wait) = (self.idle, self.wait);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => Ok(p),
                Err(_) if wait.is_zero() => Err(()),
                Err(_) => match tokio::time::timeout(wait, permits.acquire_owned()).await {
                    Ok(Ok(p)) => Ok(p),
                    _ => Err(()),
                },
            };
            let Ok(permit) = permit else {
                metrics.error("too-many-connections");
                tracing::warn!("connection refused: the connection limit is reached");
                return Err(io::Error::other("connection limit reached"));
            };
            let _ = stream.set_nodelay(true);
            Ok((Guarded::new(stream, idle, permit), service))
        })
    }
}

/// A connection that errors out after `idle` without a byte read or
/// written, and frees its place in the limit when dropped.
pub struct Guarded {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Guarded {
    fn new(inner: TcpStream, idle: Duration, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        }
    }

    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// `Pending`, unless the connection has been idle too long.
    fn pending_or_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// What a write returned, with progress resetting the idle deadline.
    fn written(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // A peer that never reads what it asked for is idle too.
            Poll::Pending => self.pending_or_idle(cx),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending_or_idle(cx),
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.written(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.written(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
