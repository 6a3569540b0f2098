//! An AdmissionReview body through the webhook's parse, decision and patch.
//! The patch must apply to the object (with json-patch, as the API server
//! applies it), and the patched pod, reviewed again, must need no patch.
#![no_main]

use std::sync::OnceLock;

use json_patch::jsonptr::PointerBuf;
use libfuzzer_sys::fuzz_target;
use linnix_injector::admission::parse_review;
use linnix_injector::config::{Config, Sidecar};
use linnix_injector::decision::Context;
use linnix_injector::mutate::mutate;
use linnix_injector::pod::PodFacts;
use serde_json::Value;

fn sidecar() -> &'static Sidecar {
    static S: OnceLock<Sidecar> = OnceLock::new();
    S.get_or_init(|| Config::default().sidecar.validate(None).unwrap())
}

fuzz_target!(|body: &[u8]| {
    let Ok(request) = parse_review(body) else {
        return;
    };
    let Some(object) = &request.object else {
        return;
    };
    // The object as the API server holds it.
    let Ok(review) = serde_json::from_slice::<Value>(body) else {
        panic!("parse_review accepted what serde_json refuses");
    };
    let mut pod = review["request"]["object"].clone();
    for inject_all in [false, true] {
        let ctx = Context {
            namespace: request.namespace.as_deref(),
            inject_all,
            ..Context::default()
        };
        let outcome = mutate(&object.facts, &PointerBuf::root(), sidecar(), &ctx, true);
        if object.not_an_object.is_some() {
            // The handler answers these without a patch.
            continue;
        }
        let mut patched = pod.clone();
        if let Err(e) = json_patch::patch(&mut patched, &outcome.ops) {
            panic!(
                "patch does not apply: {e}\nobject: {pod}\nops: {:?}",
                outcome.ops
            );
        }
        let again = mutate(
            &PodFacts::of(&patched),
            &PointerBuf::root(),
            sidecar(),
            &ctx,
            true,
        );
        assert!(
            again.ops.is_empty(),
            "second review patches again\nobject: {pod}\nops: {:?}",
            again.ops
        );
        pod = patched;
    }
});
