"""Does every Grafana dashboard query name a metric (and labels) that the worker exports? (issue 15)

    .venv/bin/python -m scripts.dashboard_queries http://127.0.0.1:9465/metrics http://127.0.0.1:9464/metrics

- `queries`: every PromQL expression of a dashboard: panel targets (rows included) and query
  variables (`label_values(selector, label)` contributes its selector and label).
- `uses`: the metric name and matched label names of every vector selector, from promql-parser (a
  full PromQL parser), after Grafana's variables are replaced ($__rate_interval -> 5m, $var -> .*).
  A selector without a literal metric name cannot be checked and is reported as such.
- `exported`: metric and label names as Prometheus stores them from an exposition text. Names come
  from the sample lines themselves, labels from prometheus_client's parser: that parser renames a
  counter's samples `<name>_total` even when the text says `<name>`, and the Temporal SDK's counters
  carry no `_total`, so a dashboard asking for `temporal_workflow_completed_total` would show nothing.
- `problems`: each query naming a metric, or matching a label, that the scrape does not have (the
  labels Prometheus adds itself, job and instance, are allowed); alert rules too (`rule_queries`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

#: Labels Prometheus attaches at scrape time: a query may match them though no exposition has them.
TARGET_LABELS = frozenset({"job", "instance"})
_RANGE_VARS = re.compile(r"\$\{?__(?:rate_interval|interval|range)\}?")
_VARS = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<sel>.+),)?\s*(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.S)
_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?=[{\s])")


@dataclass(frozen=True)
class Use:
    """One metric a query reads, with the labels it matches on."""

    where: str
    metric: str | None  # None: no literal name (a `{__name__=~...}` selector), cannot be checked
    labels: frozenset[str]


def queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) for every panel target and query variable of a dashboard's JSON."""
    title = dashboard.get("title", "?")

    def panels(items: list[Any]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels") or [])

    for p in panels(dashboard.get("panels") or []):
        for t in p.get("targets") or []:
            if t.get("expr"):
                yield f"{title} / {p.get('title')} / {t.get('refId')}", t["expr"]
    for v in (dashboard.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            query = v.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if query:
                yield f"{title} / variable {v.get('name')}", query


def substitute(expr: str) -> str:
    """Grafana's variables replaced by something PromQL parses: ranges by 5m, the others by `.*`."""
    return _VARS.sub(".*", _RANGE_VARS.sub("5m", expr))


def uses(where: str, expr: str) -> list[Use]:
    """Every vector selector of `expr` (a PromQL expression or a `label_values(...)` variable query);
    ValueError if it does not parse."""
    extra: frozenset[str] = frozenset()
    m = _LABEL_VALUES.match(expr)
    if m:
        extra = frozenset({m["label"]})
        if not m["sel"]:
            return [Use(where, None, extra)]
        expr = m["sel"]
    try:
        tree = promql_parser.parse(substitute(expr))
    except Exception as exc:  # the parser raises its own error type
        raise ValueError(f"{where}: {expr!r} does not parse: {exc}") from exc
    found: list[Use] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = list(node.matchers.matchers)
            name = node.name or next((x.value for x in matchers if x.name == "__name__"
                                      and x.op == promql_parser.MatchOp.Equal), None)
            labels = frozenset(x.name for x in matchers if x.name != "__name__") | extra
            found.append(Use(where, name, labels))
        return True

    promql_parser.walk(tree, visit)
    return found


def exported(text: str) -> dict[str, set[str]]:
    """Metric name -> label names, as Prometheus stores them from this exposition text (see the module
    docstring); the text is validated by prometheus_client's parser first."""
    labels_by_sample: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels_by_sample.setdefault(s.name, set()).update(s.labels)
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = _SAMPLE_NAME.match(line)
        if m and not line.startswith("#"):
            name = m.group(1)
            out.setdefault(name, set()).update(labels_by_sample.get(name) or labels_by_sample.get(f"{name}_total")
                                               or set())
    return out


def rule_queries(rules: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) for every rule of a Prometheus rules file (deploy/prometheus/alerts.yml)."""
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            yield f"rule {rule.get('alert') or rule.get('record')}", str(rule["expr"])


def problems(dashboards: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, set[str]],
             extra: Iterable[tuple[str, str]] = ()) -> list[str]:
    """What the dashboards (and `extra` (where, expression) pairs) ask for and the scrape does not have,
    one line each (empty: all there)."""
    out = []
    items = [*(q for dash in dashboards.values() for q in queries(dash)), *extra]
    for where, expr in items:
        try:
            found = uses(where, expr)
        except ValueError as exc:
            out.append(str(exc))
            continue
        for u in found:
            if u.metric is None:
                out.append(f"{where}: a selector without a metric name cannot be checked: {expr}")
            elif u.metric not in metrics:
                out.append(f"{where}: {u.metric} is not exported")
            elif missing := sorted(u.labels - metrics[u.metric] - TARGET_LABELS):
                out.append(f"{where}: {u.metric} has no label {', '.join(missing)}")
    return out


def load(paths: list[Path]) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in paths}


def main(argv: list[str] | None = None) -> int:
    import httpx
    import yaml

    urls = argv if argv is not None else sys.argv[1:]
    if not urls:
        print(__doc__)
        return 2
    metrics: dict[str, set[str]] = {}
    for url in urls:
        for name, labels in exported(httpx.get(url, timeout=30).raise_for_status().text).items():
            metrics.setdefault(name, set()).update(labels)
    root = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
    rules = yaml.safe_load((root.parent.parent / "prometheus" / "alerts.yml").read_text())
    found = problems(load(sorted(root.glob("*.json"))), metrics, rule_queries(rules))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
