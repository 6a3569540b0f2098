//! A stand-in for the Kubernetes API server, over plain HTTP on 127.0.0.1:
//! the one MutatingWebhookConfiguration (GET, and JSON patches applied with
//! the json-patch crate, `test` operations included), and namespaces (an
//! empty list, a watch that stays open, any single namespace).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub struct FakeApi {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    config: Arc<Mutex<Value>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

const MWC: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}";

impl FakeApi {
    /// Serves `config` (a MutatingWebhookConfiguration) and writes a
    /// kubeconfig that points at this server.
    pub async fn start(config: Value) -> Self {
        let config = Arc::new(Mutex::new(config));
        let app = Router::new()
            .route(MWC, get(get_config).patch(patch_config))
            .route("/api/v1/namespaces", get(list_namespaces))
            .route("/api/v1/namespaces/{name}", get(get_namespace))
            .with_state(config.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://{addr}\"}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: fake, user: u, namespace: default}}\ncurrent-context: c\n"
            ),
        )
        .unwrap();
        Self {
            addr,
            kubeconfig,
            config,
            _dir: dir,
            task,
        }
    }

    /// The stored configuration as it is now.
    pub fn config(&self) -> Value {
        self.config.lock().unwrap().clone()
    }

    /// The PEM of the first webhook's caBundle (empty when unset).
    pub fn ca_bundle(&self) -> Vec<u8> {
        let config = self.config();
        let Some(b64) = config["webhooks"][0]["clientConfig"]["caBundle"].as_str() else {
            return Vec::new();
        };
        let bytes: k8s_openapi::ByteString =
            serde_json::from_value(Value::String(b64.to_owned())).unwrap();
        bytes.0
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = State<Arc<Mutex<Value>>>;

async fn get_config(State(config): Shared, Path(name): Path<String>) -> Response {
    let config = config.lock().unwrap().clone();
    if config["metadata"]["name"] != name.as_str() {
        return status(StatusCode::NOT_FOUND, "NotFound", "not found");
    }
    Json(config).into_response()
}

async fn patch_config(State(config): Shared, Path(name): Path<String>, body: Bytes) -> Response {
    let mut stored = config.lock().unwrap();
    if stored["metadata"]["name"] != name.as_str() {
        return status(StatusCode::NOT_FOUND, "NotFound", "not found");
    }
    let patch: json_patch::Patch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let mut next = stored.clone();
    if let Err(e) = json_patch::patch(&mut next, &patch) {
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
    }
    let version: u64 = next["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    next["metadata"]["resourceVersion"] = json!((version + 1).to_string());
    *stored = next.clone();
    Json(next).into_response()
}

async fn list_namespaces(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        // A watch with no events, ended by the client's own timeout.
        tokio::time::sleep(std::time::Duration::from_secs(290)).await;
        return (StatusCode::OK, "").into_response();
    }
    Json(json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": []}))
        .into_response()
}

async fn get_namespace(Path(name): Path<String>) -> Response {
    Json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "resourceVersion": "1"}}))
        .into_response()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        Json(json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()})),
    )
        .into_response()
}
