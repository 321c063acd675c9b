"""OpenTelemetry tracing across the Kafka hops: optional, off by default, free when off.

One trace follows an event through every hop it takes:

    the producer's record --traceparent--> CONSUMER "process <main>"      (attempt 1)
      PRODUCER "send <main>.retry-1s" --traceparent--> CONSUMER "process <main>.retry-1s"
      PRODUCER "send <main>.dlq"      --traceparent--> (the dead letter waits)
      PRODUCER "send <main>" (replay) --traceparent--> CONSUMER "process <main>"

A consumer span's parent is the W3C `traceparent` of the record it processes: a producer's
own, or the previous hop's producer span. Every hop (retry tier, DLQ, replay, the DLQ
monitor's redrive) *replaces* `traceparent` and `tracestate` on the record it sends - never
a second copy: readers take the first one. A header that is missing, not printable ASCII,
longer than MAX_VALUE_BYTES or malformed starts a new trace; it never stops processing.

The switch: tracing is on only when the [otel] extra is installed, `OTEL_SDK_DISABLED` is
not `true` and `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`, ...). Unset or
`none` means off - unlike the SDK's own default (`otlp`). Everything else comes from the
standard OTEL_* variables, read by the SDK itself (see `configure_from_env`). Off, every
function below returns at its first line (`_tracer is None`): no span, context or header is
made, and the context managers are one shared `nullcontext`.

This module imports only the standard library and opentelemetry: common/ is the leaf.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import entry_points
from typing import Any, Protocol

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _W3C: Any = TraceContextTextMapPropagator()
except ImportError:  # the [otel] extra is not installed: tracing stays off
    trace = None  # type: ignore[assignment]
    _W3C = None

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})
MAX_VALUE_BYTES = 512  # a traceparent is 55; a longer tracestate is dropped, not parsed
SERVICE_NAME = "qchem-events"
# Outcomes (consumers/processing.py `finish`) that mark the consumer span as an error.
FAILED_OUTCOMES = frozenset({"retried", "dlq", "invalid", "crashed"})

Headers = list[tuple[str, bytes]]
HeaderPairs = Sequence[tuple[str, bytes | str | None]]

_tracer: Any = None  # the Tracer while tracing is on; None is "off"
_NOOP: AbstractContextManager[Any] = nullcontext()


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for something this installation cannot do (one line)."""


class Consumed(Protocol):
    """What a consumer span is made from (consumers/work.py `Work`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def headers(self) -> HeaderPairs | None: ...
    @property
    def event(self) -> Any: ...


# -- Kafka headers as a propagation carrier ----------------------------------------------------


def _text(value: bytes | str | None) -> list[str] | None:
    """A header value the propagator may parse: printable ASCII of bounded size, else None."""
    if value is None:
        return None
    data = value.encode("utf-8", "replace") if isinstance(value, str) else value
    if len(data) > MAX_VALUE_BYTES or not data.isascii():
        return None
    text = data.decode("ascii")
    return [text] if text.isprintable() else None


class HeaderGetter:
    """Reads a confluent-kafka header list: the *first* value of a name (compared without
    case, as HTTP does); bytes that are not printable ASCII read as absent."""

    def get(self, carrier: HeaderPairs, key: str) -> list[str] | None:
        for name, value in carrier:
            if isinstance(name, str) and name.lower() == key:
                return _text(value)
        return None

    def keys(self, carrier: HeaderPairs) -> list[str]:
        return [name for name, _value in carrier if isinstance(name, str)]


class HeaderSetter:
    """Appends to a header list; `replace_trace_headers` removes the old values first."""

    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier.append((key, value.encode("ascii", "replace")))


GETTER = HeaderGetter()
SETTER = HeaderSetter()


def without_trace_headers(headers: HeaderPairs) -> Headers:
    """The headers less every traceparent/tracestate (any case), values as bytes."""
    return [
        (name, value.encode() if isinstance(value, str) else (value or b""))
        for name, value in headers
        if not (isinstance(name, str) and name.lower() in TRACE_HEADERS)
    ]


def replace_trace_headers(headers: Headers, span: Any) -> None:
    """Put `span`'s context in `headers` (in place) instead of any trace headers there."""
    headers[:] = without_trace_headers(headers)
    _W3C.inject(headers, trace.set_span_in_context(span, Context()), SETTER)


def parent_context(headers: HeaderPairs | None) -> Any:
    """The remote parent the headers carry, or an empty context (a new trace)."""
    if not headers:
        return Context()
    try:
        return _W3C.extract(headers, Context(), GETTER)
    except Exception:  # whatever a hostile header does to the parser: a new trace
        log.debug("traceparent_unreadable", exc_info=True)
        return Context()


