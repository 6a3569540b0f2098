//! The modes: in a pod (`run_in_pod`), `trace --cgroup` (`trace_cgroup`) and
//! `trace -- CMD` (`trace_command`), and the event loop they share (`pump`).

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use linnix_ebpf::{CgroupPosition, PressureConfig, Tracer, TracerConfig, TracerError};
use tokio::sync::oneshot;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::apiserver;
use crate::cgroup::{self, CgroupError};
use crate::cli::{Cli, Command, CommonArgs, TraceArgs};
use crate::command::{
    exit_status_code, shutdown_signal, spawn_in_cgroup, wait_forwarding_signals, Signals,
};
use crate::event_writer::{EventWriter, Settings, WatchExit};
use crate::memory;
use crate::metrics::{self, Metrics};
use crate::names::ContainerNames;
use crate::output::Format;
use crate::pod::{looks_like_pod_cgroup, PodIdentity};
use crate::pod_events::PodEvents;
use crate::scratch::ScratchCgroup;
use crate::scratch_owner;

const DEFAULT_POD_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9464);
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the kernel samples the containers' memory: the gauges' age at
/// worst, and how late a threshold crossing can be seen. A pass walks the
/// pod's tasks, about a microsecond each.
const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
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
            RunError::Tracer(
                TracerError::NoBtf(_)
                | TracerError::MissingCapability { .. }
                | TracerError::NoCgroupV2
                | TracerError::UnsupportedPageSize(_),
            ) => 2,
            RunError::Tracer(_) => 1,
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
        Some(Command::Trace(TraceArgs { cleanup: true, .. })) => cleanup().await,
        Some(Command::Trace(TraceArgs {
            cgroup: Some(dir), ..
        })) => trace_cgroup(&cli.common, &dir).await,
        Some(Command::Trace(TraceArgs {
            command,
            memory_limit,
            ..
        })) => trace_command(&cli.common, &command, memory_limit).await,
        // main.rs runs it before any runtime exists.
        Some(Command::Report(args)) => Ok(crate::report::run(&args, &cli.common)),
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
    let config = TracerConfig {
        target,
        trace_threads: common.threads,
        max_events_per_sec: common.max_events_per_sec,
        pressure: PressureConfig {
            interval: common.memory_pressure_interval,
            threshold_pct: common.memory_pressure_threshold,
        },
    };
    // The ring buffer is registered with this runtime from the loading thread.
    let runtime = tokio::runtime::Handle::current();
    let tracer = memory::off_main_heap(|| {
        let _runtime = runtime.enter();
        Tracer::load(&config)
    })?;
    metrics.set_attached(tracer.programs_attached());
    info!(
        cgroup,
        cgroup_id = target.id,
        level = target.level,
        "programs attached"
    );
    Ok(tracer)
}

fn removed_series_ttl(common: &CommonArgs) -> Duration {
    Duration::from_secs(common.removed_series_ttl)
}

async fn run_in_pod(common: &CommonArgs) -> Result<u8, RunError> {
    let identity = PodIdentity::from_env();
    let span = info_span!("pod", name = identity.name.as_deref().unwrap_or("?"));
    async move {
        let metrics = start_metrics(common.metrics_addr.or(Some(DEFAULT_POD_METRICS_ADDR))).await?;
        let ancestors = memory::off_main_heap(linnix_ebpf::own_cgroup_ancestors)?;
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
        // A pod's log is read by programs: JSON unless told otherwise.
        let format = common.output.unwrap_or(Format::Json);
        let mut writer = EventWriter::new(
            Arc::clone(&metrics),
            Settings {
                pod: identity.is_known().then_some(identity),
                pod_mode: true,
                names,
                skip_cgroup: Some(own.id),
                pod_events,
                ignore_exec_probes: common.ignore_exec_probes,
                removed_series_ttl: removed_series_ttl(common),
                ..Settings::new(target.id, format)
            },
        );
        writer.present_all(&mut tracer)?;
        pump(&mut tracer, &mut writer, shutdown_signal()?).await?;
        Ok(0)
    }
    .instrument(span)
    .await
}

/// `trace --cleanup`: remove the scratch cgroups of killed tracers.
async fn cleanup() -> Result<u8, RunError> {
    let swept = tokio::task::spawn_blocking(scratch_owner::sweep)
        .await
        .map_err(|e| CgroupError::Io {
            action: "sweep",
            path: "scratch cgroups".into(),
            source: io::Error::other(e),
        })??;
    scratch_owner::report(&swept);
    info!(removed = swept.len(), "cleanup done");
    Ok(0)
}

async fn trace_cgroup(common: &CommonArgs, dir: &Path) -> Result<u8, RunError> {
    // A bad directory is refused before anything is taken (a port above all).
    let mount = cgroup::v2_mount()?;
    let target = cgroup::position_of(dir, &mount)?;
    let metrics = start_metrics(common.metrics_addr).await?;
    let mut tracer = load(common, target, &cgroup::shown(dir), &metrics)?;
    let mut writer = EventWriter::new(metrics, trace_settings(common, target.id));
    writer.present_all(&mut tracer)?;
    let signal = shutdown_signal()?;
    let stop = async {
        tokio::select! {
            stopped = signal => stopped,
            () = cgroup::removed(dir, target.id) => {
                // Its last processes exited before it could go: their
                // events are in the ring, and the drain writes them.
                warn!(cgroup = %cgroup::shown(dir), "the traced cgroup was removed; stopping");
                Ok(())
            }
        }
    };
    pump(&mut tracer, &mut writer, stop).await?;
    Ok(0)
}

