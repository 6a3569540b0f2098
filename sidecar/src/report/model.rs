//! From events to what the page draws: one lane per container, in each the
//! processes as rows (the app's own tree, then what entered it, then exec
//! probes), marks on rows and lanes, and the lost-event gaps.
//!
//! Every event becomes exactly one mark (or one gap), so that the page can
//! be checked against the log it was made from.

use std::collections::HashMap;

use super::describe::describe;
use super::parse::{Event, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Main,
    Entered,
    Probe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Present,
    Fork,
    Exec,
    Exit,
    Oom,
    Join,
    Leave,
    Pressure,
    ContainerStart,
    ContainerExit,
}

#[derive(Debug, Clone)]
pub struct Mark {
    pub kind: MarkKind,
    pub ts_ns: i128,
    pub line: usize,
    /// Shown next to the mark (an exit code, a signal); may be empty.
    pub label: String,
    /// The tooltip: what the line said.
    pub detail: String,
    /// For exits: the code and the signal number, as the line gave them.
    pub code: Option<i64>,
    pub signal: Option<i64>,
}

#[derive(Debug)]
pub struct Proc {
    /// The exec_id (or, without one, the pid in its lane).
    pub id: String,
    pub lane: usize,
    pub group: Group,
    pub parent: Option<String>,
    pub pid: Option<i64>,
    pub comm: String,
    pub start_ns: i128,
    /// The start is a fork, a `present` line or a join: not merely the
    /// first line that named the process.
    pub start_known: bool,
    pub end_ns: Option<i128>,
    pub marks: Vec<Mark>,
}

#[derive(Debug)]
pub struct Lane {
    /// `None`: processes directly in the pod's (the traced) cgroup.
    pub container: Option<String>,
    /// Container start and exit, memory pressure: marks of the lane itself.
    pub marks: Vec<Mark>,
    /// The rows in drawing order.
    pub rows: Vec<Row>,
}

/// One row: a process, or a run of sibling processes with the same name
/// and no children (a loop of `true`, a probe every 10 s) drawn together.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub group: Group,
    pub depth: usize,
    /// Indexes into `Timeline::procs`.
    pub procs: Vec<usize>,
}

#[derive(Debug)]
pub struct Gap {
    /// The previous `lost` line, or the start: the drops happened between
    /// that and `at_ns`.
    pub from_ns: i128,
    pub at_ns: i128,
    pub lost: u64,
    pub rate_limited: u64,
    pub line: usize,
}

#[derive(Debug)]
pub struct Timeline {
    pub t0: i128,
    pub t1: i128,
    pub lanes: Vec<Lane>,
    pub procs: Vec<Proc>,
    pub gaps: Vec<Gap>,
    pub pod: Option<String>,
}

pub fn build(events: &[Event]) -> Timeline {
    let t0 = events.iter().map(|e| e.ts_ns).min().unwrap_or(0);
    let t1 = events.iter().map(|e| e.ts_ns).max().unwrap_or(0).max(t0);
    let mut b = Builder {
        t0,
        lanes: Vec::new(),
        lane_of: HashMap::new(),
        procs: Vec::new(),
        proc_of: HashMap::new(),
        gaps: Vec::new(),
        last_lost: t0,
    };
    let pod = events.iter().find_map(|e| e.pod.clone());
    for e in events {
        b.add(e);
    }
    let mut lanes = b.lanes;
    for (i, lane) in lanes.iter_mut().enumerate() {
        lane.rows = order_rows(&b.procs, i);
    }
    Timeline {
        t0,
        t1,
        lanes,
        procs: b.procs,
        gaps: b.gaps,
        pod,
    }
}

struct Builder {
    t0: i128,
    lanes: Vec<Lane>,
    lane_of: HashMap<Option<String>, usize>,
    procs: Vec<Proc>,
    proc_of: HashMap<String, usize>,
    gaps: Vec<Gap>,
    last_lost: i128,
}

impl Builder {
    fn lane(&mut self, container: &Option<String>) -> usize {
        if let Some(&i) = self.lane_of.get(container) {
            return i;
        }
        self.lanes.push(Lane {
            container: container.clone(),
            marks: Vec::new(),
            rows: Vec::new(),
        });
        self.lane_of.insert(container.clone(), self.lanes.len() - 1);
        self.lanes.len() - 1
    }

