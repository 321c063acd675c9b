"""What happens to one record, from the poll loop's hand-off to its durable outcome.

    accept (poll thread) -> run (worker) -> write (writer thread) -> finish
                                 \\-> fail -> retry tier | DLQ | hold in place -> finish

Every record ends in `finish`, which marks its offset done - only once its outcome is durable
(offsets.py rule 2). Nothing here touches the consumer. What happens after a failure -
classify, decide, hold in place or route to a retry tier or the DLQ, record the outcome - is
the failure path's (retry_topics/failure.py), which this pipeline builds with its lanes.

Per-key order (ADR-002): a key's lane is busy while its event is on a worker, and is freed as
soon as the event is handed on - to the writer (whose per-key queues apply one key's writes
in submission order, storage/writer.py) or to the producer (a retry tier or the DLQ). So a
key's next event waits for the previous one's *processing*, not for its commit: the commit
latency is shared by the batch instead of paid per key. A handler whose `perform` is
`nothing_outside_the_database` has nothing to run on a worker at all: its events go from the
poll thread straight to the writer (the hot path of ChemicalStatus and Report).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog

from common import tracing
from common.telemetry import NULL_EVENT_TELEMETRY, EventTelemetry
from consumers.breakers import DependencyGuard
from consumers.dispatch import KeyedDispatcher
from consumers.handlers.base import Handler, nothing_outside_the_database, set_based_apply
from consumers.offsets import OffsetBook
from consumers.timers import Timers
from consumers.work import NOT_PERFORMED, Work, now_ms
from retry_topics.failure import FailurePath
from retry_topics.hold import Hold
from retry_topics.naming import TopicNames
from retry_topics.policy import FailureKind, RetryPolicy, classify
from retry_topics.router import DeliveryProducer
from schemas.events import Event
from storage.claims import Claim, EffectBusy
from storage.requests import Status, WriteRequest, WriteResult
from storage.writer import BatchWriter

log = structlog.get_logger(__name__)


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
        hold: Hold,
        guard: DependencyGuard | None = None,
        payload_log_bytes: int = 2048,
        redact_fields: tuple[str, ...] = ("password", "token", "secret"),
        telemetry: EventTelemetry = NULL_EVENT_TELEMETRY,
    ) -> None:
        self.event_type = event_type
        self.group = names.group
        self.handler = handler
        self.policy = policy
        self.writer = writer
        self.book = book
        self.dispatcher = dispatcher
        self.hold = hold  # shared with the writer: the database's down mark (runtime.py)
        self.guard = guard
        self.log = log.bind(event_type=event_type, group=self.group)
        # Whether "event_processed" debug lines are written: their fields are built per
        # event, so not at all when the level is above DEBUG.
        is_enabled_for = getattr(self.log, "is_enabled_for", None)
        self._debug = is_enabled_for is None or bool(is_enabled_for(logging.DEBUG))
        self.failures: FailurePath[Work] = FailurePath(
            names=names,
            policy=policy,
            writer=writer,
            producer=producer,
            hold=hold,
            later=timers,
            rerun=self._rerun,
            hand_off=self._hand_off,
            finish=self.finish,
            payload_log_bytes=payload_log_bytes,
            redact_fields=redact_fields,
            telemetry=telemetry,
        )
        # Reported through the interface given at start-up (common/telemetry.py): the
        # runtime does not know how it is measured.
        self.telemetry = telemetry
        # Nothing to do outside the database: no worker hand-off (see the module docstring).
        self.inline = getattr(type(handler), "perform", None) is nothing_outside_the_database
        # Set-based effects (BatchHandler) for what performs nothing outside the database.
        self.apply_batch = set_based_apply(handler)

    # -- poll thread ------------------------------------------------------------------------

    def accept(self, work: Work) -> None:
        self.accept_all([work])

    def accept_all(self, works: list[Work]) -> None:
        """A fetched batch, in offset order: tracked and counted once (one lock, one metric
        update - per event they were ~8% of the poll thread), then each run or dispatched."""
        if not works:
            return
        self.book.track_all([(work.tp, work.offset) for work in works])
        self.telemetry.accepted(len(works))
        for work in works:
            work.span = tracing.consume_span(work, self.group)
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
            self.failures.fail(work, work.rejected)
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
                self.failures.record(work, Status.DUPLICATE, None)
                return
            if self.guard is not None:
                performed = self.guard.call(self.handler.perform, event)
            else:
                performed = self.handler.perform(event)
        except Exception as exc:
            self.failures.fail(work, exc)
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

    def _write(self, work: Work, event: Event, performed: Any) -> None:
        # Built field by field (no dict of the identity, no closure): this runs per event.
        origin = work.origin
        request = WriteRequest(
            group=self.group,
            origin_topic=origin.topic,
            origin_partition=origin.partition,
            origin_offset=origin.offset,
            event_type=self.event_type,
            status=Status.SUCCEEDED,
            event_id=event.event_id,
            event_key=event.key,
            attempts=work.attempt,
            apply=self.handler.apply,
            performed=performed,
            apply_batch=self.apply_batch if performed is None else None,
            item=event,
            processing_ms=int((time.monotonic() - work.started) * 1000),
            on_done_all=self.written_all,
            context=(work, performed),
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

    def _rerun(self, work: Work) -> None:
        """Run a held event again, on its key's lane (the failure path's hold)."""
        self.dispatcher.resubmit(work.lane, partial(self.run, work))

    # -- writer / delivery threads ----------------------------------------------------------

    def written(self, work: Work, performed: Any, result: WriteResult | BaseException) -> None:
        if isinstance(result, BaseException):
            if classify(result) is FailureKind.DATABASE_DOWN:
                work.performed = performed  # the retry in place only writes
            self.failures.fail(work, result)
            return
        self.hold.database_back()
        outcome = "success" if result is WriteResult.APPLIED else "duplicate"
        if result is WriteResult.APPLIED:
            self.telemetry.succeeded_on(work.attempt)
        self.finish(work, outcome)

    def written_all(self, requests: list[WriteRequest]) -> None:
        """`written` for a transaction's successes at once: the outcomes counted and the
        offsets marked done per batch, not per event; a failed write goes the usual way."""
        done: list[tuple[Work, str]] = []
        for request in requests:
            work, performed = request.context
            if isinstance(request.result, BaseException):
                try:  # as the writer guards each `on_done`: one bug must not strand the rest
                    self.written(work, performed, request.result)
                except Exception:
                    self.log.exception("write_callback_failed", **work.log_fields())
            else:
                applied = request.result is WriteResult.APPLIED
                done.append((work, "success" if applied else "duplicate"))
        if not done:
            return
        self.hold.database_back()
        now = time.monotonic()
        self.telemetry.finished_all(
            [(outcome, work.attempt, now - work.started) for work, outcome in done]
        )
        for work, outcome in done:
            if self._debug:
                self.log.debug("event_processed", outcome=outcome, **work.log_fields())
            tracing.end(work.span, outcome)
            self._release_lane(work)
        self.book.mark_done_all([(work.tp, work.offset) for work, _ in done])

    def finish(self, work: Work, outcome: str) -> None:
        elapsed = time.monotonic() - work.started
        self.telemetry.finished(outcome, elapsed)
        if self._debug and outcome in ("success", "duplicate"):
            self.log.debug("event_processed", outcome=outcome, **work.log_fields())
        tracing.end(work.span, outcome)
        self.book.mark_done(work.tp, work.offset)
        self._release_lane(work)

    # -- helpers ----------------------------------------------------------------------------

    # -- asked by the listener (poll thread) --------------------------------------------------

    def database_is_down(self) -> bool:
        """Nothing can be recorded now: the listener stops fetching."""
        return self.hold.database_down_since is not None

    @property
    def database_down_since(self) -> float | None:
        """Since when (time.monotonic()) the database is marked down; None while it answers."""
        return self.hold.database_down_since

    def breaker_open(self) -> bool:
        """The handler's dependency is unreachable: its events would only be held."""
        return self.guard is not None and self.guard.is_open()

    def max_attempt(self) -> int:
        """The highest attempt a retry record of this event type can carry."""
        return self.policy.retries + 1
