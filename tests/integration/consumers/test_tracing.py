"""Tracing against the real broker: one event through two retry tiers, the DLQ and a replay
(the `qchem-events dlq replay` path) is one trace (common/tracing.py, README "Tracing")."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops import dlq_service
from retry_topics import headers as rh
from retry_topics.naming import topic_names
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import wait_for_scalar
from tests.support.handlers import FlakyReportHandler
from tests.support.kafka import produce_events, read_all, wait_for
from tests.support.tracing import traced

pytestmark = pytest.mark.integration

CONSUMER, PRODUCER = trace.SpanKind.CONSUMER, trace.SpanKind.PRODUCER


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with traced() as exporter:
        yield exporter


def trace_headers(message: Any) -> tuple[list[bytes], list[bytes]]:
    pairs = message.headers() or []
    return (
        [v for n, v in pairs if n.lower() == "traceparent"],
        [v for n, v in pairs if n.lower() == "tracestate"],
    )


def traceparent_of(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode()


def chain(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The spans of one trace, root first, each the parent of the next (asserted)."""
    by_parent = {s.parent.span_id if s.parent else None: s for s in spans}
    assert len(by_parent) == len(spans), "a span with two children: not one chain"
    ids = {s.get_span_context().span_id for s in spans}  # type: ignore[union-attr]
    first = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    assert len(first) == 1, [s.name for s in first]
    ordered = [first[0]]
    while len(ordered) < len(spans):
        ordered.append(by_parent[ordered[-1].get_span_context().span_id])
    return ordered


def test_two_retries_the_dlq_and_a_replay_are_one_trace(
    settings: Settings, db_engine: Engine, spans: InMemorySpanExporter
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",), "retries": 2})
    names = topic_names(settings, "Report")
    bootstrap = settings.kafka_bootstrap_servers
    # Attempt 1, retry-1s and retry-2s fail: the DLQ. The replay's attempt succeeds.
    handler = FlakyReportHandler(settings, failures=3)
    honoured, garbled = sample_events("Report", 2)
    trace_id, parent_id = random.getrandbits(128) | 1, random.getrandbits(64) | 1
    producers_own = f"00-{trace_id:032x}-{parent_id:016x}-01".encode()
    with running_app(settings, handlers={"Report": handler}):
        produce_events(
            bootstrap,
            names.main,
            [honoured],
            headers=[("traceparent", producers_own), ("tracestate", b"vendor=abc")],
        )
        # A hostile producer's traceparent: not UTF-8, the event processed all the same.
        produce_events(bootstrap, names.main, [garbled], headers=[("traceparent", b"\xff\x00z")])
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM event_records WHERE status='dlq'",
            2,
            timeout=60,
            message="both events in the DLQ after two retries",
        )
        dlq_service.sync(settings, db_engine, ["Report"])  # as `qchem-events dlq replay` does
        request = dlq_service.replay_request(settings, {"type": "Report", "rate": "100/s"})
        result = dlq_service.replay(settings, db_engine, request, actor="test", background=False)
        assert (result["replayed"], result["failed"]) == (2, 0), result
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM reports",
            2,
            timeout=60,
            message="both replayed events applied",
        )
        # process, send retry-1s, process, send retry-2s, process, send dlq, send (replay),
        # process - for each event.
        wait_for(lambda: len(spans.get_finished_spans()) == 16, timeout=30, message="16 spans")

    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans.get_finished_spans():
        by_trace.setdefault(span.get_span_context().trace_id, []).append(span)  # type: ignore[union-attr]
    assert len(by_trace) == 2, "each event's hops are one trace of their own"
    hops = {
        "traced": chain(by_trace.pop(trace_id)),  # the producer's own trace id, honoured
        "garbled": chain(next(iter(by_trace.values()))),
    }
    expected = [
        (CONSUMER, f"process {names.main}", "retried"),
        (PRODUCER, f"send {names.retry(1000)}", None),
        (CONSUMER, f"process {names.retry(1000)}", "retried"),
        (PRODUCER, f"send {names.retry(2000)}", None),
        (CONSUMER, f"process {names.retry(2000)}", "dlq"),
        (PRODUCER, f"send {names.dlq}", None),
        (PRODUCER, f"send {names.main}", None),  # the replay
        (CONSUMER, f"process {names.main}", "success"),
    ]
    for ordered in hops.values():
        assert [
            (s.kind, s.name, (s.attributes or {}).get("qchem.outcome")) for s in ordered
        ] == expected
    first = hops["traced"][0]
    assert first.parent is not None and first.parent.span_id == parent_id  # the producer's span
    assert first.get_span_context().trace_state.get("vendor") == "abc"  # type: ignore[union-attr]
    assert hops["garbled"][0].parent is None  # garbage: a new trace, not a failure

    # Each hop's record carries exactly one traceparent: its producer span's, not the stale one.
    senders = {
        event.event_id: [s for s in hops[label] if s.kind is PRODUCER]
        for label, event in (("traced", honoured), ("garbled", garbled))
    }
    for n, topic in enumerate((names.retry(1000), names.retry(2000), names.dlq)):
        records = read_all(bootstrap, topic)
        assert len(records) == 2
        for message in records:
            event_id = message.value().split(b'"event_id":"')[1][:36].decode()
            parents, states = trace_headers(message)
            assert parents == [traceparent_of(senders[event_id][n])], topic
            assert states == ([b"vendor=abc"] if event_id == honoured.event_id else [])
    replayed = [
        m
        for m in read_all(bootstrap, names.main)
        if rh.as_dict(m.headers()).get(rh.REPLAY_ID) == result["replay_id"].encode()
    ]
    assert len(replayed) == 2
    for message in replayed:
        event_id = message.value().split(b'"event_id":"')[1][:36].decode()
        assert trace_headers(message)[0] == [traceparent_of(senders[event_id][3])]
