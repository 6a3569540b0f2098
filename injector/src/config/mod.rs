//! The sidecar template: built-in defaults, optionally overridden by a YAML file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::overrides::Override;
use crate::quantity::{Quantity, QuantityError};

mod api_server;
pub use api_server::{ApiServer, ApiServerConfig, ApiServerError, HOST_ENV, PORT_ENV};

pub const DEFAULT_IMAGE: &str = concat!("linnix/linnix-sidecar:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("sidecar.name {0:?} is not a valid container name (lowercase RFC 1123 label, at most 63 characters)")]
    Name(String),
    #[error("sidecar.image must not be empty")]
    Image,
    #[error("sidecar.metricsPort must be between 1 and 65535")]
    MetricsPort,
    #[error(transparent)]
    Args(#[from] crate::sidecar_args::ArgsError),
    #[error("sidecar.seccompProfile of type Localhost needs a non-empty localhostProfile")]
    LocalhostProfile,
    #[error("sidecar.resources.{field}: {source}")]
    Quantity {
        field: &'static str,
        source: QuantityError,
    },
    #[error("sidecar.minMemoryLimit: {0}")]
    MinMemoryLimit(QuantityError),
    #[error("sidecar.resources.limits.memory {limit} is below sidecar.minMemoryLimit {floor}, the least the tracer needs to load its programs")]
    MemoryBelowFloor { limit: String, floor: String },
    #[error("sidecar.resources: the {resource} request {request} exceeds its limit {limit}")]
    RequestAboveLimit {
        resource: &'static str,
        request: String,
        limit: String,
    },
    #[error("sidecar.resources.{field}: {value} is not a whole number of bytes (the API server warns about fractional memory and rounds it)")]
    FractionalBytes { field: &'static str, value: String },
    #[error(transparent)]
    ApiServer(#[from] ApiServerError),
}

/// Top level of the YAML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sidecar: SidecarConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SidecarConfig {
    pub name: String,
    pub image: String,
    pub image_pull_policy: PullPolicy,
    pub args: Vec<String>,
    pub metrics_port: u16,
    pub native_sidecar: bool,
    pub seccomp_profile: SeccompProfile,
    pub resources: ResourcesConfig,
    /// The settings pods and namespaces may override by annotation.
    pub allowed_overrides: Vec<Override>,
    /// Smallest memory limit the tracer gets, from the file or a pod's
    /// `sidecar.linnix.io/memory`; see [`DEFAULT_MIN_MEMORY_LIMIT`].
    pub min_memory_limit: String,
    /// Add `prometheus.io/scrape|port|path` to injected pods (see
    /// [`crate::scrape_annotations`]); a pod may say otherwise.
    pub prometheus_annotations: bool,
    /// Where the tracer's API client connects; unset: see
    /// [`Sidecar::or_api_server`].
    pub api_server: Option<ApiServerConfig>,
}

/// Above the tracer's memory peak while it loads: 23 MiB measured on the host
/// and about 26 MiB in a pod (aya parsing the kernel's BTF; the README's
/// benchmark figures), rounded up. Below it
/// the tracer is OOM-killed before its programs attach, and a native sidecar
/// that never starts holds the app containers back for good. It is a
/// setting because the peak moves with the tracer and the kernel's BTF.
pub const DEFAULT_MIN_MEMORY_LIMIT: &str = "32Mi";

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            name: "linnix-tracer".into(),
            image: DEFAULT_IMAGE.into(),
            image_pull_policy: PullPolicy::IfNotPresent,
            args: Vec::new(),
            metrics_port: 9464,
            native_sidecar: true,
            seccomp_profile: SeccompProfile::default(),
            resources: ResourcesConfig::default(),
            allowed_overrides: Override::ALL.to_vec(),
            min_memory_limit: DEFAULT_MIN_MEMORY_LIMIT.into(),
            prometheus_annotations: false,
            api_server: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The container's `securityContext.seccompProfile`.
///
/// The default is `Unconfined`: containers/common's profile (CRI-O, podman)
/// allows `bpf()` only with CAP_SYS_ADMIN, so `RuntimeDefault` breaks the
/// tracer there. On containerd >= 1.6.9 / 1.7 `RuntimeDefault` works and is
/// the better choice; see the README for the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SeccompProfile {
    RuntimeDefault,
    #[default]
    Unconfined,
    Localhost {
        #[serde(rename = "localhostProfile")]
        localhost_profile: String,
    },
}

/// Requests and limits as written in the file; missing entries fall back to
/// the defaults one by one, so both are always complete.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesConfig {
    pub requests: ResourceValues,
    pub limits: ResourceValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceValues {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

/// Validated, complete requests and limits for the tracer container.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub cpu_request: Quantity,
    pub cpu_limit: Quantity,
    pub memory_request: Quantity,
    pub memory_limit: Quantity,
}

/// What the scheduler reserves; a tracer's steady state is about that.
const DEFAULT_CPU_REQUEST: &str = "10m";
/// A cap, not a reservation. A tracer that has just spent its CFS quota on
/// loading is throttled while the app containers start: under 200m it
/// dropped events of a flood begun at `/readyz` in 3 of 16 runs, under 500m
/// in none (`scripts/bench-cpu-limit.py`, figures in the README).
const DEFAULT_CPU_LIMIT: &str = "500m";
/// What a tracer keeps after start-up (RSS about 5 MiB, most of it the
/// binary's code, which the tracers of a node share; 0.2 MiB of BPF maps),
/// with room to spare; the limit stays above the load-time peak (about
/// 26 MiB in a pod, while the kernel's BTF is parsed). `scripts/bench-node.py`
/// measures both.
const DEFAULT_MEMORY_REQUEST: &str = "16Mi";
const DEFAULT_MEMORY_LIMIT: &str = "64Mi";

/// The checked sidecar template used by `serve` and `inject`.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub name: String,
    pub image: String,
    pub image_pull_policy: PullPolicy,
    pub args: Vec<String>,
    pub metrics_port: u16,
    pub native_sidecar: bool,
    pub seccomp_profile: SeccompProfile,
    pub resources: Resources,
    pub allowed_overrides: Vec<Override>,
    pub prometheus_annotations: bool,
    /// No memory limit below this is given to the tracer.
    pub min_memory_limit: Quantity,
    /// Written into the tracer's env as KUBERNETES_SERVICE_HOST/PORT; `None`
    /// leaves them to the kubelet's service links.
    pub api_server: Option<ApiServer>,
    /// The tracer container as Kubernetes JSON, built from the fields above
    /// on first use by [`crate::patch`] (see `Sidecar::container` there): it
    /// does not depend on the pod. The fields are not changed after
    /// validation, so the cache never goes stale.
    pub(crate) container: OnceLock<Value>,
    /// `sidecar.linnix.io/status` of the pods this configuration injects.
    status: String,
}

