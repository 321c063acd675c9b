"""A live application's /metrics passes `promtool check metrics` (Prometheus' own linter).

The exposition is taken from a real running app (all four listeners, real Kafka, PostgreSQL,
SMTP and chemical API) after events of every type went through it, valid and invalid, so the
labelled series, histograms and DLQ counters are present, not only the empty families.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from common import event_types
from common.settings import Settings
from retry_topics.naming import topic_names
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.kafka import produce_events, produce_raw, wait_for

pytestmark = pytest.mark.integration


def promtool_check_metrics(exposition: bytes) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:  # a missing tool fails, in CI and out: `make deps` installs it
        pytest.fail("promtool not found on PATH: `make deps` (Debian package prometheus)")
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition.decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def processed(exposition: bytes) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            if sample.name == "qchem_events_processed_total":
                counts[(sample.labels["event_type"], sample.labels["outcome"])] = sample.value
    return counts


def test_promtool_rejects_a_badly_named_counter() -> None:
    """The check below can fail: promtool does lint what it is given."""
    bad = b"# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n"
    result = promtool_check_metrics(bad)
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr


def test_live_metrics_pass_promtool_check_metrics(
    handler_settings: Settings, db_engine: Engine
) -> None:
    settings = handler_settings.model_copy(update={"event_types": event_types.names()})
    with running_app(settings) as app:
        assert app.health is not None
        url = f"http://127.0.0.1:{app.health.port}/metrics"

        def exposition() -> bytes:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read())

        before = processed(exposition())  # counters are per process, not per test
        for event_type in settings.event_types:
            topic = topic_names(settings, event_type).main
            produce_events(settings.kafka_bootstrap_servers, topic, sample_events(event_type, 3))
        bad_topic = topic_names(settings, "Report").main
        produce_raw(settings.kafka_bootstrap_servers, bad_topic, [(b"k", b"{not json", None)])

        def settled() -> bool:
            now = processed(exposition())
            grown = [
                now[(t, "success")] >= before[(t, "success")] + 3 for t in settings.event_types
            ]
            return all(grown) and now[("Report", "invalid")] > before[("Report", "invalid")]

        wait_for(settled, timeout=60, message="every type processed and one record dead-lettered")
        body = exposition()
        result = promtool_check_metrics(body)
        assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"
        assert result.stdout.strip() == "" and result.stderr.strip() == ""
