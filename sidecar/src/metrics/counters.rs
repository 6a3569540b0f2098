//! The handles on one container's series, resolved once so that counting
//! an event builds no labels.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::{ExitKey, Metrics, ProbeLabels};
use crate::output::{ExitDetail, Kind};

/// Handles on the series of one container; the registry shares them, so
/// incrementing here is what /metrics shows.
pub struct ContainerCounters {
    pub(super) container: Arc<str>,
    pub(super) events: [Counter; Kind::ALL.len()],
    pub(super) oom_kills: Counter,
    pub(super) entered: Counter,
    /// Filled as exit codes and signals show up; bounded like the series.
    pub(super) exits: HashMap<ExitKey, Counter>,
    /// By probe name (`app/liveness`), filled as probes run.
    pub(super) probes: HashMap<Arc<str>, Counter>,
}

impl ContainerCounters {
    pub fn event(&self, kind: Kind) {
        self.events[kind as usize].inc();
    }

    pub fn exit(&mut self, metrics: &Metrics, exit: &ExitDetail) {
        let key = (
            exit.exit_code.filter(|c| (0..=255).contains(c)),
            exit.signal,
        );
        self.exits
            .entry(key)
            .or_insert_with(|| metrics.exit_counter(&self.container, key))
            .inc();
    }

    pub fn oom_kill(&self) {
        self.oom_kills.inc();
    }

    /// A process entered the container from outside.
    pub fn entered(&self) {
        self.entered.inc();
    }

    /// An exec probe ran; `name` is `<container>/<kinds>`.
    pub fn exec_probe(&mut self, metrics: &Metrics, name: &Arc<str>) {
        self.probes
            .entry(Arc::clone(name))
            .or_insert_with(|| {
                let kinds = name.rsplit_once('/').map_or(&**name, |(_, k)| k);
                metrics
                    .exec_probes
                    .get_or_create(&ProbeLabels {
                        container: self.container.to_string(),
                        probe: kinds.to_owned(),
                    })
                    .clone()
            })
            .inc();
    }
}
