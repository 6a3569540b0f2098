#!/usr/bin/env python3
"""Writes linnix.json, the Grafana dashboard, beside this script.

Plain JSON in Grafana's dashboard model (schemaVersion 39), built here so
that panels stay uniform and every query is in one readable list; no
Grafana code is used or needed. Run it after changing a panel:

    python3 charts/linnix-injector/dashboards/generate.py

tests/observability/test_dashboard.py checks that the file is what this
script writes, that every query parses, and that each returns data from a
Prometheus scraping a real tracer and a real injector.
"""

from __future__ import annotations

import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / "linnix.json"

POD = 'namespace="$namespace", pod="$pod"'
RATE = "$__rate_interval"

# (title, unit, [(legend, PromQL)], description); None starts a new row.
PER_POD = [
    ("Events by kind", "ops", [
        ("{{kind}}", f"sum by (kind) (rate(linnix_events_total{{{POD}}}[{RATE}]))"),
    ], "Events the tracer reported, per second, by kind (fork, exec, exit, ...)."),
    ("Exits by code and signal", "short", [
        ("{{container}} code={{code}} signal={{signal}}",
         f"sum by (container, code, signal) (increase(linnix_exits_total{{{POD}}}[{RATE}]))"),
    ], "Process exits by exit code, or by the signal that ended them."),
    ("OOM kills", "short", [
        ("{{container}}", f"sum by (container) (increase(linnix_oom_kills_total{{{POD}}}[{RATE}]))"),
    ], "Processes the kernel's OOM killer ended, per container."),
    ("Memory against limit", "bytes", [
        ("{{container}} usage", f"max by (container) (linnix_container_memory_usage_bytes{{{POD}}})"),
        ("{{container}} limit", f"max by (container) (linnix_container_memory_limit_bytes{{{POD}}})"),
    ], "Each container's memory cgroup usage and its limit (no limit: no limit line)."),
    ("Memory pressure", "ops", [
        ("{{container}} {{reason}}",
         f"sum by (container, reason) (rate(linnix_container_memory_pressure_total{{{POD}}}[{RATE}]))"),
    ], "Reclaims at the limit (reclaim, high) and threshold crossings, per second."),
    ("Lost events", "short", [
        ("ring buffer full", f"sum(increase(linnix_events_lost_total{{{POD}}}[{RATE}]))"),
        ("rate-limited", f"sum(increase(linnix_events_rate_limited_total{{{POD}}}[{RATE}]))"),
    ], "Events dropped in the kernel; the tracer's log has a lost line where each hole is."),
]

PER_CLUSTER = [
    ("Injected pods (tracers scraped)", "short", [
        ("tracer {{version}}", "count by (version) (linnix_build_info)"),
    ], "Tracers Prometheus scrapes, by version: after an upgrade, old versions remain until pods are recreated."),
    ("Admission decisions by reason", "ops", [
        ("{{decision}} {{reason}}",
         f"sum by (decision, reason) (rate(linnix_injector_admissions_total[{RATE}]))"),
    ], "The injector's decisions, per second, with the rule that decided."),
    ("Injector errors", "short", [
        ("{{kind}}", f"sum by (kind) (increase(linnix_injector_errors_total[{RATE}]))"),
    ], "Internal errors; the pods concerned were admitted unchanged."),
    ("Webhook latency", "s", [
        ("p50", f"histogram_quantile(0.5, sum by (le) (rate(linnix_injector_admission_duration_seconds_bucket[{RATE}])))"),
        ("p99", f"histogram_quantile(0.99, sum by (le) (rate(linnix_injector_admission_duration_seconds_bucket[{RATE}])))"),
    ], "Time to answer one admission review."),
    ("Certificate expiry", "s", [
        ("{{pod}}", "min by (pod) (linnix_injector_certificate_expiry_timestamp_seconds) - time()"),
    ], "Time left on each injector's serving certificate."),
]


def panel(pid: int, x: int, y: int, title: str, unit: str, targets, description: str) -> dict:
    kind = "stat" if title == "Certificate expiry" else "timeseries"
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def row(pid: int, y: int, title: str) -> dict:
    return {"id": pid, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}


def variable(name: str, query: str) -> dict:
    return {
        "name": name, "label": name, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query, "refresh": 2, "sort": 1,
        "current": {}, "options": [], "hide": 0, "includeAll": False, "multi": False,
    }


def dashboard() -> dict:
    panels = []
    pid, y = 1, 0
    for title, specs in (("Per pod: $namespace/$pod", PER_POD), ("Cluster", PER_CLUSTER)):
        panels.append(row(pid, y, title))
        pid, y = pid + 1, y + 1
        for i, spec in enumerate(specs):
            panels.append(panel(pid, (i % 3) * 8, y + (i // 3) * 8, *spec))
            pid += 1
        y += ((len(specs) + 2) // 3) * 8
    return {
        "uid": "linnix-tracer",
        "title": "linnix: pods and injector",
        "description": "Per-pod process events, exits, OOM kills and memory pressure from the linnix tracer; admission decisions and certificates of the injector.",
        "tags": ["linnix", "ebpf"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            variable("namespace", "label_values(linnix_build_info, namespace)"),
            variable("pod", 'label_values(linnix_build_info{namespace="$namespace"}, pod)'),
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
