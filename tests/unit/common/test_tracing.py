"""common/tracing.py: the Kafka header carrier, replaced trace headers, hostile values, the
no-op when off, log ids and the OTEL_* switch."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import tracing
from consumers.work import Work
from retry_topics import headers as rh
from tests.support.tracing import traced

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01".encode()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with traced() as exporter:
        yield exporter


def work(headers: list[tuple[str, bytes]] | None, topic: str = "qchem.report") -> Work:
    return Work(
        topic=topic,
        partition=2,
        offset=41,
        key=b"k",
        value=b"{}",
        headers=headers,
        origin=rh.Origin(topic, 2, 41, 0),
    )


def named(headers: list[tuple[str, bytes]], name: str) -> list[bytes]:
    return [value for n, value in headers if n.lower() == name]


# -- off: nothing made, nothing changed ------------------------------------------------------


def test_off_by_default_every_call_is_a_no_op() -> None:
    assert not tracing.enabled()
    headers = [("content-type", b"application/json"), ("traceparent", TRACEPARENT)]
    record = work(list(headers))
    assert tracing.consume_span(record, "g") is None
    with tracing.hop(record.headers or [], "qchem.report.retry-1s", None) as span:
        assert span is None
    assert record.headers == headers  # the producer's traceparent travels on untouched
    assert tracing.hop([], "t") is tracing.hop([], "u") is tracing.active(None)  # one shared
    tracing.record_error(None, RuntimeError("x"))
    tracing.end(None, "dlq")
    assert tracing.add_trace_ids(None, "info", {"event": "e"}) == {"event": "e"}
    assert "trace_id" not in record.log_fields()


def test_off_costs_no_allocation_per_event() -> None:
    record = work([("traceparent", TRACEPARENT)])
    headers = record.headers or []

    def one_event() -> None:
        record.span = tracing.consume_span(record, "g")
        with tracing.active(record.span), tracing.hop(headers, "t", record.span):
            tracing.record_error(record.span, ValueError())
        tracing.end(record.span, "success")

    one_event()  # warm up: caches, interned names
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(1_000):
            one_event()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The ValueError is the test's own (freed at once); a span, context or header list per
    # event would be hundreds of bytes each, a thousand times.
    assert peak - before < 2_000


def test_configuration_leaves_tracing_off_unless_an_exporter_is_named() -> None:
    for environ in (
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": " "},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},  # endpoint alone: still off
    ):
        assert tracing.configure_from_env(environ, set_global=False) is None, environ
        assert not tracing.enabled()


def test_a_named_exporter_switches_tracing_on() -> None:
    provider = tracing.configure_from_env(
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        set_global=False,
    )
    try:
        assert tracing.enabled()
        assert provider.resource.attributes["service.name"] == "qchem-events"
        processors = provider._active_span_processor._span_processors
        exporter = processors[0]._batch_processor._exporter
        assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    finally:
        tracing.disable()
        provider.shutdown()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger-thrift"}, "no trace exporter 'jaeger-thrift'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "expected http/protobuf or grpc",
        ),
    ],
)
def test_an_exporter_that_cannot_be_had_is_a_configuration_error(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(tracing.TracingConfigError, match=message):
        tracing.configure_from_env(environ, set_global=False)
    assert not tracing.enabled()


def test_without_the_extra_an_exporter_asked_for_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "trace", None)  # as if opentelemetry were not installed
    assert tracing.configure_from_env({}, set_global=False) is None
    with pytest.raises(tracing.TracingConfigError, match=r"\[otel\] extra"):
        tracing.configure_from_env({"OTEL_TRACES_EXPORTER": "otlp"}, set_global=False)


# -- the carrier ---------------------------------------------------------------------------------


def test_the_getter_reads_the_first_value_and_refuses_what_is_not_printable_ascii() -> None:
    getter = tracing.GETTER
    headers: list[tuple[str, Any]] = [
        ("TraceParent", b"first"),
        ("traceparent", b"second"),
        ("tracestate", "a=1"),
        ("x", None),
    ]
    assert getter.get(headers, "traceparent") == ["first"]
    assert getter.get(headers, "tracestate") == ["a=1"]
    assert getter.get(headers, "baggage") is None
    assert getter.keys(headers) == ["TraceParent", "traceparent", "tracestate", "x"]
    for bad in (b"\xff\xfe00-ab", "00-\u00e9", b"00-\x00-01", b"0" * 513, None):
        assert getter.get([("traceparent", bad)], "traceparent") is None


def test_a_producers_traceparent_is_the_consumer_spans_parent(
    spans: InMemorySpanExporter,
) -> None:
    record = work([("traceparent", TRACEPARENT), ("tracestate", b"vendor=abc")])
    span = tracing.consume_span(record, "qchem-events.report")
    tracing.end(span, "success")
    (done,) = spans.get_finished_spans()
    assert done.kind is trace.SpanKind.CONSUMER and done.name == "process qchem.report"
    assert done.context.trace_id == TRACE_ID
    assert done.parent is not None and done.parent.span_id == SPAN_ID and done.parent.is_remote
    assert done.context.trace_state.get("vendor") == "abc"
    assert done.attributes is not None
    assert done.attributes["messaging.kafka.offset"] == 41
    assert done.attributes["qchem.outcome"] == "success"


def test_a_hop_replaces_every_trace_header_with_its_own(spans: InMemorySpanExporter) -> None:
    consumed = tracing.consume_span(work([("traceparent", TRACEPARENT)]), "g")
    headers = [
        ("content-type", b"application/json"),
        ("traceparent", TRACEPARENT),
        ("TRACEPARENT", b"00-stale"),
        ("tracestate", b"old=1"),
        (rh.ATTEMPT, b"2"),
    ]
    with tracing.hop(headers, "qchem.report.retry-1s", consumed) as producer_span:
        pass
    tracing.end(consumed, "retried")
    context = producer_span.get_span_context()
    assert named(headers, "traceparent") == [
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode()
    ]
    assert named(headers, "tracestate") == []  # the producer sent none: none is carried
    assert [n for n, _ in headers][:2] == ["content-type", rh.ATTEMPT]  # the rest kept, in order
    hop_span, consumer_span = spans.get_finished_spans()
    assert hop_span.kind is trace.SpanKind.PRODUCER
    assert hop_span.parent is not None and hop_span.parent.span_id == consumer_span.context.span_id
    assert hop_span.context.trace_id == consumer_span.context.trace_id == TRACE_ID
    assert consumer_span.status.status_code is trace.StatusCode.ERROR


def test_a_replay_hop_continues_the_trace_its_dead_letter_carries(
    spans: InMemorySpanExporter,
) -> None:
    headers = [("traceparent", TRACEPARENT), ("tracestate", b"vendor=abc")]
    with tracing.hop(headers, "qchem.report"):
        pass
    (replay,) = spans.get_finished_spans()
    assert replay.context.trace_id == TRACE_ID
    assert replay.parent is not None and replay.parent.span_id == SPAN_ID
    assert named(headers, "tracestate") == [b"vendor=abc"]
    assert len(named(headers, "traceparent")) == 1


def test_an_error_escaping_a_hop_is_recorded_on_its_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(BufferError), tracing.hop([], "t"):
        raise BufferError("queue full")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.events[0].name == "exception"


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["traceparent", "tracestate", "TraceParent", "x-other"]),
            st.one_of(
                st.binary(max_size=600),
                st.sampled_from(
                    [
                        b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01",
                        b"ff-" + TRACEPARENT[3:],
                        TRACEPARENT + b"-extra",
                        TRACEPARENT.upper(),
                        b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-zz",
                        b"\xff" * 55,
                        b"vendor=" + b"x" * 600,
                        b"a=1,,b=\xff,=",
                    ]
                ),
            ),
        ),
        max_size=6,
    )
)
def test_hostile_trace_headers_never_raise_and_leave_one_traceparent(
    headers: list[tuple[str, bytes]],
) -> None:
    with traced():
        span = tracing.consume_span(work(list(headers)), "g")
        assert span is not None and span.get_span_context().is_valid
        out = list(headers)
        with tracing.hop(out, "t.retry-1s", span):
            pass
        tracing.end(span, "retried")
    assert len(named(out, "traceparent")) == 1
    assert [h for h in out if h[0].lower() not in tracing.TRACE_HEADERS] == [
        h for h in headers if h[0].lower() not in tracing.TRACE_HEADERS
    ]


def test_garbage_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    for garbage in (b"\xff\xfe\x00garbage", b"00-xyz", TRACEPARENT[:-1]):
        span = tracing.consume_span(work([("traceparent", garbage)]), "g")
        tracing.end(span, "success")
    roots = spans.get_finished_spans()
    assert len(roots) == 3 and all(s.parent is None for s in roots)
    assert len({s.context.trace_id for s in roots}) == 3


# -- logs ----------------------------------------------------------------------------------------


def test_log_lines_carry_the_ids_of_the_current_span(spans: InMemorySpanExporter) -> None:
    record = work([("traceparent", TRACEPARENT)])
    record.span = tracing.consume_span(record, "g")
    assert tracing.add_trace_ids(None, "info", {}) == {}  # no span current
    ids = {"trace_id": f"{TRACE_ID:032x}", "span_id": f"{record.span.context.span_id:016x}"}
    with tracing.active(record.span):
        assert tracing.add_trace_ids(None, "info", {"event": "e"}) == {"event": "e", **ids}
    assert record.log_fields() | ids == record.log_fields()  # off the span's thread too
    tracing.end(record.span, "success")


def test_a_crashed_event_job_ends_its_span_with_the_error(spans: InMemorySpanExporter) -> None:
    from types import SimpleNamespace

    import structlog

    from consumers.processing import Pipeline

    def crash(_work: Work) -> None:
        raise RuntimeError("bug in a handler")

    record = work([("traceparent", TRACEPARENT)])
    record.span = tracing.consume_span(record, "g")
    stub = SimpleNamespace(_run=crash, log=structlog.get_logger())
    with pytest.raises(RuntimeError):
        Pipeline.run(stub, record)  # type: ignore[arg-type]
    (done,) = spans.get_finished_spans()
    assert done.attributes is not None and done.attributes["qchem.outcome"] == "crashed"
    assert done.status.status_code is trace.StatusCode.ERROR
    assert [e.name for e in done.events] == ["exception"]
