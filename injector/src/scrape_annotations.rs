//! The `prometheus.io/scrape|port|path` annotations that annotation-driven
//! Prometheus set-ups scrape by (the usual `kubernetes-pods` job), added to
//! injected pods when the configuration (`sidecar.prometheusAnnotations`,
//! off by default) or the pod (`sidecar.linnix.io/prometheus-annotations`)
//! asks for them.
//!
//! A pod has one set of these annotations, so they name one endpoint. When
//! the app already sets any of them they describe its own metrics, and
//! they stay as they are: linnix adds none and says so in a warning (the
//! tracers are then scraped by the chart's PodMonitor). Istio merges
//! instead, because its agent serves the app's and Envoy's metrics on one
//! port; the tracer has no such merging endpoint, and taking the
//! annotations over would stop the app's own metrics from being scraped.

use crate::pod::PodFacts;

/// The pod's choice, `"true"` or `"false"`; it wins over the configuration.
pub const POD_ANNOTATION: &str = "sidecar.linnix.io/prometheus-annotations";

pub const SCRAPE: &str = "prometheus.io/scrape";
pub const PORT: &str = "prometheus.io/port";
pub const PATH: &str = "prometheus.io/path";

/// The annotations to add, when they are to be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrape {
    port: String,
}

impl Scrape {
    pub fn annotations(&self) -> [(&'static str, &str); 3] {
        [(SCRAPE, "true"), (PORT, &self.port), (PATH, "/metrics")]
    }
}

/// Whether `pod` gets the annotations for a tracer serving on `port`; a
/// choice that cannot be followed is explained in `warnings`.
pub fn decide(
    pod: &PodFacts<'_>,
    configured: bool,
    port: u16,
    warnings: &mut Vec<String>,
) -> Option<Scrape> {
    let wanted = match pod.annotation(POD_ANNOTATION) {
        None => configured,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            warnings.push(format!(
                "{POD_ANNOTATION}: {other:?} is not \"true\" or \"false\"; the injector's configuration applies ({configured})"
            ));
            configured
        }
    };
    if !wanted {
        return None;
    }
    let taken: Vec<&str> = [SCRAPE, PORT, PATH]
        .into_iter()
        .filter(|k| pod.annotation(k).is_some())
        .collect();
    if !taken.is_empty() {
        warnings.push(format!(
            "the pod already sets {} for its own metrics: left unchanged, the tracer's metrics (port {port}) are not announced by annotation; scrape them with the chart's PodMonitor",
            taken.join(", ")
        ));
        return None;
    }
    Some(Scrape {
        port: port.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decided(annotations: serde_json::Value, configured: bool) -> (Option<Scrape>, Vec<String>) {
        let pod = json!({"metadata": {"annotations": annotations}, "spec": {"containers": []}});
        let facts = PodFacts::of(&pod);
        let mut warnings = Vec::new();
        (decide(&facts, configured, 9464, &mut warnings), warnings)
    }

    #[test]
    fn off_unless_configured_or_asked() {
        assert_eq!(decided(json!({}), false), (None, vec![]));
        let (on, w) = decided(json!({}), true);
        assert_eq!(
            on.expect("configured").annotations(),
            [(SCRAPE, "true"), (PORT, "9464"), (PATH, "/metrics")]
        );
        assert!(w.is_empty());
        assert!(decided(json!({POD_ANNOTATION: "true"}), false).0.is_some());
        assert_eq!(
            decided(json!({POD_ANNOTATION: "false"}), true),
            (None, vec![])
        );
    }

    #[test]
    fn a_bad_value_warns_and_the_configuration_applies() {
        let (on, w) = decided(json!({POD_ANNOTATION: "yes"}), true);
        assert!(on.is_some());
        assert!(w[0].contains("\"yes\" is not"), "{w:?}");
        assert!(decided(json!({POD_ANNOTATION: "yes"}), false).0.is_none());
    }

    #[test]
    fn the_apps_own_annotations_are_kept() {
        for taken in [SCRAPE, PORT, PATH] {
            let (on, w) = decided(json!({POD_ANNOTATION: "true", taken: "8080"}), true);
            assert!(on.is_none(), "{taken}");
            assert!(w[0].contains(taken) && w[0].contains("PodMonitor"), "{w:?}");
        }
        // Not asked for: nothing to say.
        assert_eq!(decided(json!({SCRAPE: "true"}), false), (None, vec![]));
    }
}
