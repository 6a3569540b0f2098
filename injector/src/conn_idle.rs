//! Idle connections, judged by their requests rather than their bytes. An
//! HTTP/2 peer can keep a connection busy forever with PING, SETTINGS or
//! WINDOW_UPDATE frames while it never sends a request: each is traffic, so
//! a byte-level idle timer never fires. This wrapper sits on the decrypted
//! stream and counts only frames that carry requests or responses.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// The client connection preface of HTTP/2 (RFC 9113, 3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

/// HTTP/2 frame types that belong to a request or a response: DATA,
/// HEADERS, CONTINUATION. Every other type (PING, SETTINGS, WINDOW_UPDATE,
/// PRIORITY, RST_STREAM, GOAWAY, unknown ones) keeps nothing alive.
fn carries_a_request(frame_type: u8) -> bool {
    matches!(frame_type, 0x0 | 0x1 | 0x9)
}

/// Follows the frame boundaries of one direction of an HTTP/2 connection.
#[derive(Debug, Default)]
struct FrameScan {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    payload_left: usize,
}

impl FrameScan {
    fn client() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            ..Self::default()
        }
    }

    /// Takes the next bytes of the stream; whether a frame that carries a
    /// request or a response started in them.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        let mut active = false;
        while !data.is_empty() {
            let skip = if self.preface_left > 0 {
                &mut self.preface_left
            } else {
                &mut self.payload_left
            };
            if *skip > 0 {
                let n = (*skip).min(data.len());
                *skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == FRAME_HEADER_LEN {
                let h = self.header;
                self.payload_left =
                    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                active |= carries_a_request(h[3]);
                self.have = 0;
            }
        }
        active
    }
}

/// A decrypted connection closed with an error once no request or response
/// has moved for `idle`. HTTP/1.1 has no keep-alive frames: any byte read
/// counts there.
pub struct RequestIdle<S> {
    inner: S,
    /// `None` for HTTP/1.1.
    scans: Option<(FrameScan, FrameScan)>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    metrics: Arc<Metrics>,
}

impl<S> RequestIdle<S> {
    pub fn new(inner: S, http2: bool, idle: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            scans: http2.then(|| (FrameScan::client(), FrameScan::default())),
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            metrics,
        }
    }

    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    fn saw_read(&mut self, data: &[u8]) {
        let active = match &mut self.scans {
            Some((read, _)) => read.feed(data),
            None => !data.is_empty(),
        };
        if active {
            self.touch();
        }
    }

    fn saw_write(&mut self, data: &[u8]) {
        if let Some((_, write)) = &mut self.scans {
            if write.feed(data) {
                self.touch();
            }
        }
    }

    /// `Pending`, unless no request has moved for too long.
    fn pending_or_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.metrics.connection_closed("idle");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request on the connection for too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RequestIdle<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending_or_idle(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RequestIdle<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            this.saw_write(&data[..*n]);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(frame_type: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            frame_type,
            0,
            0,
            0,
            0,
            1,
        ];
        f.resize(FRAME_HEADER_LEN + payload, 0x1);
        f
    }

    #[test]
    fn only_request_frames_count_wherever_the_reads_split_them() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(0x4, 18)); // SETTINGS
        stream.extend(frame(0x6, 8)); // PING
        stream.extend(frame(0x8, 4)); // WINDOW_UPDATE
        let quiet = stream.len();
        stream.extend(frame(0x1, 300)); // HEADERS
        for chunk in [1, 2, 7, 9, 10, 4096] {
            let mut scan = FrameScan::client();
            let mut active_at = None;
            for (i, piece) in stream.chunks(chunk).enumerate() {
                if scan.feed(piece) && active_at.is_none() {
                    active_at = Some(i * chunk);
                }
            }
            let at = active_at.expect("HEADERS not seen");
            // Seen in the read that completes the HEADERS frame's header.
            let last = quiet + FRAME_HEADER_LEN - 1;
            assert!(at <= last && last < at + chunk, "chunk {chunk}: {at}");
        }
        let mut pings = FrameScan::client();
        let mut only_pings = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for _ in 0..100 {
            only_pings.extend(frame(0x6, 8));
        }
        assert!(!pings.feed(&only_pings));
    }
}
