//! The settings a pod or namespace may override, and where a value in
//! effect comes from.

use serde::{Deserialize, Serialize};

/// A setting a pod or namespace may override, named as in its annotation
/// and in `sidecar.allowedOverrides`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Override {
    Cpu,
    Memory,
    CpuLimit,
    MemoryLimit,
    LogLevel,
    MaxEventsPerSec,
    Threads,
    IgnoreExecProbes,
    NativeSidecar,
}

impl Override {
    pub const ALL: [Override; 9] = [
        Override::Cpu,
        Override::Memory,
        Override::CpuLimit,
        Override::MemoryLimit,
        Override::LogLevel,
        Override::MaxEventsPerSec,
        Override::Threads,
        Override::IgnoreExecProbes,
        Override::NativeSidecar,
    ];

    /// The name in `sidecar.allowedOverrides`.
    pub fn name(self) -> &'static str {
        self.annotation()
            .strip_prefix("sidecar.linnix.io/")
            .unwrap_or_default()
    }

    pub fn annotation(self) -> &'static str {
        match self {
            Override::Cpu => "sidecar.linnix.io/cpu",
            Override::Memory => "sidecar.linnix.io/memory",
            Override::CpuLimit => "sidecar.linnix.io/cpu-limit",
            Override::MemoryLimit => "sidecar.linnix.io/memory-limit",
            Override::LogLevel => "sidecar.linnix.io/log-level",
            Override::MaxEventsPerSec => "sidecar.linnix.io/max-events-per-sec",
            Override::Threads => "sidecar.linnix.io/threads",
            Override::IgnoreExecProbes => "sidecar.linnix.io/ignore-exec-probes",
            Override::NativeSidecar => "sidecar.linnix.io/native-sidecar",
        }
    }

    /// The tracer flag the setting maps to, for the settings passed as
    /// arguments.
    pub(super) fn flag(self) -> Option<&'static str> {
        match self {
            Override::LogLevel => Some("--log-level"),
            Override::MaxEventsPerSec => Some("--max-events-per-sec"),
            Override::Threads => Some("--threads"),
            Override::IgnoreExecProbes => Some("--ignore-exec-probes"),
            _ => None,
        }
    }

    /// Whether the setting changes what the admission policy of a guarded
    /// namespace pins: the tracer's arguments or its form.
    pub(super) fn changes_tracer_spec(self) -> bool {
        self.flag().is_some() || self == Override::NativeSidecar
    }
}

/// Where the value in effect comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Pod,
    Namespace,
    Config,
    /// The configured request, lowered to a smaller limit (the API server
    /// rejects a request above its limit).
    LoweredToLimit,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Pod => "the pod",
            Origin::Namespace => "the namespace",
            Origin::Config => "the config",
            Origin::LoweredToLimit => "the config, lowered to the limit",
        }
    }
}

/// One setting as the tracer gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub setting: Override,
    pub value: String,
    pub origin: Origin,
}
