//! The HTTPS admission endpoint: `POST /mutate`, `GET /healthz`, `GET /readyz`.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use json_patch::jsonptr::Pointer;
use k8s_openapi::ByteString;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{ApiResource, DynamicResourceScope, ObjectMeta, Resource};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tracing::Instrument;

use crate::config::Sidecar;
use crate::decision::{is_protected, Context};
use crate::metrics::Metrics;
use crate::mutate::mutate;
use crate::namespaces::NamespaceLookup;
use crate::view::{identity_of, Identity, PodView};

/// Largest accepted request body. The API server's own limit on objects is
/// about 1.5 MiB, so a review (object plus options) fits with room to spare.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How the object of a review is parsed.
pub trait ObjectParse: Send + Sync + 'static {
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<(Value, Identity), D::Error>;
}

/// In the same pass as the review, keeping only the view the decision and
/// the patch read (see [`crate::view`]); fails on shapes the view cannot hold.
pub struct Streamed;

impl ObjectParse for Streamed {
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<(Value, Identity), D::Error> {
        Ok(PodView::deserialize(d)?.into_parts())
    }
}

/// The whole object as a `Value`: any JSON at all.
pub struct Full;

impl ObjectParse for Full {
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<(Value, Identity), D::Error> {
        let full = Value::deserialize(d)?;
        let id = identity_of(&full);
        Ok((full, id))
    }
}

/// The object of a review as the decision and the patch see it. Patches
/// target the object exactly as the API server sent it, unknown fields
/// included; the object is never turned into a typed `Pod`.
pub struct PodObject<P> {
    pub view: Value,
    meta: ObjectMeta,
    parse: PhantomData<P>,
}

impl<'de, P: ObjectParse> Deserialize<'de> for PodObject<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (view, id) = P::parse(d)?;
        let meta = ObjectMeta {
            name: id.name,
            generate_name: id.generate_name,
            namespace: id.namespace,
            ..ObjectMeta::default()
        };
        Ok(Self {
            view,
            meta,
            parse: PhantomData,
        })
    }
}

impl<P: ObjectParse> Resource for PodObject<P> {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

pub struct AppState {
    pub sidecar: Sidecar,
    pub namespaces: Arc<dyn NamespaceLookup>,
    /// The injector's own namespace, never injected.
    pub own_namespace: Option<String>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

async fn mutate_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    if !is_json(&headers) {
        state.metrics.error("unsupported-media-type");
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        )
            .into_response();
    }
    // One pass for the pods the API server sends; odd shapes get a second,
    // full parse; malformed JSON fails both and is reported from the latter.
    let response = match serde_json::from_slice::<AdmissionReview<PodObject<Streamed>>>(&body) {
        Ok(review) => answer(&state, review).await,
        Err(_) => match serde_json::from_slice::<AdmissionReview<PodObject<Full>>>(&body) {
            Ok(review) => answer(&state, review).await,
            Err(e) => {
                state.metrics.error("malformed-request");
                return bad_request(format!("malformed AdmissionReview JSON: {e}"));
            }
        },
    };
    match response {
        Ok(response) => {
            state
                .metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
            encode_review(response)
        }
        Err(message) => {
            state.metrics.error("malformed-request");
            bad_request(message)
        }
    }
}

/// Serializes the response review with `patch` base64-encoded, the way the
/// API server itself encodes `[]byte`; kube's types would write it as an
/// array of numbers, about three times larger.
fn encode_review(mut response: AdmissionResponse) -> Response {
    let patch = response.patch.take();
    let mut review = match serde_json::to_value(response.into_review()) {
        Ok(review) => review,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the response: {e}"),
            )
                .into_response()
        }
    };
    if let (Some(patch), Some(r)) = (
        patch,
        review.get_mut("response").and_then(Value::as_object_mut),
    ) {
        if let Ok(encoded) = serde_json::to_value(ByteString(patch)) {
            r.insert("patch".into(), encoded);
        }
    }
    Json(review).into_response()
}

