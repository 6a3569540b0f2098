//! What the kernel dropped: `lost` lines where the holes are, warnings on
//! stderr, the counters, and the summary at the end.

use std::time::{Duration, Instant};

use linnix_ebpf::{KernelStats, LostEvent, Tracer};
use tracing::{debug, info, warn};

use super::EventWriter;
use crate::losses::{self, Drops};
use crate::output::{LostKind, LostLine};
use crate::run::RunError;

/// How often at most stderr is told about events dropped in the kernel.
pub(super) const LOSS_WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl EventWriter {
    /// The kernel's lost record: a `lost` line where the hole is.
    pub(super) fn lost(&mut self, lost: &LostEvent) {
        let drops = Drops {
            lost: lost.lost,
            rate_limited: lost.rate_limited,
        };
        self.write_lost(lost.ts_boot_ns, drops);
    }

    fn write_lost(&mut self, ts_boot_ns: u64, drops: Drops) {
        self.losses.reported_in_stream(drops);
        let line = LostLine {
            event: LostKind,
            ts: self.clock.rfc3339(ts_boot_ns),
            lost: drops.lost,
            rate_limited: drops.rate_limited,
            pod: self.settings.pod.as_ref(),
        };
        self.out.lost(&line);
    }

    /// The kernel's running totals: into the metrics, and onto stderr when
    /// it has dropped events (see [`crate::losses`]).
    pub(super) fn kernel_stats(&mut self, tracer: &Tracer) -> Option<KernelStats> {
        match tracer.kernel_stats() {
            Ok(stats) => {
                self.metrics.kernel_stats(stats);
                if let Some(drops) = self.losses.observe(Instant::now(), stats) {
                    warn!(
                        lost = drops.lost,
                        rate_limited = drops.rate_limited,
                        "{}",
                        losses::warning(drops)
                    );
                }
                Some(stats)
            }
            Err(e) => {
                debug!(error = %e, "cannot read kernel stats");
                None
            }
        }
    }

    /// After the last drain: a `lost` line for drops that no lost record
    /// carried (they came after the last record), the summary on stderr,
    /// and a flush.
    pub fn finish(&mut self, tracer: &Tracer) -> Result<(), RunError> {
        if let Some(totals) = self.kernel_stats(tracer) {
            let unreported = self.losses.unreported_in_stream(totals);
            if unreported.any() {
                self.write_lost(self.clock.boot_ns(), unreported);
            }
        }
        let flushed = self.flush();
        self.summarize(tracer);
        flushed
    }

    /// The summary on stderr, also when stdout broke and nothing more can
    /// be written: what reached it, what did not, what the kernel dropped.
    pub fn summarize(&mut self, tracer: &Tracer) {
        let Some(totals) = self.kernel_stats(tracer) else {
            return;
        };
        let totals = Drops::from(totals);
        let mut summary = losses::summary(self.out.written(), totals);
        let unwritten = self.out.unwritten();
        if unwritten > 0 {
            summary.push_str(&format!(", {unwritten} not written (stdout was closed)"));
        }
        if totals.any() || unwritten > 0 {
            warn!(
                lost = totals.lost,
                rate_limited = totals.rate_limited,
                unwritten,
                "{summary}"
            );
        } else {
            info!("{summary}");
        }
    }
}
