//! Exec probes of the pod's containers, from its spec.
//!
//! The kubelet runs an exec probe through the runtime's exec, so its process
//! enters the container from outside and runs exactly the probe's `command`
//! as argv. Users of node-wide tracers find that these processes are most of
//! what they see (cilium/tetragon#2261), so they are named, and can be left
//! out of the output.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use linnix_ebpf::escape_bytes;

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// Container name → its exec probes: the argv each runs, with the name it
/// is reported under (`app/liveness`; `app/liveness,readiness` when two
/// probes run the same command and cannot be told apart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecProbes {
    by_container: HashMap<String, Vec<NamedCommand>>,
}

/// A probe's argv and the name it is reported under.
type NamedCommand = (Vec<String>, Arc<str>);

impl ExecProbes {
    /// The exec probes of the pod's containers and (restartable) init
    /// containers, with their commands escaped as argv from the kernel is.
    pub fn of_pod(pod: &Pod) -> Self {
        let Some(spec) = pod.spec.as_ref() else {
            return ExecProbes::default();
        };
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        let mut by_container = HashMap::new();
        for container in containers {
            let probes = probes_of(container);
            if !probes.is_empty() {
                by_container.insert(container.name.clone(), probes);
            }
        }
        ExecProbes { by_container }
    }

    /// Whether `container` has exec probes at all.
    pub fn any_in(&self, container: &str) -> bool {
        self.by_container.contains_key(container)
    }

    /// The probe `argv` is in `container`, if any.
    pub fn matching(&self, container: &str, argv: &[String]) -> Option<Arc<str>> {
        self.by_container
            .get(container)?
            .iter()
            .find(|(command, _)| command.as_slice() == argv)
            .map(|(_, name)| Arc::clone(name))
    }
}

fn probes_of(container: &Container) -> Vec<NamedCommand> {
    let mut found: Vec<(Vec<String>, Vec<ProbeKind>)> = Vec::new();
    for (kind, probe) in [
        (ProbeKind::Startup, &container.startup_probe),
        (ProbeKind::Liveness, &container.liveness_probe),
        (ProbeKind::Readiness, &container.readiness_probe),
    ] {
        let Some(command) = exec_command(probe.as_ref()) else {
            continue;
        };
        match found.iter_mut().find(|(c, _)| *c == command) {
            Some((_, kinds)) => kinds.push(kind),
            None => found.push((command, vec![kind])),
        }
    }
    found
        .into_iter()
        .map(|(command, kinds)| {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            let name = format!("{}/{}", container.name, kinds.join(","));
            (command, Arc::from(name))
        })
        .collect()
}

fn exec_command(probe: Option<&Probe>) -> Option<Vec<String>> {
    let command = probe?.exec.as_ref()?.command.as_ref()?;
    (!command.is_empty()).then(|| {
        command
            .iter()
            .map(|arg| escape_bytes(arg.as_bytes()))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, PodSpec};

    fn exec(command: &[&str]) -> Option<Probe> {
        Some(Probe {
            exec: Some(ExecAction {
                command: Some(command.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        })
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn probes_are_named_by_container_and_kind() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "app".into(),
                        liveness_probe: exec(&["cat", "/tmp/healthy"]),
                        readiness_probe: exec(&["cat", "/tmp/healthy"]),
                        startup_probe: exec(&["sh", "-c", "test -e /tmp/up"]),
                        ..Default::default()
                    },
                    Container {
                        name: "web".into(),
                        readiness_probe: Some(Probe {
                            http_get: Some(HTTPGetAction::default()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
                init_containers: Some(vec![Container {
                    name: "proxy".into(),
                    liveness_probe: exec(&["/bin/proxy", "--check\n"]),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let probes = ExecProbes::of_pod(&pod);
        let name = |c: &str, a: &[&str]| probes.matching(c, &argv(a)).map(|n| n.to_string());
        assert_eq!(
            name("app", &["cat", "/tmp/healthy"]).as_deref(),
            Some("app/liveness,readiness")
        );
        assert_eq!(
            name("app", &["sh", "-c", "test -e /tmp/up"]).as_deref(),
            Some("app/startup")
        );
        // Exactly the argv, in its container only.
        assert_eq!(name("app", &["cat", "/tmp/healthy", "x"]), None);
        assert_eq!(name("app", &["cat"]), None);
        assert_eq!(name("web", &["cat", "/tmp/healthy"]), None);
        // Commands are compared as the kernel's argv is reported: escaped.
        assert_eq!(
            name("proxy", &["/bin/proxy", "--check\\x0a"]).as_deref(),
            Some("proxy/liveness")
        );
        assert!(probes.any_in("app") && probes.any_in("proxy") && !probes.any_in("web"));
        assert_eq!(ExecProbes::of_pod(&Pod::default()), ExecProbes::default());
    }
}