async fn trace_command(
    common: &CommonArgs,
    argv: &[OsString],
    memory_limit: Option<u64>,
) -> Result<u8, RunError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RunError::NoCommand);
    };
    let metrics = start_metrics(common.metrics_addr).await?;
    // Handled from here on, so that an early Ctrl-C cannot end the process
    // before the scratch cgroup is cleaned up; it reaches the command later.
    let mut signals = Signals::new()?;
    // What tracers killed with SIGKILL left behind goes first.
    if let Err(e) = tokio::task::spawn_blocking(scratch_owner::sweep_and_report).await {
        warn!(error = %e, "cannot look for scratch cgroups that killed tracers left behind");
    }
    let scratch = ScratchCgroup::create(memory_limit)?;
    let result = trace_in(common, program, args, &scratch, metrics, &mut signals).await;
    // On every way out: kill what is left in it and remove it.
    scratch.remove().await;
    result
}

async fn trace_in(
    common: &CommonArgs,
    program: &OsStr,
    args: &[OsString],
    scratch: &ScratchCgroup,
    metrics: Arc<Metrics>,
    signals: &mut Signals,
) -> Result<u8, RunError> {
    let mut tracer = load(
        common,
        scratch.position(),
        &cgroup::shown(scratch.path()),
        &metrics,
    )?;
    // The programs are attached: the command's exec is in the ring before
    // anything reads it, so the writer can wait until the pid is known.
    let mut child = spawn_in_cgroup(program, args, scratch)?;
    let child_pid = child.id();
    info!(pid = ?child_pid, cgroup = %scratch.path().display(), "command started");
    let (seen, exit_seen) = oneshot::channel();
    let mut writer = EventWriter::new(
        metrics,
        Settings {
            watch_exit: child_pid.map(|pid| WatchExit { pid, seen }),
            ..trace_settings(common, scratch.position().id)
        },
    );

    let stop = async {
        let status = wait_forwarding_signals(&mut child, signals).await?;
        info!(?status, "command exited");
        // Daemonised leftovers die with the command; their exits are
        // reported too.
        if let Err(e) = scratch.kill_all().await {
            warn!(error = %e, "cannot kill what the command left behind");
        }
        if !matches!(
            tokio::time::timeout(EXIT_EVENT_TIMEOUT, exit_seen).await,
            Ok(Ok(()))
        ) {
            warn!("the command's exit event did not arrive in time");
        }
        Ok(status)
    };
    let status = pump(&mut tracer, &mut writer, stop).await?;
    Ok(exit_status_code(status))
}

/// `trace`: text for a person at a terminal, unless told otherwise.
fn trace_settings(common: &CommonArgs, target: u64) -> Settings {
    let format = common
        .output
        .unwrap_or_else(|| Format::default_for(true, io::stdout().is_terminal()));
    Settings {
        ignore_exec_probes: common.ignore_exec_probes,
        removed_series_ttl: removed_series_ttl(common),
        ..Settings::new(target, format)
    }
}

async fn next_batch(tracer: &mut Tracer, writer: &mut EventWriter) -> io::Result<()> {
    tracer.next_batch(&mut |ev| writer.event(ev)).await
}

/// Write events until `stop` completes, then drain what the kernel has and
/// return what `stop` yielded. An error of `stop` ends it at once.
async fn pump<T>(
    tracer: &mut Tracer,
    writer: &mut EventWriter,
    stop: impl Future<Output = Result<T, RunError>>,
) -> Result<T, RunError> {
    // Start-up is over: what only it needed goes back (see memory.rs).
    memory::release_startup_memory();
    tokio::pin!(stop);
    let mut stats = tokio::time::interval(STATS_INTERVAL);
    let mut memory = tokio::time::interval(MEMORY_SAMPLE_INTERVAL);
    memory.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A failing sampler is said once, not every 2 s, until it works again.
    let mut sampling_failed = false;
    writer.started_reading();
    let outcome = loop {
        tokio::select! {
            r = next_batch(tracer, writer) => {
                if let Err(e) = r.map_err(RunError::RingBuffer).and_then(|()| writer.flush()) {
                    break Err(e);
                }
            }
            _ = stats.tick() => {
                writer.tick(tracer);
                writer.release_held(false);
                if let Err(e) = writer.flush() {
                    break Err(e);
                }
            }
            _ = memory.tick() => match tracer.sample_memory() {
                Ok(pass) => {
                    sampling_failed = false;
                    writer.memory(&pass);
                }
                Err(e) if sampling_failed => debug!(error = %e, "cannot sample the containers' memory"),
                Err(e) => {
                    sampling_failed = true;
                    warn!(error = %e, "cannot sample the containers' memory; the memory gauges stand still");
                }
            },
            stopped = &mut stop => break stopped,
        }
    };
    let stopped = match outcome {
        Ok(stopped) => stopped,
        Err(e) => {
            // The summary the README promises when the tracer stops, also
            // when stdout broke (`| head -1`).
            writer.summarize(tracer);
            return Err(e);
        }
    };
    tracer.drain(&mut |ev| writer.event(ev));
    writer.release_held(true);
    writer.finish(tracer)?;
    Ok(stopped)
}

#[cfg(test)]
mod tests;
