//! The three modes and the event loop they share.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, StdoutLock};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use linnix_ebpf::{CgroupPosition, Event, Tracer, TracerConfig, TracerError};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::apiserver;
use crate::cgroup::{self, CgroupError, ScratchCgroup};
use crate::cli::{Cli, Command, CommonArgs, TraceArgs};
use crate::metrics::{self, ContainerCounters, Metrics};
use crate::names::{ContainerNames, Label};
use crate::output::{Clock, Detail, Kind, Line, Writer};
use crate::pod::{looks_like_pod_cgroup, Placement, PodIdentity};
use crate::pod_events::{OomNotice, PodEvents};
use crate::procfs::{self, PresentProcess};

const DEFAULT_POD_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9464);
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// After the command exits: how long to wait for the kernel's exit event of
/// the command's own process before draining what is there.
const EXIT_EVENT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tracer(#[from] TracerError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("the tracer's own cgroup is the cgroup v2 root, so it has no pod cgroup above it; run it as a container of a pod, or use `trace`")]
    NoPodCgroup,
    #[error("the tracer's parent cgroup is the cgroup v2 root, which would trace every process of the host; run the tracer as a container of a pod (its cgroup inside the pod's), or use `trace --cgroup`")]
    PodCgroupIsRoot,
    #[error("cannot serve metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the ring buffer: {0}")]
    RingBuffer(#[source] io::Error),
    #[error("cannot write events to stdout: {0}")]
    Output(#[source] io::Error),
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("no command to run: give `--cgroup PATH` or `-- CMD [ARGS...]`")]
    NoCommand,
    #[error("cannot set up signal handling: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot wait for the command: {0}")]
    Wait(#[source] io::Error),
}

impl RunError {
    /// 2 for what the environment lacks (BTF, capabilities, cgroup v2), 126
    /// or 127 when the command cannot be run (as a shell does), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Tracer(TracerError::Other(_)) => 1,
            RunError::Tracer(_) => 2,
            RunError::Cgroup(CgroupError::Io { .. }) => 1,
            RunError::Cgroup(_) | RunError::NoPodCgroup | RunError::PodCgroupIsRoot => 2,
            RunError::NoCommand => 2,
            RunError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            RunError::Spawn { .. } => 126,
            _ => 1,
        }
    }
}

pub async fn run(cli: Cli) -> Result<u8, RunError> {
    match cli.command {
        None => run_in_pod(&cli.common).await,
        Some(Command::Trace(TraceArgs {
            cgroup: Some(dir), ..
        })) => trace_cgroup(&cli.common, &dir).await,
        Some(Command::Trace(TraceArgs {
            command,
            memory_limit,
            ..
        })) => trace_command(&cli.common, &command, memory_limit).await,
    }
}

/// Start the metrics server, if asked for, before anything slow so that
/// /healthz answers while the programs load.
async fn start_metrics(addr: Option<SocketAddr>) -> Result<Arc<Metrics>, RunError> {
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        info!(addr = %local, "serving /metrics, /healthz and /readyz");
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
    }
    Ok(metrics)
}

/// `cgroup` names the target in the log: the pod cgroup's kernfs name, or
/// the traced directory.
fn load(
    common: &CommonArgs,
    target: CgroupPosition,
    cgroup: &str,
    metrics: &Metrics,
) -> Result<Tracer, RunError> {
    let tracer = Tracer::load(&TracerConfig {
        target,
        trace_threads: common.threads,
        max_events_per_sec: common.max_events_per_sec,
    })?;
    metrics.set_attached(tracer.programs_attached());
    release_freed_memory();
    info!(
        cgroup,
        cgroup_id = target.id,
        level = target.level,
        "programs attached"
    );
    Ok(tracer)
}

