//! `serve --self-signed`: a CA and a serving certificate made in memory and
//! renewed in the process before they expire.
//!
//! Renewal makes a new CA and certificate, puts the new CA into the caBundle
//! (next to the old one, which stays until it expires), waits until the
//! API server can have seen it, and only then serves the new certificate.
//! So a client that trusts the caBundle never meets a certificate it cannot
//! verify.

use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use kube::Client;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::certs::{self, Generated};
use crate::metrics::Metrics;
use crate::tls::{self, TlsError};

/// When to renew and how long to wait for the caBundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub validity: Duration,
    /// Renew this long before expiry; a third of the validity by default, so
    /// renewal happens at two thirds of it.
    pub renew_before: Duration,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("--cert-renew-before ({renew_before:?}) must be shorter than --cert-validity ({validity:?})")]
    RenewBeforeTooLong {
        renew_before: Duration,
        validity: Duration,
    },
}

impl Schedule {
    pub fn new(validity: Duration, renew_before: Option<Duration>) -> Result<Self, ScheduleError> {
        let renew_before = renew_before.unwrap_or(validity / 3);
        if renew_before >= validity {
            return Err(ScheduleError::RenewBeforeTooLong {
                renew_before,
                validity,
            });
        }
        Ok(Self {
            validity,
            renew_before,
        })
    }

    /// When a certificate made at `issued` is renewed.
    pub fn renewal_due(&self, issued: OffsetDateTime) -> OffsetDateTime {
        issued + (self.validity - self.renew_before)
    }

    /// Time between the new CA being in the caBundle and serving the new
    /// certificate: the API server reads webhook configurations through an
    /// informer, so a change reaches it after a short delay. A twentieth of
    /// the validity, at most 10 s (far less than the renewal margin).
    pub fn propagation(&self) -> Duration {
        (self.validity / 20).min(Duration::from_secs(10))
    }
}

/// Where the caBundle lives; `None` without a cluster.
pub struct Bundle {
    pub client: Client,
    pub webhook_config: String,
}

/// Makes the first pair, serves it, and keeps it renewed for the life of
/// the process. Returns the rustls configuration to serve.
pub fn start(
    dns: Vec<String>,
    schedule: Schedule,
    bundle: Option<Bundle>,
    metrics: Arc<Metrics>,
) -> Result<RustlsConfig, TlsError> {
    let first = certs::generate(&dns, schedule.validity, schedule.validity)?;
    let (config, not_after) =
        tls::server_config(first.cert_pem.as_bytes(), first.key_pem.as_bytes())?;
    let rustls = RustlsConfig::from_config(config);
    publish(&metrics, &schedule, &first, not_after);
    let (own_ca, own_ca_rx) = watch::channel(first.ca_pem.clone());
    match &bundle {
        Some(b) => tls::spawn_ca_bundle_patcher(b.client.clone(), b.webhook_config.clone(), own_ca_rx),
        None => tracing::warn!(
            "no cluster reachable: the caBundle is not set; the API server will not trust this certificate"
        ),
    }
    tokio::spawn(renew_forever(
        dns,
        schedule,
        bundle,
        rustls.clone(),
        metrics,
        own_ca,
        first,
    ));
    Ok(rustls)
}

fn publish(metrics: &Metrics, schedule: &Schedule, g: &Generated, not_after: i64) {
    metrics.cert_expiry.set(not_after as f64);
    let due = schedule.renewal_due(g.issued);
    metrics
        .cert_renewal
        .set(due.unix_timestamp_nanos() as f64 / 1e9);
    tracing::info!(
        not_after = %g.not_after,
        renewal_due = %due,
        "serving a self-signed certificate"
    );
}

/// Time from now until `t`, zero when it has passed.
fn until(t: OffsetDateTime) -> Duration {
    Duration::try_from(t - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO)
}

async fn renew_forever(
    dns: Vec<String>,
    schedule: Schedule,
    bundle: Option<Bundle>,
    rustls: RustlsConfig,
    metrics: Arc<Metrics>,
    own_ca: watch::Sender<String>,
    mut current: Generated,
) {
    loop {
        tokio::time::sleep(until(schedule.renewal_due(current.issued))).await;
        let next = match certs::generate(&dns, schedule.validity, schedule.validity).and_then(|g| {
            let loaded = tls::server_config(g.cert_pem.as_bytes(), g.key_pem.as_bytes())?;
            Ok((g, loaded))
        }) {
            Ok(next) => next,
            Err(e) => {
                metrics.error("certificate-renewal");
                tracing::error!(error = %e, "cannot make a new certificate; retrying in 10 s");
                tokio::time::sleep(Duration::from_secs(10).min(schedule.renew_before / 4)).await;
                continue;
            }
        };
        let (generated, (config, not_after)) = next;
        if let Some(b) = &bundle {
            add_to_bundle(b, &generated.ca_pem, current.not_after, &metrics).await;
            // Give the API server's informer time to see the new bundle.
            tokio::time::sleep(schedule.propagation()).await;
        }
        // From now on the periodic check keeps the new CA in the bundle; the
        // old one stays there as another valid CA until it expires.
        let _ = own_ca.send(generated.ca_pem.clone());
        rustls.reload_from_config(config);
        publish(&metrics, &schedule, &generated, not_after);
        current = generated;
    }
}

/// Puts `ca_pem` into the caBundle, retrying until it is there or the
/// certificate in use expires (a new certificate is then no worse).
async fn add_to_bundle(b: &Bundle, ca_pem: &str, old_expiry: OffsetDateTime, metrics: &Metrics) {
    let mut delay = Duration::from_millis(200);
    loop {
        match tls::patch_ca_bundle(b.client.clone(), &b.webhook_config, ca_pem).await {
            Ok(_) => return,
            Err(e) => {
                if OffsetDateTime::now_utc() >= old_expiry {
                    metrics.error("ca-bundle");
                    tracing::error!(error = %e, "the new CA is not in the caBundle and the old certificate has expired; serving the new one anyway");
                    return;
                }
                tracing::warn!(error = %e, retry_in = ?delay, "cannot add the renewed CA to the caBundle yet; still serving the old certificate");
                tokio::time::sleep(delay.min(until(old_expiry))).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_by_default() {
        let s = Schedule::new(Duration::from_secs(6), None).unwrap();
        let t = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(s.renewal_due(t), t + Duration::from_secs(4));
        assert_eq!(s.propagation(), Duration::from_millis(300));
        let year = Duration::from_secs(365 * 86400);
        let s = Schedule::new(year, None).unwrap();
        assert_eq!(
            s.renewal_due(t) - t,
            time::Duration::days(243) + time::Duration::hours(8)
        );
        assert_eq!(s.propagation(), Duration::from_secs(10));
        let s = Schedule::new(year, Some(Duration::from_secs(30 * 86400))).unwrap();
        assert_eq!(s.renewal_due(t) - t, time::Duration::days(335));
        assert!(Schedule::new(year, Some(year)).is_err());
    }
}