    fn add(&mut self, e: &Event) {
        if e.kind == Kind::Lost {
            self.gaps.push(Gap {
                from_ns: self.last_lost.min(e.ts_ns),
                at_ns: e.ts_ns,
                lost: e.lost,
                rate_limited: e.rate_limited,
                line: e.line,
            });
            self.last_lost = e.ts_ns;
            return;
        }
        let lane = self.lane(&e.container);
        let lane_mark = match e.kind {
            Kind::ContainerStart => Some(MarkKind::ContainerStart),
            Kind::ContainerExit => Some(MarkKind::ContainerExit),
            Kind::MemoryPressure => Some(MarkKind::Pressure),
            _ => None,
        };
        if let Some(kind) = lane_mark {
            self.lanes[lane].marks.push(mark(kind, e));
            return;
        }
        let p = self.proc(e, lane);
        // A process that joins a container is drawn in that container's
        // lane (with `kubectl exec`, its fork happens outside the pod).
        if e.kind == Kind::CgroupJoin {
            self.procs[p].lane = lane;
        }
        let kind = match e.kind {
            Kind::Present => MarkKind::Present,
            Kind::Fork => MarkKind::Fork,
            Kind::Exec => MarkKind::Exec,
            Kind::Exit => MarkKind::Exit,
            Kind::OomKill => MarkKind::Oom,
            Kind::CgroupJoin => MarkKind::Join,
            _ => MarkKind::Leave,
        };
        let proc = &mut self.procs[p];
        match e.kind {
            Kind::Fork | Kind::Present | Kind::CgroupJoin if !proc.start_known => {
                proc.start_known = true;
                proc.start_ns = proc.start_ns.min(e.ts_ns);
            }
            Kind::Exec if !e.comm.is_empty() => proc.comm.clone_from(&e.comm),
            Kind::Exit | Kind::CgroupLeave => proc.end_ns = Some(e.ts_ns),
            _ => {}
        }
        proc.group = proc.group.max(group_of(e));
        proc.marks.push(mark(kind, e));
    }

    fn proc(&mut self, e: &Event, lane: usize) -> usize {
        // Without an exec_id (not written by the tracer, but possible in
        // edited input) a process is known by its pid within its lane.
        let key = match (&e.exec_id, e.pid) {
            (Some(id), _) => id.clone(),
            (None, Some(pid)) => format!("pid {pid} in lane {lane}"),
            (None, None) => format!("line {}", e.line),
        };
        if let Some(&i) = self.proc_of.get(&key) {
            return i;
        }
        self.procs.push(Proc {
            id: key.clone(),
            lane,
            group: group_of(e),
            parent: e.parent_exec_id.clone(),
            pid: e.pid,
            comm: e.comm.clone(),
            start_ns: e.ts_ns.max(self.t0),
            start_known: false,
            end_ns: None,
            marks: Vec::new(),
        });
        self.proc_of.insert(key, self.procs.len() - 1);
        self.procs.len() - 1
    }
}

fn group_of(e: &Event) -> Group {
    if e.exec_probe.is_some() {
        Group::Probe
    } else if e.entered {
        Group::Entered
    } else {
        Group::Main
    }
}

fn mark(kind: MarkKind, e: &Event) -> Mark {
    let (label, detail) = describe(kind, e);
    Mark {
        kind,
        ts_ns: e.ts_ns,
        line: e.line,
        label,
        detail: format!("line {}: {} {}", e.line, e.ts, detail),
        code: e.exit_code,
        signal: e.signal,
    }
}

/// The lane's rows: per group, each process after its parent (when the
/// parent is in the same lane and group), siblings by start time. Walked
/// without recursion, and processes whose parents form a loop (edited
/// input) still get a row.
fn order_rows(procs: &[Proc], lane: usize) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for group in [Group::Main, Group::Entered, Group::Probe] {
        let mut members: Vec<usize> = (0..procs.len())
            .filter(|&i| procs[i].lane == lane && procs[i].group == group)
            .collect();
        members.sort_by_key(|&i| (procs[i].start_ns, i));
        let ids: HashMap<&str, usize> = procs_ids(procs, &members);
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for &i in &members {
            match procs[i].parent.as_deref().and_then(|p| ids.get(p)) {
                Some(&parent) if parent != i => children.entry(parent).or_default().push(i),
                _ => roots.push(i),
            }
        }
        let mut seen = vec![false; procs.len()];
        // Roots first, then any process only reachable through a loop.
        for start in roots.into_iter().chain(members.iter().copied()) {
            let mut stack = vec![(start, 0usize)];
            while let Some((i, depth)) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                let kids = children.get(&i);
                let leaf = kids.is_none_or(|k| k.is_empty());
                match rows.last_mut() {
                    Some(last)
                        if leaf
                            && last.group == group
                            && last.depth == depth
                            && similar(&procs[last.procs[0]], &procs[i])
                            && !children.contains_key(&last.procs[0]) =>
                    {
                        last.procs.push(i);
                    }
                    _ => rows.push(Row {
                        group,
                        depth,
                        procs: vec![i],
                    }),
                }
                if let Some(kids) = kids {
                    stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
                }
            }
        }
    }
    rows
}

/// Siblings drawn on one row: same parent, same name, same ending (an
/// exit 3 and a SIGTERM stay apart), neither OOM-killed.
fn similar(a: &Proc, b: &Proc) -> bool {
    let ending = |p: &Proc| {
        p.marks
            .iter()
            .filter(|m| matches!(m.kind, MarkKind::Exit | MarkKind::Oom | MarkKind::Leave))
            .map(|m| (m.kind, m.code, m.signal))
            .collect::<Vec<_>>()
    };
    a.parent == b.parent && a.comm == b.comm && ending(a) == ending(b)
}

fn procs_ids<'a>(procs: &'a [Proc], members: &[usize]) -> HashMap<&'a str, usize> {
    members.iter().map(|&i| (procs[i].id.as_str(), i)).collect()
}
