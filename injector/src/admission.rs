//! The HTTPS admission endpoint: `POST /mutate`, `GET /healthz`, `GET /readyz`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use json_patch::jsonptr::Pointer;
use k8s_openapi::ByteString;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::Resource;
use serde::Serialize;
use tracing::Instrument;

use crate::config::Sidecar;
use crate::decision::{is_protected, Context};
use crate::metrics::Metrics;
use crate::mutate::mutate;
use crate::namespaces::NamespaceLookup;
use crate::pod::PodObject;
use crate::request_body::read_body;

pub use crate::request_body::MAX_BODY_BYTES;

pub struct AppState {
    pub sidecar: Sidecar,
    pub namespaces: Arc<dyn NamespaceLookup>,
    /// The injector's own namespace, never injected.
    pub own_namespace: Option<String>,
    pub metrics: Arc<Metrics>,
    /// Longest wait for a request body once its headers arrived.
    pub body_read_timeout: std::time::Duration,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// What the webhook serves, for the bodies of 404 and 405 answers.
const ROUTES: &str = "POST /mutate, GET /healthz, GET /readyz";

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no such path: {}; this webhook serves {ROUTES}\n",
            uri.path()
        ),
    )
        .into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {method} not allowed on {}; this webhook serves {ROUTES}\n",
            uri.path()
        ),
    )
        .into_response()
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
    body: Body,
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
    let body = match read_body(&state.metrics, state.body_read_timeout, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match parse_review(&body) {
        Ok(request) => {
            let response = answer(&state, request).await;
            state
                .metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
            response
        }
        Err(message) => {
            state.metrics.error("malformed-request");
            bad_request(message)
        }
    }
}

/// Reads a review body: its request, or the message of a 400 answer.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<PodObject<'_>>, String> {
    // serde_json skips the strings of fields it ignores without checking
    // their UTF-8, so a body that is not JSON (RFC 8259: UTF-8) would pass.
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("malformed AdmissionReview JSON: not UTF-8: {e}"))?;
    let review: AdmissionReview<PodObject<'_>> =
        serde_json::from_str(text).map_err(|e| format!("malformed AdmissionReview JSON: {e}"))?;
    if review.types.kind != "AdmissionReview" {
        return Err(format!(
            "expected kind AdmissionReview, got {:?}",
            review.types.kind
        ));
    }
    review
        .try_into()
        .map_err(|_| "AdmissionReview has no request".to_owned())
}

/// The review sent back, serialized in one go. `patch` is base64, the way
/// the API server itself encodes `[]byte`; kube's `AdmissionResponse` would
/// write it as an array of numbers, about three times larger.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewResponse<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: Verdict<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Verdict<'a> {
    uid: &'a str,
    /// Always true: the webhook never denies.
    allowed: bool,
    #[serde(flatten)]
    answer: Answer,
}

/// What the webhook says about one pod.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<ByteString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

async fn answer(state: &AppState, request: AdmissionRequest<PodObject<'_>>) -> Response {
    let span = tracing::info_span!("admission", uid = %request.uid);
    let answer = review_pod(state, &request).instrument(span).await;
    Json(ReviewResponse {
        api_version: &request.types.api_version,
        kind: &request.types.kind,
        response: Verdict {
            uid: &request.uid,
            allowed: true,
            answer,
        },
    })
    .into_response()
}

/// The answer to one review. Never denies: any failure allows the pod
/// unchanged, with a warning and an error metric.
async fn review_pod(state: &AppState, req: &AdmissionRequest<PodObject<'_>>) -> Answer {
    let is_pod = req.kind.group.is_empty() && req.kind.kind == "Pod";
    if !is_pod || req.operation != Operation::Create || req.sub_resource.is_some() {
        tracing::debug!(kind = %req.kind.kind, operation = ?req.operation, "not a pod creation; allowed unchanged");
        if !req.dry_run {
            state.metrics.record("ignored", "not-pod-create");
        }
        return Answer::default();
    }
    let Some(object) = &req.object else {
        return internal_error(state, req, "no-object", "the request carries no object");
    };
    if let Some(kind) = object.not_an_object {
        return malformed_object(state, req, kind);
    }
    // A pod's own namespace field is often empty at admission time.
    let namespace = req
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or(object.meta().namespace.as_deref());
    let pod_name = object
        .meta()
        .name
        .clone()
        .or_else(|| {
            object
                .meta()
                .generate_name
                .as_ref()
                .map(|g| format!("{g}*"))
        })
        .unwrap_or_default();
    let protected = namespace.is_some_and(|ns| is_protected(ns, state.own_namespace.as_deref()));
    let namespace_facts = match namespace {
        Some(ns) if !protected => match state.namespaces.lookup(ns).await {
            Ok(facts) => facts,
            Err(e) => {
                return internal_error(state, req, "namespace-lookup", &e.to_string());
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
    let outcome = mutate(&object.facts, Pointer::root(), &state.sidecar, &ctx, true);
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
    let mut answer = Answer {
        warnings: outcome.warnings,
        ..Answer::default()
    };
    if outcome.ops.is_empty() {
        return answer;
    }
    match serde_json::to_vec(&outcome.ops) {
        Ok(patch) => {
            answer.patch = Some(ByteString(patch));
            answer.patch_type = Some("JSONPatch");
            answer
        }
        Err(e) => {
            let mut failed = internal_error(state, req, "serialize-patch", &e.to_string());
            failed.warnings.append(&mut answer.warnings);
            failed
        }
    }
}

/// A pod CREATE whose object is not a JSON object: the API server would not
/// apply a patch to it, so the pod is allowed unchanged and the user told.
fn malformed_object(
    state: &AppState,
    req: &AdmissionRequest<PodObject<'_>>,
    kind: &'static str,
) -> Answer {
    tracing::warn!(
        object = kind,
        "request.object is not a JSON object; pod allowed unchanged"
    );
    if !req.dry_run {
        state.metrics.error("not-an-object");
        state.metrics.record("error", "not-an-object");
    }
    Answer {
        warnings: vec![format!(
            "linnix tracer not injected: request.object is {kind}, not a pod object"
        )],
        ..Answer::default()
    }
}

fn internal_error(
    state: &AppState,
    req: &AdmissionRequest<PodObject<'_>>,
    kind: &'static str,
    message: &str,
) -> Answer {
    tracing::error!(
        kind,
        error = message,
        "internal error; pod allowed unchanged"
    );
    if !req.dry_run {
        state.metrics.error(kind);
        state.metrics.record("error", kind);
    }
    Answer {
        warnings: vec![format!(
            "linnix tracer not injected: internal error: {message}"
        )],
        ..Answer::default()
    }
}
