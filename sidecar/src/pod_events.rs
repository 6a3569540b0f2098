//! Notable process events published as Kubernetes events on the pod, so
//! that `kubectl describe pod` shows them: OOM kills, as Warning events.
//!
//! The event loop never waits for the API server: it hands a notice to a
//! bounded queue and moves on; a background task publishes one notice at a
//! time, each call bounded by a timeout. A full queue drops the notice
//! (counted). kube-runtime's `Recorder` folds repeats of the same event into
//! one object with a growing series count, as the kubelet does, so an OOM
//! loop updates one event instead of creating hundreds.
//!
//! Without permission (403: no `create` on `events` for the service
//! account) one warning says so and the publisher stops: the kills stay in
//! the tracer's own output and metrics.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{debug, warn};

use crate::apiserver::API_TIMEOUT;
use crate::metrics::{Metrics, Publish};
use crate::output::OomDetail;
use crate::pod::PodIdentity;

/// `reportingController` of every event (`From` in `kubectl describe`).
pub const REPORTING_CONTROLLER: &str = "linnix.io/tracer";
pub const OOM_REASON: &str = "OOMKilled";
const OOM_ACTION: &str = "OOMKill";
/// Notices waiting for the API server; more are dropped and counted.
const QUEUE_DEPTH: usize = 64;
/// At most ten API calls a second, however fast processes are killed.
const MIN_PUBLISH_GAP: Duration = Duration::from_millis(100);

/// One OOM kill, as the pod's owner should read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomNotice {
    pub pid: u32,
    pub comm: String,
    /// Container name, or id while the name is unknown.
    pub container: Option<String>,
    pub detail: OomDetail,
}

impl OomNotice {
    /// The event's `note`; far below the API's 1 kB limit, since `comm` is
    /// at most 15 bytes and a container label at most 64.
    pub fn note(&self) -> String {
        let mut note = format!("process {} (pid {}) ", self.comm, self.pid);
        match &self.container {
            Some(c) => note.push_str(&format!("in container {c} ")),
            None => note.push_str("in the pod "),
        }
        note.push_str(&format!("was OOM-killed: rss {} kB", self.detail.rss_kb));
        if let (Some(usage), Some(limit)) =
            (self.detail.memcg_usage_bytes, self.detail.memcg_limit_bytes)
        {
            note.push_str(&format!(", memory cgroup usage {usage} of {limit} bytes"));
        }
        note
    }

    fn event(&self) -> Event {
        Event {
            type_: EventType::Warning,
            reason: OOM_REASON.into(),
            note: Some(self.note()),
            action: OOM_ACTION.into(),
            secondary: None,
        }
    }
}

/// The reference every event is about: the pod itself.
pub fn pod_reference(identity: &PodIdentity, default_namespace: &str) -> Option<ObjectReference> {
    let name = identity.name.clone()?;
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name),
        namespace: Some(
            identity
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
        ),
        // Without it `kubectl describe pod` (which selects on the uid) would
        // not list the event.
        uid: identity.uid.clone(),
        ..Default::default()
    })
}

/// The event loop's handle on the publisher.
pub struct PodEvents {
    queue: mpsc::Sender<OomNotice>,
    metrics: Arc<Metrics>,
}

