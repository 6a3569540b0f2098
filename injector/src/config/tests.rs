//! Unit tests of the config module.

use super::*;

#[test]
fn defaults_are_complete() {
    let s = Config::default().sidecar.validate(None).unwrap();
    assert_eq!(s.name, "linnix-tracer");
    assert!(s.native_sidecar);
    assert_eq!(s.resources.memory_limit.as_str(), "64Mi");
    assert_eq!(s.seccomp_profile, SeccompProfile::Unconfined);
}

#[test]
fn file_overrides_merge_with_defaults() {
    let c = Config::from_yaml(
        "sidecar:\n  image: r/x:1\n  nativeSidecar: false\n  seccompProfile: {type: Localhost, localhostProfile: p.json}\n  resources:\n    limits: {memory: 128Mi}\n",
    )
    .unwrap();
    let s = c.sidecar.validate(None).unwrap();
    assert_eq!(s.image, "r/x:1");
    assert!(!s.native_sidecar);
    assert_eq!(s.resources.memory_limit.as_str(), "128Mi");
    assert_eq!(s.resources.memory_request.as_str(), "16Mi");
    assert_eq!(
        s.seccomp_profile,
        SeccompProfile::Localhost {
            localhost_profile: "p.json".into()
        }
    );
}

#[test]
fn status_names_versions_and_image() {
    let s = Config::default().sidecar.validate(None).unwrap();
    assert_eq!(
        s.injected_status(),
        concat!(
            "injected (linnix-injector ",
            env!("CARGO_PKG_VERSION"),
            ", tracer ",
            env!("CARGO_PKG_VERSION"),
            ", image linnix/linnix-sidecar:",
            env!("CARGO_PKG_VERSION"),
            ")"
        )
    );
    assert_eq!(image_version("r.io:5000/a/b:1.2"), "1.2");
    assert_eq!(image_version("r.io:5000/a/b"), "latest");
    assert_eq!(image_version("b@sha256:ab"), "sha256:ab");
    assert_eq!(image_version("b:2@sha256:ab"), "2");
}

#[test]
fn allowed_overrides_by_name() {
    assert_eq!(
        Config::default().sidecar.allowed_overrides,
        Override::ALL.to_vec()
    );
    let c = Config::from_yaml("sidecar: {allowedOverrides: [cpu-limit, threads]}").unwrap();
    assert_eq!(
        c.sidecar.allowed_overrides,
        [Override::CpuLimit, Override::Threads]
    );
    let c = Config::from_yaml("sidecar: {allowedOverrides: []}").unwrap();
    assert!(c.sidecar.allowed_overrides.is_empty());
    let e = Config::from_yaml("sidecar: {allowedOverrides: [event-cap]}").unwrap_err();
    assert!(e.to_string().contains("unknown variant `event-cap`"), "{e}");
}

#[test]
fn flag_overrides_file() {
    let c = Config::from_yaml("sidecar: {nativeSidecar: false}").unwrap();
    assert!(c.sidecar.validate(Some(true)).unwrap().native_sidecar);
}

#[test]
fn rejects_bad_files() {
    assert!(Config::from_yaml("sidecar: {imagee: x}").is_err());
    assert!(Config::from_yaml("sidecar: {seccompProfile: {type: Nope}}").is_err());
    let bad = |yaml: &str| Config::from_yaml(yaml).unwrap().sidecar.validate(None);
    assert!(matches!(
        bad("sidecar: {name: Bad_Name}"),
        Err(ConfigError::Name(_))
    ));
    assert!(matches!(
        bad("sidecar: {resources: {limits: {cpu: 10 cores}}}"),
        Err(ConfigError::Quantity { .. })
    ));
    assert!(matches!(
        bad("sidecar: {resources: {requests: {memory: 1Gi}}}"),
        Err(ConfigError::RequestAboveLimit { .. })
    ));
    assert!(matches!(
        bad("sidecar: {seccompProfile: {type: Localhost, localhostProfile: ''}}"),
        Err(ConfigError::LocalhostProfile)
    ));
    assert!(matches!(
        bad("sidecar: {resources: {requests: {memory: 8Mi}, limits: {memory: 16Mi}}}"),
        Err(ConfigError::MemoryBelowFloor { .. })
    ));
    assert!(matches!(
        bad("sidecar: {minMemoryLimit: lots}"),
        Err(ConfigError::MinMemoryLimit(_))
    ));
    assert!(bad("sidecar: {minMemoryLimit: 8Mi, resources: {requests: {memory: 8Mi}, limits: {memory: 16Mi}}}").is_ok());
    assert!(matches!(
        bad("sidecar: {metricsPort: 9000, args: [--metrics-addr=0.0.0.0:9464]}"),
        Err(ConfigError::Args(_))
    ));
    assert!(bad("sidecar: {metricsPort: 9000, args: [--metrics-addr, '0.0.0.0:9000']}").is_ok());
    assert!(matches!(
        bad("sidecar: {metricsPort: 0}"),
        Err(ConfigError::MetricsPort)
    ));
}

#[test]
fn memory_in_fractions_of_a_byte_is_refused() {
    for yaml in [
        "sidecar: {resources: {requests: {memory: '0.1'}}}",
        "sidecar: {resources: {limits: {memory: 67108864500m}}}",
    ] {
        let err = Config::from_yaml(yaml)
            .unwrap()
            .sidecar
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole number of bytes"), "{yaml}: {err}");
    }
    let s = Config::from_yaml("sidecar: {resources: {requests: {cpu: 250u}}}")
        .unwrap()
        .sidecar
        .validate(None)
        .unwrap();
    assert_eq!(s.resources.cpu_request.as_str(), "250u");
}
