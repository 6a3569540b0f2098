//! The one connection to the API server, shared by the container-name
//! lookup and the pod's event publisher.

use std::time::Duration;

use kube::Client;
use tracing::warn;

/// Bound on every API call: a missing or slow API server must stall
/// neither start-up nor the event loop.
pub const API_TIMEOUT: Duration = Duration::from_secs(3);

/// The in-cluster (or kubeconfig) client; `None`, after one warning, when
/// there is no usable configuration.
pub async fn connect() -> Option<Client> {
    const WITHOUT: &str =
        "events carry container ids instead of names and are not published as Kubernetes events";
    match tokio::time::timeout(API_TIMEOUT, Client::try_default()).await {
        Ok(Ok(client)) => Some(client),
        Ok(Err(error)) => {
            warn!(%error, "no Kubernetes API configuration; {WITHOUT}");
            None
        }
        Err(_) => {
            warn!(
                error = "timeout",
                "Kubernetes client set-up timed out; {WITHOUT}"
            );
            None
        }
    }
}
