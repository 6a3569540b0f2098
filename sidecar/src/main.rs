//! linnix-sidecar: reports every process birth, exit and OOM kill of one pod.
//!
//! `main` only wires things: command line, diagnostics, runtime, exit code.

mod apiserver;
mod cgroup;
mod cli;
mod clock;
mod command;
mod event_writer;
mod held;
mod lineage;
mod lines;
mod losses;
mod memory;
mod memory_metrics;
mod metrics;
mod names;
mod output;
mod pod;
mod pod_events;
mod probes;
mod procfs;
mod report;
mod run;
mod scratch;
mod scratch_owner;
mod size;
mod text;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn init_tracing(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter))
        .unwrap_or_else(|e| {
            eprintln!("warning: invalid log filter {default_filter:?} ({e}); using info");
            EnvFilter::new("info")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Whether stdout was closed when the process started (`>&-`). The Rust
/// runtime reopens a closed stdout on /dev/null before `main`, which would
/// then take every event without a word, so it is looked at earlier, by a
/// constructor the loader runs before the runtime's start-up.
static STDOUT_CLOSED_AT_START: AtomicBool = AtomicBool::new(false);

extern "C" fn note_closed_stdout() {
    // SAFETY: F_GETFD only reads the descriptor table.
    if unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED_AT_START.store(true, Ordering::Relaxed);
    }
}

#[used]
#[link_section = ".init_array"]
static NOTE_CLOSED_STDOUT: extern "C" fn() = note_closed_stdout;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if STDOUT_CLOSED_AT_START.load(Ordering::Relaxed) {
        eprintln!("error: stdout is closed, so every event would be lost; give the tracer a stdout (`> FILE`, or `> /dev/null` to discard the events on purpose)");
        return ExitCode::from(2);
    }
    init_tracing(&cli.common.log_level);
    // Reading a log needs neither the runtime nor BPF.
    if let Some(cli::Command::Report(args)) = &cli.command {
        return ExitCode::from(report::run(args, &cli.common));
    }
    // One thread is plenty for a ring buffer and a metrics endpoint, and
    // keeps the sidecar's memory small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
