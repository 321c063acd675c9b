"""The failure path: what becomes of a record whose processing failed, up to its durable
outcome. The pipeline (consumers/processing.py) calls `fail` and `record`; all in between is
here.

    fail:   classify -> decide -> hold in place        run again later, no attempt used up
                                -> retry tier | DLQ    produce a copy; once the broker has it,
                                                       record
    record: the outcome's event record (a dead letter's DLQ index row in the same
            transaction), then the pipeline's `finish`

One hold mechanism, `Hold`. Whatever cannot go on now - the database or a dependency down,
another copy performing the effect (storage/claims.py), a copy the broker refused, an outcome
the database did not take - is held in place: its offset stays uncommitted, no attempt is
used up, and it is tried again after capped jittered backoff (policy.hold_delay_s), counted
on the record. The writer's hold through a database outage (storage/writer.py) takes the
same backoff (`Hold.delay_s`) and reports to the same database mark (`Hold.writes_held`),
both given to it by the runtime because storage sits below this package. The writer waits on
its own thread rather than on a timer: its blocked thread is what keeps one key's later writes
behind the held ones. While the database is marked down the listener fetches nothing, and a
probe - not a later write - clears the mark: the record whose failure set it may never be
written here (its partition moved to another consumer while it was held), and with every
partition paused nothing else would come to clear it.

Layers (pyproject.toml): retry_topics sits below consumers, so this module imports neither the
consumer's record (`consumers.work.Work`) nor its timers nor its lanes. It states what it
needs of them as protocols they satisfy - `InFlight`, the fields of a record it reads and
writes, and `Later`, a timer - and is given the three steps that stay the pipeline's: run a
held record again on its key's lane (`rerun`), pass a record on and free its lane
(`hand_off`), mark it done (`finish`). The pipeline builds its failure path with its own
methods, and the runtime builds the `Hold` before the writer and the pipeline that share it,
so nothing is bound late.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import structlog
from confluent_kafka import KafkaError

from common import tracing
from common.redaction import redact_payload
from common.telemetry import NULL_EVENT_TELEMETRY, EventTelemetry
from retry_topics import headers as rh
from retry_topics.dlq_record import pipeline_entry
from retry_topics.hold import Hold, InFlight, Later
from retry_topics.naming import TopicNames
from retry_topics.policy import (
    DeadLetter,
    FailureKind,
    HoldInPlace,
    RetryPolicy,
    RetryTier,
    classify,
    decide,
)
from retry_topics.router import DeliveryProducer
from storage.pg_text import pg_text
from storage.requests import Status, WriteRequest, WriteResult
from storage.writer import BatchWriter

log = structlog.get_logger(__name__)

# The outcome (telemetry, the consumer span) of each status `record` writes.
_OUTCOMES = {
    Status.RETRYING: "retried",
    Status.DLQ: "dlq",
    Status.INVALID: "invalid",
    Status.DUPLICATE: "duplicate",
}


W = TypeVar("W", bound=InFlight)


def write_identity(work: InFlight, group: str, event_type: str) -> dict[str, Any]:
    """The fields of a write request (storage/writer.py) that say whose outcome it is."""
    return {
        "group": group,
        "origin_topic": work.origin.topic,
        "origin_partition": work.origin.partition,
        "origin_offset": work.origin.offset,
        "event_type": event_type,
        "event_id": work.event.event_id if work.event else None,
        "event_key": work.event.key if work.event else None,
        "attempts": work.attempt,
    }


@dataclass(slots=True)
class _Copy(Generic[W]):
    """A failed record's copy on its way to a retry tier or the DLQ."""

    work: W
    topic: str
    headers: rh.Headers
    status: Status
    error_text: str
    again: Callable[[], None]  # route it again (rebuilt) after the broker refused it
    # Where the copy landed (partition, offset, timestamp ms), for the DLQ index.
    position: list[tuple[int, int, int]] = field(default_factory=list)

    def landed(self, partition: int, offset: int, timestamp_ms: int) -> None:
        self.position.append((partition, offset, timestamp_ms))