/// Loading parses the kernel's whole BTF (tens of MiB at peak); hand the
/// freed heap back to the kernel so the sidecar's RSS reflects what it keeps.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn run_in_pod(common: &CommonArgs) -> Result<u8, RunError> {
    let identity = PodIdentity::from_env();
    let span = info_span!("pod", name = identity.name.as_deref().unwrap_or("?"));
    async move {
        let metrics = start_metrics(common.metrics_addr.or(Some(DEFAULT_POD_METRICS_ADDR))).await?;
        let ancestors = linnix_ebpf::own_cgroup_ancestors()?;
        // The tracer's container cgroup is the last entry; the pod is its parent.
        let (pod, own) = match ancestors.as_slice() {
            [.., pod, _] if pod.position.level == 0 => return Err(RunError::PodCgroupIsRoot),
            [.., pod, own] => (pod, own.position),
            _ => return Err(RunError::NoPodCgroup),
        };
        if !looks_like_pod_cgroup(&pod.name) {
            warn!(
                cgroup = %pod.name,
                "the parent cgroup does not look like a pod cgroup (kubepods pod<uid>, podman pod id); tracing everything below it"
            );
        }
        let target = pod.position;
        // Without a pod name there is nothing to look up or to report on.
        let client = match identity.name {
            Some(_) => apiserver::connect().await,
            None => None,
        };
        let names = ContainerNames::start(&identity, client.clone()).await;
        let pod_events = client.and_then(|c| PodEvents::start(c, &identity, Arc::clone(&metrics)));
        let mut tracer = load(common, target, &pod.name, &metrics)?;
        let mut reporter = Reporter::new(
            identity.is_known().then_some(identity),
            names,
            Arc::clone(&metrics),
        );
        reporter.skip_cgroup = Some(own.id);
        reporter.pod_events = pod_events;
        reporter.present_all(procfs::pod_processes(Path::new("/proc")))?;
        let stop = shutdown_signal()?;
        pump(&mut tracer, &mut reporter, stop).await?;
        Ok(0)
    }
    .instrument(span)
    .await
}

async fn trace_cgroup(common: &CommonArgs, dir: &Path) -> Result<u8, RunError> {
    let metrics = start_metrics(common.metrics_addr).await?;
    let mount = cgroup::v2_mount()?;
    let target = cgroup::position_of(dir, &mount)?;
    let mut tracer = load(common, target, &dir.to_string_lossy(), &metrics)?;
    let mut reporter = Reporter::new(None, ContainerNames::disabled(), metrics);
    reporter.present_all(procfs::cgroup_processes(dir))?;
    let stop = shutdown_signal()?;
    pump(&mut tracer, &mut reporter, stop).await?;
    Ok(0)
}

async fn trace_command(
    common: &CommonArgs,
    argv: &[String],
    memory_limit: Option<u64>,
) -> Result<u8, RunError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RunError::NoCommand);
    };
    let metrics = start_metrics(common.metrics_addr).await?;
    // Handled from here on, so that an early Ctrl-C cannot end the process
    // before the scratch cgroup is cleaned up; it reaches the command later.
    let mut signals = Signals::new()?;
    let scratch = ScratchCgroup::create(memory_limit)?;
    let result = trace_in(common, program, args, &scratch, metrics, &mut signals).await;
    // On every way out: kill what is left in it and remove it.
    scratch.remove().await;
    result
}

async fn trace_in(
    common: &CommonArgs,
    program: &str,
    args: &[String],
    scratch: &ScratchCgroup,
    metrics: Arc<Metrics>,
    signals: &mut Signals,
) -> Result<u8, RunError> {
    let mut tracer = load(
        common,
        scratch.position(),
        &scratch.path().to_string_lossy(),
        &metrics,
    )?;
    let mut reporter = Reporter::new(None, ContainerNames::disabled(), metrics);

    let mut child = spawn_in_cgroup(program, args, scratch)?;
    let child_pid = child.id();
    reporter.watch_exit = child_pid;
    info!(pid = ?child_pid, cgroup = %scratch.path().display(), "command started");

    let mut stats = tokio::time::interval(STATS_INTERVAL);
    let status: ExitStatus = loop {
        tokio::select! {
            r = next_batch(&mut tracer, &mut reporter) => {
                r.map_err(RunError::RingBuffer)?;
                reporter.flush()?;
            }
            st = child.wait() => break st.map_err(RunError::Wait)?,
            sig = signals.recv() => {
                // Let the command decide how to end; its exit ends the trace.
                // Never kill(0) or a negative pid: those mean process groups.
                if let Some(pid) = child_pid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 0) {
                    debug!(signal = sig, "forwarding signal to the command");
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, sig) };
                }
            }
            _ = stats.tick() => reporter.kernel_stats(&tracer),
        }
    };
    info!(?status, "command exited");

    // Daemonised leftovers die with the command; their exits are reported too.
    if let Err(e) = scratch.kill_all().await {
        warn!(error = %e, "cannot kill what the command left behind");
    }
    let deadline = tokio::time::Instant::now() + EXIT_EVENT_TIMEOUT;
    while !reporter.exit_seen {
        match tokio::time::timeout_at(deadline, next_batch(&mut tracer, &mut reporter)).await {
            Ok(r) => r.map_err(RunError::RingBuffer)?,
            Err(_) => {
                warn!("the command's exit event did not arrive in time");
                break;
            }
        }
    }
    tracer.drain(&mut |ev| reporter.event(ev));
    reporter.kernel_stats(&tracer);
    reporter.flush()?;
    Ok(exit_status_code(status))
}

