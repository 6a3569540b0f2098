"""The dashboard's queries, and a check of each panel against a live
Prometheus. `check_panels(url, ...)` is meant to be reused: pointed at the
Prometheus of a real cluster, it says which panel returns data and which
does not."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DASHBOARD = ROOT / "charts" / "linnix-injector" / "dashboards" / "linnix.json"


@dataclasses.dataclass
class Query:
    panel: str
    ref: str
    expr: str


@dataclasses.dataclass
class Result:
    query: Query
    promql: str
    series: int
    error: str | None = None


def load(path: pathlib.Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def queries(dashboard: dict) -> list[Query]:
    out = []
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            out.append(Query(p["title"], t["refId"], t["expr"]))
    return out


def substitute(expr: str, variables: dict[str, str], rate_interval: str = "1m") -> str:
    """Grafana's variables replaced as Grafana would: the dashboard's
    template variables, and $__rate_interval."""
    expr = expr.replace("$__rate_interval", rate_interval)
    # Longest names first, so that $pod does not eat into $pods.
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    if "$" in expr:
        raise ValueError(f"unsubstituted variable in {expr!r}")
    return expr


def check_panels(url: str, variables: dict[str, str], *, rate_interval: str = "1m",
                 dashboard: dict | None = None, timeout: float = 10.0) -> list[Result]:
    """Runs every panel query at the current time on the Prometheus at
    `url` (e.g. http://127.0.0.1:9090) with the given template variables
    (`{"namespace": "team-a", "pod": "web-1"}`); one Result per query,
    `series == 0` for a panel that would show nothing."""
    results = []
    for q in queries(dashboard or load()):
        promql = substitute(q.expr, variables, rate_interval)
        try:
            r = requests.get(f"{url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=timeout)
            body = r.json()
        except (requests.RequestException, ValueError) as e:
            results.append(Result(q, promql, 0, f"request failed: {e}"))
            continue
        if body.get("status") != "success":
            results.append(Result(q, promql, 0, f"{body.get('errorType')}: {body.get('error')}"))
            continue
        data = body["data"]
        n = len(data["result"]) if data["resultType"] in ("vector", "matrix") else 1
        results.append(Result(q, promql, n))
    return results


def summary(results: list[Result]) -> str:
    return "\n".join(
        f"{'ok   ' if r.series and not r.error else 'EMPTY'} {r.query.panel} [{r.query.ref}] "
        f"{r.series} series{' ' + r.error if r.error else ''}: {r.promql}"
        for r in results
    )
