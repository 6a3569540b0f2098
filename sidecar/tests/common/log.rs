//! The tracer's stderr, read line by line: the metrics address it logs
//! once it has bound one (port 0: the kernel's pick).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The address in the tracer's "serving /metrics ... addr=A" log line.
fn served_address(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("serving /metrics")?..];
    let addr = rest[rest.find("addr=")? + "addr=".len()..]
        .split_whitespace()
        .next()?;
    addr.parse().ok()
}

/// Like `collect`, line by line, noting the metrics address when it comes.
pub(super) fn collect_stderr(
    r: impl Read + Send + 'static,
    metrics: Arc<Mutex<Option<SocketAddr>>>,
    closed: Arc<AtomicBool>,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            if let Some(addr) = served_address(&text) {
                *metrics.lock().expect("lock") = Some(addr);
            }
            all.push_str(&text);
            line.clear();
        }
        closed.store(true, Ordering::Release);
        all
    })
}
