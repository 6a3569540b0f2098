//! The parts of a pod that the decision and the patch read, deserialized
//! straight from the pod's JSON: the request body, or a `Value` offline.
//!
//! A review carries the whole pod; a large one (thousands of env entries) is
//! mostly data the injector never looks at. serde skips every other field
//! without allocating, and strings without escapes are borrowed from the
//! input. Every field is lenient: a value of another JSON type than expected
//! (a `spec` that is a number, an annotation that is not a string) reads as
//! absent. The patch treats such a value as absent too (an `add` replaces
//! it), so odd objects never fail a review.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use lenient::{Lenient, Loose};

mod extra;
mod lenient;
mod object;

pub use extra::RestartPolicy;
pub use object::PodObject;

/// What a pod (or a workload's pod template) says about itself.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodFacts<'a> {
    #[serde(borrow)]
    metadata: Lenient<Metadata<'a>>,
    #[serde(borrow)]
    spec: Lenient<Spec<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(borrow)]
    name: Lenient<Cow<'a, str>>,
    #[serde(borrow)]
    generate_name: Lenient<Cow<'a, str>>,
    #[serde(borrow)]
    namespace: Lenient<Cow<'a, str>>,
    #[serde(borrow)]
    annotations: Lenient<Annotations<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
    share_process_namespace: Lenient<bool>,
    #[serde(rename = "hostPID")]
    host_pid: Lenient<bool>,
    host_users: Lenient<bool>,
    host_network: Lenient<bool>,
    security_context: Lenient<extra::WindowsSecurity>,
    os: Lenient<extra::Os>,
    #[serde(borrow)]
    restart_policy: Lenient<Cow<'a, str>>,
    #[serde(borrow)]
    resources: Lenient<extra::PodResources<'a>>,
    #[serde(borrow)]
    containers: Lenient<Names<'a>>,
    #[serde(borrow)]
    init_containers: Lenient<Names<'a>>,
}

/// One entry of a container list: its name, and the ports it declares.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Named<'a> {
    #[serde(borrow)]
    name: Lenient<Cow<'a, str>>,
    ports: Lenient<extra::Ports>,
    security_context: Lenient<extra::WindowsSecurity>,
}

/// The annotations: string values, and the keys whose value is of another
/// JSON type (with that type's name), so that a value that is ignored can be
/// reported.
#[derive(Debug, Default)]
struct Annotations<'a> {
    strings: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    others: Vec<(Cow<'a, str>, &'static str)>,
}

/// The container names of a container list, and every port number its
/// containers declare (containerPort and hostPort).
/// The last: whether any of them is a Windows HostProcess container.
#[derive(Debug, Default)]
struct Names<'a>(Vec<Cow<'a, str>>, Vec<i64>, bool);

