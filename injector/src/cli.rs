//! Command line and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "linnix-injector",
    version,
    about = "Mutating admission webhook that adds the linnix tracer sidecar to opted-in pods"
)]
pub struct Cli {
    /// Diagnostics filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, global = true, env = "LINNIX_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook (HTTPS) and metrics (plain HTTP).
    Serve(Box<ServeArgs>),
    /// Inject manifests offline: YAML in, YAML out on stdout.
    Inject(InjectArgs),
    /// Write a CA and a serving certificate signed by it.
    Certs(CertsArgs),
    /// Why is, or isn't, a pod traced? Exit status 0: every pod checked
    /// would get the tracer, and a pod read from the cluster runs it
    /// (--stale: no stale tracer); 1: at least one would not, or runs
    /// without it (--stale: some are stale); 2: nothing could be checked.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("tls").required(true).args(["tls_cert", "self_signed"])))]
pub struct ServeArgs {
    /// HTTPS address of /mutate, /healthz and /readyz.
    #[arg(long, env = "LINNIX_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,

    /// Plain-HTTP address of /metrics.
    #[arg(long, env = "LINNIX_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// YAML sidecar template; built-in defaults when absent.
    #[arg(long, env = "LINNIX_CONFIG")]
    pub config: Option<PathBuf>,

    /// Overrides the config file's `nativeSidecar`.
    #[arg(long, env = "LINNIX_NATIVE_SIDECAR", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub native_sidecar: Option<bool>,

    /// Serving certificate (PEM), reloaded when it changes on disk.
    #[arg(
        long,
        env = "LINNIX_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "self_signed"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "LINNIX_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "LINNIX_TLS_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// Longest a client may take to send a request's headers (HTTP/1.1).
    #[arg(long, env = "LINNIX_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Longest a client may take to send a request's body, after its headers.
    #[arg(long, env = "LINNIX_BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// A connection with no traffic for this long is closed (kept-alive ones
    /// too). Longer than the API server's own idle timeout (90 s), so that
    /// it closes first.
    #[arg(long, env = "LINNIX_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most connections open at once; more are closed when accepted.
    #[arg(long, env = "LINNIX_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Of --max-connections, most that may still be in their TLS handshake
    /// (the oldest is closed for a newer one); the rest are kept for
    /// connections that completed it. Default: a quarter.
    #[arg(long, env = "LINNIX_MAX_HANDSHAKES", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_handshakes: Option<u32>,

    /// Generate a CA and serving certificate in memory and set the caBundle
    /// of --webhook-config.
    #[arg(long, requires = "webhook_config")]
    pub self_signed: bool,

    /// Validity of each self-signed certificate (humantime: 1y, 90d, 6s).
    #[arg(long, env = "LINNIX_CERT_VALIDITY", default_value = "1y", value_parser = parse_validity, requires = "self_signed")]
    pub cert_validity: Duration,

    /// Renew a self-signed certificate this long before it expires; default
    /// a third of --cert-validity (renewal at two thirds).
    #[arg(long, env = "LINNIX_CERT_RENEW_BEFORE", value_parser = parse_validity, requires = "self_signed")]
    pub cert_renew_before: Option<Duration>,

    /// Name of the MutatingWebhookConfiguration whose caBundle is set.
    #[arg(long, env = "LINNIX_WEBHOOK_CONFIG")]
    pub webhook_config: Option<String>,

    /// DNS names of the self-signed certificate (repeatable); default
    /// <service>.<namespace>.svc.
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,

    /// Service name used for the default DNS name.
    #[arg(long, env = "LINNIX_SERVICE", default_value = "linnix-injector")]
    pub service: String,

    /// The injector's own namespace: never injected.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

impl ServeArgs {
    /// --max-handshakes, or a quarter of --max-connections; never more
    /// than --max-connections.
    pub fn handshake_share(&self) -> usize {
        let max = self.max_connections as usize;
        self.max_handshakes
            .map_or(max / 4, |n| n as usize)
            .clamp(1, max)
    }
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Manifest file, or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    pub file: String,

