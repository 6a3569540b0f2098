use super::*;
use crate::output::ExitDetail;

#[test]
fn signal_names() {
    assert_eq!(signal_name(9), "SIGKILL");
    assert_eq!(signal_name(1), "SIGHUP");
    assert_eq!(signal_name(31), "SIGSYS");
    assert_eq!(signal_name(34), "34");
    assert_eq!(signal_name(0), "0");
    assert_eq!(signal_name(-5), "0");
    assert_eq!(signal_name(1000), "127");
}

#[test]
fn counters_in_openmetrics_text() {
    let m = Metrics::new();
    let mut app = m.container(Some("app"));
    app.event(Kind::Exec);
    // Handles resolved twice count into the same series.
    m.container(Some("app")).event(Kind::Exec);
    let killed = ExitDetail {
        exit_code: None,
        signal: Some(9),
        core_dumped: false,
        lifetime_ms: 1,
    };
    app.exit(&m, &killed);
    app.exit(&m, &killed);
    app.exit(
        &m,
        &ExitDetail {
            exit_code: Some(3),
            signal: None,
            ..killed
        },
    );
    m.container(None).oom_kill();
    app.event(Kind::ContainerStart);
    app.entered();
    let probe = std::sync::Arc::from("app/liveness,readiness");
    app.exec_probe(&m, &probe);
    app.exec_probe(&m, &probe);
    m.kube_event(Publish::Published);
    m.kube_event(Publish::Dropped);
    m.kube_event(Publish::Dropped);
    m.kernel_stats(KernelStats {
        lost: 5,
        rate_limited: 2,
    });
    m.kernel_stats(KernelStats {
        lost: 7,
        rate_limited: 2,
    });
    assert!(!m.is_ready());
    m.set_attached(4);
    assert!(
        !m.is_ready(),
        "attached, but the event loop has not started"
    );
    m.set_reading();
    assert!(m.is_ready());
    let text = m.encode().expect("encode");
    for want in [
        "linnix_events_total{kind=\"exec\",container=\"app\"} 2",
        "linnix_exits_total{container=\"app\",code=\"\",signal=\"SIGKILL\"} 2",
        "linnix_exits_total{container=\"app\",code=\"3\",signal=\"\"} 1",
        "linnix_events_total{kind=\"fork\",container=\"app\"} 0",
        "linnix_oom_kills_total{container=\"\"} 1",
        "linnix_events_total{kind=\"container_start\",container=\"app\"} 1",
        "linnix_events_total{kind=\"cgroup_join\",container=\"app\"} 0",
        "linnix_entered_total{container=\"app\"} 1",
        "linnix_exec_probes_total{container=\"app\",probe=\"liveness,readiness\"} 2",
        "linnix_kube_events_total{result=\"published\"} 1",
        "linnix_kube_events_total{result=\"failed\"} 0",
        "linnix_kube_events_total{result=\"dropped\"} 2",
        "linnix_events_lost_total 7",
        "linnix_events_rate_limited_total 2",
        "linnix_programs_attached 4",
        "# TYPE linnix_build info",
        concat!(
            "linnix_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\"} 1"
        ),
        "# EOF",
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
}

#[test]
fn a_removed_container_takes_all_its_series_along() {
    let m = Metrics::new();
    let id = "f".repeat(64);
    let mut gone = m.container(Some(&id));
    gone.event(Kind::Fork);
    gone.oom_kill();
    let killed = ExitDetail {
        exit_code: None,
        signal: Some(9),
        core_dumped: false,
        lifetime_ms: 1,
    };
    gone.exit(&m, &killed);
    gone.exit(
        &m,
        &ExitDetail {
            exit_code: Some(0),
            signal: None,
            ..killed
        },
    );
    let mut stays = m.container(Some("app"));
    stays.exit(&m, &killed);
    assert!(m.encode().expect("encode").contains(&id));

    assert!(m.remove_container(&id));
    let text = m.encode().expect("encode");
    assert!(!text.contains(&id), "series of {id} left:\n{text}");
    assert!(text.contains("linnix_exits_total{container=\"app\",code=\"\",signal=\"SIGKILL\"} 1"));
    assert!(text.contains("linnix_events_total{kind=\"fork\",container=\"app\"} 0"));
    // Nothing left to remove the second time.
    assert!(!m.remove_container(&id));
}
