//! The API server address written into the tracer's environment.
//!
//! Without it the kubelet fills `KUBERNETES_SERVICE_HOST`/`PORT` from service
//! links, and a Service named `kubernetes` in the pod's own namespace wins
//! over the cluster's: the team would choose the server the tracer asks for
//! its pod's container names and probes. Explicit env always wins over
//! service links, so the injector writes both variables itself.

use std::net::IpAddr;

use serde::Deserialize;

pub const HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";
pub const PORT_ENV: &str = "KUBERNETES_SERVICE_PORT";

/// `sidecar.apiServer` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerConfig {
    pub host: String,
    pub port: u16,
}

/// A checked address: an IP in its canonical form and a port above zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiServerError {
    // A name would be resolved by the pod's resolver, which the team sets
    // (hostAliases, dnsConfig): only an IP pins the server.
    #[error("{source_name} host {host:?} is not an IP address (a name would be resolved through the pod's /etc/hosts and DNS settings, which its team controls)")]
    NotAnIp { source_name: String, host: String },
    // The admission policy compares strings: a second spelling of the same
    // address would refuse every tracer.
    #[error("{source_name} host {host:?} is not in canonical form: write {canonical}")]
    NotCanonical {
        source_name: String,
        host: String,
        canonical: String,
    },
    #[error("{source_name} port {port:?} is not a port between 1 and 65535")]
    Port { source_name: String, port: String },
}

impl ApiServer {
    /// Checks `host` and `port`; `source_name` says where they came from,
    /// for the error message.
    pub fn parse(source_name: &str, host: &str, port: &str) -> Result<Self, ApiServerError> {
        let ip: IpAddr = host.parse().map_err(|_| ApiServerError::NotAnIp {
            source_name: source_name.to_owned(),
            host: host.to_owned(),
        })?;
        let canonical = ip.to_string();
        if canonical != host {
            return Err(ApiServerError::NotCanonical {
                source_name: source_name.to_owned(),
                host: host.to_owned(),
                canonical,
            });
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(ApiServerError::Port {
                    source_name: source_name.to_owned(),
                    port: port.to_owned(),
                })
            }
        };
        Ok(Self {
            host: canonical,
            port,
        })
    }

    /// The address the kubelet gave this process: `None` when either
    /// variable is unset (outside a cluster).
    pub fn from_env(
        host: Option<String>,
        port: Option<String>,
    ) -> Result<Option<Self>, ApiServerError> {
        match (host, port) {
            (Some(host), Some(port)) => Self::parse(
                &format!("the injector's own {HOST_ENV}/{PORT_ENV}:"),
                &host,
                &port,
            )
            .map(Some),
            _ => Ok(None),
        }
    }
}

impl ApiServerConfig {
    pub fn validate(&self) -> Result<ApiServer, ApiServerError> {
        ApiServer::parse("sidecar.apiServer:", &self.host, &self.port.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_ips_and_real_ports() {
        assert_eq!(
            ApiServer::parse("x", "10.96.0.1", "443"),
            Ok(ApiServer {
                host: "10.96.0.1".into(),
                port: 443
            })
        );
        assert!(ApiServer::parse("x", "fd00::1", "6443").is_ok());
        assert!(matches!(
            ApiServer::parse("x", "kubernetes.default.svc", "443"),
            Err(ApiServerError::NotAnIp { .. })
        ));
        assert!(matches!(
            ApiServer::parse("x", "fd00:0::1", "443"),
            Err(ApiServerError::NotCanonical { canonical, .. }) if canonical == "fd00::1"
        ));
        for port in ["0", "65536", "", "https", "-1"] {
            assert!(
                matches!(
                    ApiServer::parse("x", "10.0.0.1", port),
                    Err(ApiServerError::Port { .. })
                ),
                "{port}"
            );
        }
    }

    #[test]
    fn from_env_needs_both_variables() {
        assert_eq!(ApiServer::from_env(None, Some("443".into())), Ok(None));
        assert_eq!(ApiServer::from_env(Some("10.0.0.1".into()), None), Ok(None));
        assert_eq!(
            ApiServer::from_env(Some("10.0.0.1".into()), Some("443".into())),
            Ok(Some(ApiServer {
                host: "10.0.0.1".into(),
                port: 443
            }))
        );
        let err = ApiServer::from_env(Some("evil.example".into()), Some("443".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    }
}
