"""Alert rules (deploy/prometheus) and the Grafana dashboard (deploy/grafana) - no services.

* `promtool check rules` and `promtool test rules` pass (the rule unit tests prove that each
  P0/P1 alert fires on the right series and stays quiet on healthy ones);
* every alert of the design document's "Monitoring & Alerting Strategy" exists, with its
  severity, `for` duration, labels, annotations and runbook;
* every metric the rules and the dashboard query is one that ops/metrics.py defines;
* the dashboard is a provisionable Grafana dashboard with the panels of "Production Metrics
  Dashboard", and every query in it is valid PromQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import ops.metrics  # noqa: F401 - registers the application's metrics
from tests.support import promql

ROOT = promql.ROOT
RULES_FILE = promql.RULES_FILE
RULE_TESTS_FILE = ROOT / "deploy" / "prometheus" / "tests" / "qchem-events.rules.test.yml"
DASHBOARD_FILE = promql.DASHBOARD_FILE

# "Monitoring & Alerting Strategy": alert -> (severity, `for`, runbook anchor in README.md).
EXPECTED_ALERTS: dict[str, tuple[str, str | None, str]] = {
    # P0 - immediate response
    "QchemDlqOver100": ("P0", None, "README.md#dlq-runbook"),  # DLQ count > 100 events
    "QchemSuccessRateLow": ("P0", "5m", "README.md#dlq-runbook"),  # success < 95% for 5 min
    "QchemNothingProcessed": ("P0", None, "README.md#operations"),  # none in 10 minutes
    # Not in the document: without it nothing pages when the application itself is gone.
    "QchemApplicationDown": ("P0", "2m", "README.md#application-down-runbook"),  # scrape fails
    # P1 - next business day
    "QchemRetryRateHigh": ("P1", "1h", "README.md#high-retry-rate-runbook"),  # > 10% for 1 h
    "QchemProcessingSlow": ("P1", "10m", "README.md#high-retry-rate-runbook"),  # average > 2 s
    "QchemDbPoolHigh": ("P1", "5m", "README.md#high-retry-rate-runbook"),  # pool > 80%
    # P2 - weekly review
    "QchemNewErrorType": ("P2", None, "README.md#operations"),  # new error types appeared
    "QchemUnusualVolume": ("P2", "15m", "README.md#operations"),  # unusual volume patterns
    "QchemProcessingDegrading": ("P2", "30m", "README.md#operations"),  # degradation trends
}

# "Production Metrics Dashboard" and the operational panels, by the metric each one needs.
EXPECTED_DASHBOARD_METRICS = {
    "qchem_events_processed_total",  # success rate, retry rate, outcomes
    "qchem_event_processing_seconds_bucket",  # P50 / P90 / P99 / max
    "qchem_events_succeeded_on_attempt_total",  # succeeded on attempt 1, 2, 3, 4+
    "qchem_retry_lateness_seconds_bucket",
    "qchem_dlq_depth_records",
    "qchem_consumer_lag_records",
    "qchem_db_pool_connections_in_use",
    "qchem_db_pool_connections_max",
    "qchem_dependency_breaker_state",
    "qchem_events_in_flight",
    "qchem_events_held_total",
    "qchem_paused_partitions",
    "qchem_dlq_redriven_total",
    "qchem_dlq_replayed_total",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install it with `make deps` (Debian package prometheus)",
            pytrace=False,
        )
    return path


def _run_promtool(*args: str) -> None:
    result = subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    )


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    return yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] not in found, f"alert {rule['alert']} defined twice"
                found[rule["alert"]] = rule
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


def _panels(node: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for panel in node:
        flat.append(panel)
        flat.extend(_panels(panel.get("panels") or []))
    return flat


# -- promtool -----------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    _run_promtool("check", "rules", str(RULES_FILE.relative_to(ROOT)))


def test_promtool_rule_unit_tests() -> None:
    _run_promtool("test", "rules", str(RULE_TESTS_FILE.relative_to(ROOT)))


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Grafana's variables replaced, each query must parse as a recording rule expression."""
    exprs = list(promql.iter_dashboard_exprs(DASHBOARD_FILE))
    assert exprs
    rules_file = tmp_path / "dashboard.rules.yml"
    rules_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "dashboard",
                        "rules": [
                            {"record": f"dashboard:query_{i}:expr", "expr": q.expr}
                            for i, q in enumerate(exprs)
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    _run_promtool("check", "rules", str(rules_file))


# -- the alerts of the document -----------------------------------------------------------------


def test_every_documented_alert_exists_with_its_severity(
    alerts: dict[str, dict[str, Any]],
) -> None:
    assert set(alerts) == set(EXPECTED_ALERTS)
    for name, (severity, for_, runbook) in EXPECTED_ALERTS.items():
        rule = alerts[name]
        assert rule["labels"] == {"severity": severity, "team": "qchem"}, name
        assert rule.get("for") == for_, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        assert annotations["runbook"] == runbook, name
        assert annotations["summary"].strip() and annotations["description"].strip(), name


def test_every_p0_p1_alert_has_a_firing_and_a_quiet_unit_test(
    alerts: dict[str, dict[str, Any]],
) -> None:
    suite = yaml.safe_load(RULE_TESTS_FILE.read_text(encoding="utf-8"))
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in suite["tests"]:
        for case in group.get("alert_rule_test") or []:
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    paging = {name for name, (severity, _f, _r) in EXPECTED_ALERTS.items() if severity != "P2"}
    assert paging <= fires, f"no firing test for {sorted(paging - fires)}"
    assert paging <= quiet, f"no quiet test for {sorted(paging - quiet)}"
    assert set(alerts) <= fires | quiet, f"untested: {sorted(set(alerts) - fires - quiet)}"


def test_recording_rules_follow_the_naming_convention(rules: dict[str, Any]) -> None:
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                level, _metric, _operations = rule["record"].split(":")
                assert level == "qchem", rule["record"]


# -- metric names -------------------------------------------------------------------------------


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (event_type, le) (rate(qchem_x_bucket{event_type=~"$event_type", le!="+Inf"}'
        "[$__rate_interval] offset 1d)) / on (event_type) group_left (topic)"
        " max without (instance) (qchem:y:rate5m) > bool 0.5e3 unless absent(qchem_z)"
        ' or {__name__="qchem_w"} # qchem_comment'
    )
    assert promql.metric_names(expr) == {"qchem_x_bucket", "qchem:y:rate5m", "qchem_z", "qchem_w"}
    assert promql.resolved_metric_names("qchem:y:rate5m * 2", {"qchem:y:rate5m": "a + b"}) == {
        "a",
        "b",
    }


def test_prometheus_scrape_series_are_not_application_metrics() -> None:
    """`up` (QchemApplicationDown) is written by Prometheus for each scrape, not exported."""
    queries, _records = promql.rule_queries()
    assert any("up" in promql.metric_names(q.expr) for q in queries)
    assert "up" not in promql.metric_uses()
    assert "qchem_events_processed_total" in promql.metric_uses()


def test_every_queried_metric_is_defined_in_ops_metrics() -> None:
    defined = promql.registered_metric_names()
    assert "qchem_events_processed_total" in defined
    assert "qchem_event_processing_seconds_bucket" in defined
    uses = promql.metric_uses()
    missing = {name: sources for name, sources in uses.items() if name not in defined}
    assert not missing, "queried but not defined in ops/metrics.py:\n" + "\n".join(
        f"  {name}: {', '.join(sources)}" for name, sources in sorted(missing.items())
    )


def test_the_dashboard_shows_the_documented_metrics() -> None:
    shown = promql.queried_metric_names(dashboards=[DASHBOARD_FILE])
    assert shown >= EXPECTED_DASHBOARD_METRICS, sorted(EXPECTED_DASHBOARD_METRICS - shown)


# -- the dashboard ------------------------------------------------------------------------------


def test_dashboard_is_provisionable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "qchem-events"
    assert dashboard["title"] == "qchem-events"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns it
    panels = _panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_event_type_variable(dashboard: dict[str, Any]) -> None:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "event_type"]
    assert variable["type"] == "query"
    assert variable["datasource"]["uid"] == "prometheus"
    assert variable["definition"] == "label_values(qchem_events_processed_total, event_type)"
    assert variable["multi"] and variable["includeAll"]
    # Every panel query that filters on the event type uses the variable.
    for query in promql.dashboard_queries(DASHBOARD_FILE):
        if "event_type=" in query.expr:
            assert 'event_type=~"$event_type"' in query.expr, query.source


def test_dashboard_has_the_documented_panels(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(p["title"].lower() for p in _panels(dashboard["panels"]))
    for words in (
        "success rate by event type",
        "p50 / p90 / p99 / max",
        "outcome of events",  # succeeded on attempt 1/2/3/4+, sent to DLQ
        "retry rate",
        "retry lateness",
        "dlq depth",
        "consumer lag",
        "database pool",
        "breaker state",
        "in-flight",
        "held",
        "paused partitions",
        "redrives and replays",
    ):
        assert words in titles, words
    types = {
        p["type"] for p in _panels(dashboard["panels"]) if "success rate" in p["title"].lower()
    }
    assert {"stat", "timeseries"} <= types
