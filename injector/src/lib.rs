//! linnix-injector: a mutating admission webhook (and offline injector) that
//! adds the linnix tracer sidecar to opted-in pods.

pub mod admission;
pub mod certs;
pub mod check;
pub mod cli;
pub mod config;
pub mod conn_idle;
pub mod conn_limits;
pub mod decision;
pub mod fit;
pub mod handshakes;
pub mod metrics;
pub mod mutate;
pub mod namespaces;
pub mod offline;
pub mod overrides;
pub mod patch;
pub mod pod;
pub mod quantity;
pub mod reload;
pub mod renewal;
pub mod request_body;
pub mod scrape_annotations;
pub mod serve;
pub mod sidecar_args;
pub mod tls;
pub mod yaml11;
