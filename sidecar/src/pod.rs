//! Who the pod is: identity from the downward API, which container a cgroup
//! belongs to, and container names from the pod's own status.

use std::collections::HashMap;
use std::env;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

/// The `pod` object of every event, from the downward API environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodIdentity {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl PodIdentity {
    pub fn from_env() -> Self {
        let var = |k: &str| env::var(k).ok().filter(|v| !v.trim().is_empty());
        PodIdentity {
            name: var("POD_NAME"),
            namespace: var("POD_NAMESPACE"),
            uid: var("POD_UID"),
            node: var("NODE_NAME"),
        }
    }

    pub fn is_known(&self) -> bool {
        self.name.is_some() || self.namespace.is_some() || self.uid.is_some()
    }
}

/// The container id carried by a container cgroup's kernfs name, for the
/// layouts of the common runtimes and cgroup drivers:
/// `libpod-<id>[.scope]`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope` (systemd driver) and a bare `<id>` (cgroupfs driver).
pub fn container_id_from_cgroup(name: &str) -> Option<&str> {
    let name = name.strip_suffix(".scope").unwrap_or(name);
    let id = ["libpod-", "cri-containerd-", "crio-", "docker-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    is_container_id(id).then_some(id)
}

/// Whether a cgroup's kernfs name looks like a pod cgroup: the kubelet's
/// `pod<uid>` (cgroupfs driver, uid with `-`) or `kubepods[-<qos>]-pod<uid>
/// .slice` (systemd driver, uid with `_`), podman's pod id directory
/// (`<64 hex>` under libpod_parent) or `machine-libpod_pod_<id>.slice`.
pub fn looks_like_pod_cgroup(name: &str) -> bool {
    let name = name.strip_suffix(".slice").unwrap_or(name);
    if is_container_id(name) {
        return true;
    }
    if let Some((_, id)) = name.rsplit_once("libpod_pod_") {
        return is_container_id(id);
    }
    let uid = match name.strip_prefix("pod") {
        Some(uid) => uid,
        None => match name.rsplit_once("-pod") {
            Some((_, uid)) => uid,
            None => return false,
        },
    };
    // A UUID, or the 32 hex digits of a static pod's manifest hash.
    uid.bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
        && uid.bytes().filter(u8::is_ascii_hexdigit).count() == 32
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Container id → container name from the pod's status (regular, init and
/// ephemeral containers). `containerID` reads `<runtime>://<id>`.
pub fn container_names(pod: &Pod) -> HashMap<String, String> {
    let Some(status) = pod.status.as_ref() else {
        return HashMap::new();
    };
    [
        status.container_statuses.as_deref(),
        status.init_container_statuses.as_deref(),
        status.ephemeral_container_statuses.as_deref(),
    ]
    .into_iter()
    .flatten()
    .flatten()
    .filter_map(|cs| {
        let raw = cs.container_id.as_deref()?;
        let id = raw.split_once("://").map_or(raw, |(_, id)| id);
        is_container_id(id).then(|| (id.to_owned(), cs.name.clone()))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn container_ids_of_every_runtime_layout() {
        for name in [
            format!("libpod-{ID}"),
            format!("libpod-{ID}.scope"),
            format!("cri-containerd-{ID}.scope"),
            format!("crio-{ID}.scope"),
            format!("docker-{ID}.scope"),
            ID.to_owned(),
        ] {
            assert_eq!(container_id_from_cgroup(&name), Some(ID), "{name}");
        }
        for name in [
            "",
            "libpod-",
            "pod5b1f.slice",
            "kubepods-burstable-pod5b1f.slice",
            "libpod_parent",
            "linnix-trace-42",
            "crio-conmon-xyz.scope",
            &ID[1..],
            &format!("{ID}0"),
        ] {
            assert_eq!(container_id_from_cgroup(name), None, "{name}");
        }
    }

    fn status(name: &str, id: Option<&str>) -> ContainerStatus {
        ContainerStatus {
            name: name.to_owned(),
            container_id: id.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn names_from_pod_status() {
        let other = "f".repeat(64);
        let pod = Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![
                    status("app", Some(&format!("containerd://{ID}"))),
                    status("pending", None),
                    status("weird", Some("containerd://not-hex")),
                ]),
                init_container_statuses: Some(vec![status(
                    "init",
                    Some(&format!("cri-o://{other}")),
                )]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let names = container_names(&pod);
        assert_eq!(names.len(), 2);
        assert_eq!(names.get(ID).map(String::as_str), Some("app"));
        assert_eq!(names.get(&other).map(String::as_str), Some("init"));
        assert!(container_names(&Pod::default()).is_empty());
    }

    #[test]
    fn pod_cgroup_names_of_kubelet_and_podman() {
        for name in [
            "pod5b1f2c3d-0a1b-4c2d-8e3f-0123456789ab",
            "kubepods-pod5b1f2c3d_0a1b_4c2d_8e3f_0123456789ab.slice",
            "kubepods-burstable-pod5b1f2c3d_0a1b_4c2d_8e3f_0123456789ab.slice",
            "kubepods-besteffort-pod5b1f2c3d_0a1b_4c2d_8e3f_0123456789ab.slice",
            "pod0123456789abcdef0123456789abcdef",
            ID,
            &format!("machine-libpod_pod_{ID}.slice"),
        ] {
            assert!(looks_like_pod_cgroup(name), "{name}");
        }
        for name in [
            "",
            "system.slice",
            "user.slice",
            "kubepods.slice",
            "kubepods-burstable.slice",
            "burstable",
            "libpod_parent",
            "pod",
            "podcast",
            "pod5b1f2c3d-0a1b",
            "docker-0123.scope",
            &format!("libpod-{ID}"),
            &ID[1..],
        ] {
            assert!(!looks_like_pod_cgroup(name), "{name}");
        }
    }
}
