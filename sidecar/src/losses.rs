//! Saying so when the kernel drops events: a warning on stderr when drops
//! start (then at most once per interval, with the counts since the last
//! one), `lost` lines in the stream, and a summary at the end.
//!
//! The kernel counts every drop twice: in running totals (the `stats` map,
//! read as [`KernelStats`]) and in lost records it puts in the ring where the
//! hole is. Drops after the last record of a run reach no lost record; the
//! totals tell how many, and the last `lost` line carries them.

use std::time::{Duration, Instant};

use linnix_ebpf::KernelStats;

/// Events dropped in the kernel, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// The ring buffer was full (fork and exec: three quarters full).
    pub lost: u64,
    /// Dropped by the per-pod rate limit.
    pub rate_limited: u64,
}

impl From<KernelStats> for Drops {
    fn from(stats: KernelStats) -> Self {
        Drops {
            lost: stats.lost,
            rate_limited: stats.rate_limited,
        }
    }
}

impl Drops {
    pub fn any(self) -> bool {
        self.lost > 0 || self.rate_limited > 0
    }

    fn since(self, earlier: Drops) -> Drops {
        Drops {
            lost: self.lost.saturating_sub(earlier.lost),
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
        }
    }

    fn add(&mut self, more: Drops) {
        self.lost = self.lost.saturating_add(more.lost);
        self.rate_limited = self.rate_limited.saturating_add(more.rate_limited);
    }
}

/// When to warn: at the first drop, then at most once per `interval`, with
/// the drops since the previous warning. Drops held back by the interval are
/// in the next warning, so none goes unmentioned.
#[derive(Debug)]
pub struct LossWatch {
    interval: Duration,
    warned_at: Option<Instant>,
    /// Kernel totals at the last warning.
    warned: Drops,
    /// What lost records and lines have reported so far.
    in_stream: Drops,
}

impl LossWatch {
    pub fn new(interval: Duration) -> Self {
        LossWatch {
            interval,
            warned_at: None,
            warned: Drops::default(),
            in_stream: Drops::default(),
        }
    }

    /// The kernel's totals, read at `now`: the drops to warn about, if a
    /// warning is due.
    pub fn observe(&mut self, now: Instant, totals: KernelStats) -> Option<Drops> {
        let totals = Drops::from(totals);
        let new = totals.since(self.warned);
        if !new.any() {
            return None;
        }
        if self
            .warned_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.interval)
        {
            return None;
        }
        self.warned_at = Some(now);
        self.warned = totals;
        Some(new)
    }

    /// A `lost` line was written with these counts.
    pub fn reported_in_stream(&mut self, drops: Drops) {
        self.in_stream.add(drops);
    }

    /// At the end, after the last drain: the drops no lost record carried,
    /// for a last `lost` line.
    pub fn unreported_in_stream(&self, totals: KernelStats) -> Drops {
        Drops::from(totals).since(self.in_stream)
    }
}

/// The line on stderr for drops that `observe` returned.
pub fn warning(drops: Drops) -> String {
    let mut parts = Vec::new();
    if drops.lost > 0 {
        parts.push(format!(
            "{} lost because the ring buffer was full (is stdout read fast enough?)",
            drops.lost
        ));
    }
    if drops.rate_limited > 0 {
        parts.push(format!(
            "{} dropped by the rate limit (--max-events-per-sec)",
            drops.rate_limited
        ));
    }
    format!(
        "events dropped in the kernel: {}; `lost` lines in the output mark where",
        parts.join(", ")
    )
}

/// The summary at the end of a run.
pub fn summary(written: u64, drops: Drops) -> String {
    format!(
        "{written} events written, {} lost (ring buffer full), {} rate limited",
        drops.lost, drops.rate_limited
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(lost: u64, rate_limited: u64) -> KernelStats {
        KernelStats { lost, rate_limited }
    }

    #[test]
    fn warns_at_once_then_at_most_once_per_interval_with_the_counts_since() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut watch = LossWatch::new(Duration::from_secs(10));
        assert_eq!(watch.observe(t0, totals(0, 0)), None);
        // The first drop: at once.
        assert_eq!(
            watch.observe(t0 + s, totals(5, 0)),
            Some(Drops {
                lost: 5,
                rate_limited: 0
            })
        );
        // More within the interval: held back.
        assert_eq!(watch.observe(t0 + 2 * s, totals(9, 1)), None);
        assert_eq!(watch.observe(t0 + 10 * s, totals(12, 1)), None);
        // Due again: everything since the last warning, held back or not.
        assert_eq!(
            watch.observe(t0 + 11 * s, totals(12, 3)),
            Some(Drops {
                lost: 7,
                rate_limited: 3
            })
        );
        // Nothing new: no warning, however long it has been.
        assert_eq!(watch.observe(t0 + 100 * s, totals(12, 3)), None);
        assert_eq!(
            watch.observe(t0 + 101 * s, totals(13, 3)),
            Some(Drops {
                lost: 1,
                rate_limited: 0
            })
        );
    }

    #[test]
    fn what_no_lost_record_carried_goes_in_the_last_line() {
        let mut watch = LossWatch::new(Duration::from_secs(10));
        assert!(!watch.unreported_in_stream(totals(0, 0)).any());
        watch.reported_in_stream(Drops {
            lost: 300,
            rate_limited: 2,
        });
        watch.reported_in_stream(Drops {
            lost: 10,
            rate_limited: 0,
        });
        assert_eq!(
            watch.unreported_in_stream(totals(313, 2)),
            Drops {
                lost: 3,
                rate_limited: 0
            }
        );
        // Totals read before the last records arrived never go negative.
        assert!(!watch.unreported_in_stream(totals(1, 0)).any());
    }

    #[test]
    fn messages_name_the_counts_and_the_causes() {
        let both = warning(Drops {
            lost: 313,
            rate_limited: 4,
        });
        assert!(
            both.contains("313 lost because the ring buffer was full"),
            "{both}"
        );
        assert!(both.contains("4 dropped by the rate limit"), "{both}");
        let only_lost = warning(Drops {
            lost: 1,
            rate_limited: 0,
        });
        assert!(!only_lost.contains("rate limit"), "{only_lost}");
        assert_eq!(
            summary(
                9690,
                Drops {
                    lost: 313,
                    rate_limited: 0
                }
            ),
            "9690 events written, 313 lost (ring buffer full), 0 rate limited"
        );
    }
}
