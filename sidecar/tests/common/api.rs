//! A stand-in for the API server and the pod-mode set-up around it.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::Tracer;

/// The id of the app container of the pod-mode tests, as podman names its
/// cgroup (`libpod-<id>`).
pub const APP_ID: &str = "4c1d0000a11ce0000000000000000000000000000000000000000000000000aa";

/// A stand-in for the API server, which cannot run here: plain HTTP, and
/// for the n-th request (from 1) the status code and JSON body `respond`
/// gives, as the API server would for a `get` of one pod or a `create` of
/// an event. Every request is recorded with its body.
pub struct PodEndpoint {
    pub port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
}

#[derive(Clone, Debug)]
pub struct Request {
    /// "GET /api/v1/namespaces/team-a/pods/demo HTTP/1.1"
    pub line: String,
    pub body: String,
}

pub const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

impl Request {
    pub fn is_event_post(&self) -> bool {
        let mut parts = self.line.split(' ');
        let (method, target) = (parts.next(), parts.next().unwrap_or_default());
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        method == Some("POST") && path == EVENTS_PATH
    }
}

pub fn status(name: &str, id: &str) -> serde_json::Value {
    json!({
        "name": name, "containerID": format!("containerd://{id}"),
        "image": "x", "imageID": "", "ready": true, "restartCount": 0
    })
}

pub fn pod_object(statuses: Vec<serde_json::Value>) -> serde_json::Value {
    pod_with_spec(statuses, json!({"containers": []}))
}

/// The pod with a `spec` (containers and their probes).
pub fn pod_with_spec(
    statuses: Vec<serde_json::Value>,
    spec: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo", "namespace": "team-a"},
        "spec": spec,
        "status": {"containerStatuses": statuses}
    })
}

pub fn http_kubeconfig(dir: &Path, port: u16) -> PathBuf {
    kubeconfig(dir, &format!("http://127.0.0.1:{port}"), None)
}

/// A kubeconfig for `server` with a token user, in `namespace` if given.
pub fn kubeconfig(dir: &Path, server: &str, namespace: Option<&str>) -> PathBuf {
    let path = dir.join("kubeconfig");
    let namespace = namespace.map_or(String::new(), |ns| format!("    namespace: {ns}\n"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: c\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user:\n    token: t\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n{namespace}\
             current-context: x\n"
        ),
    )
    .expect("kubeconfig");
    path
}

impl PodEndpoint {
    pub fn start(
        respond: impl Fn(&Request, usize) -> (u16, serde_json::Value) + Send + 'static,
    ) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0;
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().expect("content-length");
                        }
                    }
                    header.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let request = Request {
                    line: request_line.trim().to_owned(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let n = {
                    let mut seen = seen.lock().expect("lock");
                    seen.push(request.clone());
                    seen.len()
                };
                let (code, body) = respond(&request, n);
                let body = body.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        PodEndpoint { port, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn event_posts(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.is_event_post())
            .map(|r| serde_json::from_str(&r.body).expect("event JSON"))
            .collect()
    }
}

pub fn metric(t: &Tracer, series: &str) -> Option<u64> {
    super::metric(t.metrics(), series)
}

pub fn pod_mode_env(kubeconfig: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("POD_NAME", "demo".into()),
        ("POD_NAMESPACE", "team-a".into()),
        ("POD_UID", "5b1f-uid".into()),
        ("KUBECONFIG", kubeconfig.to_str().expect("utf8").into()),
    ]
}

pub fn start_in_pod(tracer_cg: &Path, env: &[(&'static str, String)]) -> Tracer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut t = Tracer::start(&[], &[], Some(tracer_cg), &env);
    t.wait_ready();
    t
}
