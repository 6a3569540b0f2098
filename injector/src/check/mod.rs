//! `linnix-injector check`: why is, or isn't, a pod traced?
//!
//! Offline it reads manifests (like `inject`); in a cluster it reads a pod
//! and its namespace, or every pod for `--stale`, with the caller's
//! kubeconfig. The exit status lets CI gate on the answer.

pub mod cluster;
pub mod manifests;
pub mod render;
pub mod report;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;

use crate::cli::CheckArgs;
use crate::config::{Config, ConfigError, Sidecar};
use crate::decision::NamespaceFacts;
use crate::namespaces::facts_of;
use crate::offline::{self, OfflineError};
use report::Options;

/// Every pod checked would get the tracer; `--stale`: no stale tracer.
pub const EXIT_INJECTED: u8 = 0;
/// At least one pod would not get it; `--stale`: some tracer is stale.
pub const EXIT_NOT_INJECTED: u8 = 1;
/// Nothing could be checked: bad input, configuration or cluster access.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Input(#[from] OfflineError),
    #[error("the input has no Pod and no workload with a pod template")]
    NoPods,
    #[error("cannot connect to the cluster: {0}")]
    Connect(#[source] Box<kube::Error>),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{0} took longer than {timeout:?}", timeout = cluster::CALL_TIMEOUT)]
    Timeout(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("cannot write JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("cannot write YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
    #[error("cannot write the output: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot start the client runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs `check`; the exit status is the answer (see the `EXIT_*` codes).
pub fn main(args: CheckArgs) -> ExitCode {
    match run(&args) {
        Ok(all_good) => ExitCode::from(if all_good {
            EXIT_INJECTED
        } else {
            EXIT_NOT_INJECTED
        }),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn print(text: &str) -> Result<(), CheckError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CheckError::Write)
}

/// The namespace the `--namespace-*` flags describe; `None` without them.
pub fn namespace_from_flags(
    name: Option<&str>,
    annotations: &[(String, String)],
    labels: &[(String, String)],
) -> Option<NamespaceFacts> {
    if annotations.is_empty() && labels.is_empty() {
        return None;
    }
    let map =
        |kv: &[(String, String)]| -> BTreeMap<String, String> { kv.iter().cloned().collect() };
    // The same function as the webhook's reflector reads real namespaces with.
    Some(facts_of(&Namespace {
        metadata: ObjectMeta {
            name: name.map(str::to_owned),
            annotations: Some(map(annotations)),
            labels: Some(map(labels)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }))
}

/// `Ok(true)` when every pod checked is (or would be) injected.
fn run(args: &CheckArgs) -> Result<bool, CheckError> {
    let sidecar = Config::load(args.config.as_deref())?
        .sidecar
        .validate(args.native_sidecar)?;
    if let Some(file) = &args.file {
        let text = offline::read_input(file)?;
        let facts = namespace_from_flags(
            args.namespace.as_deref(),
            &args.annotation_pairs(),
            &args.namespace_labels,
        );
        let opts = Options {
            sidecar: &sidecar,
            namespace: args.namespace.as_deref(),
            namespace_facts: facts.as_ref(),
            own_namespace: args.injector_namespace.as_deref(),
        };
        let reports = manifests::reports(&text, &opts)?;
        print(&render::reports(&reports, args.output)?)?;
        return Ok(reports.iter().all(|r| r.injected));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CheckError::Runtime)?
        .block_on(in_cluster(args, &sidecar))
}

async fn in_cluster(args: &CheckArgs, sidecar: &Sidecar) -> Result<bool, CheckError> {
    let client = cluster::connect().await?;
    if args.stale {
        // All namespaces unless one is named.
        let pods = cluster::pods(&client, args.namespace.as_deref()).await?;
        let stale = report::stale(&pods, sidecar);
        print(&render::stale(&stale, &sidecar.image, args.output)?)?;
        return Ok(stale.is_empty());
    }
    let name = args.pod.as_deref().unwrap_or_default();
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let pod = cluster::pod(&client, &namespace, name).await?;
    let facts = facts_of(&cluster::namespace(&client, &namespace).await?);
    let opts = Options {
        sidecar,
        namespace: Some(&namespace),
        namespace_facts: Some(&facts),
        own_namespace: args.injector_namespace.as_deref(),
    };
    let report = report::live(&pod, &opts);
    print(&render::reports(
        std::slice::from_ref(&report),
        args.output,
    )?)?;
    Ok(report::traced(&report))
}
