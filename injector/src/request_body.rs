//! Reading a request body within limits: its size (refused by the declared
//! length before a byte is read) and the time it may take.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::metrics::Metrics;

/// Largest accepted request body. The API server's own limit on objects is
/// about 1.5 MiB, so a review (object plus options) fits with room to spare.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Largest declared body that is read and dropped after a 413, so that the
/// client sees the answer; larger ones are cut off.
const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
    )
        .into_response()
}

/// The whole body, or the answer when it is too large or too slow.
///
/// A declared `Content-Length` over the limit is refused before a byte of
/// the body is read, so that the status is sent while the client is still
/// at the start of its upload (over HTTP/2 a client that is still sending
/// when the server ends the stream may report the reset instead of the
/// answer). Bodies without a length are cut off at the limit.
pub async fn read_body(
    metrics: &Metrics,
    timeout: Duration,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > MAX_BODY_BYTES as u64) {
        metrics.error("body-too-large");
        // Read what the client sends and drop it, while the answer goes
        // out: closing the connection (HTTP/1.1) or resetting the stream
        // (HTTP/2) on unread data makes clients that are still writing
        // report the reset and lose the 413. Bounded in bytes and time.
        if n <= DRAIN_MAX_BYTES {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, drain(body)).await;
            });
        }
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                metrics.error("body-too-large");
                Err(too_large())
            } else {
                metrics.error("body-read");
                Err(bad_request(format!("cannot read the request body: {e}")))
            }
        }
        Err(_) => {
            metrics.error("body-timeout");
            tracing::warn!(timeout = ?timeout, "request body not received in time");
            Err((
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {:?}\n", timeout),
            )
                .into_response())
        }
    }
}

/// Reads a body to its end (at most [`DRAIN_MAX_BYTES`]), keeping nothing.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt;
    let mut read = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |d| d.len() as u64);
        if read > DRAIN_MAX_BYTES {
            return;
        }
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}
