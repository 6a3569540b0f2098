//! linnix-injector: `main` only wires the command line, diagnostics and the
//! runtime to the module of each subcommand.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use linnix_injector::cli::{Cli, Command};
use linnix_injector::{certs, check, offline, serve};
use tracing_subscriber::EnvFilter;

// Admission is allocation-heavy (JSON in, JSON out); glibc's malloc showed
// as about a fifth of the webhook's CPU time under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One crypto provider for the whole process (rustls and kube's client).
    let _ = rustls::crypto::ring::default_provider().install_default();

    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve::run(*args))
            .map(|()| ExitCode::SUCCESS),
        Command::Inject(args) => offline::run(args).map(|()| ExitCode::SUCCESS),
        // Its own exit codes: whether the pods would be injected.
        Command::Check(args) => Ok(check::main(args)),
        Command::Certs(args) => certs::run(args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    }
}