/// A pod's container lists, as the patch addresses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    /// The field name in the pod spec.
    pub fn key(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

impl<'a> PodFacts<'a> {
    /// Reads the facts from any JSON value: anything but an object reads as
    /// a pod with nothing set.
    pub fn read<'de: 'a, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Lenient::<Self>::deserialize(d)?.0.unwrap_or_default())
    }

    /// The facts of a pod-shaped value.
    pub fn of(pod: &'a Value) -> Self {
        // Every field is lenient and a `Value` has no duplicate keys, so
        // reading a `Value` cannot fail.
        Self::read(pod).unwrap_or_default()
    }

    fn metadata(&self) -> Option<&Metadata<'a>> {
        self.metadata.0.as_ref()
    }

    fn spec(&self) -> Option<&Spec<'a>> {
        self.spec.0.as_ref()
    }

    pub fn name(&self) -> Option<&str> {
        self.metadata()?.name.0.as_deref()
    }

    pub fn generate_name(&self) -> Option<&str> {
        self.metadata()?.generate_name.0.as_deref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata()?.namespace.0.as_deref()
    }

    /// Whether `metadata` is an object.
    pub fn has_metadata(&self) -> bool {
        self.metadata().is_some()
    }

    /// Whether `metadata.annotations` is an object.
    pub fn has_annotations(&self) -> bool {
        self.metadata().is_some_and(|m| m.annotations.0.is_some())
    }

    /// The annotation `key` when it is a string. The last of duplicate keys
    /// wins, as in a JSON map.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        let annotations = self.metadata()?.annotations.0.as_ref()?;
        annotations
            .strings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The JSON type of annotation `key` when its value is not a string
    /// (`"a number"`, `"a boolean"`, …); such a value reads as absent. The
    /// API server never sends one, but a manifest given to `inject` may
    /// (`sidecar.linnix.io/memory: 64` is a number in YAML).
    pub fn non_string_annotation(&self, key: &str) -> Option<&'static str> {
        if self.annotation(key).is_some() {
            return None;
        }
        let annotations = self.metadata()?.annotations.0.as_ref()?;
        annotations
            .others
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, kind)| *kind)
    }

    /// Whether `spec` is an object.
    pub fn has_spec(&self) -> bool {
        self.spec().is_some()
    }

    pub fn share_process_namespace(&self) -> Option<bool> {
        self.spec()?.share_process_namespace.0
    }

    pub fn host_users(&self) -> Option<bool> {
        self.spec()?.host_users.0
    }

    pub fn host_pid(&self) -> Option<bool> {
        self.spec()?.host_pid.0
    }

    /// A pod for Windows (`spec.os.name`), or with a Windows HostProcess
    /// container or pod security context: the tracer is a Linux program,
    /// and beside HostProcess containers every container must be one.
    pub fn for_windows(&self) -> bool {
        let Some(spec) = self.spec() else {
            return false;
        };
        spec.os.0.as_ref().is_some_and(|o| o.windows())
            || spec
                .security_context
                .0
                .as_ref()
                .is_some_and(|s| s.host_process())
            || [&spec.containers, &spec.init_containers]
                .iter()
                .any(|list| list.0.as_ref().is_some_and(|n| n.2))
    }

    fn list(&self, list: ContainerList) -> Option<&Names<'a>> {
        let spec = self.spec()?;
        match list {
            ContainerList::Containers => spec.containers.0.as_ref(),
            ContainerList::InitContainers => spec.init_containers.0.as_ref(),
        }
    }

    /// Whether the container list is an array.
    pub fn has_list(&self, list: ContainerList) -> bool {
        self.list(list).is_some()
    }

    /// The name of the first app container: the one `kubectl logs` and
    /// `kubectl exec` should pick without `-c`.
    pub fn first_container(&self) -> Option<&str> {
        self.list(ContainerList::Containers)?
            .0
            .first()
            .map(|n| n.as_ref())
    }

    /// Whether a container or init container is called `name`.
    pub fn has_container(&self, name: &str) -> bool {
        [ContainerList::InitContainers, ContainerList::Containers]
            .into_iter()
            .filter_map(|l| self.list(l))
            .any(|names| names.0.iter().any(|n| n == name))
    }
}

/// Objects read with their derived `Deserialize`, from the map only (a
/// derived struct would also accept an array).
macro_rules! loose_object {
    ($($ty:ident),*) => {$(
        impl<'de: 'a, 'a> Loose<'de> for $ty<'a> {
            fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
                Self::deserialize(MapAccessDeserializer::new(map)).map(Some)
            }
        }
    )*};
}

loose_object!(PodFacts, Metadata, Spec, Named);

impl<'de: 'a, 'a> Loose<'de> for Annotations<'a> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut annotations = Annotations::default();
        while let Some(Lenient(key)) = map.next_key::<Lenient<Cow<'a, str>>>()? {
            let value = map.next_value::<AnnotationValue<'a>>()?;
            match (key, value) {
                (Some(key), AnnotationValue::String(value)) => {
                    annotations.strings.push((key, value))
                }
                (Some(key), AnnotationValue::Other(kind)) => annotations.others.push((key, kind)),
                (None, _) => {}
            }
        }
        Ok(Some(annotations))
    }
}

/// An annotation's value: a string, or the name of the JSON type it has.
enum AnnotationValue<'a> {
    String(Cow<'a, str>),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for AnnotationValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = AnnotationValue<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Other("a number"))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnnotationValue::String(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnnotationValue::String(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Other("null"))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Other("null"))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnnotationValue::Other("an object"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnnotationValue::Other("an array"))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Loose<'de> for Names<'a> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut names = Vec::new();
        let mut ports = Vec::new();
        let mut host_process = false;
        while let Some(Lenient(entry)) = seq.next_element::<Lenient<Named<'a>>>()? {
            let Some(entry) = entry else { continue };
            names.extend(entry.name.0);
            ports.extend(entry.ports.0.into_iter().flat_map(|p| p.0));
            host_process |= entry.security_context.0.is_some_and(|s| s.host_process());
        }
        Ok(Some(Names(names, ports, host_process)))
    }
}

#[cfg(test)]
mod tests;