/// The shell's convention: the exit code, or 128 + the signal that killed it.
pub fn exit_status_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        u8::try_from(code & 0xff).unwrap_or(1)
    } else if let Some(sig) = status.signal() {
        u8::try_from(128 + (sig & 0x7f)).unwrap_or(255)
    } else {
        1
    }
}

/// Start the command inside the scratch cgroup. The child joins the cgroups
/// between fork and exec (writing "0", i.e. itself, to their cgroup.procs),
/// so its exec is already traced. The files are opened beforehand: after
/// fork only async-signal-safe calls are allowed.
fn spawn_in_cgroup(
    program: &str,
    args: &[String],
    scratch: &ScratchCgroup,
) -> Result<tokio::process::Child, RunError> {
    let spawn_err = |source| RunError::Spawn {
        command: program.to_owned(),
        source,
    };
    let procs = scratch.open_procs_files()?;
    let fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    // stdout carries only events: the command writes to our stderr instead.
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(spawn_err)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdout(Stdio::from(stderr));
    // SAFETY: the closure only calls write(2) on descriptors opened above.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    drop(procs);
    Ok(child)
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl Future<Output = ()>, RunError> {
    let mut signals = Signals::new()?;
    Ok(async move {
        let sig = signals.recv().await;
        info!(signal = sig, "stopping");
    })
}

struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> Result<Self, RunError> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).map_err(RunError::Signals)?,
            term: signal(SignalKind::terminate()).map_err(RunError::Signals)?,
        })
    }

    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
        }
    }
}

async fn next_batch(tracer: &mut Tracer, reporter: &mut Reporter) -> io::Result<()> {
    tracer.next_batch(&mut |ev| reporter.event(ev)).await
}

/// Read events until `stop` completes, then drain what the kernel has.
async fn pump(
    tracer: &mut Tracer,
    reporter: &mut Reporter,
    stop: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(stop);
    let mut stats = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            r = next_batch(tracer, reporter) => {
                r.map_err(RunError::RingBuffer)?;
                reporter.flush()?;
            }
            _ = stats.tick() => reporter.kernel_stats(tracer),
            _ = &mut stop => break,
        }
    }
    tracer.drain(&mut |ev| reporter.event(ev));
    reporter.kernel_stats(tracer);
    reporter.flush()
}

/// Once stdout is gone nothing more is written; the error surfaces at flush.
fn write_line(
    out: &mut Writer<StdoutLock<'static>>,
    error: &mut Option<io::Error>,
    line: &Line<'_>,
) {
    if error.is_none() {
        if let Err(e) = out.write(line) {
            *error = Some(e);
        }
    }
}

/// Turns kernel events into lines and metrics.
struct Reporter {
    clock: Clock,
    pod: Option<PodIdentity>,
    names: ContainerNames,
    metrics: Arc<Metrics>,
    /// Per container cgroup id: its label and counters, so that an event
    /// neither parses the cgroup name nor builds metric labels. Emptied
    /// whenever the container names change.
    containers: HashMap<u64, Container>,
    out: Writer<StdoutLock<'static>>,
    /// First write error; once stdout is gone nothing more is written.
    write_error: Option<io::Error>,
    /// The tracer's own container cgroup: what runs there is not the pod's
    /// business. Matched by cgroup id, not pid: a pod process in a nested
    /// PID namespace can carry the tracer's own number.
    skip_cgroup: Option<u64>,
    /// Pod mode with an API server: OOM kills also become Kubernetes events.
    pod_events: Option<PodEvents>,
    /// Pid of the command `trace -- CMD` runs, as the tracer's PID namespace
    /// numbers it: `task.pid`, since the command shares that namespace,
    /// whereas `host_pid` differs whenever the tracer runs in a container.
    watch_exit: Option<u32>,
    exit_seen: bool,
}

/// What the reporter remembers of one container cgroup.
struct Container {
    label: Option<Label>,
    counters: ContainerCounters,
}

/// Containers restart with new cgroups; past this many remembered ones the
/// cache starts over rather than grow without bound.
const MAX_CACHED_CONTAINERS: usize = 256;

impl Reporter {
    fn new(pod: Option<PodIdentity>, names: ContainerNames, metrics: Arc<Metrics>) -> Self {
        Reporter {
            clock: Clock::new(),
            pod,
            names,
            metrics,
            containers: HashMap::new(),
            out: Writer::new(io::stdout().lock()),
            write_error: None,
            skip_cgroup: None,
            pod_events: None,
            watch_exit: None,
            exit_seen: false,
        }
    }

