"""What happens to one record, from the poll loop's hand-off to its durable outcome.

    accept (poll thread) -> run (worker) -> write (writer thread) -> finish
                                 \\-> fail -> retry tier | DLQ | hold in place -> finish

Every record ends in `finish`, which marks its offset done - only once its outcome is durable
(offsets.py rule 2). Nothing here touches the consumer.

Per-key order (ADR-002): a key's lane is busy while its event is on a worker, and is freed as
soon as the event is handed on - to the writer (whose per-key queues apply one key's writes
in submission order, storage/writer.py) or to the producer (a retry tier or the DLQ). So a
key's next event waits for the previous one's *processing*, not for its commit: the commit
latency is shared by the batch instead of paid per key. A handler whose `perform` is
`nothing_outside_the_database` has nothing to run on a worker at all: its events go from the
poll thread straight to the writer (the hot path of ChemicalStatus and Report).
"""

from __future__ import annotations

import math
import random
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from confluent_kafka import KafkaError

from common import tracing
from common.redaction import redact_payload
from common.telemetry import NULL_EVENT_TELEMETRY, EventTelemetry
from consumers.breakers import DependencyGuard
from consumers.dispatch import KeyedDispatcher
from consumers.handlers.base import Handler, nothing_outside_the_database
from consumers.offsets import OffsetBook
from consumers.timers import Timers
from consumers.work import NOT_PERFORMED, Work, now_ms
from retry_topics import headers as rh
from retry_topics.dlq_record import pipeline_entry
from retry_topics.naming import TopicNames
from retry_topics.policy import (
    DeadLetter,
    FailureKind,
    HoldInPlace,
    RetryPolicy,
    RetryTier,
    classify,
    decide,
    hold_delay_s,
)
from retry_topics.router import DeliveryProducer
from schemas.events import Event
from storage.claims import Claim, EffectBusy
from storage.pg_text import pg_text
from storage.writer import BatchWriter, Status, WriteRequest, WriteResult

log = structlog.get_logger(__name__)

# While the database is marked down, it is asked this often whether it answers again.
DATABASE_PROBE_S = 1.0


