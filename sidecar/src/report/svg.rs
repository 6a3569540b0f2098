//! The timeline as one inline SVG: a time axis, then one lane per
//! container (its own marks on a header strip, then a row per process),
//! and the lost-event gaps across every lane.
//!
//! Class names are the page's interface: the browser test counts
//! `.lane`, `.mark.exit`, `.mark.oom`, `.gap` … against the log.

use std::fmt::Write;

use super::escape as esc;
use super::model::{Group, Lane, Mark, MarkKind, Proc, Row, Timeline};

const LABEL_W: f64 = 320.0;
const PLOT_W: f64 = 1000.0;
const RIGHT_PAD: f64 = 170.0;
const AXIS_H: f64 = 34.0;
const LANE_HEAD_H: f64 = 30.0;
const GROUP_HEAD_H: f64 = 18.0;
const ROW_H: f64 = 16.0;
const LANE_GAP: f64 = 10.0;

struct Scale {
    t0: i128,
    span: f64,
}

impl Scale {
    fn x(&self, ts: i128) -> f64 {
        LABEL_W + ((ts - self.t0) as f64 / self.span).clamp(0.0, 1.0) * PLOT_W
    }
}

pub fn timeline(t: &Timeline) -> String {
    // A log of one instant still gets a visible axis.
    let span = ((t.t1 - t.t0) as f64).max(1e6);
    let s = Scale { t0: t.t0, span };
    let mut body = String::new();
    let mut y = AXIS_H;
    for lane in &t.lanes {
        y = draw_lane(&mut body, &s, lane, &t.procs, y);
        y += LANE_GAP;
    }
    let height = y;
    let mut out = String::new();
    let width = LABEL_W + PLOT_W + RIGHT_PAD;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    );
    axis(&mut out, &s, height);
    out.push_str(&body);
    for (n, g) in t.gaps.iter().enumerate() {
        let (x0, x1) = (s.x(g.from_ns), s.x(g.at_ns));
        // Staggered, so that the labels of close gaps stay readable.
        let label_y = AXIS_H + 11.0 + 11.0 * (n % 3) as f64;
        let _ = write!(
            out,
            r#"<g class="gap" data-lost="{}" data-rate-limited="{}"><title>line {}: {} events lost (ring buffer full), {} rate-limited, somewhere in this interval</title><rect class="gap-window" x="{x0:.1}" y="{AXIS_H}" width="{:.1}" height="{:.1}"/><line class="gap-at" x1="{x1:.1}" x2="{x1:.1}" y1="{AXIS_H}" y2="{height}"/><text class="gap-label" x="{:.1}" y="{label_y:.1}">−{}</text></g>"#,
            g.lost,
            g.rate_limited,
            g.line,
            g.lost,
            g.rate_limited,
            (x1 - x0).max(0.0),
            height - AXIS_H,
            x1 + 3.0,
            g.lost + g.rate_limited,
        );
    }
    out.push_str("</svg>");
    out
}

fn axis(out: &mut String, s: &Scale, height: f64) {
    let step = tick_step(s.span);
    let _ = write!(
        out,
        r#"<g class="axis"><line x1="{LABEL_W}" x2="{}" y1="{AXIS_H}" y2="{AXIS_H}"/>"#,
        LABEL_W + PLOT_W
    );
    let mut k = 0u32;
    while f64::from(k) * step <= s.span && k <= 50 {
        let off = f64::from(k) * step;
        let x = LABEL_W + off / s.span * PLOT_W;
        let _ = write!(
            out,
            r#"<line class="tick" x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{height}"/><text x="{x:.1}" y="{}">+{}</text>"#,
            AXIS_H - 6.0,
            AXIS_H - 10.0,
            duration_text(off)
        );
        k += 1;
    }
    out.push_str("</g>");
}

/// A round step that gives about ten ticks over `span` nanoseconds.
fn tick_step(span: f64) -> f64 {
    let raw = span / 10.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&c| c >= raw)
        .unwrap_or(10.0 * mag)
        .max(1.0)
}

