"""consumers/schema_wait.py: records held for the Schema Registry keep their partition's order."""

from __future__ import annotations

from typing import Any

import pytest

from common.settings import load_settings
from common.telemetry import NULL_EVENT_TELEMETRY as NULL
from consumers.pausing import PauseBook
from consumers.schema_wait import SchemaWait
from consumers.work import Work
from retry_topics import headers as rh


class FakeConsumer:
    """Records pause/resume calls (the only consumer methods PauseBook uses)."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()

    def pause(self, partitions: list[Any]) -> None:
        self.paused |= {(p.topic, p.partition) for p in partitions}

    def resume(self, partitions: list[Any]) -> None:
        self.paused -= {(p.topic, p.partition) for p in partitions}


def work(offset: int, partition: int = 0, *, pending: bool) -> Work:
    item = Work(
        topic="t",
        partition=partition,
        offset=offset,
        key=None,
        value=b"",
        headers=None,
        origin=rh.Origin("t", partition, offset, 0),
    )
    item.schema_pending = pending
    return item


def test_held_records_leave_in_offset_order_once_the_registry_answers() -> None:
    consumer = FakeConsumer()
    wait = SchemaWait(PauseBook(consumer, NULL), "Email", NULL)  # type: ignore[arg-type]
    wait.hold(work(10, pending=True))
    wait.hold(work(11, pending=False))  # decodable, but behind a held one: waits too
    wait.hold(work(12, pending=True))
    wait.hold(work(5, partition=1, pending=True))
    assert consumer.paused == {("t", 0), ("t", 1)}
    handed: list[tuple[int, int]] = []
    registry_up = False

    def decode(item: Work) -> bool:
        return registry_up

    def hand_over(item: Work) -> None:
        handed.append((item.partition, item.offset))

    wait.release(decode, hand_over)
    assert handed == [] and wait.count() == 4  # still down: nothing moves, nothing dropped
    registry_up = True
    wait.release(decode, hand_over)
    assert handed == [(0, 10), (0, 11), (0, 12), (1, 5)]
    assert consumer.paused == set() and not wait.holding(("t", 0))


def test_a_revoked_partition_forgets_its_held_records() -> None:
    consumer = FakeConsumer()
    wait = SchemaWait(PauseBook(consumer, NULL), "Email", NULL)  # type: ignore[arg-type]
    wait.hold(work(1, pending=True))
    wait.forget([("t", 0)])
    assert wait.count() == 0 and not wait.holding(("t", 0))


# A bad SCHEMA_REGISTRY_URL stops start-up naming it: tests/unit/common/test_settings.py.


def test_an_empty_registry_url_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", " ")
    assert load_settings(_env_file=None).schema_registry_url is None
