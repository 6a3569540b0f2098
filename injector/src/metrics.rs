//! Prometheus metrics (OpenMetrics text), served on their own plain-HTTP port.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `injected`, `skipped`, `ignored` (not a pod creation) or `error`.
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub admissions: Family<DecisionLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    pub cert_renewal: Gauge<f64, AtomicU64>,
    pub cert_reloads: Family<ReloadLabels, Counter>,
    pub connections_closed: Family<CloseLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("linnix_injector");
        let admissions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Pod admission reviews by decision and reason",
            admissions.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Internal errors; the pod was allowed unchanged",
            errors.clone(),
        );
        // 50 µs .. ~100 ms
        let duration = Histogram::new(exponential_buckets(0.00005, 2.0, 12));
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review, body parsing included",
            duration.clone(),
        );
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Expiry (notAfter, Unix time) of the serving certificate in use",
            cert_expiry.clone(),
        );
        let cert_renewal = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_renewal_timestamp_seconds",
            "When the self-signed serving certificate in use is renewed (Unix time; --self-signed only)",
            cert_renewal.clone(),
        );
        let cert_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Attempts to load a changed serving certificate from disk",
            cert_reloads.clone(),
        );
        let connections_closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Webhook connections the injector closed: idle (no request for --idle-timeout) or handshake-displaced (still in its TLS handshake when --max-handshakes newer ones arrived)",
            connections_closed.clone(),
        );
        Self {
            registry,
            admissions,
            errors,
            duration,
            cert_expiry,
            cert_renewal,
            cert_reloads,
            connections_closed,
        }
    }

    /// `linnix_injector_tracer_info{image, version}`: the tracer image this
    /// injector adds and its version (the tag), so that alert rules can
    /// find tracers older than it after an upgrade (they export
    /// `linnix_build_info{version}`).
    pub fn with_tracer(mut self, image: &str, version: &str) -> Self {
        let labels = vec![
            ("image".to_owned(), image.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ];
        self.registry.register(
            "tracer",
            "The tracer image this injector adds, and its tag as the version",
            Info::new(labels),
        );
        self
    }

    pub fn record(&self, decision: &'static str, reason: &'static str) {
        self.admissions
            .get_or_create(&DecisionLabels { decision, reason })
            .inc();
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&CloseLabels { reason })
            .inc();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /metrics` on the plain-HTTP metrics address; anything else gets an
/// answer that says what is served.
pub fn router(metrics: Arc<Metrics>) -> Router {
    use axum::http::{Method, StatusCode, Uri};
    Router::new()
        .fallback(|uri: Uri| async move {
            (
                StatusCode::NOT_FOUND,
                format!(
                    "no such path: {}; this port serves GET /metrics\n",
                    uri.path()
                ),
            )
        })
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.encode() {
                        Ok(body) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                            .into_response(),
                        Err(_) => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "cannot encode metrics",
                        )
                            .into_response(),
                    }
                }
            }),
        )
        .method_not_allowed_fallback(|method: Method| async move {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed; this port serves GET /metrics\n"),
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracer_info_names_the_configured_image_and_version() {
        let m = super::Metrics::new().with_tracer("registry.local/linnix-sidecar:1.2.3", "1.2.3");
        let text = m.encode().expect("encodes");
        assert!(
            text.contains(
                r#"linnix_injector_tracer_info{image="registry.local/linnix-sidecar:1.2.3",version="1.2.3"} 1"#
            ),
            "{text}"
        );
    }
}