pub fn duration_text(ns: f64) -> String {
    if ns >= 60e9 {
        format!("{:.1} min", ns / 60e9)
    } else if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

fn draw_lane(out: &mut String, s: &Scale, lane: &Lane, procs: &[Proc], top: f64) -> f64 {
    let name = lane
        .container
        .as_deref()
        .unwrap_or("(pod cgroup, no container)");
    let _ = write!(
        out,
        r#"<g class="lane" data-container="{}"><rect class="lane-head" x="0" y="{top}" width="{}" height="{LANE_HEAD_H}"/><text class="lane-name" x="6" y="{}">{}</text>"#,
        esc(lane.container.as_deref().unwrap_or("")),
        LABEL_W + PLOT_W + RIGHT_PAD,
        top + 19.0,
        esc(name)
    );
    for m in &lane.marks {
        draw_mark(out, s, m, top + LANE_HEAD_H / 2.0, true, true);
    }
    let mut y = top + LANE_HEAD_H;
    let mut current = None;
    for row in &lane.rows {
        let group = row.group;
        if current != Some(group) {
            current = Some(group);
            let title = match group {
                Group::Main => "processes",
                Group::Entered => "entered from outside (kubectl exec, runtime exec)",
                Group::Probe => "exec probes",
            };
            let _ = write!(
                out,
                r#"<text class="group-head group-{}" x="6" y="{:.1}">{title}</text>"#,
                group_class(group),
                y + 13.0
            );
            y += GROUP_HEAD_H;
        }
        draw_row(out, s, row, procs, y);
        y += ROW_H;
    }
    out.push_str("</g>");
    y
}

fn group_class(g: Group) -> &'static str {
    match g {
        Group::Main => "main",
        Group::Entered => "entered",
        Group::Probe => "probe",
    }
}

fn draw_row(out: &mut String, s: &Scale, row: &Row, procs: &[Proc], y: f64) {
    let mid = y + ROW_H / 2.0;
    let indent = (row.depth.min(30) as f64) * 10.0;
    let Some(first) = row.procs.first().map(|&i| &procs[i]) else {
        return;
    };
    let pid = |p: &Proc| p.pid.map_or("-".to_owned(), |v| v.to_string());
    let label = match row.procs.len() {
        1 => format!("{} {}", pid(first), first.comm),
        n => format!("{} {} ×{n}", pid(first), first.comm),
    };
    let label: String = label.chars().take(40).collect();
    let _ = write!(
        out,
        r#"<g class="row" data-procs="{}"><text class="proc-label" x="{:.1}" y="{:.1}">{}</text>"#,
        row.procs.len(),
        10.0 + indent,
        mid + 4.0,
        esc(&label)
    );
    for &i in &row.procs {
        let p = &procs[i];
        let x0 = s.x(p.start_ns);
        let x1 = p.end_ns.map_or(LABEL_W + PLOT_W, |e| s.x(e)).max(x0 + 1.0);
        let _ = write!(
            out,
            r#"<g class="proc {}{}{}"><title>{}</title><line class="life" x1="{x0:.1}" x2="{x1:.1}" y1="{mid:.1}" y2="{mid:.1}"/>"#,
            group_class(row.group),
            if p.start_known { "" } else { " start-unknown" },
            if p.end_ns.is_some() { "" } else { " running" },
            esc(&format!("{} {} (exec_id {})", pid(p), p.comm, p.id)),
        );
        // A run's exits would print the same label many times over.
        let labelled = row.procs.len() == 1;
        for m in &p.marks {
            draw_mark(out, s, m, mid, false, labelled);
        }
        out.push_str("</g>");
    }
    out.push_str("</g>");
}