# -- spans ---------------------------------------------------------------------------------------


def enabled() -> bool:
    return _tracer is not None


def consume_span(record: Consumed, group: str) -> Any:
    """Start the CONSUMER span of one record's processing (ended by `end`); None when off."""
    if _tracer is None:
        return None
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.consumer.group.name": group,
        "qchem.attempt": record.attempt,
    }
    if record.event is not None:
        attributes["messaging.message.id"] = record.event.event_id
    return _tracer.start_span(
        f"process {record.topic}",
        context=parent_context(record.headers),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    )


def hop(headers: Headers, topic: str, parent: Any = None) -> AbstractContextManager[Any]:
    """A PRODUCER span around sending a record with `headers` to `topic`.

    Its parent is `parent` (the consumer span of the event being routed) or, without one,
    the context the headers carry (a dead letter being replayed). The headers' trace headers
    are replaced, in place, by the new span's before the caller sends them. The span ends
    when the `with` block does, with the error if one escapes it."""
    if _tracer is None:
        return _NOOP
    context = trace.set_span_in_context(parent, Context()) if parent else parent_context(headers)
    span = _tracer.start_span(
        f"send {topic}",
        context=context,
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
        },
    )
    replace_trace_headers(headers, span)
    return trace.use_span(span, end_on_exit=True)


def active(span: Any) -> AbstractContextManager[Any]:
    """Make `span` the current span of this thread for the `with` block (log lines, and the
    spans of anything instrumented, belong to it); it is not ended."""
    if span is None:
        return _NOOP
    return trace.use_span(span, record_exception=False, set_status_on_exception=False)


def record_error(span: Any, error: BaseException) -> None:
    if span is not None:
        span.record_exception(error)


def end(span: Any, outcome: str) -> None:
    if span is None:
        return
    span.set_attribute("qchem.outcome", outcome)
    if outcome in FAILED_OUTCOMES:
        span.set_status(trace.StatusCode.ERROR, outcome)
    span.end()


# -- logs ----------------------------------------------------------------------------------------


def log_ids(span: Any) -> dict[str, str]:
    context = span.get_span_context()
    return {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
    }


def add_trace_ids(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: trace_id and span_id of the current span, when there is one."""
    if _tracer is None or "trace_id" in event_dict:
        return event_dict
    span = trace.get_current_span()
    if span.get_span_context().is_valid:
        event_dict.update(log_ids(span))
    return event_dict


# -- switching on --------------------------------------------------------------------------------


def enable(provider: Any) -> None:
    """Trace with this TracerProvider (tests pass one with an in-memory exporter)."""
    global _tracer
    _tracer = provider.get_tracer(SERVICE_NAME)


def disable() -> None:
    global _tracer
    _tracer = None


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names; none when unset, `none` or OTEL_SDK_DISABLED."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = environ.get("OTEL_TRACES_EXPORTER", "").lower().split(",")
    return [name.strip() for name in raw if name.strip() not in ("", "none")]


def _exporter_class(name: str, environ: Mapping[str, str]) -> Any:
    """An exporter by its entry-point name; `otlp` is HTTP/protobuf unless the OTLP protocol
    variables say `grpc` (which needs opentelemetry-exporter-otlp-proto-grpc)."""
    if name == "otlp":
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        by_protocol = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
        if protocol not in by_protocol:
            raise TracingConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: expected http/protobuf or grpc"
            )
        name = by_protocol[protocol]
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed "
            "(otlp and console come with the [otel] extra)"
        )
    return next(iter(found)).load()


def configure_from_env(environ: Mapping[str, str] | None = None, *, set_global: bool = True) -> Any:
    """Switch tracing on as the OTEL_* variables say; the TracerProvider, or None when off.

    Explicit, not the SDK's auto-configuration: OTEL_TRACES_EXPORTER (comma-separated
    entry-point names), then the SDK and the exporters read the rest themselves -
    OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (service.name defaults to qchem-events),
    OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS,
    _TIMEOUT. Raises TracingConfigError for an exporter that cannot be had."""
    env = os.environ if environ is None else environ
    names = exporter_names(env)
    if not names:
        return None
    if trace is None:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={env.get('OTEL_TRACES_EXPORTER')} needs the [otel] extra: "
            "pip install 'qchem-events[otel]'"
        )
    from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE_KEY
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = [_exporter_class(name, env)() for name in names]
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_KEY, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_KEY: SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if set_global:
        trace.set_tracer_provider(provider)
    enable(provider)
    log.info("tracing on: exporters %s", ", ".join(names))
    return provider