    /// Inject every pod template regardless of the inject annotation.
    #[arg(long)]
    pub all: bool,

    /// YAML sidecar template; built-in defaults when absent.
    #[arg(long, env = "LINNIX_CONFIG")]
    pub config: Option<PathBuf>,

    /// Overrides the config file's `nativeSidecar`.
    #[arg(long, env = "LINNIX_NATIVE_SIDECAR", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub native_sidecar: Option<bool>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["pod", "file", "stale"])))]
pub struct CheckArgs {
    /// A pod in the cluster (kubeconfig): read it and its namespace.
    #[arg(conflicts_with_all = ["file", "stale"])]
    pub pod: Option<String>,

    /// Manifests to check offline, or `-` for stdin (the kinds `inject` reads).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|-",
        conflicts_with = "stale"
    )]
    pub file: Option<String>,

    /// List the pods whose tracer image differs from the configured one
    /// (all namespaces unless -n is given).
    #[arg(long)]
    pub stale: bool,

    /// The pod's namespace (default: the kubeconfig's); offline, the
    /// namespace of objects that name none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// Offline: the namespace's annotations, k=v[,k=v...] (repeatable). A
    /// comma starts a new pair only before a prefixed key (`a.b/c=`), so a
    /// value keeps its commas: `sidecar.linnix.io/log-level=warn,x=debug`.
    #[arg(long, value_name = "K=V,...", value_parser = parse_annotations, conflicts_with_all = ["pod", "stale"])]
    pub namespace_annotations: Vec<Pairs>,

    /// Offline: the namespace's labels, k=v[,k=v...] (repeatable).
    #[arg(long, value_name = "K=V,...", value_delimiter = ',', value_parser = parse_key_value, conflicts_with_all = ["pod", "stale"])]
    pub namespace_labels: Vec<(String, String)>,

    /// The injector's configuration file (the chart's ConfigMap); built-in
    /// defaults when absent.
    #[arg(long, env = "LINNIX_CONFIG")]
    pub config: Option<PathBuf>,

    /// Overrides the config file's `nativeSidecar`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub native_sidecar: Option<bool>,

    /// The injector's own namespace, which it never injects.
    #[arg(long, value_name = "NAMESPACE")]
    pub injector_namespace: Option<String>,

    /// Output format; yaml and json include the tracer container.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: crate::check::render::Format,
}

/// Key-value pairs given in one flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs(pub Vec<(String, String)>);

impl CheckArgs {
    /// Every `--namespace-annotations` pair, in order.
    pub fn annotation_pairs(&self) -> Vec<(String, String)> {
        self.namespace_annotations
            .iter()
            .flat_map(|p| p.0.iter().cloned())
            .collect()
    }
}

/// `k=v[,k=v...]` where an annotation value may itself hold commas (a
/// log-level like `warn,linnix_sidecar=debug`): a comma separates pairs
/// only when what follows is a prefixed key and `=`. Every annotation the
/// injector reads has a prefix (`sidecar.linnix.io/`), and no value it
/// accepts holds a `/` before an `=`.
fn parse_annotations(s: &str) -> Result<Pairs, String> {
    let mut pieces: Vec<String> = Vec::new();
    for piece in s.split(',') {
        let starts_pair = piece
            .split_once('=')
            .is_some_and(|(key, _)| key.contains('/'));
        match pieces.last_mut() {
            Some(last) if !starts_pair => {
                last.push(',');
                last.push_str(piece);
            }
            _ => pieces.push(piece.to_owned()),
        }
    }
    pieces
        .iter()
        .map(|p| parse_key_value(p))
        .collect::<Result<_, _>>()
        .map(Pairs)
}

/// `key=value`; the value may be empty and may contain `=`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, tls.crt and tls.key (created when missing).
    #[arg(long)]
    pub out: PathBuf,

