//! The line for each kind of event, from what the kernel said and what the
//! lineage added.

use linnix_ebpf::{CgroupChange, Event, ExitEvent, Task};

use crate::lineage::{Lifecycle, Marks};
use crate::output::{
    Clock, ContainerExitDetail, Creds, Detail, ExecId, ForkDetail, JoinDetail, Line, OomDetail,
    StartDetail,
};
use crate::pod::PodIdentity;

/// What every line of one event shares besides its task.
pub struct Context<'a> {
    pub clock: &'a Clock,
    pub container: Option<&'a str>,
    pub pod: Option<&'a PodIdentity>,
}

/// The kind-specific fields. `from` names the container a move came from.
/// `None` for records that are not about a task (lost events, removed
/// cgroups): they have lines of their own, or none.
pub fn detail<'a>(event: &'a Event, from: Option<&'a str>) -> Option<Detail<'a>> {
    Some(match event {
        Event::Present(task) => Detail::Present(creds(task)),
        Event::Fork(f) => Detail::Fork(ForkDetail {
            thread: f.thread,
            tid: f.thread.then_some(f.task.tid),
            host_tid: f.thread.then_some(f.task.host_tid),
        }),
        Event::Exec(e) => Detail::Exec(e.into()),
        Event::Exit(e) => Detail::Exit(e.into()),
        Event::OomKill(o) => Detail::OomKill(OomDetail::from(o)),
        Event::Cgroup(c) => match c.change {
            CgroupChange::Join | CgroupChange::Move { .. } => Detail::CgroupJoin(JoinDetail {
                creds: creds(&c.task),
                from_container: from,
            }),
            CgroupChange::Leave => Detail::CgroupLeave {},
        },
        Event::MemoryPressure(p) => Detail::MemoryPressure(p.into()),
        Event::Lost(_) | Event::CgroupRemoved(_) => return None,
    })
}

pub fn line<'a>(
    ctx: &Context<'a>,
    task: &'a Task,
    marks: &'a Marks,
    detail: Detail<'a>,
) -> Line<'a> {
    let ts = match detail {
        // When the tracer looked.
        Detail::Present(_) => ctx.clock.rfc3339(ctx.clock.boot_ns()),
        _ => ctx.clock.rfc3339(task.ts_boot_ns),
    };
    Line {
        event: detail.kind(),
        ts,
        pid: (task.pid != 0).then_some(task.pid),
        inner_pid: (task.inner_pid != task.pid).then_some(task.inner_pid),
        host_pid: task.host_pid,
        ppid: task.ppid,
        comm: &task.comm,
        container: ctx.container,
        pod: ctx.pod,
        exec_id: ExecId(task.process()),
        parent_exec_id: task.parent().map(ExecId),
        entered: marks.entered,
        exec_probe: marks.exec_probe.as_deref(),
        detail,
    }
}

/// A container's start or exit, about its main process.
pub fn lifecycle_line<'a>(
    ctx: &Context<'a>,
    task: &'a Task,
    lifecycle: &Lifecycle,
    detail: Detail<'a>,
) -> Line<'a> {
    let ts = match lifecycle {
        // Found running: when the tracer looked, like a present line.
        Lifecycle::Start { present: true, .. } => ctx.clock.boot_ns(),
        Lifecycle::Start { started_ns, .. } => *started_ns,
        Lifecycle::Exit { .. } => task.ts_boot_ns,
    };
    Line {
        ts: ctx.clock.rfc3339(ts),
        ..line(ctx, task, &NO_MARKS, detail)
    }
}

static NO_MARKS: Marks = Marks {
    entered: false,
    exec_probe: None,
};

pub fn container_start<'a>(
    task: &Task,
    lifecycle: &Lifecycle,
    filename: Option<&'a str>,
    argv: Option<&'a [String]>,
    since_first: bool,
) -> Detail<'a> {
    let (present, since_first_ns) = match lifecycle {
        Lifecycle::Start {
            present,
            since_first_ns,
            ..
        } => (*present, *since_first_ns),
        Lifecycle::Exit { .. } => (false, 0),
    };
    Detail::ContainerStart(StartDetail {
        present,
        filename,
        argv,
        creds: creds(task),
        since_first_container_ms: since_first.then_some(since_first_ns / 1_000_000),
    })
}

pub fn container_exit<'a>(exit: &ExitEvent, lifecycle: &Lifecycle) -> Detail<'a> {
    let (runtime_ns, oom_killed, oom_kills) = match lifecycle {
        Lifecycle::Exit {
            runtime_ns,
            oom_killed,
            oom_kills,
        } => (*runtime_ns, *oom_killed, *oom_kills),
        Lifecycle::Start { .. } => (0, false, 0),
    };
    Detail::ContainerExit(ContainerExitDetail {
        exit_code: exit.exit_code(),
        signal: exit.signal(),
        core_dumped: exit.core_dumped(),
        oom_killed,
        oom_kills,
        runtime_ms: runtime_ns / 1_000_000,
    })
}

fn creds(task: &Task) -> Creds {
    Creds {
        uid: task.uid,
        gid: task.gid,
    }
}
