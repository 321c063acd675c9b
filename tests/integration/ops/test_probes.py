"""/healthz sees a poll loop that stopped turning; /readyz does not need partitions.

Both against the real application on the real broker and database:
* a stuck rebalance: a handler holds an event in flight, a second member joins the group and
  takes that partition, and the listener's revoke callback waits for the event on the poll
  thread - the loop does not turn. /healthz must fail once LIVENESS_LOOP_TTL_S has passed (no
  thread died: only the loop's age can tell), and pass again when the loop turns again.
* an instance holding no partitions (more instances than partitions, as KEDA or a rollout's
  surge makes): /readyz must be true, or the extra replica would block the rollout.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Consumer
from sqlalchemy.engine import Engine

from common.settings import Settings
from consumers.handlers.report import ReportHandler
from consumers.listener import consumer_config
from devtools.harness import in_background
from devtools.kafka import kafka_config
from ops.app import App
from retry_topics.naming import topic_names
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.kafka import producer, wait_for

pytestmark = pytest.mark.integration


def probe(app: App, path: str) -> tuple[int, dict[str, Any]]:
    assert app.health is not None
    try:
        url = f"http://127.0.0.1:{app.health.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


class GatedReportHandler(ReportHandler):
    """The real Report handler (on the worker pool) that waits at a gate before its effect."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.entered: set[str] = set()  # event ids at the gate
        self.gate = threading.Event()

    def perform(self, event: Event) -> Any:
        self.entered.add(event.event_id)
        self.gate.wait(timeout=120)  # never for ever, whatever the test does
        return None


@contextmanager
def group_member(settings: Settings, topics: list[str]) -> Iterator[Consumer]:
    """A second member of the listener's consumer group, polling in the background."""
    group = topic_names(settings, "Report").group
    consumer = Consumer(
        {**consumer_config(kafka_config(settings), group), "client.id": "probe-test"}
    )
    consumer.subscribe(topics)

    def poll(stop: threading.Event) -> None:
        while not stop.is_set():
            consumer.poll(0.1)  # takes part in the rebalance; commits nothing

    try:
        with in_background(poll, join_s=10):
            yield consumer
    finally:
        consumer.close()


def one_event_per_partition(settings: Settings, topic: str) -> None:
    p = producer(settings.kafka_bootstrap_servers)
    for partition, event in enumerate(sample_events("Report", 2)):
        p.produce(topic, partition=partition, key=event.key.encode(), value=encode_json(event))
    assert p.flush(30) == 0


def test_healthz_fails_while_a_rebalance_is_stuck_then_recovers(
    settings: Settings, db_engine: Engine
) -> None:
    # Two partitions per topic, an event held at the gate on each main partition: a member
    # subscribed to the main topic only is given one of them (the range assignor splits the
    # topic; which one depends on the member ids), and whichever it is has an event in flight.
    # (With one partition the assignor could as well leave it where it was: no revoke.)
    settings = settings.model_copy(
        update={"event_types": ("Report",), "topic_partitions": 2, "liveness_loop_ttl_s": 2.0}
    )
    handler = GatedReportHandler(settings)
    names = topic_names(settings, "Report")
    with running_app(settings, handlers={"Report": handler}) as app:
        assert probe(app, "/healthz") == (200, {"alive": True})
        one_event_per_partition(settings, names.main)
        wait_for(lambda: len(handler.entered) == 2, timeout=30, message="both events gated")
        try:
            with group_member(settings, [names.main]):
                # The listener's revoke of a main partition waits (up to 10 s) for its gated
                # event, inside consume(), on the poll thread.
                _status, body = wait_for(
                    lambda: (r := probe(app, "/healthz"))[0] == 503 and r,
                    timeout=9,
                    interval=0.2,
                    message="/healthz failing while the poll loop is stuck",
                )
                assert body["alive"] is False
                assert body["listener_crashed"] is False  # no thread died
                assert body["stalled_loops_s"]["Report"] >= 2.0  # rounded to 0.1 s
                assert not app.failed.is_set()
                handler.gate.set()  # the event finishes, the revoke returns, the loop turns
                wait_for(
                    lambda: probe(app, "/healthz") == (200, {"alive": True}),
                    timeout=15,
                    message="/healthz passing again once the loop turns",
                )
        finally:
            handler.gate.set()


def _members(settings: Settings) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings))
    group = topic_names(settings, "Report").group
    (future,) = admin.describe_consumer_groups([group]).values()
    return len(future.result(timeout=10).members)


def test_readyz_is_true_for_an_instance_holding_no_partitions(
    settings: Settings, db_engine: Engine
) -> None:
    # No retry tiers and one partition: the group has exactly one partition to give.
    settings = settings.model_copy(
        update={"event_types": ("Report",), "topic_partitions": 1, "retries": 0}
    )
    # partitions=True: ready means joined, and the assignment may come a moment after
    # (a loaded run failed 'assert 0 == 1' here, the partition assigned 0.1 s later).
    with running_app(settings, partitions=True) as first:
        (listener,) = first.listeners
        assert len(listener.book.owned()) == 1
        second = App(settings)
        second.start()
        try:
            wait_for(lambda: _members(settings) == 2, timeout=30, message="two group members")
            time.sleep(3)  # let the rebalance settle: the sticky assignor keeps main-0 put
            owned = [len(app.listeners[0].book.owned()) for app in (first, second)]
            assert sorted(owned) == [0, 1], owned
            idle = second if owned[1] == 0 else first
            busy = first if idle is second else second
            status, body = probe(idle, "/readyz")
            assert status == 200 and body["ready"] is True, (status, body)
            assert body["partitions"] == 0, body
            assert probe(busy, "/readyz")[0] == 200
            assert probe(idle, "/healthz") == (200, {"alive": True})
        finally:
            second.stop()
