use super::*;

#[test]
fn environment_problems_exit_with_two() {
    assert_eq!(
        RunError::Tracer(TracerError::NoBtf("/sys/kernel/btf/vmlinux".into())).exit_code(),
        2
    );
    assert_eq!(RunError::Tracer(TracerError::NoCgroupV2).exit_code(), 2);
    assert_eq!(RunError::Cgroup(CgroupError::NoV2Mount).exit_code(), 2);
    assert_eq!(RunError::PodCgroupIsRoot.exit_code(), 2);
    assert_eq!(
        RunError::Spawn {
            command: "nope".into(),
            source: io::ErrorKind::NotFound.into()
        }
        .exit_code(),
        127
    );
    assert_eq!(
        RunError::RingBuffer(io::ErrorKind::Other.into()).exit_code(),
        1
    );
}

#[test]
fn tracer_failures_that_are_not_the_environment_exit_with_one() {
    let failures = [
        TracerError::Bpf {
            action: "load the BPF program for sched_process_exec".into(),
            detail: "verifier".into(),
        },
        TracerError::EmbeddedObject("map events is missing".into()),
        TracerError::NoRuntime,
        TracerError::CgroupTooDeep { level: 64, max: 63 },
        TracerError::OwnCgroupNotRecorded("did not record anything"),
    ];
    for failure in failures {
        assert_eq!(RunError::Tracer(failure).exit_code(), 1);
    }
    assert_eq!(
        RunError::Tracer(TracerError::MissingCapability {
            action: "create maps".into()
        })
        .exit_code(),
        2
    );
}