class Pipeline:
    """The processing of one event type's records (one per listener)."""

    def __init__(
        self,
        *,
        event_type: str,
        names: TopicNames,
        handler: Handler,
        policy: RetryPolicy,
        writer: BatchWriter,
        producer: DeliveryProducer,
        book: OffsetBook,
        dispatcher: KeyedDispatcher,
        timers: Timers,
        guard: DependencyGuard | None = None,
        payload_log_bytes: int = 2048,
        redact_fields: tuple[str, ...] = ("password", "token", "secret"),
        rng: random.Random | None = None,
        telemetry: EventTelemetry = NULL_EVENT_TELEMETRY,
    ) -> None:
        self.event_type = event_type
        self.names = names
        self.group = names.group
        self.handler = handler
        self.policy = policy
        self.writer = writer
        self.producer = producer
        self.book = book
        self.dispatcher = dispatcher
        self.timers = timers
        self.guard = guard
        self.payload_log_bytes = payload_log_bytes
        self.redact_fields = redact_fields
        self.rng = rng or random.Random()
        self.log = log.bind(event_type=event_type, group=self.group)
        # Monotonic time of the last "database unavailable" failure, None once a write
        # succeeded again: the listener stops fetching meanwhile (nothing could be recorded).
        self.database_down_since: float | None = None
        # Reported through the interface given at start-up (common/telemetry.py): the
        # runtime does not know how it is measured.
        self.telemetry = telemetry
        # Nothing to do outside the database: no worker hand-off (see the module docstring).
        self.inline = getattr(type(handler), "perform", None) is nothing_outside_the_database
        # Set-based effects (BatchHandler) for what performs nothing outside the database.
        self.apply_batch = getattr(handler, "apply_batch", None) if self.inline else None

    # -- poll thread ------------------------------------------------------------------------

    def accept(self, work: Work) -> None:
        work.span = tracing.consume_span(work, self.group)
        self.book.track(work.tp, work.offset)
        self.telemetry.accepted()
        if self.inline:
            self.run(work)
        else:
            work.lane_taken = True
            self.dispatcher.submit(work.lane, partial(self.run, work))

    # -- worker threads ---------------------------------------------------------------------

    def run(self, work: Work) -> None:
        with tracing.active(work.span):  # the event's log lines carry its trace
            try:
                self._run(work)
            except BaseException as exc:
                # A bug, reported as worker_job_crashed: end the span so the trace shows
                # where the event stopped, and say which event it was.
                self.log.error("event_job_crashed", error=repr(exc), **work.log_fields())
                tracing.record_error(work.span, exc)
                tracing.end(work.span, "crashed")
                raise

    def _run(self, work: Work) -> None:
        if work.held and not self.book.owns(work.tp):
            # Held through an outage, and its partition moved to another consumer meanwhile:
            # the new owner processes it (dedup keeps that to one effect). Let it go.
            self.log.info("held_event_abandoned", **work.log_fields())
            tracing.end(work.span, "abandoned")
            self.telemetry.abandoned()
            self._release_lane(work)
            return
        if work.due_ms is not None and work.held == 0:
            lateness = max(0, now_ms() - work.due_ms) / 1000
            self.telemetry.retry_late(work.topic, lateness)
        if work.rejected is not None:
            self.fail(work, work.rejected)
            return
        event = work.event
        assert event is not None
        if work.performed is not NOT_PERFORMED:
            # Held because the database was down *after* the side effect (an email sent):
            # write again, do not perform again - that would send the email twice.
            self._write(work, event, work.performed)
            return
        try:
            if self.handler.dependency is not None and not self._claim(work, event):
                self.record(work, Status.DUPLICATE, None)
                return
            if self.guard is not None:
                performed = self.guard.call(self.handler.perform, event)
            else:
                performed = self.handler.perform(event)
        except Exception as exc:
            self.fail(work, exc)
            return
        self._write(work, event, performed)

    def _claim(self, work: Work, event: Event) -> bool:
        """Claim the event's outside effect: False when it was applied before (a duplicate);
        raises EffectBusy while another copy performs it (storage/claims.py)."""
        origin = work.origin
        claim = self.writer.claim_effect(
            self.group, origin.topic, origin.partition, origin.offset, event.event_id
        )
        if claim is Claim.DONE:
            return False
        if claim is Claim.BUSY:
            raise EffectBusy(f"event {event.event_id} is being performed by another copy")
        work.claimed = True
        return True

    def _release_claim(self, work: Work) -> None:
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

    def _write(self, work: Work, event: Event, performed: Any) -> None:
        request = WriteRequest(
            **self._identity(work),
            status=Status.SUCCEEDED,
            apply=partial(self.handler.apply, event=event, performed=performed),
            apply_batch=self.apply_batch if performed is None else None,
            item=event,
            processing_ms=int((time.monotonic() - work.started) * 1000),
            on_done=partial(self.written, work, performed),
        )
        self._hand_off(work, partial(self.writer.submit, request, work.lane))

    def _hand_off(self, work: Work, send: Callable[[], None]) -> None:
        """Pass the event on (writer or producer), then free its lane for the key's next event.

        The flag is cleared *before* sending: the completion may run on another thread before
        `send` even returns, and must not free the lane a second time. The lane is freed only
        *after* sending, so the key's next event cannot overtake this one in the writer."""
        taken, work.lane_taken = work.lane_taken, False
        try:
            send()
        finally:
            if taken:
                self.dispatcher.release(work.lane)

    def _release_lane(self, work: Work) -> None:
        if work.lane_taken:
            work.lane_taken = False
            self.dispatcher.release(work.lane)

    def database_unavailable(self, down: bool, held: int) -> None:
        """The writer holds `held` writes until the database answers (storage/writer.py)."""
        if not down:
            self._database_back()
            return
        self.telemetry.held(FailureKind.DATABASE_DOWN.value, held)
        if self.database_down_since is None:
            self.log.warning("database_unavailable_writes_held", held=held)
        self._database_down()

    def _database_down(self) -> None:
        """Mark the database down (the listener pauses fetching) and start probing it.

        The probe, not a later write, is what clears the mark: the event whose failure set it
        may never be written here (its partition moved to another consumer while it was held),
        and with every partition paused nothing else would come to clear it."""
        if self.database_down_since is not None:
            return
        self.database_down_since = time.monotonic()
        self.timers.call_later(DATABASE_PROBE_S, self._probe_database)

    def _probe_database(self) -> None:
        if self.database_down_since is None:
            return  # a write succeeded meanwhile
        if self.writer.database_answers():
            self._database_back()
        else:
            self.timers.call_later(DATABASE_PROBE_S, self._probe_database)

    def _database_back(self) -> None:
        if self.database_down_since is not None:
            self.database_down_since = None
            self.log.info("database_available_again")

    # -- writer / delivery threads ----------------------------------------------------------

    def written(self, work: Work, performed: Any, result: WriteResult | BaseException) -> None:
        if isinstance(result, BaseException):
            if classify(result) is FailureKind.DATABASE_DOWN:
                work.performed = performed  # the retry in place only writes
            self.fail(work, result)
            return
        self._database_back()
        outcome = "success" if result is WriteResult.APPLIED else "duplicate"
        if result is WriteResult.APPLIED:
            self.telemetry.succeeded_on(work.attempt)
        self.finish(work, outcome)

    def fail(self, work: Work, error: BaseException) -> None:
        tracing.record_error(work.span, error)
        kind = classify(error)
        decision = decide(
            kind, work.attempt, self.policy, now_ms=now_ms(), rng=self.rng, held_times=work.held
        )
        if isinstance(decision, HoldInPlace):
            self._hold(work, decision.delay_s, kind, error)
            return
        self._release_claim(work)
        if isinstance(decision, RetryTier):
            self._retry_later(work, error, kind, decision)
        else:
            self._route(work, error, kind, self.names.dlq, decision)

    def _retry_later(
        self, work: Work, error: BaseException, kind: FailureKind, decision: RetryTier
    ) -> None:
        """Route to the tier after the decision's jitter, with a due time of exactly the tier's
        delay from then.

        A tier's partition is read in offset order, so a record due later than the records
        produced after it would hold them back (head-of-line) by up to the jitter - 400 ms on
        retry-4s. Waiting out the jitter here instead keeps due times in offset order: the
        same spread of retries, and each runs on time (bench/retry_lateness.py).
        """
        jitter_s = max(0, decision.due_ms - now_ms() - decision.delay_ms) / 1000
        topic = self.names.retry(decision.delay_ms)

        def route() -> None:
            # Rounded up: a due time truncated to the millisecond let a retry run up to 1 ms
            # before its full tier delay (test_retry_tiers saw 0.9997 s for the 1 s tier).
            due_ms = math.ceil(time.time() * 1000) + decision.delay_ms
            on_time = RetryTier(decision.delay_ms, due_ms, decision.next_attempt)
            self._route(work, error, kind, topic, on_time)

        if jitter_s <= 0:
            route()
            return
        # The key's lane is freed now, as when routing at once: the retry is out of order anyway.
        self._hand_off(work, partial(self.timers.call_later, jitter_s, route))

    def _hold(self, work: Work, delay_s: float, kind: FailureKind, error: BaseException) -> None:
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
        work.held += 1
        if kind is FailureKind.DATABASE_DOWN:
            self._database_down()
        self.telemetry.held(kind.value)
        self.timers.call_later(
            delay_s, partial(self.dispatcher.resubmit, work.lane, partial(self.run, work))
        )

    def _route(
        self,
        work: Work,
        error: BaseException,
        kind: FailureKind,
        topic: str,
        decision: RetryTier | DeadLetter,
    ) -> None:
        first_failure = work.first_failure_ms or now_ms()
        failure = rh.Failure(
            error_class=type(error).__name__,
            message=str(error),
            stack="".join(traceback.format_exception(error)[-6:]),
            kind=kind.value,
        )
        retrying = isinstance(decision, RetryTier)
        headers = rh.build(
            source_headers=work.headers,
            origin=work.origin,
            group=self.group,
            attempt=decision.next_attempt if isinstance(decision, RetryTier) else work.attempt,
            first_failure_ms=first_failure,
            due_ms=decision.due_ms if isinstance(decision, RetryTier) else None,
            failure=failure,
            replay_count=work.replay_count,
            dlq_reason=None if retrying else decision.reason,  # type: ignore[union-attr]
        )
        status = (
            Status.RETRYING
            if retrying
            else (Status.INVALID if kind is FailureKind.INVALID else Status.DLQ)
        )
        error_text = f"{failure.error_class}: {failure.message}"[:2000]
        if kind is FailureKind.INVALID:
            self.log.error(
                "event_invalid",
                error=error_text,
                payload=self._bounded_payload(work),
                **work.log_fields(),
            )
        else:
            self.log.warning(
                "event_retrying" if retrying else "event_dead_lettered",
                to_topic=topic,
                error_kind=kind.value,
                error=error_text[:500],
                **work.log_fields(),
            )

        def not_routed(err: object) -> None:
            """Keep it in flight (its offset uncommitted) and try again later."""
            self.log.error("route_failed", to_topic=topic, error=str(err), **work.log_fields())
            self.telemetry.held("route_failed")
            work.held += 1
            self.timers.call_later(
                hold_delay_s(work.held, self.rng),
                partial(self._route, work, error, kind, topic, decision),
            )

        position: list[tuple[int, int, int]] = []  # where the copy landed, for the DLQ index

        def delivered(err: KafkaError | None) -> None:
            if err is not None:
                not_routed(err)
                return
            entry = None
            if not retrying and position:
                entry = pipeline_entry(
                    self.event_type, topic, position[-1], work.key, work.value, headers
                )
            self.record(work, status, error_text, dlq_entry=entry)

        def send() -> None:
            try:
                with tracing.hop(headers, topic, work.span):  # replaces the traceparent
                    self.producer.produce(
                        topic,
                        key=work.key,
                        value=work.value,
                        headers=headers,
                        on_delivery=delivered,
                        on_position=lambda *at: position.append(at),
                    )
            except Exception as exc:  # refused at once (queue full, too large): same as above
                not_routed(exc)

        self._hand_off(work, send)

    def record(
        self,
        work: Work,
        status: Status,
        error: str | None,
        dlq_entry: dict[str, Any] | None = None,
    ) -> None:
        """Write the event record of a non-success outcome (with a dead letter's DLQ index
        row, in the same transaction), then finish."""
        outcome = {
            Status.RETRYING: "retried",
            Status.DLQ: "dlq",
            Status.INVALID: "invalid",
            Status.DUPLICATE: "duplicate",
        }[status]

        def recorded(result: WriteResult | BaseException) -> None:
            if isinstance(result, BaseException):  # keep trying, do not lose it
                if classify(result) is not FailureKind.DATABASE_DOWN:
                    # The statement itself was refused: a silent retry would stall the
                    # partition for ever. Say so, and drop the DLQ index row (the index sync
                    # adds it from the topic later): the event record is what must be written.
                    self.log.error(
                        "record_write_failed", error=str(result)[:300], **work.log_fields()
                    )
                    request.dlq_entry = None
                work.held += 1
                self.timers.call_later(
                    hold_delay_s(work.held, self.rng),
                    partial(self.writer.submit, request, work.lane),
                )
                return
            self.finish(work, outcome)

        request = WriteRequest(
            **self._identity(work),
            status=status,
            last_error=pg_text(error) if error else None,
            processing_ms=int((time.monotonic() - work.started) * 1000),
            on_done=recorded,
            dlq_entry=dlq_entry,
        )
        self._hand_off(work, partial(self.writer.submit, request, work.lane))

    def finish(self, work: Work, outcome: str) -> None:
        elapsed = time.monotonic() - work.started
        self.telemetry.finished(outcome, elapsed)
        if outcome in ("success", "duplicate"):
            self.log.debug("event_processed", outcome=outcome, **work.log_fields())
        tracing.end(work.span, outcome)
        self.book.mark_done(work.tp, work.offset)
        self._release_lane(work)

    # -- helpers ----------------------------------------------------------------------------

    def _identity(self, work: Work) -> dict[str, Any]:
        return {
            "group": self.group,
            "origin_topic": work.origin.topic,
            "origin_partition": work.origin.partition,
            "origin_offset": work.origin.offset,
            "event_type": self.event_type,
            "event_id": work.event.event_id if work.event else None,
            "event_key": work.event.key if work.event else None,
            "attempts": work.attempt,
        }

    def _bounded_payload(self, work: Work) -> str:
        return redact_payload(work.value or b"", self.redact_fields, self.payload_log_bytes)
