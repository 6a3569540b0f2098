//! `check POD` and `check --stale` in a cluster, through kube's real client
//! and the real binary. No API server can run here: a plain-HTTP stand-in
//! answers the few reads `check` makes with the JSON the API server would
//! send (list items without `kind`, pages joined by `continue`, `Status`
//! bodies for errors).

mod common;
mod pods;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{app_spec, pod, BIN};
use pods::{namespace, sidecar, stored};
use serde_json::{json, Value};

/// Answers `GET <path>?<query>` with (status code, JSON body).
type Respond = dyn Fn(&str, &str) -> (u16, Value) + Send + Sync;

struct ApiServer {
    port: u16,
    /// Every request target (path and query) in arrival order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl ApiServer {
    fn start(respond: Box<Respond>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let target = line.split(' ').nth(1).unwrap_or_default().to_owned();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let (code, body) = if line.starts_with("GET ") {
                    respond(path, query)
                } else {
                    (405, status(405, "MethodNotAllowed", "check only reads"))
                };
                log.lock().unwrap().push(target.clone());
                let body = body.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, seen }
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{}\n\
                 users:\n- name: u\n  user:\n    token: t\n\
                 contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: team-a\n\
                 current-context: x\n",
                self.port
            ),
        )
        .unwrap();
        path
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// As the API server lists: items carry neither `kind` nor `apiVersion`.
fn list(items: &[&Value], next: Option<&str>) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|p| {
            let mut p = (*p).clone();
            let o = p.as_object_mut().unwrap();
            o.remove("kind");
            o.remove("apiVersion");
            p
        })
        .collect();
    json!({"kind": "PodList", "apiVersion": "v1",
           "metadata": {"resourceVersion": "4711", "continue": next.unwrap_or("")},
           "items": items})
}

fn named(mut pod: Value, name: &str) -> Value {
    pod["metadata"]["name"] = json!(name);
    pod
}