    /// DNS name of the serving certificate (repeatable).
    #[arg(long = "dns", value_name = "NAME", required = true)]
    pub dns: Vec<String>,

    /// Validity of the serving certificate (humantime: 90d, 1y, 12h).
    #[arg(long, default_value = "1y", value_parser = parse_validity)]
    pub cert_validity: Duration,
}

/// A certificate validity in humantime syntax (`1y`, `90d`, `6s`), at least
/// a second: renewal runs at fractions of it.
fn parse_validity(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d < Duration::from_secs(1) {
        return Err("a certificate validity must be at least 1s".into());
    }
    Ok(d)
}

/// `500ms`, `5s`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s or 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    if d.is_zero() {
        return Err("the interval must be greater than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn native_sidecar_flag_forms() {
        let parse = |args: &[&str]| {
            let mut v = vec!["linnix-injector", "inject", "-f", "-"];
            v.extend_from_slice(args);
            match Cli::try_parse_from(v).unwrap().command {
                Command::Inject(a) => a.native_sidecar,
                _ => unreachable!(),
            }
        };
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["--native-sidecar=false"]), Some(false));
        assert_eq!(parse(&["--native-sidecar"]), Some(true));
    }

    #[test]
    fn serve_needs_exactly_one_certificate_source() {
        assert!(Cli::try_parse_from(["x", "serve"]).is_err());
        assert!(Cli::try_parse_from(["x", "serve", "--tls-cert", "a"]).is_err());
        assert!(Cli::try_parse_from(["x", "serve", "--self-signed"]).is_err());
        assert!(Cli::try_parse_from(["x", "serve", "--tls-cert", "a", "--tls-key", "b"]).is_ok());
        assert!(
            Cli::try_parse_from(["x", "serve", "--self-signed", "--webhook-config", "w"]).is_ok()
        );
        assert!(Cli::try_parse_from([
            "x",
            "serve",
            "--self-signed",
            "--webhook-config",
            "w",
            "--tls-cert",
            "a",
            "--tls-key",
            "b"
        ])
        .is_err());
    }

    #[test]
    fn check_targets_and_namespace_flags() {
        let parse = |args: &[&str]| {
            let mut v = vec!["linnix-injector", "check"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).map(|c| match c.command {
                Command::Check(a) => a,
                _ => unreachable!(),
            })
        };
        assert!(parse(&[]).is_err());
        assert!(parse(&["web", "-f", "x"]).is_err());
        assert!(parse(&["web", "--stale"]).is_err());
        assert!(parse(&["web", "--namespace-labels", "a=b"]).is_err());
        let a = parse(&[
            "-f",
            "-",
            "--namespace-annotations",
            "a=1,b=x=y",
            "--namespace-annotations=c=",
            "-o",
            "yaml",
        ])
        .unwrap();
        assert_eq!(
            a.annotation_pairs(),
            [("a".into(), "1,b=x=y".into()), ("c".into(), String::new())]
        );
        let a = parse(&[
            "-f",
            "-",
            "--namespace-annotations",
            "sidecar.linnix.io/inject=true,sidecar.linnix.io/log-level=warn,linnix_sidecar=debug,x.io/y=1",
        ])
        .unwrap();
        assert_eq!(
            a.annotation_pairs(),
            [
                ("sidecar.linnix.io/inject".into(), "true".into()),
                (
                    "sidecar.linnix.io/log-level".into(),
                    "warn,linnix_sidecar=debug".into()
                ),
                ("x.io/y".into(), "1".into())
            ]
        );
        assert!(parse(&["-f", "-", "--namespace-labels", "=v"]).is_err());
        assert!(parse(&["-f", "-", "--namespace-labels", "novalue"]).is_err());
        let a = parse(&["--stale", "-n", "team-a"]).unwrap();
        assert!(a.stale);
        assert_eq!(a.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
