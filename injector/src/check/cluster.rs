//! The reads `check` makes in a cluster, with the caller's kubeconfig:
//! one pod and its namespace, or every pod (for `--stale`).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

use super::CheckError;

/// Bound on each API call: a dead API server gives an error, not a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Pods per page when listing.
const PAGE: u32 = 500;

async fn call<T>(
    what: String,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CheckError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Err(CheckError::Timeout(what)),
        Ok(Err(source)) => Err(CheckError::Api {
            what,
            source: Box::new(source),
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

/// A client from the kubeconfig (or the in-cluster configuration).
pub async fn connect() -> Result<Client, CheckError> {
    match tokio::time::timeout(CALL_TIMEOUT, Client::try_default()).await {
        Err(_) => Err(CheckError::Timeout("connecting to the cluster".into())),
        Ok(Err(source)) => Err(CheckError::Connect(Box::new(source))),
        Ok(Ok(client)) => Ok(client),
    }
}

fn to_value(pod: &Pod) -> Result<Value, CheckError> {
    serde_json::to_value(pod).map_err(CheckError::Json)
}

/// The pod `namespace/name`, as JSON.
pub async fn pod(client: &Client, namespace: &str, name: &str) -> Result<Value, CheckError> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let found = call(format!("reading pod {namespace}/{name}"), api.get_opt(name)).await?;
    match found {
        Some(pod) => to_value(&pod),
        None => Err(CheckError::NotFound(format!("pod {namespace}/{name}"))),
    }
}

pub async fn namespace(client: &Client, name: &str) -> Result<Namespace, CheckError> {
    let api = Api::<Namespace>::all(client.clone());
    call(format!("reading namespace {name}"), api.get_opt(name))
        .await?
        .ok_or_else(|| CheckError::NotFound(format!("namespace {name}")))
}

/// Every pod of `namespace`, or of the cluster, page by page.
pub async fn pods(client: &Client, namespace: Option<&str>) -> Result<Vec<Value>, CheckError> {
    let api = match namespace {
        Some(ns) => Api::<Pod>::namespaced(client.clone(), ns),
        None => Api::<Pod>::all(client.clone()),
    };
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = call("listing pods".into(), api.list(&params)).await?;
        for pod in &page.items {
            out.push(to_value(pod)?);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}
