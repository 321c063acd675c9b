"""The pipeline's batched completions (`Pipeline.written_all`, issue 13), with stand-ins for
the writer, producer and timers: every success of the batch is marked done in one go, and a
failing completion for one event does not strand the others."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest

from common.settings import load_settings
from consumers.dispatch import KeyedDispatcher
from consumers.handlers import ReportHandler
from consumers.offsets import OffsetBook
from consumers.processing import Pipeline
from consumers.timers import Timers
from consumers.work import Work
from retry_topics import headers as rh
from retry_topics.hold import Hold
from retry_topics.naming import TopicNames
from retry_topics.policy import RetryPolicy
from retry_topics.router import DeliveryProducer
from storage.requests import Status, WriteRequest, WriteResult
from storage.writer import BatchWriter

NAMES = TopicNames(prefix="qchem", event_type="Report", retries=2)
SETTINGS = load_settings(kafka_bootstrap_servers="127.0.0.1:9", database_url="postgresql://x@y/z")
TP = (NAMES.main, 0)


class NoTimers:
    def call_later(self, delay_s: float, fn: Any) -> None:
        pass


def pipeline(book: OffsetBook) -> Pipeline:
    timers = cast(Timers, NoTimers())
    return Pipeline(
        event_type="Report",
        names=NAMES,
        handler=ReportHandler(SETTINGS),
        policy=RetryPolicy(retries=2),
        writer=cast(BatchWriter, object()),
        producer=cast(DeliveryProducer, object()),
        book=book,
        dispatcher=cast(KeyedDispatcher, object()),
        timers=timers,
        hold=Hold(timers, probe=lambda: True, names=NAMES, rng=random.Random(1)),
    )


def written(offset: int, result: WriteResult | BaseException) -> WriteRequest:
    work = Work(
        topic=TP[0],
        partition=0,
        offset=offset,
        key=b"k",
        value=b"{}",
        headers=[],
        origin=rh.Origin(TP[0], 0, offset, 0),
    )
    request = WriteRequest(
        group=NAMES.group,
        origin_topic=TP[0],
        origin_partition=0,
        origin_offset=offset,
        event_type="Report",
        status=Status.SUCCEEDED,
        on_done=lambda _result: None,
        context=(work, None),
    )
    request.result = result
    return request


def test_the_successes_of_a_batch_are_marked_done_together() -> None:
    book = OffsetBook()
    book.assign([TP])
    book.track_all([(TP, 0), (TP, 1), (TP, 2)])
    pipeline(book).written_all(
        [
            written(0, WriteResult.APPLIED),
            written(1, WriteResult.DUPLICATE),
            written(2, WriteResult.APPLIED),
        ]
    )
    assert book.to_commit() == {TP: 3}
    assert book.in_flight() == 0


def test_a_failing_completion_does_not_strand_the_rest_of_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    book = OffsetBook()
    book.assign([TP])
    book.track_all([(TP, 0), (TP, 1)])
    p = pipeline(book)

    def broken(*_args: Any) -> None:
        raise RuntimeError("a bug in the failure path")

    monkeypatch.setattr(p, "written", broken)
    p.written_all([written(0, RuntimeError("write failed")), written(1, WriteResult.APPLIED)])
    assert book.in_flight() == 1  # offset 1 done; offset 0 stays in flight (never skipped)
    assert book.to_commit() == {TP: 0}
