//! Namespace facts (opt-in annotation, Pod Security level, guard) for the decision.
//!
//! The webhook must answer within the API server's timeout, so namespaces come
//! from a reflector cache; a direct GET covers a namespace created after the
//! last watch event (or before the cache's first list finished).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::decision::{
    NamespaceFacts, GUARD_LABEL, GUARD_VALUE, INJECT_ANNOTATION, POD_SECURITY_ENFORCE_LABEL,
};
use crate::overrides::Override;

/// Bound on the cache-miss GET: well inside the API server's webhook
/// timeout, so a slow API server yields a warning instead of a silently
/// timed-out review.
pub const GET_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("reading namespace {0} took longer than {GET_TIMEOUT:?}")]
    Timeout(String),
    #[error("cannot read namespace {name}: {source}")]
    Get {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// Where the decision reads namespace facts from.
pub trait NamespaceLookup: Send + Sync {
    /// `Ok(None)`: the namespace is unknown (or no cluster is reachable).
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<NamespaceFacts>, LookupError>>;
}

/// No cluster: namespace opt-in is off, pod annotations alone decide.
pub struct Disconnected;

impl NamespaceLookup for Disconnected {
    fn lookup<'a>(
        &'a self,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<NamespaceFacts>, LookupError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A reflector cache of namespaces, with a GET on a cache miss when an API
/// client is available.
pub struct Reflected {
    store: Store<Namespace>,
    api: Option<Api<Namespace>>,
}

impl Reflected {
    pub fn new(store: Store<Namespace>, api: Option<Api<Namespace>>) -> Self {
        Self { store, api }
    }

    /// Starts watching all namespaces in the background.
    pub fn watch(client: Client) -> Arc<Self> {
        let api = Api::<Namespace>::all(client);
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(api.clone(), watcher::Config::default()).default_backoff(),
        )
        .applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "namespace watch failed; retrying with backoff");
                }
            }
        });
        Arc::new(Self::new(store, Some(api)))
    }
}

pub fn facts_of(ns: &Namespace) -> NamespaceFacts {
    let get = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).cloned()
    };
    NamespaceFacts {
        inject: get(&ns.metadata.annotations, INJECT_ANNOTATION),
        pod_security_enforce: get(&ns.metadata.labels, POD_SECURITY_ENFORCE_LABEL),
        guarded: get(&ns.metadata.labels, GUARD_LABEL).as_deref() == Some(GUARD_VALUE),
        settings: Override::ALL
            .iter()
            .filter_map(|o| {
                let key = o.annotation();
                get(&ns.metadata.annotations, key).map(|v| (key.to_owned(), v))
            })
            .collect(),
    }
}

impl NamespaceLookup for Reflected {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<NamespaceFacts>, LookupError>> {
        Box::pin(async move {
            if let Some(ns) = self.store.get(&ObjectRef::new(name)) {
                return Ok(Some(facts_of(&ns)));
            }
            let Some(api) = &self.api else {
                return Ok(None);
            };
            tracing::debug!(namespace = name, "namespace not cached; reading it");
            match tokio::time::timeout(GET_TIMEOUT, api.get_opt(name)).await {
                Err(_) => Err(LookupError::Timeout(name.to_owned())),
                Ok(Ok(ns)) => Ok(ns.as_ref().map(facts_of)),
                Ok(Err(source)) => Err(LookupError::Get {
                    name: name.to_owned(),
                    source: Box::new(source),
                }),
            }
        })
    }
}