class FailurePath(Generic[W]):
    """The failure path of one event type's records (module docstring)."""

    def __init__(
        self,
        *,
        names: TopicNames,
        policy: RetryPolicy,
        writer: BatchWriter,
        producer: DeliveryProducer,
        hold: Hold,
        later: Later,
        rerun: Callable[[W], None],
        hand_off: Callable[[W, Callable[[], None]], None],
        finish: Callable[[W, str], None],
        payload_log_bytes: int = 2048,
        redact_fields: tuple[str, ...] = ("password", "token", "secret"),
        telemetry: EventTelemetry = NULL_EVENT_TELEMETRY,
    ) -> None:
        self.names = names
        self.event_type = names.event_type
        self.group = names.group
        self.policy = policy
        self.writer = writer
        self.producer = producer
        self.hold = hold
        self._later = later
        self._rerun = rerun
        self._hand_off = hand_off
        self._finish = finish
        self.payload_log_bytes = payload_log_bytes
        self.redact_fields = redact_fields
        self.telemetry = telemetry
        self.log = log.bind(event_type=self.event_type, group=self.group)

    def fail(self, work: W, error: BaseException) -> None:
        """`work` failed with `error`: hold it, retry it or dead-letter it, as decided."""
        tracing.record_error(work.span, error)
        kind = classify(error)
        decision = decide(
            kind,
            work.attempt,
            self.policy,
            now_ms=rh.now_ms(),
            rng=self.hold.rng,
            held_times=work.held,
        )
        if isinstance(decision, HoldInPlace):
            self._hold(work, decision.delay_s, kind, error)
            return
        self._release_claim(work)
        if isinstance(decision, RetryTier):
            self._retry_later(work, error, kind, decision)
        else:
            self._route(work, error, kind, self.names.dlq, decision)

    def _hold(self, work: W, delay_s: float, kind: FailureKind, error: BaseException) -> None:
        """Keep the event in flight and run it again later: no attempt is used up."""
        if work.held == 0 or work.held % 20 == 0:
            self.log.warning(
                "event_held",
                reason=kind.value,
                error=str(error)[:300],
                retry_in_s=round(delay_s, 2),
                held=work.held,
                **work.log_fields(),
            )
        if kind is FailureKind.DATABASE_DOWN:
            self.hold.database_down()
        self.telemetry.held(kind.value)
        self.hold.again(work, partial(self._rerun, work), delay_s)

    def _release_claim(self, work: W) -> None:
        """The effect failed for good or goes to a retry tier: let the next copy claim it."""
        if not work.claimed or work.event is None:
            return
        work.claimed = False
        origin = work.origin
        try:
            self.writer.release_effect(
                self.group, origin.topic, origin.partition, origin.offset, work.event.event_id
            )
        except Exception as exc:  # the retry (same origin) takes it over anyway
            self.log.warning("claim_release_failed", error=str(exc)[:300], **work.log_fields())

    def _retry_later(
        self, work: W, error: BaseException, kind: FailureKind, decision: RetryTier
    ) -> None:
        """Route to the tier after the decision's jitter, with a due time of exactly the tier's
        delay from then.

        A tier's partition is read in offset order, so a record due later than the records
        produced after it would hold them back (head-of-line) by up to the jitter - 400 ms on
        retry-4s. Waiting out the jitter here instead keeps due times in offset order: the
        same spread of retries, and each runs on time (bench/retry_lateness.py).
        """
        jitter_s = max(0, decision.due_ms - rh.now_ms() - decision.delay_ms) / 1000
        route = partial(self._route_due, work, error, kind, decision)
        if jitter_s <= 0:
            route()
            return
        # The key's lane is freed now, as when routing at once: the retry is out of order anyway.
        self._hand_off(work, partial(self._later.call_later, jitter_s, route))

    def _route_due(
        self, work: W, error: BaseException, kind: FailureKind, decision: RetryTier
    ) -> None:
        # Due exactly the tier's delay from now, rounded up: a due time truncated to the
        # millisecond let a retry run up to 1 ms before its full tier delay (test_retry_tiers
        # saw 0.9997 s for the 1 s tier).
        due_ms = math.ceil(time.time() * 1000) + decision.delay_ms
        on_time = RetryTier(decision.delay_ms, due_ms, decision.next_attempt)
        self._route(work, error, kind, self.names.retry(decision.delay_ms), on_time)

    # -- routing a copy ------------------------------------------------------------------------

    def _route(
        self,
        work: W,
        error: BaseException,
        kind: FailureKind,
        topic: str,
        decision: RetryTier | DeadLetter,
    ) -> None:
        """Produce the record's copy to `topic`, a retry tier or the DLQ; once the broker has
        it, record the outcome. A copy the broker refuses is held, then routed again."""
        failure = rh.Failure(
            error_class=type(error).__name__,
            message=str(error),
            stack="".join(traceback.format_exception(error)[-6:]),
            kind=kind.value,
        )
        if isinstance(decision, RetryTier):
            status = Status.RETRYING
        else:
            status = Status.INVALID if kind is FailureKind.INVALID else Status.DLQ
        copy = _Copy(
            work=work,
            topic=topic,
            headers=self._headers(work, failure, decision),
            status=status,
            error_text=f"{failure.error_class}: {failure.message}"[:2000],
            again=partial(self._route, work, error, kind, topic, decision),
        )
        self._log_route(copy, kind)
        self._hand_off(work, partial(self._send, copy))

    def _headers(
        self, work: W, failure: rh.Failure, decision: RetryTier | DeadLetter
    ) -> rh.Headers:
        due_ms: int | None
        dlq_reason: str | None
        if isinstance(decision, RetryTier):
            attempt, due_ms, dlq_reason = decision.next_attempt, decision.due_ms, None
        else:
            attempt, due_ms, dlq_reason = work.attempt, None, decision.reason
        return rh.build(
            source_headers=work.headers,
            origin=work.origin,
            group=self.group,
            attempt=attempt,
            first_failure_ms=work.first_failure_ms or rh.now_ms(),
            due_ms=due_ms,
            failure=failure,
            replay_count=work.replay_count,
            dlq_reason=dlq_reason,
        )

    def _log_route(self, copy: _Copy[W], kind: FailureKind) -> None:
        work = copy.work
        if kind is FailureKind.INVALID:
            self.log.error(
                "event_invalid",
                error=copy.error_text,
                payload=redact_payload(
                    work.value or b"", self.redact_fields, self.payload_log_bytes
                ),
                **work.log_fields(),
            )
            return
        self.log.warning(
            "event_retrying" if copy.status is Status.RETRYING else "event_dead_lettered",
            to_topic=copy.topic,
            error_kind=kind.value,
            error=copy.error_text[:500],
            **work.log_fields(),
        )

    def _send(self, copy: _Copy[W]) -> None:
        try:
            with tracing.hop(copy.headers, copy.topic, copy.work.span):  # new traceparent
                self.producer.produce(
                    copy.topic,
                    key=copy.work.key,
                    value=copy.work.value,
                    headers=copy.headers,
                    on_delivery=partial(self._delivered, copy),
                    on_position=copy.landed,
                )
        except Exception as exc:  # refused at once (queue full, too large): as below
            self._not_routed(copy, exc)

    def _delivered(self, copy: _Copy[W], err: KafkaError | None) -> None:
        if err is not None:
            self._not_routed(copy, err)
            return
        entry = None
        if copy.status is not Status.RETRYING and copy.position:
            work = copy.work
            entry = pipeline_entry(
                self.event_type, copy.topic, copy.position[-1], work.key, work.value, copy.headers
            )
        self.record(copy.work, copy.status, copy.error_text, dlq_entry=entry)

    def _not_routed(self, copy: _Copy[W], err: object) -> None:
        """Keep it in flight (its offset uncommitted) and route it again later."""
        self.log.error(
            "route_failed", to_topic=copy.topic, error=str(err), **copy.work.log_fields()
        )
        self.telemetry.held("route_failed")
        self.hold.again(copy.work, copy.again)

    # -- recording the outcome -----------------------------------------------------------------

    def record(
        self,
        work: W,
        status: Status,
        error: str | None,
        dlq_entry: dict[str, Any] | None = None,
    ) -> None:
        """Write the event record of a non-success outcome (with a dead letter's DLQ index
        row, in the same transaction), then finish."""
        outcome = _OUTCOMES[status]
        request = WriteRequest(
            **write_identity(work, self.group, self.event_type),
            status=status,
            last_error=pg_text(error) if error else None,
            processing_ms=int((time.monotonic() - work.started) * 1000),
            on_done=lambda result: self._recorded(work, outcome, request, result),
            dlq_entry=dlq_entry,
        )
        self._hand_off(work, partial(self.writer.submit, request, work.lane))

    def _recorded(
        self, work: W, outcome: str, request: WriteRequest, result: WriteResult | BaseException
    ) -> None:
        if not isinstance(result, BaseException):
            self._finish(work, outcome)
            return
        if classify(result) is not FailureKind.DATABASE_DOWN:
            # The statement itself was refused: a silent retry would stall the partition for
            # ever. Say so, and drop the DLQ index row (the index sync adds it from the topic
            # later): the event record is what must be written.
            self.log.error("record_write_failed", error=str(result)[:300], **work.log_fields())
            request.dlq_entry = None
        self.hold.again(work, partial(self.writer.submit, request, work.lane))  # do not lose it
