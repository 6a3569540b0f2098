//! The parts of a pod that shape how the tracer fits in: the ports its
//! containers declare, its pod-level resources, its restart policy.

use serde::de::{MapAccess, SeqAccess};
use serde::Deserialize;

use super::lenient::{Lenient, Loose};
use super::{Annotations, ContainerList, PodFacts};

/// `spec.resources`: pod-level requests and limits (Kubernetes 1.34+), as
/// resource name and quantity text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PodResources<'a> {
    // Same shape as annotations: a map of strings.
    #[serde(borrow)]
    requests: Lenient<Annotations<'a>>,
    #[serde(borrow)]
    limits: Lenient<Annotations<'a>>,
}

/// One entry of `ports`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Port {
    container_port: Lenient<i64>,
    host_port: Lenient<i64>,
}

/// `securityContext.windowsOptions.hostProcess`, of the pod or a container.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct WindowsSecurity {
    windows_options: Lenient<WindowsOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WindowsOptions {
    host_process: Lenient<bool>,
}

impl WindowsSecurity {
    pub(super) fn host_process(&self) -> bool {
        self.windows_options
            .0
            .as_ref()
            .and_then(|w| w.host_process.0)
            == Some(true)
    }
}

/// `spec.os`: the operating system the pod is for.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Os {
    name: Lenient<OsName>,
}

/// Whether `spec.os.name` says windows.
#[derive(Debug)]
struct OsName(bool);

impl Loose<'_> for OsName {
    fn from_str(s: &str) -> Option<Self> {
        Some(OsName(s == "windows"))
    }
}

impl Os {
    pub(super) fn windows(&self) -> bool {
        self.name.0.as_ref().is_some_and(|n| n.0)
    }
}

macro_rules! loose_map {
    ($($ty:ty),*) => {$(
        impl<'de> Loose<'de> for $ty {
            fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
                Self::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
            }
        }
    )*};
}

loose_map!(WindowsSecurity, WindowsOptions, Os);

/// The port numbers of one container's `ports`.
#[derive(Debug, Default)]
pub(super) struct Ports(pub(super) Vec<i64>);

impl<'de: 'a, 'a> Loose<'de> for PodResources<'a> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Self::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
    }
}

impl<'de> Loose<'de> for Port {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Self::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
    }
}

impl<'de> Loose<'de> for Ports {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut ports = Vec::new();
        while let Some(Lenient(port)) = seq.next_element::<Lenient<Port>>()? {
            if let Some(p) = port {
                ports.extend(p.container_port.0);
                ports.extend(p.host_port.0);
            }
        }
        Ok(Some(Ports(ports)))
    }
}

/// `spec.restartPolicy`, which decides whether the pod runs to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }

    /// Whether the pod ends once its containers have succeeded (a Job's
    /// pod): a container that never exits keeps it from ending.
    pub fn runs_to_completion(self) -> bool {
        self != RestartPolicy::Always
    }
}

impl PodFacts<'_> {
    /// The restart policy, `Always` when unset (the API server's default);
    /// an unknown value reads as `Always`, which the API server refuses anyway.
    pub fn restart_policy(&self) -> RestartPolicy {
        match self.spec().and_then(|s| s.restart_policy.0.as_deref()) {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    pub fn host_network(&self) -> bool {
        self.spec().and_then(|s| s.host_network.0) == Some(true)
    }

    /// Whether a container or init container declares `port` as its
    /// containerPort or hostPort.
    pub fn declares_port(&self, port: u16) -> bool {
        [ContainerList::InitContainers, ContainerList::Containers]
            .into_iter()
            .filter_map(|l| self.list(l))
            .any(|names| names.1.contains(&i64::from(port)))
    }

    /// The pod-level requests and limits (`spec.resources`), each as
    /// (resource, quantity text); `None` when the pod sets none.
    pub fn pod_resources(&self) -> Option<[Vec<(&str, &str)>; 2]> {
        let r = self.spec()?.resources.0.as_ref()?;
        fn pairs<'s>(m: &'s Lenient<Annotations<'_>>) -> Vec<(&'s str, &'s str)> {
            m.0.as_ref()
                .map(|a| {
                    a.strings
                        .iter()
                        .map(|(k, v)| (k.as_ref(), v.as_ref()))
                        .collect()
                })
                .unwrap_or_default()
        }
        let (requests, limits) = (pairs(&r.requests), pairs(&r.limits));
        (!requests.is_empty() || !limits.is_empty()).then_some([requests, limits])
    }
}