    fn event(&mut self, event: Event) {
        let (task, detail) = Detail::of(&event);
        if self.skip_cgroup == Some(task.cgroup_id) {
            return;
        }
        if self.names.take_changed() || self.containers.len() >= MAX_CACHED_CONTAINERS {
            self.containers.clear();
        }
        let (names, metrics) = (&self.names, &self.metrics);
        let cached = self.containers.entry(task.cgroup_id).or_insert_with(|| {
            let label = names.label(&task.cgroup_name);
            let counters = metrics.container(label.as_ref().map(|l| &*l.text));
            Container { label, counters }
        });
        if cached.label.as_ref().is_some_and(|l| !l.named) {
            self.names.request_refresh();
        }
        let container = cached.label.as_ref().map(|l| &*l.text);
        let kind = detail.kind();
        cached.counters.event(kind);
        match &detail {
            Detail::Exit(exit) => {
                cached.counters.exit(&self.metrics, exit);
                if self.watch_exit == Some(task.pid) {
                    self.exit_seen = true;
                }
            }
            Detail::OomKill(oom) => {
                cached.counters.oom_kill();
                if let Some(pod_events) = &self.pod_events {
                    pod_events.oom_killed(OomNotice {
                        pid: task.pid,
                        comm: task.comm.clone(),
                        container: container.map(str::to_owned),
                        detail: *oom,
                    });
                }
            }
            _ => {}
        }
        let line = Line {
            event: kind,
            ts: self.clock.rfc3339(task.ts_boot_ns),
            pid: task.pid,
            host_pid: Some(task.host_pid),
            ppid: task.ppid,
            comm: &task.comm,
            container,
            pod: self.pod.as_ref(),
            detail,
        };
        write_line(&mut self.out, &mut self.write_error, &line);
    }

    /// Processes running before the programs were attached, once, so that
    /// their exits later have context. Programs are attached first: a
    /// process may then appear twice (present and fork), never zero times.
    fn present_all(&mut self, listed: io::Result<Vec<PresentProcess>>) -> Result<(), RunError> {
        match listed {
            Ok(present) => {
                for p in &present {
                    self.present(p);
                }
                self.flush()
            }
            Err(e) => {
                warn!(error = %e, "cannot list the running processes");
                Ok(())
            }
        }
    }

    fn present(&mut self, p: &PresentProcess) {
        // Once per process at start: no cache needed.
        let label = match &p.placement {
            Placement::Container(kernfs) => self.names.label(kernfs),
            Placement::OwnContainer | Placement::PodItself => None,
        };
        let container = label.as_ref().map(|l| &*l.text);
        self.metrics.container(container).event(Kind::Present);
        let line = Line {
            event: Kind::Present,
            ts: self.clock.rfc3339(self.clock.boot_ns()),
            pid: p.pid,
            host_pid: p.host_pid,
            ppid: p.ppid,
            comm: &p.comm,
            container,
            pod: self.pod.as_ref(),
            detail: Detail::Present {},
        };
        write_line(&mut self.out, &mut self.write_error, &line);
    }

    fn flush(&mut self) -> Result<(), RunError> {
        if let Some(e) = self.write_error.take() {
            return Err(RunError::Output(e));
        }
        self.out.flush().map_err(RunError::Output)
    }

    fn kernel_stats(&self, tracer: &Tracer) {
        match tracer.kernel_stats() {
            Ok(stats) => {
                if stats.lost > 0 || stats.rate_limited > 0 {
                    debug!(
                        lost = stats.lost,
                        rate_limited = stats.rate_limited,
                        "kernel drops"
                    );
                }
                self.metrics.kernel_stats(stats);
            }
            Err(e) => debug!(error = %e, "cannot read kernel stats"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_style_exit_status() {
        assert_eq!(exit_status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_status_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_status_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_status_code(ExitStatus::from_raw(15 | 0x80)), 143);
    }

    #[test]
    fn environment_problems_exit_with_two() {
        assert_eq!(
            RunError::Tracer(TracerError::NoBtf("/sys/kernel/btf/vmlinux".into())).exit_code(),
            2
        );
        assert_eq!(RunError::Tracer(TracerError::NoCgroupV2).exit_code(), 2);
        assert_eq!(RunError::Cgroup(CgroupError::NoV2Mount).exit_code(), 2);
        assert_eq!(RunError::PodCgroupIsRoot.exit_code(), 2);
        assert_eq!(
            RunError::Spawn {
                command: "nope".into(),
                source: io::ErrorKind::NotFound.into()
            }
            .exit_code(),
            127
        );
        assert_eq!(
            RunError::RingBuffer(io::ErrorKind::Other.into()).exit_code(),
            1
        );
    }
}
