//! Container names (and exec probes) read from the pod with its service
//! account.
//!
//! The event loop never waits for the API server: it looks names up in the
//! latest map and, on a miss, asks a background task for a refresh (rate
//! limited, since containers restart with new ids). Without a reachable API
//! server, or without permission, events keep the container id and a single
//! warning says why.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::apiserver::API_TIMEOUT;
use crate::pod::{container_id_from_cgroup, container_names, PodIdentity};
use crate::probes::ExecProbes;

/// At most one refresh per interval, however many unknown ids show up.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

pub struct ContainerNames {
    names: watch::Receiver<PodView>,
    refresh: Option<mpsc::Sender<()>>,
    /// `trace`: a child cgroup whose name is no container id is named by
    /// its directory name.
    cgroup_names: bool,
}

/// What the latest read of the pod said.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    /// Container id → container name.
    pub names: HashMap<String, String>,
    pub probes: ExecProbes,
}

impl PodView {
    fn of(pod: &Pod) -> Self {
        PodView {
            names: container_names(pod),
            probes: ExecProbes::of_pod(pod),
        }
    }
}

/// Says why names are unavailable, once per process.
#[derive(Clone, Default)]
struct WarnOnce(Arc<AtomicBool>);

impl WarnOnce {
    fn warn(&self, why: &str, error: &dyn std::fmt::Display) {
        if !self.0.swap(true, Ordering::Relaxed) {
            warn!(%error, "{why}; events carry container ids instead of names");
        } else {
            debug!(%error, "{why}");
        }
    }
}

impl ContainerNames {
    /// Ids only, never names: a pod whose API server cannot be asked.
    pub fn disabled() -> Self {
        let (_, names) = watch::channel(PodView::default());
        ContainerNames {
            names,
            refresh: None,
            cgroup_names: false,
        }
    }

    /// `trace`: containers are the traced cgroup's children, named by the
    /// container id their name carries, else by the name itself.
    pub fn of_cgroups() -> Self {
        ContainerNames {
            cgroup_names: true,
            ..Self::disabled()
        }
    }

    /// Read the pod once, so that the first events already carry names.
    /// Without a client (no API configuration, already warned about) ids
    /// are all there is.
    pub async fn start(identity: &PodIdentity, client: Option<Client>) -> Self {
        let warn_once = WarnOnce::default();
        let Some(pod_name) = identity.name.clone() else {
            warn_once.warn(
                "POD_NAME is not set",
                &"the downward API gives the pod's name",
            );
            return Self::disabled();
        };
        let Some(client) = client else {
            return Self::disabled();
        };
        let namespace = identity
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let fetcher = Fetcher {
            api: Api::namespaced(client, &namespace),
            pod_name,
            warn_once,
        };
        let (names_tx, names) = watch::channel(PodView::default());
        fetcher.fetch_into(&names_tx).await;
        let (refresh, wake) = mpsc::channel(1);
        tokio::spawn(fetcher.run(names_tx, wake));
        ContainerNames {
            names,
            refresh: Some(refresh),
            cgroup_names: false,
        }
    }

    /// The container label for a container cgroup's kernfs name: its name
    /// when known, else its id (and a refresh is asked for); `None` when the
    /// name carries no id.
    pub fn label(&self, cgroup_name: &str) -> Option<Label> {
        let Some(id) = container_id_from_cgroup(cgroup_name) else {
            return (self.cgroup_names && !cgroup_name.is_empty()).then(|| Label {
                text: Arc::from(cgroup_name),
                named: true,
            });
        };
        if let Some(name) = self.names.borrow().names.get(id) {
            return Some(Label {
                text: Arc::from(name.as_str()),
                named: true,
            });
        }
        self.request_refresh();
        Some(Label {
            text: Arc::from(id),
            named: false,
        })
    }

    /// Whether the container named `container` has exec probes.
    pub fn has_exec_probes(&self, container: &str) -> bool {
        self.names.borrow().probes.any_in(container)
    }

    /// The exec probe `argv` is in the container named `container`.
    pub fn exec_probe(&self, container: &str, argv: &[String]) -> Option<Arc<str>> {
        self.names.borrow().probes.matching(container, argv)
    }

    /// Ask the background task to read the pod again (rate limited there).
    pub fn request_refresh(&self) {
        if let Some(refresh) = &self.refresh {
            // A full channel means a refresh is already pending.
            let _ = refresh.try_send(());
        }
    }

    /// True once after each new answer from the API server: labels handed
    /// out before may be stale.
    pub fn take_changed(&mut self) -> bool {
        let changed = self.names.has_changed().unwrap_or(false);
        if changed {
            self.names.mark_unchanged();
        }
        changed
    }
}

/// A container label: the container's name, or its id while the name is
/// unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub text: Arc<str>,
    pub named: bool,
}

struct Fetcher {
    api: Api<Pod>,
    pod_name: String,
    warn_once: WarnOnce,
}

impl Fetcher {
    async fn fetch_into(&self, names: &watch::Sender<PodView>) {
        match tokio::time::timeout(API_TIMEOUT, self.api.get(&self.pod_name)).await {
            Ok(Ok(pod)) => {
                let view = PodView::of(&pod);
                debug!(containers = view.names.len(), "container names refreshed");
                names.send_replace(view);
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 403 => self.warn_once.warn(
                "not allowed to read the own pod (grant get on pods to the service account)",
                &status.message,
            ),
            Ok(Err(e)) => self
                .warn_once
                .warn("cannot read the own pod from the API server", &e),
            Err(_) => self.warn_once.warn(
                "the API server did not answer",
                &format_args!("timeout after {API_TIMEOUT:?}"),
            ),
        }
    }

    async fn run(self, names: watch::Sender<PodView>, mut wake: mpsc::Receiver<()>) {
        loop {
            tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
            if wake.recv().await.is_none() {
                return;
            }
            self.fetch_into(&names).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_gives_ids() {
        let mut names = ContainerNames::disabled();
        let id = "a".repeat(64);
        assert_eq!(
            names.label(&format!("cri-containerd-{id}.scope")),
            Some(Label {
                text: Arc::from(id.as_str()),
                named: false
            })
        );
        assert_eq!(names.label("linnix-trace-1"), None);
        assert!(!names.take_changed());
        // Under trace, a child cgroup is a container named as its directory.
        let dirs = ContainerNames::of_cgroups();
        assert_eq!(
            dirs.label("ctr-a").map(|l| l.text),
            Some(Arc::from("ctr-a"))
        );
        assert_eq!(dirs.label(""), None);
        assert_eq!(
            dirs.label(&format!("libpod-{id}")).map(|l| l.text),
            Some(Arc::from(id.as_str()))
        );
    }

    #[tokio::test]
    async fn new_answers_are_noticed_once() {
        let id = "b".repeat(64);
        let (tx, rx) = watch::channel(PodView::default());
        let mut names = ContainerNames {
            names: rx,
            refresh: None,
            cgroup_names: false,
        };
        assert!(!names.take_changed());
        tx.send_replace(PodView {
            names: HashMap::from([(id.clone(), "app".to_owned())]),
            probes: ExecProbes::default(),
        });
        assert!(names.take_changed());
        assert!(!names.take_changed());
        let label = names.label(&format!("libpod-{id}")).expect("label");
        assert_eq!(&*label.text, "app");
        assert!(label.named);
    }
}
