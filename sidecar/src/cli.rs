//! Command line: the in-pod mode (no subcommand), `trace` and `report`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;
use crate::size::parse_size;

#[derive(Debug, Parser)]
#[command(
    name = "linnix-sidecar",
    version,
    about = "Reports every process birth, exit, OOM kill and memory pressure of one pod (or one cgroup) as JSON lines on stdout",
    long_about = "Without a subcommand, runs as a sidecar: traces the pod whose cgroup is the parent of its own.\n\
                  Events go to stdout, one JSON object per line; diagnostics go to stderr."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Serve /metrics, /healthz and /readyz on this address. In the pod mode
    /// it defaults to 0.0.0.0:9464; `trace` serves nothing unless given.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Also report thread creation (as fork events with "thread": true).
    #[arg(long, global = true)]
    pub threads: bool,

    /// In-kernel cap on events per second for the traced cgroup; 0 = no cap.
    // A negative number is taken as a value, so that it gets this option's
    // error and not clap's hint to write `-- -1`, which would make it the
    // command.
    #[arg(long, global = true, default_value_t = 10_000, value_name = "N",
          allow_negative_numbers = true, value_parser = parse_events_per_sec)]
    pub max_events_per_sec: u32,

    /// How long the metric series of a container whose cgroup was removed
    /// stay, so that scrapes see their last values (an OOM kill that ended
    /// the container included); then they are dropped. Only series labelled
    /// with a container id: those labelled with a name stay.
    #[arg(
        long,
        global = true,
        default_value_t = 300,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub removed_series_ttl: u64,
    /// A memory_pressure event when a container's memory usage reaches this
    /// percentage of its limit (sampled every few seconds); 0 = only reclaim.
    #[arg(long, global = true, default_value_t = 90, value_name = "PERCENT",
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub memory_pressure_threshold: u32,

    /// At most one memory_pressure event per container per interval; the
    /// next one counts the reclaims and crossings in between (10s, 1m, ...;
    /// at least 1s).
    #[arg(long, global = true, default_value = "10s", value_name = "DURATION",
          value_parser = parse_interval)]
    pub memory_pressure_interval: Duration,

    /// How events are written: `json` (one object per line) or `text`
    /// (aligned columns). Default: text for `trace` at a terminal, else JSON;
    /// JSON in a pod.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,

    /// Leave the processes of the pod's exec probes (and their children)
    /// out of the output; they are still counted in the metrics. Needs
    /// permission to read the pod, whose spec lists the probes.
    #[arg(long, global = true)]
    pub ignore_exec_probes: bool,

    /// Diagnostics filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
}

/// The shortest `--memory-pressure-interval`: a container reclaiming at its
/// limit does so hundreds of times a second, and a shorter interval would
/// pass most of that on as events.
pub const MIN_PRESSURE_INTERVAL: Duration = Duration::from_secs(1);

/// A duration such as `10s`, `1500ms` or `1m`, at least
/// [`MIN_PRESSURE_INTERVAL`].
fn parse_interval(input: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(input).map_err(|e| format!("{input:?}: {e}"))?;
    if d < MIN_PRESSURE_INTERVAL {
        return Err(format!(
            "{input:?}: the interval must be at least {}",
            humantime::format_duration(MIN_PRESSURE_INTERVAL)
        ));
    }
    Ok(d)
}

fn parse_events_per_sec(input: &str) -> Result<u32, String> {
    input.parse().map_err(|_| {
        format!(
            "{input:?} is not a number of events per second: a whole number from 0 (no cap) to {}",
            u32::MAX
        )
    })
}

/// The smallest `--memory-limit`. The command's process is forked from the
/// tracer and joins the cgroup before its exec, so it must fit the limit
/// from the start: below ~192 KiB (measured with /bin/echo) it is
/// OOM-killed before it runs. A floor of five times that leaves room for a
/// larger runtime's first pages; what the command needs after that is its
/// own business, and an OOM kill then is reported as one.
pub const MIN_MEMORY_LIMIT: u64 = 1 << 20;

fn parse_memory_limit(input: &str) -> Result<u64, String> {
    let limit = parse_size(input).map_err(|e| e.to_string())?;
    if limit < MIN_MEMORY_LIMIT {
        return Err(format!(
            "{input:?} is below 1Mi, the least a command can start under (it would be OOM-killed before it runs)"
        ));
    }
    Ok(limit)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace an existing cgroup v2 directory, or run a command in a fresh
    /// cgroup and trace its whole process tree.
    Trace(TraceArgs),
    /// Draw a tracer's JSON lines (a file, or stdin as from `kubectl logs`)
    /// as one self-contained HTML page: a lane per container, the process
    /// tree over time, OOM kills, memory pressure and lost events. The
    /// tracer's options do not apply (only --log-level).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The tracer's JSON lines; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Write the page here instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("target").required(true).args(["cgroup", "command", "cleanup"])
))]
pub struct TraceArgs {
    /// A cgroup v2 directory (e.g. /sys/fs/cgroup/unified/my.slice): it and
    /// its descendants are traced until SIGINT or SIGTERM.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["command", "memory_limit"])]
    pub cgroup: Option<PathBuf>,

    /// Memory limit of the fresh cgroup the command runs in: bytes, or with a
    /// unit (64M = 64*10^6, 64Mi = 64*2^20, 1G, 1Gi, ...); at least 1Mi.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit, requires = "command")]
    pub memory_limit: Option<u64>,

