"""A listener: one consumer group reading one event type's main topic and retry tiers.

The poll loop, in prose: fetch a batch; turn each record into work (consumers/intake.py:
decoding it, checking its retry or replay headers); keep what is not due yet; hand the rest
to the pipeline, the batch at once; then pause or resume
partitions for the reasons that apply (too much in flight, a retry not yet due, a breaker
open); and commit what is safe to commit. Everything that touches the consumer happens on
this one thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from common.settings import GroupProtocol
from consumers.intake import Intake
from consumers.offsets import OffsetBook, TopicPartitionKey
from consumers.pausing import PauseBook
from consumers.processing import Pipeline
from consumers.schema_wait import SchemaWait
from consumers.work import Work, now_ms

log = structlog.get_logger(__name__)

BATCH_SIZE = 500
# Retry records fetched before their due time wait in memory, per partition, up to this many;
# then the partition is paused until half of them have been handed over.
MAX_NOT_DUE = 1000
# How long the loop waits for in-flight work to drain below MAX_IN_FLIGHT before it pauses
# the partitions. Pausing makes librdkafka drop what it has prefetched (refetched on resume),
# so a short wait is cheaper for the brief stalls of normal load; a longer stall (a slow
# database) still pauses, which keeps consume() and so rebalances going.
BACKPRESSURE_WAIT_S = 0.25
# Lag is exported every LAG_EXPORT_S from the poll thread; each broker query is bounded.
LAG_EXPORT_S = 5.0
LAG_QUERY_TIMEOUT_S = 2.0


def group_protocol_config(protocol: GroupProtocol) -> dict[str, Any]:
    """How the group shares partitions among instances.

    "consumer" (KIP-848, Kafka 4.0+): the broker assigns, incrementally, with its `range`
    assignor, which splits *each topic* evenly - so with three instances each holds a third
    of the main topic and the same partitions of every retry tier. Session timeout and
    heartbeat are then broker settings (group.consumer.session.timeout.ms; infra/kafka.sh).
    "classic" (older brokers): cooperative-sticky, also incremental, but it balances each
    member's total over main + retry tiers, so after a scale-up one instance may hold no
    main-topic partition (README "Running at scale").
    """
    if protocol == "consumer":
        return {"group.protocol": "consumer", "group.remote.assignor": "range"}
    return {
        "group.protocol": "classic",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
    }


def consumer_config(
    common: dict[str, Any], group: str, protocol: GroupProtocol = "consumer"
) -> dict[str, Any]:
    return {
        **common,
        **group_protocol_config(protocol),
        "group.id": group,
        "enable.auto.commit": False,  # offsets.py is the only committer
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": 300_000,
        # Bound librdkafka's prefetch so a backlog of millions does not become memory.
        "queued.max.messages.kbytes": 8_192,
        "fetch.wait.max.ms": 50,
    }


class Listener:
    def __init__(
        self,
        *,
        intake: Intake,
        pipeline: Pipeline,
        book: OffsetBook,
        kafka_config: dict[str, Any],
        max_in_flight: int,
        group_protocol: GroupProtocol = "consumer",
        commit_interval_s: float,
        revoke_wait_s: float = 10.0,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        # The intake (record -> Work) names the event type's topics and carries its telemetry.
        names = intake.names
        self.intake = intake
        self.names = names
        self.event_type = names.event_type
        self.pipeline = pipeline
        self.book = book  # shared with the pipeline, which marks what is done
        self.consumer = Consumer(consumer_config(kafka_config, names.group, group_protocol))
        self.telemetry = telemetry = intake.telemetry
        self.pauses = PauseBook(self.consumer, telemetry)
        self.max_in_flight = max_in_flight
        self.commit_interval_s = commit_interval_s
        self.revoke_wait_s = revoke_wait_s
        self.shutdown_timeout_s = shutdown_timeout_s
        # Retry records fetched before their due time, per partition, in offset order.
        self.not_due: dict[TopicPartitionKey, deque[Work]] = {}
        self.schema_wait = SchemaWait(self.pauses, self.event_type, telemetry)
        self.stopping = threading.Event()
        # When the poll loop last turned (time.monotonic()): /healthz sees a hung loop or a
        # stuck rebalance by its age (ops/health.py), not only a dead thread.
        self.last_turn = time.monotonic()
        self.log = log.bind(event_type=self.event_type, group=names.group)
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self.assigned = threading.Event()  # set once partitions are first assigned (tests)
        self._kafka_config = kafka_config
        self._listed_by_broker = False  # joined the group, perhaps with no partitions
        # Read on the poll thread: memberid() from another thread blocks while consume() runs.
        self._member_id: str | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        self.consumer.subscribe(
            self.names.consumed(),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.log.info("listener_started", topics=self.names.consumed())
        try:
            while not self.stopping.is_set():
                self.last_turn = time.monotonic()
                if self._member_id is None:  # KIP-848: known at once; classic: once joined
                    self._member_id = self.consumer.memberid()
                fetched: list[Work] = []  # handed to the pipeline together (accept_all)
                for message in self._fetch():
                    self._take(message, fetched)
                self.pipeline.accept_all(fetched)
                self._flow_control()
                self._commit(force=False)
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stopping.set()

    def _fetch(self) -> list[Message]:
        """Up to BATCH_SIZE records: what is already fetched, else wait for the first one.

        Not `consume(BATCH_SIZE, timeout)`, which waits the whole timeout for a full batch:
        under light load that added ~50 ms to every event's latency (bench/overhead.py)."""
        batch = self.consumer.consume(BATCH_SIZE, timeout=0)
        if not batch:
            batch = self.consumer.consume(1, timeout=self._poll_timeout())
            if batch:
                batch += self.consumer.consume(BATCH_SIZE - 1, timeout=0)
        return batch

    # -- one record -------------------------------------------------------------------------

    def _take(self, message: Message, ready: list[Work]) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                self.log.error("consume_error", error=str(error))
                if error.fatal():
                    raise KafkaException(error)
            return
        try:
            work = self.intake.work(message)
        except Exception as exc:
            # No record may stop the listener (it would stop on the same offset on every
            # restart): whatever went wrong reading this one, it goes to the DLQ as it is.
            self.log.exception("record_intake_failed", offset=message.offset())
            work = self.intake.bare(message, headers=None)
            work.rejected = exc
        if work.schema_pending or self.schema_wait.holding(work.tp):
            self.schema_wait.hold(work)  # until the Schema Registry answers, in offset order
            return
        self._hand_over(work, ready)

    def _hand_over(self, work: Work, ready: list[Work] | None = None) -> None:
        """To the pipeline (or to `ready`, which the loop hands over whole), unless not due."""
        tp = work.tp
        waiting = self.not_due.get(tp)
        if waiting is not None or (work.due_ms is not None and work.due_ms > now_ms()):
            # Not due yet: keep it (and everything after it on this partition, to keep the
            # order) until its due time. These records are not tracked, so no commit can pass
            # them; a rebalance just drops them and the next owner reads them again. The
            # partition keeps being fetched (a pause would make the records behind this one
            # a fetch round trip late when it resumes) until MAX_NOT_DUE records wait.
            if waiting is None:
                waiting = self.not_due[tp] = deque()
            waiting.append(work)
            if len(waiting) >= MAX_NOT_DUE:
                self.pauses.add([tp], "due")
            return
        if ready is None:
            self.pipeline.accept(work)
        else:
            ready.append(work)

    def _release_due(self) -> None:
        """Hand over the waiting retry records whose due time has come; resume when empty."""
        now = now_ms()
        for tp, waiting in list(self.not_due.items()):
            while waiting and (waiting[0].due_ms or 0) <= now:
                self.pipeline.accept(waiting.popleft())
            if len(waiting) <= MAX_NOT_DUE // 2:
                self.pauses.remove([tp], "due")
            if not waiting:
                del self.not_due[tp]

    # -- pausing and committing -------------------------------------------------------------

    def _flow_control(self) -> None:
        owned = self.book.owned()
        in_flight = self.book.in_flight()
        if in_flight >= self.max_in_flight:
            if not self.book.wait_below(self.max_in_flight, timeout=BACKPRESSURE_WAIT_S):
                self.pauses.add(owned, "backpressure")
        elif in_flight <= self.max_in_flight // 2:
            self.pauses.remove(owned, "backpressure")
        if self.pipeline.database_is_down():
            self.pauses.add(owned, "database")
        else:
            self.pauses.remove(owned, "database")
        if self.pipeline.breaker_open():
            self.pauses.add(owned, "breaker")
        else:
            self.pauses.remove(owned, "breaker")
        self.schema_wait.release(self.intake.decode, self._hand_over)
        self._release_due()

    def _poll_timeout(self) -> float:
        if not self.not_due:
            return 0.1
        until_due = (min(w[0].due_ms or 0 for w in self.not_due.values()) - now_ms()) / 1000
        return max(0.0, min(0.1, until_due))

    def _commit(self, *, force: bool, only: list[TopicPartitionKey] | None = None) -> None:
        if not force and time.monotonic() - self._last_commit < self.commit_interval_s:
            return
        self._last_commit = time.monotonic()
        offsets = self.book.to_commit()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if offsets:
            try:
                self.consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )
                self.book.committed(offsets)
            except KafkaException as exc:  # widens the redelivery window only; dedup covers it
                self.log.warning("commit_failed", error=str(exc))
        if time.monotonic() - self._last_lag > LAG_EXPORT_S:
            self._last_lag = time.monotonic()
            self._export_lag()

    def _export_lag(self) -> None:
        """Lag per owned partition: its end offset minus the group's committed offset.

        The committed offset is the one this listener last committed - the only committer of
        a partition it owns - or, before its first commit, the group's as the broker said at
        assignment; not the offset book's *moved* watermarks, which showed 0 for a consumer
        stuck after its last commit (so QchemNothingProcessed could never fire). The end
        offset is librdkafka's cached high watermark, updated by every fetch response: no
        broker round trip on the poll thread (a broker that is down would block the loop),
        at the price of an end offset as of the last fetch for a paused partition."""
        for (topic, partition), committed in self.book.committed_positions().items():
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            position = committed if committed is not None and committed >= 0 else low
            if high < 0 or position < 0:
                continue  # nothing fetched yet: unknown, not 0
            self.telemetry.lag(topic, partition, max(0, high - position))

    # -- readiness (asked from the HTTP thread) ----------------------------------------------

    def joined(self) -> bool:
        """Whether this listener is a member of its group: it was given partitions, or the
        broker lists it. With KIP-848 a member given no partitions (more instances than
        partitions) gets no rebalance callback at all, so only the broker can tell."""
        if self.assigned.is_set() or self._listed_by_broker:
            return True
        me = self._member_id
        if me is None:
            return False
        try:
            admin = AdminClient(self._kafka_config)
            (future,) = admin.describe_consumer_groups([self.names.group]).values()
            members = future.result(timeout=LAG_QUERY_TIMEOUT_S).members
        except (KafkaException, TimeoutError) as exc:
            self.log.info("group_membership_unknown", error=str(exc))
            return False
        self._listed_by_broker = any(m.member_id == me for m in members)
        return self._listed_by_broker

    # -- rebalance callbacks (run inside consume(), on this thread) ---------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        # Assign explicitly before pausing: a partition must be assigned to be paused.
        self.consumer.incremental_assign(partitions)
        self.book.assign(tps)
        self._learn_committed(partitions)
        self.pauses.assigned(tps)
        self.log.info("partitions_assigned", partitions=tps)
        self.assigned.set()

    def _learn_committed(self, partitions: list[TopicPartition]) -> None:
        """The group's committed offsets of newly assigned partitions, for the lag (one broker
        round trip per rebalance; without it the lag waits for this listener's first commit)."""
        try:
            known = self.consumer.committed(partitions, timeout=LAG_QUERY_TIMEOUT_S)
        except KafkaException as exc:
            self.log.warning("committed_offsets_unknown", error=str(exc))
            return
        self.book.committed({(p.topic, p.partition): p.offset for p in known if p.offset >= 0})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        finished = self.book.wait_idle(tps, timeout=self.revoke_wait_s)
        self._commit(force=True, only=tps)
        self._forget(tps)
        self.log.info("partitions_revoked", partitions=tps, all_finished=finished)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._forget(tps)  # another consumer owns them already: commit nothing
        self.log.warning("partitions_lost", partitions=tps)

    def _forget(self, tps: list[TopicPartitionKey]) -> None:
        self.book.revoke(tps)
        self.pauses.forget(tps)
        self.schema_wait.forget(tps)
        for tp in tps:
            self.not_due.pop(tp, None)
            # A partition we no longer own must not keep showing its old lag.
            self.telemetry.lag_gone(tp[0], tp[1])

    def _shutdown(self) -> None:
        """Stop fetching, finish in-flight work within the deadline, commit, close."""
        self.pauses.add(self.book.owned(), "shutdown")
        finished = self.book.wait_idle(self.book.owned(), timeout=self.shutdown_timeout_s)
        self._commit(force=True)
        self.consumer.close()
        self.log.info("listener_stopped", all_finished=finished)
