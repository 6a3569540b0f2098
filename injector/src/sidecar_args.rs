//! Checks of `sidecar.args` against the rest of the sidecar template.
//!
//! The injected container is built from both: a `--metrics-addr` in the args
//! that disagrees with `metricsPort` leaves the startup probe (and the
//! declared port) pointing where nothing listens, so a native sidecar never
//! becomes ready and the app containers never start. Such a template is
//! refused when the configuration loads, not discovered in every pod.

use std::net::SocketAddr;

const METRICS_ADDR: &str = "--metrics-addr";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("sidecar.args: {METRICS_ADDR} needs a value (ADDR:PORT)")]
    MissingValue,
    #[error("sidecar.args: {METRICS_ADDR} {0:?} is not an address like 0.0.0.0:9464")]
    BadAddr(String),
    #[error("sidecar.args: {METRICS_ADDR} is given more than once; the tracer refuses that and would never start")]
    Repeated,
    #[error("sidecar.args: {METRICS_ADDR} {addr} listens on port {port}, but sidecar.metricsPort is {metrics_port}: the startup probe and the declared port would find nothing there. Set only sidecar.metricsPort")]
    PortMismatch {
        addr: SocketAddr,
        port: u16,
        metrics_port: u16,
    },
    #[error("sidecar.args: {METRICS_ADDR} {0} listens on one address only; the kubelet probes the pod's IP, so it must be 0.0.0.0 or [::]")]
    NotAllAddresses(SocketAddr),
    #[error("sidecar.args: {0:?} would make the tracer exit at once (the injected tracer runs in pod mode, without a subcommand)")]
    Exits(String),
}

/// Checks `args` (the tracer's extra arguments) against `metrics_port`.
pub fn check(args: &[String], metrics_port: u16) -> Result<(), ArgsError> {
    let mut addr: Option<SocketAddr> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        // Everything after `--` is positional for clap; the tracer takes
        // none in pod mode, so clap would refuse it as well.
        if arg == "--"
            || arg == "trace"
            || matches!(arg.as_str(), "-h" | "--help" | "-V" | "--version")
        {
            return Err(ArgsError::Exits(arg.clone()));
        }
        let value = if arg == METRICS_ADDR {
            iter.next().ok_or(ArgsError::MissingValue)?.as_str()
        } else if let Some(v) = arg.strip_prefix("--metrics-addr=") {
            v
        } else {
            continue;
        };
        if addr.is_some() {
            return Err(ArgsError::Repeated);
        }
        let parsed: SocketAddr = value
            .parse()
            .map_err(|_| ArgsError::BadAddr(value.to_owned()))?;
        addr = Some(parsed);
    }
    let Some(addr) = addr else {
        return Ok(());
    };
    if addr.port() != metrics_port {
        return Err(ArgsError::PortMismatch {
            addr,
            port: addr.port(),
            metrics_port,
        });
    }
    if !addr.ip().is_unspecified() {
        return Err(ArgsError::NotAllAddresses(addr));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_strs(args: &[&str], port: u16) -> Result<(), ArgsError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        check(&args, port)
    }

    #[test]
    fn agreeing_args_pass() {
        assert_eq!(check_strs(&[], 9464), Ok(()));
        assert_eq!(check_strs(&["--threads"], 9464), Ok(()));
        assert_eq!(check_strs(&["--metrics-addr=0.0.0.0:9464"], 9464), Ok(()));
        assert_eq!(check_strs(&["--metrics-addr", "[::]:9000"], 9000), Ok(()));
        assert_eq!(
            check_strs(
                &["--max-events-per-sec", "5", "--metrics-addr=0.0.0.0:1"],
                1
            ),
            Ok(())
        );
    }

    #[test]
    fn contradictions_are_refused() {
        assert!(matches!(
            check_strs(&["--metrics-addr=0.0.0.0:9000"], 9464),
            Err(ArgsError::PortMismatch {
                port: 9000,
                metrics_port: 9464,
                ..
            })
        ));
        assert!(matches!(
            check_strs(&["--metrics-addr", "0.0.0.0:9000"], 9464),
            Err(ArgsError::PortMismatch { .. })
        ));
        assert!(matches!(
            check_strs(&["--metrics-addr=127.0.0.1:9464"], 9464),
            Err(ArgsError::NotAllAddresses(_))
        ));
        assert_eq!(
            check_strs(&["--metrics-addr"], 9464),
            Err(ArgsError::MissingValue)
        );
        assert!(matches!(
            check_strs(&["--metrics-addr=:9464"], 9464),
            Err(ArgsError::BadAddr(_))
        ));
        assert_eq!(
            check_strs(
                &[
                    "--metrics-addr=0.0.0.0:9464",
                    "--metrics-addr",
                    "0.0.0.0:9464"
                ],
                9464
            ),
            Err(ArgsError::Repeated)
        );
        for exits in ["trace", "--help", "-V", "--"] {
            assert!(
                matches!(check_strs(&[exits], 9464), Err(ArgsError::Exits(_))),
                "{exits}"
            );
        }
    }
}
