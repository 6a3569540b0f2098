//! A share of the connection slots for connections that complete TLS.
//! Silent TCP connections (or clients that stall in the handshake) can hold
//! at most `max_handshakes` slots: when a new connection arrives with that
//! many still in their handshake, the oldest of them is closed. The API
//! server's handshake then takes a few milliseconds; a flood must replace
//! every waiting connection within them to shut it out, where without this
//! it only had to open `max_connections` and wait.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;

use crate::conn_idle::RequestIdle;
use crate::conn_limits::Guarded;
use crate::metrics::Metrics;

/// Connections in their handshake, oldest first.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    queue: VecDeque<(u64, Arc<Notify>)>,
}

/// Wraps the TLS acceptor: bounds the connections still in their handshake
/// and hands the established ones to [`RequestIdle`].
#[derive(Clone)]
pub struct Handshakes<A> {
    inner: A,
    waiting: Arc<Mutex<Waiting>>,
    max: usize,
    idle: Duration,
    metrics: Arc<Metrics>,
}

impl<A> Handshakes<A> {
    pub fn new(inner: A, max: usize, idle: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            waiting: Arc::default(),
            max: max.max(1),
            idle,
            metrics,
        }
    }

    /// Registers a new connection; closes the oldest waiting one when the
    /// share is full.
    fn enter(&self) -> (u64, Arc<Notify>) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        while w.queue.len() >= self.max {
            if let Some((_, oldest)) = w.queue.pop_front() {
                // Stored if its future is not waiting yet: it ends on its
                // next poll either way.
                oldest.notify_one();
                self.metrics.connection_closed("handshake-displaced");
            }
        }
        let id = w.next_id;
        w.next_id += 1;
        let evict = Arc::new(Notify::new());
        w.queue.push_back((id, evict.clone()));
        (id, evict)
    }
}

fn leave(waiting: &Mutex<Waiting>, id: u64) {
    let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
    w.queue.retain(|(i, _)| *i != id);
}

impl<A, S> Accept<TcpStream, S> for Handshakes<A>
where
    A: Accept<TcpStream, S, Stream = TlsStream<Guarded>>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = RequestIdle<TlsStream<Guarded>>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let (id, evict) = self.enter();
        let handshake = self.inner.accept(stream, service);
        let waiting = self.waiting.clone();
        let (idle, metrics) = (self.idle, self.metrics.clone());
        Box::pin(async move {
            let done = tokio::select! {
                done = handshake => done,
                _ = evict.notified() => Err(io::Error::other(
                    "closed in its TLS handshake to make room for a newer connection",
                )),
            };
            leave(&waiting, id);
            let (tls, service) = done?;
            let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok((RequestIdle::new(tls, http2, idle, metrics), service))
        })
    }
}
