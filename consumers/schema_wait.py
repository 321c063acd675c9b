"""Records waiting on the poll thread for the Schema Registry, per partition, in offset order.

A Schema Registry framed record whose writer schema is not cached yet needs the registry before
it can be decoded. When the registry cannot be asked (down, erroring, its breaker open), the
record is neither invalid nor processable: it is *held*, like an event whose dependency is
down - nothing dead-lettered, no attempt used up. It waits here, with every later record of
its partition (so a key's events stay in order), and the partition is paused. On every turn
of the poll loop the head of each partition is decoded again - through the registry's
breaker, so while it is open that costs nothing - and what can be decoded is handed over.

Why here and not on a worker: the event's key (its lane, ADR-002) and whether it takes the
inline hot path are only known once it is decoded, so an undecoded record cannot enter the
pipeline without losing its key's order. The registry is asked once per schema id, so the
poll thread pays one HTTP round trip per new writer schema, not per record.

Like retry records not yet due, held records are not tracked: no commit can pass them, and a
rebalance just drops them for the next owner to read again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import structlog

from common.telemetry import EventTelemetry
from consumers.offsets import TopicPartitionKey
from consumers.pausing import PauseBook
from consumers.work import Work

log = structlog.get_logger(__name__)

REASON = "dependency_down"  # the reason the hold is reported under, as a breaker-open hold's


class SchemaWait:
    def __init__(self, pauses: PauseBook, event_type: str, telemetry: EventTelemetry) -> None:
        self.pauses = pauses
        self.event_type = event_type
        self.waiting: dict[TopicPartitionKey, deque[Work]] = {}
        self._telemetry = telemetry

    def holding(self, tp: TopicPartitionKey) -> bool:
        return tp in self.waiting

    def count(self) -> int:
        return sum(len(w) for w in self.waiting.values())

    def hold(self, work: Work) -> None:
        waiting = self.waiting.get(work.tp)
        if waiting is None:
            waiting = self.waiting[work.tp] = deque()
            # Stop fetching it: whatever comes next on the partition would wait here too.
            self.pauses.add([work.tp], "schema_registry")
            log.warning(
                "events_held_schema_registry_unavailable",
                event_type=self.event_type,
                topic=work.topic,
                partition=work.partition,
                offset=work.offset,
            )
        waiting.append(work)
        self._telemetry.held(REASON)

    def release(self, decode: Callable[[Work], bool], hand_over: Callable[[Work], None]) -> None:
        """Hand over, in order, what can be decoded now; `decode` is False while it cannot."""
        for tp, waiting in list(self.waiting.items()):
            while waiting:
                head = waiting[0]
                if head.schema_pending:
                    if not decode(head):
                        break
                    head.schema_pending = False
                hand_over(waiting.popleft())
            if not waiting:
                del self.waiting[tp]
                self.pauses.remove([tp], "schema_registry")
                log.info("schema_registry_hold_released", event_type=self.event_type, tp=tp)

    def forget(self, tps: list[TopicPartitionKey]) -> None:
        for tp in tps:
            self.waiting.pop(tp, None)
