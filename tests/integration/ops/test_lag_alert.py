"""The lag a stuck consumer has, exported and alerted on, seen by a real Prometheus server.

A consumer that processed events, committed, and then got stuck (a handler that does not
return) commits nothing new. Its lag must still be exported (end offset minus committed
offset, from the broker), and `QchemNothingProcessed` must fire (issue 11, defect 2).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from common.settings import Settings
from consumers.handlers.chemical_lookup import ChemicalLookupHandler
from retry_topics.naming import topic_names
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.kafka import (
    produce_events,
    wait_committed_to_end,
    wait_for,
)
from tests.support.prometheus import PrometheusMissing, api, firing_alerts, prometheus_scraping

pytestmark = pytest.mark.integration


class GatedLookup(ChemicalLookupHandler):
    """The real handler, until the gate closes: then every call blocks (a hung dependency)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.open = threading.Event()
        self.open.set()
        self.released = threading.Event()

    def perform(self, event: Event) -> Any:
        if not self.open.is_set():
            self.released.wait(timeout=300)
        return super().perform(event)


def test_a_stuck_consumer_shows_lag_and_the_nothing_processed_alert_fires(
    handler_settings: Settings, tmp_path: Path
) -> None:
    settings = handler_settings.model_copy(
        update={"event_types": ("ChemicalLookup",), "topic_partitions": 1}
    )
    handler = GatedLookup(settings)
    topic = f"{settings.topic_prefix}.chemical-lookup"
    group = topic_names(settings, "ChemicalLookup").group
    events = sample_events("ChemicalLookup", 60)
    try:
        with running_app(settings, handlers={"ChemicalLookup": handler}) as app:
            assert app.health is not None
            produce_events(settings.kafka_bootstrap_servers, topic, events[:10])
            wait_committed_to_end(settings, group, topic, timeout=60)
            handler.open.clear()  # stuck from here on
            produce_events(settings.kafka_bootstrap_servers, topic, events[10:])
            try:
                prometheus = prometheus_scraping(f"127.0.0.1:{app.health.port}", tmp_path)
                with prometheus as url:
                    lag = wait_for(
                        lambda: _lag(url, topic),
                        timeout=60,
                        message="qchem_consumer_lag_records > 0 scraped by Prometheus",
                    )
                    assert lag == 50
                    alerts = wait_for(
                        lambda: [
                            a
                            for a in firing_alerts(url)
                            if a["labels"]["alertname"] == "QchemNothingProcessed"
                        ],
                        timeout=90,
                        message="QchemNothingProcessed firing in Prometheus",
                    )
                    assert alerts[0]["labels"]["event_type"] == "ChemicalLookup"
            except PrometheusMissing as exc:  # `make deps` installs it: never a skip
                pytest.fail(str(exc), pytrace=False)
            finally:
                handler.released.set()
    finally:
        handler.released.set()


def _lag(url: str, topic: str) -> float:
    result = api(url, f'/api/v1/query?query=qchem_consumer_lag_records{{topic="{topic}"}}')
    values = [float(sample["value"][1]) for sample in result["result"]]
    return sum(values) if values and sum(values) > 0 else 0