async fn answer<P: ObjectParse>(
    state: &AppState,
    review: AdmissionReview<PodObject<P>>,
) -> Result<AdmissionResponse, String> {
    if review.types.kind != "AdmissionReview" {
        return Err(format!(
            "expected kind AdmissionReview, got {:?}",
            review.types.kind
        ));
    }
    let request: AdmissionRequest<PodObject<P>> = review
        .try_into()
        .map_err(|_| "AdmissionReview has no request".to_owned())?;
    let span = tracing::info_span!("admission", uid = %request.uid);
    Ok(review_pod(state, &request).instrument(span).await)
}

/// The answer to one review. Never denies: any failure allows the pod
/// unchanged, with a warning and an error metric.
async fn review_pod<P: ObjectParse>(
    state: &AppState,
    req: &AdmissionRequest<PodObject<P>>,
) -> AdmissionResponse {
    let base = AdmissionResponse::from(req);
    let is_pod = req.kind.group.is_empty() && req.kind.kind == "Pod";
    if !is_pod || req.operation != Operation::Create || req.sub_resource.is_some() {
        tracing::debug!(kind = %req.kind.kind, operation = ?req.operation, "not a pod creation; allowed unchanged");
        if !req.dry_run {
            state.metrics.record("ignored", "not-pod-create");
        }
        return base;
    }
    let Some(object) = &req.object else {
        return internal_error(
            state,
            req,
            base,
            "no-object",
            "the request carries no object",
        );
    };
    // A pod's own namespace field is often empty at admission time.
    let namespace = req
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or(object.meta.namespace.as_deref());
    let pod_name = object
        .meta
        .name
        .clone()
        .or_else(|| object.meta.generate_name.as_ref().map(|g| format!("{g}*")))
        .unwrap_or_default();
    let protected = namespace.is_some_and(|ns| is_protected(ns, state.own_namespace.as_deref()));
    let namespace_facts = match namespace {
        Some(ns) if !protected => match state.namespaces.lookup(ns).await {
            Ok(facts) => facts,
            Err(e) => {
                return internal_error(state, req, base, "namespace-lookup", &e.to_string());
            }
        },
        _ => None,
    };
    let ctx = Context {
        namespace,
        own_namespace: state.own_namespace.as_deref(),
        namespace_facts: namespace_facts.as_ref(),
        inject_all: false,
    };
    let outcome = mutate(&object.view, Pointer::root(), &state.sidecar, &ctx, true);
    let (decision, reason) = outcome.label();
    tracing::info!(
        pod = %pod_name,
        namespace = namespace.unwrap_or(""),
        decision,
        reason,
        dry_run = req.dry_run,
        "admission decision"
    );
    // Dry runs leave no trace, the metrics included; the response is the
    // same so that `kubectl --dry-run=server` shows what would happen.
    if !req.dry_run {
        state.metrics.record(decision, reason);
    }
    let mut response = base;
    if !outcome.warnings.is_empty() {
        response.warnings = Some(outcome.warnings);
    }
    if outcome.ops.is_empty() {
        return response;
    }
    let warnings = response.warnings.clone();
    match response.with_patch(json_patch::Patch(outcome.ops)) {
        Ok(response) => response,
        Err(e) => {
            let mut r = internal_error(
                state,
                req,
                AdmissionResponse::from(req),
                "serialize-patch",
                &e.to_string(),
            );
            if let Some(w) = warnings {
                r.warnings.get_or_insert_with(Vec::new).extend(w);
            }
            r
        }
    }
}

fn internal_error<P: ObjectParse>(
    state: &AppState,
    req: &AdmissionRequest<PodObject<P>>,
    mut response: AdmissionResponse,
    kind: &'static str,
    message: &str,
) -> AdmissionResponse {
    tracing::error!(
        kind,
        error = message,
        "internal error; pod allowed unchanged"
    );
    if !req.dry_run {
        state.metrics.error(kind);
        state.metrics.record("error", kind);
    }
    response.allowed = true;
    response.patch = None;
    response.warnings = Some(vec![format!(
        "linnix tracer not injected: internal error: {message}"
    )]);
    response
}
