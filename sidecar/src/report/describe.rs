//! What a mark says: the short label beside it and the tooltip, in words.

use super::model::MarkKind;
use super::parse::Event;

/// The label shown beside a mark (may be empty) and the tooltip's text.
pub fn describe(kind: MarkKind, e: &Event) -> (String, String) {
    let who = format!("{} (pid {})", e.comm, pid_text(e.pid));
    let ending = || match (e.exit_code, e.signal) {
        (_, Some(sig)) => signal_text(sig, e.core_dumped),
        (Some(code), None) => format!("exit {code}"),
        (None, None) => "exit ?".to_owned(),
    };
    match kind {
        MarkKind::Exit => {
            let l = ending();
            (l.clone(), format!("{who} {l}"))
        }
        MarkKind::ContainerExit => {
            let mut l = ending();
            if e.oom_killed {
                l.push_str(", OOM-killed");
            }
            (l.clone(), format!("container exit, {who}: {l}"))
        }
        MarkKind::ContainerStart => (
            "start".to_owned(),
            format!("container start: {}", e.argv.join(" ")),
        ),
        MarkKind::Oom => ("OOM kill".to_owned(), format!("OOM kill of {who}")),
        MarkKind::Pressure => {
            let r = e.reason.as_deref().unwrap_or("?");
            let usage = e.memcg_usage_bytes.map_or("?".to_owned(), mib);
            let limit = e.memcg_limit_bytes.map_or("no limit".to_owned(), mib);
            (
                format!("pressure ({r})"),
                format!(
                    "memory pressure ({r}, {} times), {usage} of {limit}, {who}",
                    e.count.unwrap_or(1)
                ),
            )
        }
        MarkKind::Exec => (
            String::new(),
            format!(
                "exec {} {}",
                e.filename.as_deref().unwrap_or("?"),
                e.argv.join(" ")
            ),
        ),
        MarkKind::Fork => (String::new(), format!("fork {who}")),
        MarkKind::Present => (String::new(), format!("present {who}")),
        MarkKind::Join => (String::new(), format!("entered the container: {who}")),
        MarkKind::Leave => (String::new(), format!("left the pod: {who}")),
    }
}

fn signal_text(sig: i64, core: bool) -> String {
    let name = i32::try_from(sig).map_or_else(|_| sig.to_string(), crate::metrics::signal_name);
    if core {
        format!("{name} (core dumped)")
    } else {
        name
    }
}

fn pid_text(pid: Option<i64>) -> String {
    pid.map_or("none".to_owned(), |p| p.to_string())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}
