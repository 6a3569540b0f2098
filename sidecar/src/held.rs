//! Events kept back while an entered tree decides whether it is an exec
//! probe (see `lineage`): what a runtime's exec sets up takes
//! milliseconds, so a tree is held for at most [`MAX_HOLD`], at most
//! [`MAX_EVENTS`] events each and [`MAX_TREES`] trees at once (an event is a
//! few hundred bytes, an exec up to 2 KiB); past a bound the tree is given
//! back as it is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use linnix_ebpf::{Event, ProcessId};

use crate::lineage::Observed;

pub const MAX_HOLD: Duration = Duration::from_secs(1);
pub const MAX_EVENTS: usize = 64;
pub const MAX_TREES: usize = 64;

/// A held event and what the lineage said of it.
pub type HeldEvent = (Event, Observed);

#[derive(Default)]
pub struct HeldTrees {
    trees: HashMap<ProcessId, Tree>,
}

struct Tree {
    since: Instant,
    events: Vec<HeldEvent>,
}

impl HeldTrees {
    pub fn holds(&self, root: &ProcessId) -> bool {
        self.trees.contains_key(root)
    }

    /// Keep `event` back with its tree. Returns the trees to write now, as
    /// they are, because a bound was reached.
    pub fn hold(
        &mut self,
        root: ProcessId,
        event: Event,
        observed: Observed,
        now: Instant,
    ) -> Vec<Vec<HeldEvent>> {
        let mut out = Vec::new();
        if !self.trees.contains_key(&root) && self.trees.len() >= MAX_TREES {
            if let Some(oldest) = self
                .trees
                .iter()
                .min_by_key(|(_, t)| t.since)
                .map(|(r, _)| *r)
            {
                out.extend(self.take(&oldest));
            }
        }
        let tree = self.trees.entry(root).or_insert_with(|| Tree {
            since: now,
            events: Vec::new(),
        });
        tree.events.push((event, observed));
        if tree.events.len() >= MAX_EVENTS {
            out.extend(self.take(&root));
        }
        out
    }

    /// The events held for `root`, oldest first.
    pub fn take(&mut self, root: &ProcessId) -> Option<Vec<HeldEvent>> {
        self.trees.remove(root).map(|t| t.events)
    }

    /// The trees held since before `now - MAX_HOLD` (all of them with `all`).
    pub fn take_stale(&mut self, now: Instant, all: bool) -> Vec<Vec<HeldEvent>> {
        let stale: Vec<ProcessId> = self
            .trees
            .iter()
            .filter(|(_, t)| all || now.duration_since(t.since) >= MAX_HOLD)
            .map(|(root, _)| *root)
            .collect();
        stale.iter().filter_map(|root| self.take(root)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linnix_ebpf::{ForkEvent, Task};

    fn fork(pid: u32) -> Event {
        Event::Fork(ForkEvent {
            task: Task {
                ts_boot_ns: 0,
                host_pid: pid,
                host_tid: pid,
                pid,
                ppid: 0,
                host_ppid: 0,
                tid: pid,
                inner_pid: pid,
                comm: String::new(),
                cgroup_id: 1,
                cgroup_name: String::new(),
                start_ns: 0,
                parent_start_ns: 0,
                parent_in_target: false,
                uid: 0,
                gid: 0,
            },
            thread: false,
            creator: None,
        })
    }

    fn root(pid: u32) -> ProcessId {
        ProcessId {
            host_pid: pid,
            start_ns: 0,
        }
    }

    #[test]
    fn a_tree_comes_back_in_order_once() {
        let mut held = HeldTrees::default();
        let t0 = Instant::now();
        for pid in [1, 2, 3] {
            assert!(held
                .hold(root(1), fork(pid), Observed::default(), t0)
                .is_empty());
        }
        assert!(held.holds(&root(1)));
        let pids: Vec<u32> = held
            .take(&root(1))
            .expect("held")
            .iter()
            .filter_map(|(e, _)| e.task().map(|t| t.host_pid))
            .collect();
        assert_eq!(pids, [1, 2, 3]);
        assert!(held.take(&root(1)).is_none());
    }

    #[test]
    fn bounds_give_trees_back() {
        let mut held = HeldTrees::default();
        let t0 = Instant::now();
        // Too many events in one tree.
        let mut given_back = Vec::new();
        for pid in 0..MAX_EVENTS as u32 {
            given_back.extend(held.hold(root(1), fork(pid), Observed::default(), t0));
        }
        assert_eq!(given_back.len(), 1);
        assert_eq!(given_back[0].len(), MAX_EVENTS);
        assert!(!held.holds(&root(1)));
        // Too many trees: the oldest goes.
        for pid in 0..MAX_TREES as u32 {
            let at = t0 + Duration::from_millis(u64::from(pid));
            assert!(held
                .hold(root(100 + pid), fork(pid), Observed::default(), at)
                .is_empty());
        }
        let out = held.hold(root(9999), fork(1), Observed::default(), t0 + MAX_HOLD);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0][0].0.task().map(|t| t.host_pid),
            Some(0),
            "the oldest tree"
        );
        // Held too long.
        let stale = held.take_stale(t0 + MAX_HOLD + Duration::from_millis(30), false);
        assert_eq!(stale.len(), 30, "those held since before the deadline");
        assert_eq!(held.take_stale(t0, true).len(), MAX_TREES - 30);
    }
}