/// `linnix-injector check ARGS` against the stand-in: (exit code, stdout, stderr).
fn check(api: &ApiServer, config: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("check")
        .args(args)
        .env("KUBECONFIG", api.kubeconfig(dir.path()))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .env_remove("LINNIX_CONFIG")
        .stdin(Stdio::null());
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn cluster() -> ApiServer {
    let s = sidecar();
    let opted_in = namespace(&[("sidecar.linnix.io/inject", "true")], &[]);
    let mut ns_json = serde_json::to_value(&opted_in).unwrap();
    ns_json["apiVersion"] = json!("v1");
    ns_json["kind"] = json!("Namespace");
    let traced = stored(&pod(json!({}), app_spec()), &opted_in, &s);
    let mut old = named(traced.clone(), "old");
    old["spec"]["initContainers"][0]["image"] = json!("linnix/linnix-sidecar:0.0.9");
    let mut debug_copy = named(traced.clone(), "old-debug");
    debug_copy["spec"]["initContainers"][0]["image"] = json!("registry.local/busybox");
    let plain = named(
        stored(
            &pod(json!({"sidecar.linnix.io/inject": "false"}), app_spec()),
            &opted_in,
            &s,
        ),
        "plain",
    );
    let mut elsewhere = named(old.clone(), "agent");
    elsewhere["metadata"]["namespace"] = json!("team-b");
    let with_kind = |mut p: Value| {
        p["apiVersion"] = json!("v1");
        p["kind"] = json!("Pod");
        p
    };
    let (traced, plain) = (with_kind(traced), with_kind(plain));
    ApiServer::start(Box::new(move |path, query| {
        let continued = query.split('&').any(|kv| kv == "continue=page-2");
        match path {
            "/api/v1/namespaces/team-a" => (200, ns_json.clone()),
            "/api/v1/namespaces/team-a/pods/web" => (200, traced.clone()),
            "/api/v1/namespaces/team-a/pods/plain" => (200, plain.clone()),
            "/api/v1/namespaces/locked/pods/web" => (200, traced.clone()),
            "/api/v1/namespaces/locked" => (
                403,
                status(403, "Forbidden", "namespaces \"locked\" is forbidden: User \"dev\" cannot get resource \"namespaces\""),
            ),
            // Two pages, as with --chunk-size.
            "/api/v1/pods" if !continued => (200, list(&[&traced, &old], Some("page-2"))),
            "/api/v1/pods" => (200, list(&[&plain, &debug_copy, &elsewhere], None)),
            "/api/v1/namespaces/team-b/pods" => (200, list(&[&elsewhere], None)),
            _ => (404, status(404, "NotFound", &format!("{path} not found"))),
        }
    }))
}

#[test]
fn a_pod_and_its_namespace_are_read_and_explained() {
    let api = cluster();
    // -n defaults to the kubeconfig's namespace.
    let (code, out, err) = check(&api, None, &["web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Pod team-a/web\n"), "{out}");
    assert!(
        out.contains("result:   injected: rule 6 (requested): sidecar.linnix.io/inject=\"true\" on the namespace"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "running:  tracer {}, as configured",
            sidecar().image
        )),
        "{out}"
    );
    assert_eq!(
        api.seen(),
        [
            "/api/v1/namespaces/team-a/pods/web",
            "/api/v1/namespaces/team-a"
        ]
    );

    // The pod opted out: exit 1, and it runs no tracer.
    let (code, out, _) = check(&api, None, &["plain", "-n", "team-a", "-o", "json"]);
    assert_eq!(code, 1);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r[0]["rule"], "4");
    assert_eq!(r[0]["running"]["hasTracer"], false);

    // A configuration with another image makes the running tracer stale.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "sidecar: {image: 'registry.local/linnix-sidecar:0.2.0'}\n",
    )
    .unwrap();
    let (code, out, _) = check(&api, Some(&config), &["web", "-o", "yaml"]);
    assert_eq!(code, 0);
    let r: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(r["running"]["stale"], true);
    assert_eq!(
        r["running"]["configuredImage"],
        "registry.local/linnix-sidecar:0.2.0"
    );
    assert_eq!(r["tracer"]["image"], "registry.local/linnix-sidecar:0.2.0");
}

#[test]
fn api_errors_exit_2_and_name_what_failed() {
    let api = cluster();
    let (code, out, err) = check(&api, None, &["ghost", "-n", "team-a"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("pod team-a/ghost not found"), "{err}");
    assert!(out.is_empty());
    // Without the right to read namespaces the answer would be a guess.
    let (code, _, err) = check(&api, None, &["web", "-n", "locked"]);
    assert_eq!(code, 2);
    assert!(err.contains("reading namespace locked"), "{err}");
    assert!(err.contains("forbidden"), "{err}");
}

#[test]
fn stale_lists_every_page_of_every_namespace() {
    let api = cluster();
    let (code, out, err) = check(&api, None, &["--stale"]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAMESPACE", "POD", "IMAGE"]
    );
    let rows: Vec<Vec<&str>> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["team-a", "old", "linnix/linnix-sidecar:0.0.9"],
            ["team-a", "old-debug", "registry.local/busybox"],
            ["team-b", "agent", "linnix/linnix-sidecar:0.0.9"],
        ]
    );
    assert!(lines
        .last()
        .unwrap()
        .starts_with("3 pod(s) run a tracer other than linnix/linnix-sidecar:"));
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].contains("continue=page-2"), "{seen:?}");

    let (code, out, _) = check(&api, None, &["--stale", "-n", "team-b", "-o", "json"]);
    assert_eq!(code, 1);
    let stale: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stale.as_array().unwrap().len(), 1);
    assert_eq!(stale[0]["name"], "agent");

    // Configured as the old tracer: only the others are stale now.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "sidecar: {image: 'linnix/linnix-sidecar:0.0.9'}\n").unwrap();
    let (code, out, _) = check(&api, Some(&config), &["--stale", "-n", "team-b"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "no pod runs a tracer other than linnix/linnix-sidecar:0.0.9\n"
    );
}
