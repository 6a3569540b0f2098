//! Connection slots over real sockets: silent TCP connections cannot take
//! the slots of connections that complete TLS, and an HTTP/2 connection
//! kept alive with PINGs but carrying no request is closed when idle.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// This process's TCP connections to `port` in state ESTABLISHED.
fn established_to(port: u16) -> usize {
    let own: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let remote_port = f[2].rsplit(':').next().unwrap();
            u16::from_str_radix(remote_port, 16).unwrap() == port
                && f[3] == "01"
                && own.iter().any(|i| i == f[9])
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_lock_out_clients_that_complete_tls() {
    let server = Server::start(&["--max-connections=16"]);
    let ca = std::fs::read(server.ca_path()).unwrap();
    let connector = TlsConnector::from(Arc::new(tls_config(&ca, &[b"http/1.1"])));
    // Twelve clients that completed TLS and stay.
    let mut held = Vec::new();
    for _ in 0..12 {
        let tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        held.push(tls);
    }
    // Then a flood of connections that never start TLS.
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(
            TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new client still gets through, well before the 10 s handshake
    // timeout would have freed a slot.
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        server.client().get(server.url("/healthz")).send(),
    )
    .await
    .expect("a client that completes TLS waited for the silent connections")
    .expect("a client that completes TLS was refused");
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // And the clients that held their connections are still served.
    let first = &mut held[0];
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let m = server.metrics().await;
    assert!(
        sample(
            &m,
            r#"linnix_injector_connections_closed_total{reason="handshake-displaced"}"#
        ) >= 40.0,
        "{m}"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_kept_alive_with_pings_is_closed_when_idle() {
    let server = Server::start(&["--idle-timeout=2s"]);
    let ca = std::fs::read(server.ca_path()).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(&ca, &[b"h2"]))
        .http2_keep_alive_interval(Duration::from_millis(300))
        .http2_keep_alive_timeout(Duration::from_secs(1))
        .http2_keep_alive_while_idle(true)
        .build()
        .unwrap();
    let resp = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(established_to(server.port), 1);
    // Only PINGs for twice the idle timeout.
    let deadline = Instant::now() + Duration::from_secs(6);
    while established_to(server.port) > 0 {
        assert!(
            Instant::now() < deadline,
            "a connection kept alive by PINGs alone was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = server.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_connections_closed_total{reason="idle"}"#
        ),
        1.0,
        "{m}"
    );
    // The client opens a new connection for its next request.
    let resp = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(client);
}
