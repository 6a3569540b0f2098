//! The HTML page around the timeline: one file, its CSS inline and no
//! script or external reference, so that it opens anywhere (an air-gapped
//! laptop, a CI artifact) and can fetch nothing.

use std::fmt::Write;

use super::escape as esc;
use super::model::{MarkKind, Timeline};
use super::parse::{Kind, Parsed, Skipped};
use super::svg;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#1d2733;background:#fff}
h1{font-size:20px;margin:0 0 4px}
.meta{color:#4a5868;margin:0 0 10px}
.notice{border-left:4px solid #c0392b;background:#fdf0ee;padding:6px 10px;margin:6px 0}
.notice.warn{border-color:#e67e22;background:#fdf5ec}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #d5dce4;padding:2px 8px;text-align:left;font-size:13px}
th{background:#eef2f7}
.legend span{margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.scroll{overflow-x:auto;border:1px solid #d5dce4}
svg text{font:11px ui-monospace,monospace;fill:#1d2733}
.axis line{stroke:#8795a6}.axis .tick{stroke:#e6eaef}
.lane-head{fill:#eef2f7}.lane-name{font-weight:bold;font-size:13px}
.group-head{fill:#4a5868;font-style:italic}
.life{stroke:#7a8aa0;stroke-width:3}
.proc.entered .life{stroke:#8e44ad}.proc.probe .life{stroke:#16a085}
.proc.start-unknown .life{stroke-dasharray:4 3}
.mark.present{fill:#95a5a6}.mark.fork{fill:#34495e}.mark.exec{fill:#2980b9}
.mark.exit[data-tone=ok]{fill:#27ae60}.mark.exit[data-tone=failed]{fill:#e67e22}
.mark.exit[data-tone=signalled]{fill:#c0392b}
.mark.oom .x{stroke:#e00000;stroke-width:3}.mark.oom text{fill:#e00000;font-weight:bold}
.mark.pressure{fill:#f39c12}.mark.join{fill:#8e44ad}.mark.leave{fill:#7f8c8d}
.mark.container-start{fill:#27ae60}.mark.container-exit{fill:#5d3a8e}
.gap-window{fill:#c0392b;fill-opacity:.04}.gap-at{stroke:#c0392b;stroke-width:2;stroke-dasharray:5 3}
.gap-label{fill:#c0392b;font-weight:bold}
"#;

/// At most this many rows in the table of notable events; the rest are
/// counted under it (the timeline still has them all).
const NOTABLE_ROWS: usize = 2000;

pub fn render(parsed: &Parsed, t: &Timeline, source: &str) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = match &t.pod {
        Some(pod) => format!("linnix report: pod {pod}"),
        None => format!("linnix report: {source}"),
    };
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>"#,
        esc(&title),
        esc(&title)
    );
    let first = parsed.events.iter().min_by_key(|e| e.ts_ns);
    let last = parsed.events.iter().max_by_key(|e| e.ts_ns);
    if let (Some(first), Some(last)) = (first, last) {
        let _ = write!(
            out,
            r#"<p class="meta">From <b>{}</b> to <b>{}</b> ({}) · {} events from {} lines of {} · {} containers · {} processes</p>"#,
            esc(&first.ts),
            esc(&last.ts),
            svg::duration_text((t.t1 - t.t0) as f64),
            parsed.events.len(),
            parsed.lines,
            esc(source),
            t.lanes.iter().filter(|l| l.container.is_some()).count(),
            t.procs.len()
        );
    }
    notice(
        &mut out,
        "bad-lines",
        "",
        &parsed.bad,
        "are not events of the tracer's schema and are not shown",
    );
    notice(
        &mut out,
        "unknown-kinds",
        " warn",
        &parsed.unknown,
        "are events of a kind this version does not draw",
    );
    let lost: u64 = t.gaps.iter().map(|g| g.lost).sum();
    let limited: u64 = t.gaps.iter().map(|g| g.rate_limited).sum();
    if !t.gaps.is_empty() {
        let _ = write!(
            out,
            r#"<div class="notice lost-events" data-lost="{lost}" data-rate-limited="{limited}">The kernel dropped {lost} events (ring buffer full) and rate-limited {limited}; the red bands on the timeline show where ({} <code>lost</code> lines). The process tree may miss forks, execs or exits there.</div>"#,
            t.gaps.len()
        );
    }
    counts(&mut out, parsed);
    out.push_str(concat!(
        r#"<p class="legend">"#,
        r##"<span><i style="background:#34495e;border-radius:5px"></i>fork</span>"##,
        r##"<span><i style="background:#2980b9;transform:rotate(45deg)"></i>exec</span>"##,
        r##"<span><i style="background:#27ae60"></i>exit 0</span>"##,
        r##"<span><i style="background:#e67e22"></i>exit code ≠ 0</span>"##,
        r##"<span><i style="background:#c0392b"></i>killed by a signal</span>"##,
        r##"<span><b style="color:#e00000">✕</b> OOM kill</span>"##,
        r##"<span><i style="background:#f39c12"></i>memory pressure</span>"##,
        r##"<span><i style="background:#8e44ad"></i>entered from outside</span>"##,
        r##"<span><i style="background:#16a085"></i>exec probe</span>"##,
        r##"<span><i style="background:#c0392b;opacity:.3"></i>lost events</span>"##,
        "</p>"
    ));
    out.push_str(r#"<div class="scroll">"#);
    out.push_str(&svg::timeline(t));
    out.push_str("</div>");
    notable(&mut out, t);
    out.push_str("</body></html>\n");
    out
}

fn notice(out: &mut String, class: &str, tone: &str, s: &Skipped, what: &str) {
    let Some(first) = s.first_line else {
        return;
    };
    let _ = write!(
        out,
        r#"<div class="notice{tone} {class}" data-count="{}" data-first-line="{first}">{} lines {what}; the first is line {first}: {}</div>"#,
        s.count,
        s.count,
        esc(&s.first_reason)
    );
}

fn counts(out: &mut String, parsed: &Parsed) {
    const KINDS: [(Kind, &str); 11] = [
        (Kind::Present, "present"),
        (Kind::Fork, "fork"),
        (Kind::Exec, "exec"),
        (Kind::Exit, "exit"),
        (Kind::OomKill, "oom_kill"),
        (Kind::MemoryPressure, "memory_pressure"),
        (Kind::CgroupJoin, "cgroup_join"),
        (Kind::CgroupLeave, "cgroup_leave"),
        (Kind::ContainerStart, "container_start"),
        (Kind::ContainerExit, "container_exit"),
        (Kind::Lost, "lost"),
    ];
    out.push_str(r#"<table class="counts"><tr>"#);
    for (_, name) in KINDS {
        let _ = write!(out, "<th>{name}</th>");
    }
    out.push_str("</tr><tr>");
    for (kind, name) in KINDS {
        let n = parsed.events.iter().filter(|e| e.kind == kind).count();
        let _ = write!(out, r#"<td data-kind="{name}">{n}</td>"#);
    }
    out.push_str("</tr></table>");
}

/// What someone scanning the page looks for, as text: container starts and
/// exits, failed exits, OOM kills, pressure and losses, in time order.
fn notable(out: &mut String, t: &Timeline) {
    let lane_name = |i: usize| t.lanes[i].container.clone().unwrap_or_default();
    let mut rows: Vec<(i128, usize, String, &str, String)> = Vec::new();
    for (li, lane) in t.lanes.iter().enumerate() {
        for m in &lane.marks {
            let kind = match m.kind {
                MarkKind::ContainerStart => "container start",
                MarkKind::ContainerExit => "container exit",
                _ => "memory pressure",
            };
            rows.push((m.ts_ns, m.line, lane_name(li), kind, m.detail.clone()));
        }
    }
    for p in &t.procs {
        for m in &p.marks {
            let kind = match m.kind {
                MarkKind::Oom => "OOM kill",
                MarkKind::Exit if m.signal.is_some() || m.code.is_some_and(|c| c != 0) => "exit",
                _ => continue,
            };
            rows.push((m.ts_ns, m.line, lane_name(p.lane), kind, m.detail.clone()));
        }
    }
    for g in &t.gaps {
        let text = format!(
            "line {}: {} lost, {} rate-limited",
            g.line, g.lost, g.rate_limited
        );
        rows.push((g.at_ns, g.line, String::new(), "lost events", text));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    out.push_str(r#"<h2>Notable events</h2><table class="notable"><tr><th>offset</th><th>container</th><th>what</th><th>detail</th></tr>"#);
    for (ts, _, container, kind, detail) in rows.iter().take(NOTABLE_ROWS) {
        let _ = write!(
            out,
            "<tr><td>+{}</td><td>{}</td><td>{kind}</td><td>{}</td></tr>",
            svg::duration_text((ts - t.t0) as f64),
            esc(container),
            esc(detail)
        );
    }
    out.push_str("</table>");
    if rows.len() > NOTABLE_ROWS {
        let _ = write!(
            out,
            r#"<p class="notice warn">{} more notable events are on the timeline but not in this table.</p>"#,
            rows.len() - NOTABLE_ROWS
        );
    }
}