impl Sidecar {
    /// The status annotation of an injected pod: the injector's version,
    /// the tracer's (the image tag) and the image, so that pods injected
    /// before an upgrade can be told apart.
    pub fn injected_status(&self) -> &str {
        &self.status
    }

    /// The configured API server, else `own` (the address the kubelet gave
    /// the injector, in a namespace teams do not control).
    pub fn or_api_server(mut self, own: Option<ApiServer>) -> Self {
        if self.api_server.is_none() {
            self.api_server = own;
            // Built from the fields: rebuilt on next use.
            self.container = OnceLock::new();
        }
        self
    }
}

/// The version an image reference names: its tag, else its digest, else
/// `latest` (what the runtime pulls for a bare name).
pub fn image_version(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A colon before the last slash belongs to a registry port.
    let last = name.rsplit('/').next().unwrap_or(name);
    match (last.split_once(':'), digest) {
        (Some((_, tag)), _) if !tag.is_empty() => tag,
        (_, Some(digest)) => digest,
        _ => "latest",
    }
}

impl Config {
    /// Reads the YAML file when given, else the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        // An empty file is a valid "all defaults" file.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }
}

impl SidecarConfig {
    /// Checks every field; `native_sidecar` overrides the file's value when set.
    pub fn validate(self, native_sidecar: Option<bool>) -> Result<Sidecar, ConfigError> {
        if !is_dns_label(&self.name) {
            return Err(ConfigError::Name(self.name));
        }
        if self.image.trim().is_empty() {
            return Err(ConfigError::Image);
        }
        if self.metrics_port == 0 {
            return Err(ConfigError::MetricsPort);
        }
        crate::sidecar_args::check(&self.args, self.metrics_port)?;
        if let SeccompProfile::Localhost { localhost_profile } = &self.seccomp_profile {
            if localhost_profile.trim().is_empty() {
                return Err(ConfigError::LocalhostProfile);
            }
        }
        let r = &self.resources;
        let pick = |field: &'static str, value: &Option<String>, default: &str| {
            Quantity::parse_resource(value.as_deref().unwrap_or(default))
                .map_err(|source| ConfigError::Quantity { field, source })
        };
        let resources = Resources {
            cpu_request: pick("requests.cpu", &r.requests.cpu, DEFAULT_CPU_REQUEST)?,
            cpu_limit: pick("limits.cpu", &r.limits.cpu, DEFAULT_CPU_LIMIT)?,
            memory_request: pick(
                "requests.memory",
                &r.requests.memory,
                DEFAULT_MEMORY_REQUEST,
            )?,
            memory_limit: pick("limits.memory", &r.limits.memory, DEFAULT_MEMORY_LIMIT)?,
        };
        for (field, q) in [
            ("requests.memory", &resources.memory_request),
            ("limits.memory", &resources.memory_limit),
        ] {
            if !q.is_whole() {
                return Err(ConfigError::FractionalBytes {
                    field,
                    value: q.to_string(),
                });
            }
        }
        for (resource, request, limit) in [
            ("cpu", &resources.cpu_request, &resources.cpu_limit),
            ("memory", &resources.memory_request, &resources.memory_limit),
        ] {
            if request.cmp_amount(limit) == std::cmp::Ordering::Greater {
                return Err(ConfigError::RequestAboveLimit {
                    resource,
                    request: request.to_string(),
                    limit: limit.to_string(),
                });
            }
        }
        let api_server = self
            .api_server
            .as_ref()
            .map(ApiServerConfig::validate)
            .transpose()?;
        let min_memory_limit = Quantity::parse_resource(&self.min_memory_limit)
            .map_err(ConfigError::MinMemoryLimit)?;
        if resources.memory_limit.cmp_amount(&min_memory_limit) == std::cmp::Ordering::Less {
            return Err(ConfigError::MemoryBelowFloor {
                limit: resources.memory_limit.to_string(),
                floor: min_memory_limit.to_string(),
            });
        }
        let status = format!(
            "{} (linnix-injector {}, tracer {}, image {})",
            crate::decision::INJECTED_PREFIX,
            env!("CARGO_PKG_VERSION"),
            image_version(&self.image),
            self.image
        );
        Ok(Sidecar {
            name: self.name,
            image: self.image,
            image_pull_policy: self.image_pull_policy,
            args: self.args,
            metrics_port: self.metrics_port,
            native_sidecar: native_sidecar.unwrap_or(self.native_sidecar),
            seccomp_profile: self.seccomp_profile,
            resources,
            allowed_overrides: self.allowed_overrides,
            prometheus_annotations: self.prometheus_annotations,
            min_memory_limit,
            api_server,
            container: OnceLock::new(),
            status,
        })
    }
}

/// RFC 1123 label, the rule for container names.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests;