fn draw_mark(out: &mut String, s: &Scale, m: &Mark, mid: f64, lane_level: bool, labelled: bool) {
    let x = s.x(m.ts_ns);
    let (class, shape) = match m.kind {
        MarkKind::Present => ("present", circle(x, mid, 2.5)),
        MarkKind::Fork => ("fork", circle(x, mid, 3.0)),
        MarkKind::Exec => ("exec", diamond(x, mid, 4.0)),
        MarkKind::Exit => ("exit", bar(x, mid, 6.0)),
        MarkKind::Oom => ("oom", cross(x, mid, 6.0)),
        MarkKind::Join => ("join", triangle(x, mid, 5.0, true)),
        MarkKind::Leave => ("leave", triangle(x, mid, 5.0, false)),
        MarkKind::Pressure => ("pressure", triangle(x, mid, 7.0, false)),
        MarkKind::ContainerStart => ("container-start", flag(x, mid)),
        MarkKind::ContainerExit => ("container-exit", bar(x, mid, 11.0)),
    };
    let extra = match m.kind {
        MarkKind::Exit | MarkKind::ContainerExit => {
            let code = m.code.map_or(String::new(), |c| c.to_string());
            let signal = m.signal.map_or(String::new(), |v| v.to_string());
            let tone = match (m.code, m.signal) {
                (_, Some(_)) => "signalled",
                (Some(0), None) => "ok",
                _ => "failed",
            };
            format!(r#" data-code="{code}" data-signal="{signal}" data-tone="{tone}""#)
        }
        _ => String::new(),
    };
    let _ = write!(
        out,
        r#"<g class="mark {class}{}" data-line="{}"{extra}><title>{}</title>{shape}"#,
        if lane_level { " lane-mark" } else { "" },
        m.line,
        esc(&m.detail)
    );
    // An OOM kill and the SIGKILL exit it causes share an instant: the
    // kill's label goes above the row.
    let dy = if m.kind == MarkKind::Oom { -5.0 } else { 4.0 };
    if !m.label.is_empty() && (labelled || m.kind == MarkKind::Oom) {
        let _ = write!(
            out,
            r#"<text class="mark-label" x="{:.1}" y="{:.1}">{}</text>"#,
            x + 6.0,
            mid + dy,
            esc(&m.label)
        );
    }
    out.push_str("</g>");
}

fn circle(x: f64, y: f64, r: f64) -> String {
    format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}"/>"#)
}

fn diamond(x: f64, y: f64, r: f64) -> String {
    format!(
        r#"<path d="M{:.1} {y:.1}L{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}Z"/>"#,
        x - r,
        y - r,
        x + r,
        y + r
    )
}

fn bar(x: f64, y: f64, h: f64) -> String {
    format!(
        r#"<rect x="{:.1}" y="{:.1}" width="3" height="{:.1}"/>"#,
        x - 1.5,
        y - h,
        2.0 * h
    )
}

fn cross(x: f64, y: f64, r: f64) -> String {
    format!(
        r#"<path class="x" d="M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}"/>"#,
        x - r,
        y - r,
        x + r,
        y + r,
        x - r,
        y + r,
        x + r,
        y - r
    )
}

fn triangle(x: f64, y: f64, r: f64, right: bool) -> String {
    if right {
        format!(
            r#"<path d="M{:.1} {:.1}L{:.1} {y:.1}L{:.1} {:.1}Z"/>"#,
            x - r,
            y - r,
            x + r,
            x - r,
            y + r
        )
    } else {
        format!(
            r#"<path d="M{:.1} {:.1}L{:.1} {:.1}L{x:.1} {:.1}Z"/>"#,
            x - r,
            y - r,
            x + r,
            y - r,
            y + r
        )
    }
}

fn flag(x: f64, y: f64) -> String {
    format!(
        r#"<path d="M{x:.1} {:.1}L{x:.1} {:.1}L{:.1} {:.1}L{x:.1} {:.1}Z"/>"#,
        y + 10.0,
        y - 10.0,
        x + 9.0,
        y - 6.0,
        y - 2.0
    )
}
