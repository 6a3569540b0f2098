//! Helpers shared by the integration tests: the real binary, real
//! certificates, a real HTTPS client.
#![allow(dead_code)]

pub mod fake_api;
pub mod served;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_linnix-injector");

/// Runs the binary to completion with a clean environment for cluster access.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn linnix-injector");
    if let Some(input) = stdin {
        // A command that refuses its configuration exits before it reads
        // its input: that is a result to check, not a test failure.
        match child.stdin.take().unwrap().write_all(input.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait for linnix-injector")
}

/// Writes certificates for `localhost` with the `certs` subcommand.
pub fn make_certs(dir: &Path) {
    let out = run(
        &[
            "certs",
            "--out",
            dir.to_str().unwrap(),
            "--dns",
            "localhost",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `linnix-injector serve`; killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts `serve` with fresh certificates and `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path());
        Self::start_in(dir, extra, true)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str], files: bool) -> Self {
        Self::start_with_env(dir, extra, files, &[])
    }

    /// As [`Server::start_in`], with environment variables set (a
    /// `KUBECONFIG` among them replaces the unreachable default).
    pub fn start_with_env(
        dir: tempfile::TempDir,
        extra: &[&str],
        files: bool,
        env: &[(&str, &str)],
    ) -> Self {
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        // Port 0: the server picks free ports and logs them, so parallel
        // tests never race for a port.
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--addr=127.0.0.1:0".into(),
            "--metrics-addr=127.0.0.1:0".into(),
        ];
        if files {
            args.push(format!("--tls-cert={}", cert.display()));
            args.push(format!("--tls-key={}", key.display()));
            args.push("--tls-reload-interval=200ms".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let log_path = dir.path().join("serve.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(BIN)
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAMESPACE")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        let (port, metrics_port) = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let find = |what: &str| {
                text.lines()
                    .find(|l| l.contains(what))
                    .and_then(|l| l.split("addr=").nth(1))
                    .and_then(|a| a.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .map(|a| a.port())
            };
            if let (Some(p), Some(m)) = (find("webhook listening"), find("metrics listening")) {
                break (p, m);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "serve did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            port,
            metrics_port,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn client(&self) -> reqwest::Client {
        client_trusting(&std::fs::read(self.ca_path()).unwrap())
    }

    pub async fn metrics(&self) -> String {
        plain_client()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Posts a review and returns the response review.
    pub async fn review(&self, review: &Value) -> Value {
        let resp = self
            .client()
            .post(self.url("/mutate"))
            .json(review)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

impl Server {
    /// Sends SIGTERM and waits (at most 15 s) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for plain HTTP. reqwest builds a TLS configuration even then,
/// from the process-wide provider, so ring is installed first.
pub fn plain_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A reqwest client (rustls, ring) that trusts exactly `ca_pem`.
pub fn client_trusting(ca_pem: &[u8]) -> reqwest::Client {
    builder_trusting(ca_pem).build().unwrap()
}

/// A reqwest client builder (rustls, ring) that trusts exactly `ca_pem`,
/// for tests that tune the client further.
pub fn builder_trusting(ca_pem: &[u8]) -> reqwest::ClientBuilder {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(config)
}

pub fn pod(annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": spec,
    })
}

pub fn app_spec() -> Value {
    json!({"containers": [{"name": "app", "image": "registry.example/app:1"}]})
}

pub fn review_of(object: &Value, namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

pub fn response(review: &Value) -> &Value {
    &review["response"]
}

/// The patch of a response, which must be base64 as the API server encodes
/// `[]byte`.
pub fn patch_of(review: &Value) -> Option<json_patch::Patch> {
    let raw = &review["response"]["patch"];
    let bytes: Vec<u8> = match raw {
        Value::Null => return None,
        Value::String(s) => base64_decode(s),
        other => panic!("unexpected patch {other}"),
    };
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn base64_decode(s: &str) -> Vec<u8> {
    let bs: k8s_openapi::ByteString = serde_json::from_value(Value::String(s.into())).unwrap();
    bs.0
}

/// The object after the response's patch, the way the API server applies it.
pub fn patched(object: &Value, review: &Value) -> Value {
    let mut out = object.clone();
    if let Some(p) = patch_of(review) {
        json_patch::patch(&mut out, &p).unwrap();
    }
    out
}

pub fn warnings(review: &Value) -> Vec<String> {
    review["response"]["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Value of one sample line of the OpenMetrics text, 0 when absent.
pub fn sample(metrics: &str, line_prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

/// Validates manifests with the real Kubernetes schemas (strict).
pub fn kubernetes_validate(yaml: &str) {
    let validator =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/.venv/bin/kubernetes-validate");
    assert!(
        validator.exists(),
        "{} missing: run scripts/setup.sh",
        validator.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(&validator)
        .args(["--strict", "-k", "1.33.0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{}\n{}\n--- manifest ---\n{yaml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A rustls client configuration (ring) that trusts exactly `ca_pem` and
/// offers `alpn` (e.g. `h2`).
pub fn tls_config(ca_pem: &[u8], alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
