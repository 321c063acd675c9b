"""The failure path (retry_topics/failure.py) with stand-ins for the timers, the writer and
the producer: hold in place, dead-letter, record - and the one hold's count and backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import exc as sa_exc

from common.errors import PermanentError
from retry_topics import headers as rh
from retry_topics.failure import FailurePath
from retry_topics.hold import DATABASE_PROBE_S, Hold
from retry_topics.naming import TopicNames
from retry_topics.policy import RetryPolicy, hold_delay_s
from retry_topics.router import DeliveryProducer
from storage.requests import Status, WriteRequest, WriteResult
from storage.writer import BatchWriter

NAMES = TopicNames(prefix="qchem", event_type="Email", retries=2)
DATABASE_GONE = sa_exc.OperationalError("SELECT 1", {}, Exception("server closed"))


@dataclass
class Record:
    """A record in flight as the failure path sees it (consumers/work.py's Work in the app)."""

    key: bytes | None = b"k"
    value: bytes | None = b"{}"
    headers: list[tuple[str, bytes]] | None = None
    origin: rh.Origin = field(default_factory=lambda: rh.Origin(NAMES.main, 0, 7, 0))
    event: Any = None
    attempt: int = 1
    first_failure_ms: int | None = None
    replay_count: int = 0
    held: int = 0
    claimed: bool = False
    started: float = field(default_factory=time.monotonic)
    span: Any = None

    @property
    def lane(self) -> Hashable:
        return "lane"

    def log_fields(self) -> dict[str, Any]:
        return {"offset": self.origin.offset}


class Later:
    def __init__(self) -> None:
        self.calls: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.calls.append((delay_s, fn))

    def run_next(self) -> None:
        self.calls.pop(0)[1]()


class Writer:
    def __init__(self) -> None:
        self.submitted: list[WriteRequest] = []

    def submit(self, request: WriteRequest, lane: Hashable | None = None) -> None:
        self.submitted.append(request)


class Producer:
    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.sent: list[tuple[str, list[tuple[str, bytes]]]] = []

    def produce(self, topic: str, *, headers: Any, on_delivery: Any, **kw: Any) -> None:
        self.sent.append((topic, headers))
        if self.refuse:
            self.refuse -= 1
            on_delivery("broker says no")
            return
        kw["on_position"](0, 12, 1_000)
        on_delivery(None)


class Setup:
    def __init__(self, producer: Producer | None = None, probe: bool = False) -> None:
        self.later, self.writer = Later(), Writer()
        self.producer = producer or Producer()
        self.hold = Hold(self.later, probe=lambda: probe, names=NAMES, rng=random.Random(1))
        self.reruns: list[Record] = []
        self.finished: list[tuple[Record, str]] = []
        self.path: FailurePath[Record] = FailurePath(
            names=NAMES,
            policy=RetryPolicy(retries=2),
            writer=cast(BatchWriter, self.writer),
            producer=cast(DeliveryProducer, self.producer),
            hold=self.hold,
            later=self.later,
            rerun=self.reruns.append,
            hand_off=lambda _work, send: send(),
            finish=lambda work, outcome: self.finished.append((work, outcome)),
        )


def test_a_hold_counts_the_record_and_waits_the_capped_backoff() -> None:
    later = Later()
    hold = Hold(later, probe=lambda: True, names=NAMES, rng=random.Random(7))
    record = Record()
    hold.again(record, lambda: None)
    hold.again(record, lambda: None, delay_s=0.5)
    assert record.held == 2
    assert later.calls[0][0] == hold_delay_s(1, random.Random(7))
    assert later.calls[1][0] == 0.5
    assert all(0.125 <= hold.delay_s(n) <= 10 for n in range(40))  # the writer's backoff too


def test_the_writers_report_marks_the_database_down_until_the_probe_answers() -> None:
    answers = [False, True]
    later = Later()
    hold = Hold(later, probe=lambda: answers.pop(0), names=NAMES)
    hold.writes_held(True, 3)
    assert hold.database_down_since is not None
    assert [delay for delay, _ in later.calls] == [DATABASE_PROBE_S]
    later.run_next()  # no answer: probe again
    assert hold.database_down_since is not None and len(later.calls) == 1
    later.run_next()
    assert hold.database_down_since is None
    hold.writes_held(True, 1)
    hold.writes_held(False, 0)  # the writer wrote what it held
    assert hold.database_down_since is None


def test_a_database_outage_holds_the_record_in_place_with_no_attempt_used() -> None:
    s = Setup()
    record = Record()
    s.path.fail(record, DATABASE_GONE)
    assert (record.held, record.attempt) == (1, 1)
    assert s.hold.database_down_since is not None
    assert s.producer.sent == [] and s.writer.submitted == []
    rerun = next(fn for delay, fn in s.later.calls if delay != DATABASE_PROBE_S)
    rerun()
    assert s.reruns == [record]


def test_a_permanent_failure_is_dead_lettered_recorded_then_finished() -> None:
    s = Setup()
    record = Record()
    s.path.fail(record, PermanentError("HTTP 404"))
    ((topic, headers),) = s.producer.sent
    assert topic == NAMES.dlq
    assert rh.as_dict(headers)[rh.DLQ_REASON] == b"permanent"
    (request,) = s.writer.submitted
    assert request.status is Status.DLQ
    assert request.last_error is not None and "HTTP 404" in request.last_error
    request.on_done(WriteResult.RECORDED)
    assert s.finished == [(record, "dlq")]


def test_a_copy_the_broker_refused_is_held_then_routed_again() -> None:
    s = Setup(producer=Producer(refuse=1))
    record = Record()
    s.path.fail(record, PermanentError("HTTP 404"))
    assert record.held == 1 and s.writer.submitted == []
    s.later.run_next()
    assert [topic for topic, _ in s.producer.sent] == [NAMES.dlq, NAMES.dlq]
    assert len(s.writer.submitted) == 1


def test_an_outcome_the_database_refused_is_submitted_again_without_its_index_row() -> None:
    s = Setup()
    record = Record()
    s.path.record(record, Status.DLQ, "E: x", dlq_entry={"offset": 12})
    (request,) = s.writer.submitted
    request.on_done(sa_exc.IntegrityError("INSERT", {}, Exception("bad row")))
    assert request.dlq_entry is None and record.held == 1
    s.later.run_next()
    assert s.writer.submitted == [request, request]
    request.on_done(WriteResult.RECORDED)
    assert s.finished == [(record, "dlq")]