    /// The command to run (after `--`). Its stdout is sent to stderr so that
    /// stdout carries only events. Taken as given, also when not UTF-8.
    /// When it exits, whatever it left running in its cgroup is killed with
    /// SIGKILL.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,

    /// Remove the cgroups that tracers killed with SIGKILL left behind (and
    /// kill what still runs in them), then exit. `trace -- CMD` does the same
    /// when it starts. Only the tracer's own are touched.
    #[arg(long, conflicts_with_all = ["cgroup", "command", "memory_limit"])]
    pub cleanup: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("linnix-sidecar").chain(args.iter().copied()))
    }

    #[test]
    fn pod_mode_is_the_default() {
        let cli = parse(&[]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.common.max_events_per_sec, 10_000);
        assert_eq!(cli.common.removed_series_ttl, 300);
        assert!(!cli.common.threads);
        assert_eq!(cli.common.output, None);
        assert!(!cli.common.ignore_exec_probes);
    }

    #[test]
    fn output_format_and_probe_filter() {
        let cli = parse(&[
            "--ignore-exec-probes",
            "trace",
            "--output",
            "text",
            "--",
            "true",
        ])
        .expect("parses");
        assert_eq!(cli.common.output, Some(Format::Text));
        assert!(cli.common.ignore_exec_probes);
        assert!(parse(&["--output", "yaml"]).is_err());
        let cli = parse(&["--output", "json"]).expect("parses");
        assert_eq!(cli.common.output, Some(Format::Json));
    }

    #[test]
    fn trace_command_keeps_its_arguments_verbatim() {
        let cli = parse(&[
            "trace",
            "--memory-limit",
            "64Mi",
            "--threads",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .expect("parses");
        let Some(Command::Trace(t)) = cli.command else {
            panic!("expected trace");
        };
        assert_eq!(t.command, ["sh", "-c", "exit 3"]);
        assert_eq!(t.memory_limit, Some(64 << 20));
        assert!(cli.common.threads);
        // A file name need not be UTF-8.
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"/tmp/\xff");
        let cli = Cli::try_parse_from([
            std::ffi::OsStr::new("linnix-sidecar"),
            "trace".as_ref(),
            "--".as_ref(),
            odd,
        ])
        .expect("parses");
        let Some(Command::Trace(t)) = cli.command else {
            panic!("expected trace");
        };
        assert_eq!(t.command, [odd]);
    }

    #[test]
    fn cleanup_stands_alone() {
        let cli = parse(&["trace", "--cleanup"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Trace(TraceArgs { cleanup: true, .. }))
        ));
        assert!(parse(&["trace", "--cleanup", "--", "true"]).is_err());
        assert!(parse(&["trace", "--cleanup", "--cgroup", "/x"]).is_err());
    }

    #[test]
    fn memory_pressure_options() {
        let cli = parse(&[]).expect("parses");
        assert_eq!(cli.common.memory_pressure_threshold, 90);
        assert_eq!(cli.common.memory_pressure_interval, Duration::from_secs(10));
        let cli = parse(&[
            "trace",
            "--memory-pressure-threshold",
            "0",
            "--memory-pressure-interval",
            "1500ms",
            "--",
            "true",
        ])
        .expect("parses");
        assert_eq!(cli.common.memory_pressure_threshold, 0);
        assert_eq!(
            cli.common.memory_pressure_interval,
            Duration::from_millis(1500)
        );
        for bad in [
            ["--memory-pressure-threshold", "101"],
            ["--memory-pressure-threshold", "-1"],
            ["--memory-pressure-interval", "0s"],
            ["--memory-pressure-interval", "1ns"],
            ["--memory-pressure-interval", "999ms"],
            ["--memory-pressure-interval", "soon"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trace_needs_a_target() {
        assert!(parse(&["trace"]).is_err());
        assert!(parse(&["trace", "--cgroup", "/x", "--", "true"]).is_err());
        assert!(parse(&["trace", "--cgroup", "/x", "--memory-limit", "1M"]).is_err());
        assert!(parse(&["trace", "--memory-limit", "lots", "--", "true"]).is_err());
    }

    #[test]
    fn a_memory_limit_below_the_floor_is_refused() {
        for small in ["0", "1", "4096", "1048575"] {
            let err = parse(&["trace", "--memory-limit", small, "--", "true"])
                .expect_err(small)
                .to_string();
            assert!(err.contains("is below 1Mi"), "{small}: {err}");
        }
        let cli = parse(&["trace", "--memory-limit", "1Mi", "--", "true"]).expect("parses");
        let Some(Command::Trace(t)) = cli.command else {
            panic!("expected trace");
        };
        assert_eq!(t.memory_limit, Some(MIN_MEMORY_LIMIT));
    }

    #[test]
    fn a_negative_number_is_a_bad_value_not_a_command() {
        for option in [
            "--max-events-per-sec",
            "--removed-series-ttl",
            "--memory-pressure-threshold",
        ] {
            let err = parse(&["trace", option, "-1", "--", "true"])
                .expect_err(option)
                .to_string();
            assert!(err.contains("invalid value '-1'"), "{option}: {err}");
            assert!(!err.contains("-- -1"), "{option}: {err}");
        }
        let err = parse(&["--max-events-per-sec", "-1"]).expect_err("negative");
        assert!(err.to_string().contains("from 0 (no cap)"), "{err}");
    }
}