impl PodEvents {
    /// Start the publisher; `None` when the pod's name is unknown, since an
    /// event needs an object to be about.
    pub fn start(client: Client, identity: &PodIdentity, metrics: Arc<Metrics>) -> Option<Self> {
        let Some(regarding) = pod_reference(identity, client.default_namespace()) else {
            debug!("POD_NAME is not set: no Kubernetes events");
            return None;
        };
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: REPORTING_CONTROLLER.into(),
                instance: regarding.name.clone(),
            },
        );
        let (queue, notices) = mpsc::channel(QUEUE_DEPTH);
        let publisher = Publisher {
            recorder,
            regarding,
            metrics: Arc::clone(&metrics),
        };
        tokio::spawn(publisher.run(notices));
        Some(PodEvents { queue, metrics })
    }

    /// Queue an OOM kill; never waits.
    pub fn oom_killed(&self, notice: OomNotice) {
        match self.queue.try_send(notice) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.kube_event(Publish::Dropped),
            // The publisher gave up after a refusal and said so.
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

struct Publisher {
    recorder: Recorder,
    regarding: ObjectReference,
    metrics: Arc<Metrics>,
}

impl Publisher {
    async fn run(self, mut notices: mpsc::Receiver<OomNotice>) {
        let mut warned = false;
        while let Some(notice) = notices.recv().await {
            let next = tokio::time::Instant::now() + MIN_PUBLISH_GAP;
            let published = tokio::time::timeout(
                API_TIMEOUT,
                self.recorder.publish(&notice.event(), &self.regarding),
            )
            .await;
            match published {
                Ok(Ok(())) => {
                    debug!(pid = notice.pid, "OOM kill published as a Kubernetes event");
                    self.metrics.kube_event(Publish::Published);
                }
                Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
                    self.metrics.kube_event(Publish::Failed);
                    warn!(
                        error = %status.message,
                        "not allowed to publish Kubernetes events (grant create events to the service account); OOM kills are only in the tracer's output"
                    );
                    return;
                }
                Ok(Err(error)) => {
                    self.metrics.kube_event(Publish::Failed);
                    if !std::mem::replace(&mut warned, true) {
                        warn!(%error, "cannot publish a Kubernetes event; will retry with the next one");
                    } else {
                        debug!(%error, "cannot publish a Kubernetes event");
                    }
                }
                Err(_) => {
                    self.metrics.kube_event(Publish::Failed);
                    let error = format!("timeout after {API_TIMEOUT:?}");
                    if !std::mem::replace(&mut warned, true) {
                        warn!(%error, "the API server did not take a Kubernetes event; will retry with the next one");
                    } else {
                        debug!(%error, "the API server did not take a Kubernetes event");
                    }
                }
            }
            tokio::time::sleep_until(next).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(memcg: bool) -> OomDetail {
        OomDetail {
            rss_kb: 65012,
            rss_anon_kb: 65000,
            rss_file_kb: 12,
            rss_shmem_kb: 0,
            memcg_usage_bytes: memcg.then_some(67_108_864),
            memcg_limit_bytes: memcg.then_some(67_108_864),
        }
    }

    #[test]
    fn note_names_victim_container_and_memory() {
        let n = OomNotice {
            pid: 20,
            comm: "dd".into(),
            container: Some("app".into()),
            detail: detail(true),
        };
        assert_eq!(
            n.note(),
            "process dd (pid 20) in container app was OOM-killed: rss 65012 kB, memory cgroup usage 67108864 of 67108864 bytes"
        );
        let e = n.event();
        assert_eq!(e.type_, EventType::Warning);
        assert_eq!(e.reason, "OOMKilled");
    }

    #[test]
    fn note_without_container_or_memcg() {
        let n = OomNotice {
            pid: 7,
            comm: "sh".into(),
            container: None,
            detail: detail(false),
        };
        assert_eq!(
            n.note(),
            "process sh (pid 7) in the pod was OOM-killed: rss 65012 kB"
        );
    }

    #[test]
    fn reference_is_the_pod() {
        let id = PodIdentity {
            name: Some("demo".into()),
            namespace: None,
            uid: Some("u-1".into()),
            node: None,
        };
        let r = pod_reference(&id, "fallback").expect("named pod");
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(r.kind.as_deref(), Some("Pod"));
        assert_eq!(r.name.as_deref(), Some("demo"));
        assert_eq!(r.namespace.as_deref(), Some("fallback"));
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        assert!(pod_reference(&PodIdentity::default(), "x").is_none());
    }
}
