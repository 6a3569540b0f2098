//! `linnix-injector serve`: wires configuration, namespace lookup,
//! certificates, the HTTPS webhook and the metrics endpoint.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::Handle;

use crate::admission::{self, AppState};
use crate::cli::ServeArgs;
use crate::config::{ApiServer, Config, HOST_ENV, PORT_ENV};
use crate::conn_limits::{Limiter, Limits, DISPLACED_SLOT_WAIT};
use crate::handshakes::Handshakes;
use crate::metrics::{self, Metrics};
use crate::namespaces::{Disconnected, NamespaceLookup, Reflected};
use crate::tls::CertFiles;

/// Connections open at once on the metrics port.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// Time given to in-flight reviews after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut sidecar = Config::load(args.config.as_deref())?
        .sidecar
        .validate(args.native_sidecar)?;
    if sidecar.api_server.is_none() {
        // Set by the kubelet in the injector's namespace, where teams
        // create no Services.
        let own = ApiServer::from_env(std::env::var(HOST_ENV).ok(), std::env::var(PORT_ENV).ok())?;
        sidecar = sidecar.or_api_server(own);
    }
    match &sidecar.api_server {
        Some(api) => tracing::info!(host = %api.host, port = api.port, "the tracers' API server"),
        None => tracing::warn!(
            "no API server address (sidecar.apiServer unset, and no {HOST_ENV}/{PORT_ENV} of our own): \
             tracers get it from service links, which a Service named kubernetes in their namespace \
             overrides; guarded namespaces refuse them"
        ),
    }
    let metrics = Arc::new(
        Metrics::new().with_tracer(&sidecar.image, crate::config::image_version(&sidecar.image)),
    );

    let client = connect().await;
    let namespaces: Arc<dyn NamespaceLookup> = match &client {
        Some(client) => Reflected::watch(client.clone()),
        None => Arc::new(Disconnected),
    };

    let rustls = if args.self_signed {
        let dns = if args.dns.is_empty() {
            let ns = args.namespace.as_deref().unwrap_or("default");
            vec![format!("{}.{ns}.svc", args.service)]
        } else {
            args.dns.clone()
        };
        let schedule = crate::renewal::Schedule::new(args.cert_validity, args.cert_renew_before)?;
        // clap guarantees --webhook-config with --self-signed.
        let bundle = client.clone().map(|client| crate::renewal::Bundle {
            client,
            webhook_config: args.webhook_config.clone().unwrap_or_default(),
        });
        tracing::info!(?dns, validity = ?schedule.validity, renew_before = ?schedule.renew_before, "self-signed certificates");
        crate::renewal::start(dns, schedule, bundle, metrics.clone())?
    } else {
        let (Some(cert), Some(key)) = (args.tls_cert.clone(), args.tls_key.clone()) else {
            anyhow::bail!("--tls-cert and --tls-key are required without --self-signed");
        };
        let files = CertFiles { cert, key };
        let loaded = files.load().with_context(|| {
            format!(
                "loading {} and {}",
                files.cert.display(),
                files.key.display()
            )
        })?;
        metrics.cert_expiry.set(loaded.not_after as f64);
        let rustls = RustlsConfig::from_config(loaded.config);
        crate::reload::spawn_reloader(
            files,
            rustls.clone(),
            metrics.clone(),
            loaded.pair,
            args.tls_reload_interval,
        );
        rustls
    };

    let state = Arc::new(AppState {
        sidecar,
        namespaces,
        own_namespace: args.namespace.clone(),
        metrics: metrics.clone(),
        body_read_timeout: args.body_read_timeout,
    });
    let limits = Limits {
        header_read: args.header_read_timeout,
        body_read: args.body_read_timeout,
        idle: args.idle_timeout,
        max_connections: args.max_connections as usize,
        max_handshakes: args.handshake_share(),
    };

    let limiter_metrics = metrics.clone();
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {}", args.metrics_addr))?;
    let metrics_addr = metrics_listener.local_addr()?;
    tracing::info!(addr = %metrics_addr, "metrics listening (HTTP)");
    // The metrics port gets the same timeouts; its own, small, connection cap
    // keeps scrapers (or anyone) from holding the webhook's.
    let metrics_limits = Limits {
        max_connections: METRICS_MAX_CONNECTIONS,
        ..limits
    };
    let mut metrics_http = axum_server::from_tcp(metrics_listener.into_std()?)?
        .acceptor(Limiter::new(&metrics_limits, metrics.clone()));
    metrics_http
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let metrics_server = tokio::spawn(async move {
        metrics_http
            .serve(metrics::router(metrics).into_make_service())
            .await
    });

    let handle: Handle<std::net::SocketAddr> = Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    {
        // The bound address, which differs from --addr for port 0.
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = handle.listening().await {
                tracing::info!(%addr, "webhook listening (HTTPS)");
            }
        });
    }
    let tls = RustlsAcceptor::new(rustls)
        .acceptor(Limiter::new(&limits, limiter_metrics.clone()).waiting(DISPLACED_SLOT_WAIT));
    let acceptor = Handshakes::new(tls, limits.max_handshakes, limits.idle, limiter_metrics);
    let mut server = axum_server::bind(args.addr)
        .acceptor(acceptor)
        .handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read);
    tracing::info!(?limits, "connection limits");
    let served = server
        .serve(admission::router(state).into_make_service())
        .await;
    metrics_server.abort();
    served.with_context(|| format!("serving HTTPS on {}", args.addr))
}

/// A client when a cluster is configured, else `None` with one warning.
async fn connect() -> Option<kube::Client> {
    match kube::Config::infer().await {
        Ok(config) => match kube::Client::try_from(config) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(error = %e, "cannot build a Kubernetes client: namespace opt-in is off, pod annotations alone decide");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no cluster reachable: namespace opt-in is off, pod annotations alone decide");
            None
        }
    }
}

async fn shutdown_on_signal(handle: Handle<std::net::SocketAddr>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down; finishing in-flight reviews");
    handle.graceful_shutdown(Some(GRACE));
}
