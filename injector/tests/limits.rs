//! Connection limits of `serve` over real sockets on 127.0.0.1: clients that
//! send half their headers, half a body, or nothing after a request are
//! cut off in time, and connections beyond the cap are refused. Every wait
//! is bounded.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const TIMEOUTS: [&str; 3] = [
    "--header-read-timeout=1s",
    "--body-read-timeout=1s",
    "--idle-timeout=2s",
];

async fn connect(server: &Server, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
    let ca = std::fs::read(server.ca_path()).unwrap();
    let connector = TlsConnector::from(Arc::new(tls_config(&ca, &[alpn])));
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Reads until the server closes the connection (or errors), at most
/// `limit`; returns what was read and when the connection ended.
async fn read_until_closed(
    stream: &mut TlsStream<TcpStream>,
    limit: Duration,
) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(started.elapsed()),
                )
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    let server = Server::start(&TIMEOUTS);
    // Many clients at once: half their headers, half a body, and a request
    // followed by silence on a kept-alive connection.
    let mut half_headers = Vec::new();
    let mut half_bodies = Vec::new();
    for _ in 0..40 {
        let mut s = connect(&server, b"http/1.1").await.unwrap();
        s.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
            .await
            .unwrap();
        half_headers.push(s);
    }
    for _ in 0..60 {
        let mut s = connect(&server, b"http/1.1").await.unwrap();
        s.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\": ")
            .await
            .unwrap();
        half_bodies.push(s);
    }
    let mut idle = connect(&server, b"http/1.1").await.unwrap();
    let idle_since = Instant::now();
    // An HTTP/2 connection that says nothing after the handshake.
    let mut silent_h2 = connect(&server, b"h2").await.unwrap();
    let silent_since = Instant::now();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();

    let limit = Duration::from_secs(8);
    for s in &mut half_headers {
        let (_, closed) = read_until_closed(s, limit).await;
        assert!(closed.is_some(), "a client with half its headers was kept");
    }
    for s in &mut half_bodies {
        let (answer, closed) = read_until_closed(s, limit).await;
        assert!(closed.is_some(), "a client with half a body was kept");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("request body not received within 1s"),
            "{answer}"
        );
    }
    // HTTP/1.1: hyper's header-read timeout also runs while a kept-alive
    // connection waits for its next request, so it ends the idle one.
    let (answer, closed) = read_until_closed(&mut idle, limit).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed.is_some(), "an idle kept-alive connection was kept");
    let after = idle_since.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
    // HTTP/2: the idle timeout (2 s).
    let (_, closed) = read_until_closed(&mut silent_h2, limit).await;
    assert!(closed.is_some(), "a silent HTTP/2 connection was kept");
    let after = silent_since.elapsed();
    assert!(
        after >= Duration::from_millis(1900),
        "closed after {after:?}"
    );

    // Over HTTP/2 a stalled body gets the same answer.
    let ca = std::fs::read(server.ca_path()).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(&ca, &[b"h2"]))
        .build()
        .unwrap();
    let stalled =
        futures::stream::once(async { Ok::<_, std::io::Error>(bytes_of(b"{\"kind\": ")) })
            .chain(futures::stream::pending());
    let resp = tokio::time::timeout(
        limit,
        client
            .post(server.url("/mutate"))
            .header("Content-Type", "application/json")
            .body(reqwest::Body::wrap_stream(stalled))
            .send(),
    )
    .await
    .expect("no answer to a stalled HTTP/2 body")
    .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 408);

    // The plain-HTTP metrics port cuts off half headers too.
    let mut plain = TcpStream::connect(("127.0.0.1", server.metrics_port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let cut = tokio::time::timeout(limit, plain.read(&mut buf)).await;
    assert!(
        matches!(cut, Ok(Ok(0)) | Ok(Err(_))),
        "metrics port kept a half-sent request: {cut:?}"
    );

    // The server still answers, and counted the slow bodies.
    let health = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let m = server.metrics().await;
    assert_eq!(
        sample(&m, r#"linnix_injector_errors_total{kind="body-timeout"}"#),
        61.0
    );
}

fn bytes_of(b: &'static [u8]) -> Vec<u8> {
    b.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused() {
    let mut args = TIMEOUTS.to_vec();
    args.push("--max-connections=4");
    let server = Server::start(&args);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&server, b"http/1.1").await.unwrap());
    }
    // Past the server's side of their handshakes (a connection still in
    // its handshake would give way to a newer one: see lockout.rs).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The fifth is closed as soon as it is accepted: no TLS handshake.
    let refused = tokio::time::timeout(Duration::from_secs(5), connect(&server, b"http/1.1"))
        .await
        .expect("the fifth connection hung");
    assert!(refused.is_err(), "a fifth connection was served");
    // Those held still work.
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), held[0].read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Once they close, new connections are served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = server.client().get(server.url("/healthz")).send().await;
        if resp.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {resp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = server.metrics().await;
    assert!(
        sample(
            &m,
            r#"linnix_injector_errors_total{kind="too-many-connections"}"#
        ) >= 1.0
    );
}
