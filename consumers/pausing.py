"""Why each partition is paused, so that one reason's end never resumes another's pause.

A partition can be paused for several reasons at once: too much in flight
("backpressure"), too many retry records waiting for their due time ("due"), the
dependency's breaker open ("breaker"), shutting down ("shutdown"). It is resumed only when
no reason is left. Pausing never stops heartbeats or other partitions: librdkafka keeps the
group session alive.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from common.telemetry import EventTelemetry
from consumers.offsets import TopicPartitionKey

# Reasons that apply to every partition the listener owns, including ones assigned later.
LISTENER_WIDE = {"backpressure", "breaker", "database", "shutdown"}


class PauseBook:
    def __init__(self, consumer: Consumer, telemetry: EventTelemetry) -> None:
        self._consumer = consumer
        self._telemetry = telemetry
        self._reasons: dict[TopicPartitionKey, set[str]] = {}
        self._wide: set[str] = set()

    def add(self, tps: Iterable[TopicPartitionKey], reason: str) -> None:
        if reason in LISTENER_WIDE:
            self._wide.add(reason)
        to_pause = []
        for tp in tps:
            reasons = self._reasons.setdefault(tp, set())
            if not reasons:
                to_pause.append(tp)
            reasons.add(reason)
        if to_pause:
            self._consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        self._export()

    def remove(self, tps: Iterable[TopicPartitionKey], reason: str) -> None:
        if reason in LISTENER_WIDE:
            self._wide.discard(reason)
        to_resume = []
        for tp in tps:
            reasons = self._reasons.get(tp)
            if reasons and reason in reasons:
                reasons.discard(reason)
                if not reasons:
                    to_resume.append(tp)
        if to_resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        self._export()

    def assigned(self, tps: Iterable[TopicPartitionKey]) -> None:
        """A newly assigned partition inherits the listener-wide pauses in force.

        It is first resumed explicitly: librdkafka can keep a partition's paused flag across
        a lost-then-reassigned cycle (a broker restart under backpressure), and a partition
        paused there but not here would never be resumed - the listener would stall.
        """
        tps = list(tps)
        if tps:
            self._consumer.resume([TopicPartition(t, p) for t, p in tps])
        for tp in tps:
            self._reasons[tp] = set()
        for reason in list(self._wide):
            self.add(tps, reason)

    def forget(self, tps: Iterable[TopicPartitionKey]) -> None:
        for tp in tps:
            self._reasons.pop(tp, None)
        self._export()

    def _export(self) -> None:
        counts: dict[str, int] = {}
        for reasons in self._reasons.values():
            for reason in reasons:
                counts[reason] = counts.get(reason, 0) + 1
        for reason in ("backpressure", "due", "breaker", "database", "shutdown"):
            self._telemetry.paused(reason, counts.get(reason, 0))
