"""Which metrics do the alert rules and the Grafana dashboard query, and which does the app export?

* `queried_metric_names()` - every metric name in the `expr` of the Prometheus rules and in the
  dashboard's queries (`targets[].expr`, template variables). Recording rules (names with a
  colon) are resolved to the metrics their own expressions use. Series Prometheus writes
  itself for each scrape (`up`, `scrape_*`) are left out: no application exports them.
* `registered_metric_names()` - the sample names a prometheus_client registry exports (after
  `import ops.metrics`), including the names of labelled metrics that have no child yet.
* `exposed_metric_names(text)` - the same, from a /metrics page of a running application.

The unit tests compare the first with the second; an integration test can compare it with the
third. PromQL is not parsed, only scanned: string literals, label matchers, range selectors,
grouping label lists, Grafana variables, functions and keywords are removed, and the remaining
identifiers are metric names. That is exact for the expressions this project writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "qchem-events.rules.yml"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "dashboards" / "qchem-events.json"

# Aggregation operators and keywords (functions are recognised by the "(" that follows them).
KEYWORDS = frozenset(
    {
        # aggregation operators: `sum by (x) (...)` puts `by`, not "(", after the name
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        # modifiers and binary operators
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
        "start",
        "end",
        "inf",
        "nan",
    }
)

# Series Prometheus itself writes for every scrape of a target: no application exports them.
SCRAPE_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)

_COMMENT = re.compile(r"#[^\n]*")
_NAME_MATCHER = re.compile(r"""__name__\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_STRING = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`""")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*),\s*\w+\s*\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from (for error messages)."""

    source: str
    expr: str


def metric_names(expr: str) -> set[str]:
    """Metric names (and recording rule names) that one PromQL expression selects."""
    names = {a or b for a, b in _NAME_MATCHER.findall(expr)}
    text = _COMMENT.sub(" ", _STRING.sub('""', expr))
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _LABEL_MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(r"\1", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if word.lower() in KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function call
            continue
        names.add(word)
    return names


def rule_queries(path: Path = RULES_FILE) -> tuple[list[Query], dict[str, str]]:
    """(every rule's expression, {recording rule name: its expression})."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    queries: list[Query] = []
    records: dict[str, str] = {}
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            expr = str(rule["expr"])
            queries.append(Query(f"{path.name}: {group['name']}/{name}", expr))
            if "record" in rule:
                records[rule["record"]] = expr
    return queries, records


def dashboard_queries(path: Path = DASHBOARD_FILE) -> list[Query]:
    """The PromQL of every panel target (rows and nested panels included) and template variable."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    queries: list[Query] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            title = node.get("title")
            here = f"{where} > {title}" if isinstance(title, str) and title else where
            for target in node.get("targets") or []:
                if isinstance(target, dict) and target.get("expr"):
                    queries.append(Query(f"{here} [{target.get('refId', '?')}]", target["expr"]))
            for key, value in node.items():
                if key not in ("targets", "templating"):
                    walk(value, here)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(dashboard.get("panels") or [], path.name)
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not isinstance(query, str) or not query.strip():
            continue
        for pattern in (_LABEL_VALUES, _QUERY_RESULT):
            if match := pattern.match(query):
                query = match.group(1)
                break
        else:
            if query.lstrip().startswith(("label_names(", "metrics(")):
                continue
        queries.append(Query(f"{path.name} > variable ${variable.get('name')}", query))
    return queries


def resolved_metric_names(expr: str, records: dict[str, str]) -> set[str]:
    """The metric names of an expression, recording rules replaced by what they use."""
    names: set[str] = set()
    pending = list(metric_names(expr))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in records:
            pending.extend(metric_names(records[name]))
        else:  # a metric - or an unknown recording rule, left for the caller to report
            names.add(name)
    return names


def queries(
    rules: Path = RULES_FILE, dashboards: Iterable[Path] = (DASHBOARD_FILE,)
) -> list[Query]:
    """Every PromQL expression of the rules file and the dashboards."""
    found, _records = rule_queries(rules)
    for dashboard in dashboards:
        found.extend(dashboard_queries(dashboard))
    return found


def metric_uses(
    rules: Path = RULES_FILE, dashboards: Iterable[Path] = (DASHBOARD_FILE,)
) -> dict[str, list[str]]:
    """{application metric name: the sources of the expressions that use it} - without the
    series Prometheus writes itself (`SCRAPE_SERIES`)."""
    _queries, records = rule_queries(rules)
    uses: dict[str, list[str]] = {}
    for query in queries(rules, dashboards):
        for name in resolved_metric_names(query.expr, records) - SCRAPE_SERIES:
            uses.setdefault(name, []).append(query.source)
    return uses


def queried_metric_names(
    rules: Path = RULES_FILE, dashboards: Iterable[Path] = (DASHBOARD_FILE,)
) -> set[str]:
    """Every application metric name the alert/recording rules and the dashboards query."""
    return set(metric_uses(rules, dashboards))


def _family_sample_names(family: Metric) -> set[str]:
    """Names a metric family's samples have, whether or not it has samples yet."""
    name = family.name
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
        "stateset": ("",),
    }.get(family.type, ("",))
    return {name + suffix for suffix in suffixes} | {s.name for s in family.samples}


def registered_metric_names(registry: Collector = REGISTRY) -> set[str]:
    """Sample names a prometheus_client registry exports (import ops.metrics first)."""
    names: set[str] = set()
    for family in registry.collect():
        names |= _family_sample_names(family)
    return names


def exposed_metric_names(exposition: str) -> set[str]:
    """Sample names of a /metrics page (Prometheus text format)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= _family_sample_names(family)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, for `promtool check rules`."""
    replacements = {
        "$__rate_interval": "5m",
        "$__interval": "1m",
        "$__range": "1h",
        "$__range_s": "3600",
        "$__interval_ms": "60000",
    }
    for variable, value in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    return _GRAFANA_VARIABLE.sub(".*", expr)


def iter_dashboard_exprs(path: Path = DASHBOARD_FILE) -> Iterator[Query]:
    """Panel and variable queries of a dashboard, as `promtool` can parse them."""
    for query in dashboard_queries(path):
        yield Query(query.source, grafana_to_promql(query.expr))
