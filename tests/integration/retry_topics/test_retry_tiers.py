"""Retry tiers against the real broker: attempts, due times, lateness, rebalances, headers."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.app import App
from retry_topics import headers as rh
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import scalar, wait_for_scalar
from tests.support.handlers import FlakyReportHandler
from tests.support.hostile import RETRY_HEADER_NAMES
from tests.support.kafka import produce_events, produce_raw, read_all, wait_for

pytestmark = pytest.mark.integration


def _due_by_event(records: list[Any]) -> dict[str, int]:
    result = {}
    for message in records:
        h = rh.as_dict(message.headers())
        event_id = message.value().split(b'"event_id":"')[1][:36].decode()
        result[event_id] = int(h[rh.DUE])
    return result


def run_flaky(
    settings: Settings, db_engine: Engine, failures: int, count: int, until: str
) -> tuple[FlakyReportHandler, list[Event], str]:
    """`count` Reports through a handler failing each `failures` times, until the query
    `until` counts `count`: (the handler, the events, the main topic)."""
    settings = settings.model_copy(update={"event_types": ("Report",)})
    handler = FlakyReportHandler(settings, failures=failures)
    events = sample_events("Report", count)
    main = f"{settings.topic_prefix}.report"
    with running_app(settings, handlers={"Report": handler}):
        produce_events(settings.kafka_bootstrap_servers, main, events)
        wait_for_scalar(db_engine, until, count, timeout=60, message=f"{count}: {until}")
    return handler, events, main


def test_failing_twice_then_succeeding_goes_through_retry_1s_and_2s(
    settings: Settings, db_engine: Engine
) -> None:
    handler, events, main = run_flaky(settings, db_engine, 2, 20, "SELECT count(*) FROM reports")
    with db_engine.connect() as conn:
        rows = conn.execute(text("SELECT status, attempts FROM event_records")).all()
    assert sorted(set(rows)) == [("succeeded", 3)]
    bootstrap = settings.kafka_bootstrap_servers
    due1 = _due_by_event(read_all(bootstrap, f"{main}.retry-1s"))
    due2 = _due_by_event(read_all(bootstrap, f"{main}.retry-2s"))
    assert set(due1) == set(due2) == {e.event_id for e in events}
    assert read_all(bootstrap, f"{main}.retry-4s", timeout=2) == []
    assert read_all(bootstrap, f"{main}.dlq", timeout=2) == []
    lateness = {"retry-1s": [], "retry-2s": []}  # type: dict[str, list[float]]
    for event in events:
        first, second, third = handler.calls[event.event_id]
        assert second * 1000 >= due1[event.event_id] - 5, "processed before its due time"
        assert third * 1000 >= due2[event.event_id] - 5, "processed before its due time"
        assert 1.0 <= second - first <= 1.1 + 0.5  # 1 s tier + up to 10% jitter + lateness
        lateness["retry-1s"].append(second * 1000 - due1[event.event_id])
        lateness["retry-2s"].append(third * 1000 - due2[event.event_id])
    for tier, values in lateness.items():
        print(
            f"\n{tier} lateness ms: median {statistics.median(values):.1f} "
            f"max {max(values):.1f} (n={len(values)})"
        )
        assert max(values) < 250, f"{tier} lateness over 250 ms: {max(values):.0f}"


def test_exhausted_retries_reach_the_dlq_with_their_history(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"retries": 1})
    dead = "SELECT count(*) FROM event_records WHERE status='dlq'"
    handler, _events, main = run_flaky(settings, db_engine, 99, 5, dead)
    dlq = read_all(settings.kafka_bootstrap_servers, f"{main}.dlq")
    assert len(dlq) == 5
    for message in dlq:
        h = rh.as_dict(message.headers())
        assert h[rh.ATTEMPT] == b"2" and h[rh.DLQ_REASON] == b"exhausted"
        assert h[rh.ORIGIN_TOPIC] == main.encode()
        assert h[rh.ERROR_CLASS] == b"TransientError"
        assert b"simulated timeout" in h[rh.ERROR_MESSAGE]
        assert int(h[rh.FIRST_FAILURE]) > 0
    assert all(len(calls) == 2 for calls in handler.calls.values())
    assert scalar(db_engine, "SELECT count(*) FROM reports") == 0


def test_a_rebalance_while_records_wait_in_a_tier_loses_none_and_runs_none_early(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    handler = FlakyReportHandler(settings, failures=3)  # waits in retry-4s
    events = sample_events("Report", 30)
    main = f"{settings.topic_prefix}.report"
    with running_app(settings, handlers={"Report": handler}):
        produce_events(settings.kafka_bootstrap_servers, main, events)
        wait_for(
            lambda: (
                scalar(db_engine, "SELECT count(*) FROM event_records WHERE attempts = 4") >= 1
                or len(read_all(settings.kafka_bootstrap_servers, f"{main}.retry-4s", timeout=1))
                == 30
            ),
            timeout=60,
            message="records waiting in retry-4s",
        )
        second = App(settings, handlers={"Report": handler})  # same group: a rebalance
        second.start()
        try:
            wait_for_scalar(
                db_engine,
                "SELECT count(*) FROM reports",
                30,
                timeout=90,
                message="30 reports after the rebalance",
            )
        finally:
            second.stop()
    due4 = _due_by_event(read_all(settings.kafka_bootstrap_servers, f"{main}.retry-4s"))
    for event in events:
        calls = handler.calls[event.event_id]
        assert len(calls) >= 4
        assert calls[3] * 1000 >= due4[event.event_id] - 5, "a retry ran before its due time"
    assert scalar(db_engine, "SELECT count(*) FROM reports") == 30
    assert scalar(db_engine, "SELECT count(DISTINCT event_id) FROM reports") == 30


HOSTILE_VALUES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"-1",
            b"0",
            b"999999999999999999999999",
            b"1e9",
            b"",
            b"\xff\xfe",
            b"99999999999999",
            b"NaN",
            b" 3 ",
        ]
    ),
)
HEADER_NAMES = RETRY_HEADER_NAMES


@hyp_settings(
    max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(st.tuples(HEADER_NAMES, HOSTILE_VALUES), max_size=12), min_size=150, max_size=150
    )
)
def test_hostile_retry_headers_never_crash_or_stall(
    settings: Settings, db_engine: Engine, header_sets: list[list[tuple[str, bytes]]]
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    main = f"{settings.topic_prefix}.report"
    tier = f"{main}.retry-1s"
    events = sample_events("Report", len(header_sets) + 5)
    pairs = zip(events, header_sets, strict=False)
    hostile = [(e.key.encode(), encode_json(e), h) for e, h in pairs]
    hostile.append((b"huge", encode_json(events[-5]), [(rh.ERROR_STACK, b"x" * 500_000)]))
    with running_app(settings):
        produce_raw(settings.kafka_bootstrap_servers, tier, hostile)
        produce_events(settings.kafka_bootstrap_servers, main, events[-4:])  # valid neighbours
        wait_for(
            lambda: scalar(db_engine, "SELECT count(*) FROM event_records") >= len(hostile) + 4,
            timeout=90,
            message="every record has an outcome",
        )
        wait_for(
            lambda: scalar(db_engine, "SELECT count(*) FROM reports") >= 4,
            timeout=30,
            message="valid events processed",
        )
    dlq = read_all(settings.kafka_bootstrap_servers, f"{main}.dlq")
    assert len(dlq) == len(hostile)  # every hostile record: DLQ with its reason
    for message in dlq:
        h = rh.as_dict(message.headers())
        assert h[rh.ERROR_CLASS] == b"BadRetryHeaders"
        assert len(h[rh.ERROR_STACK]) <= rh.MAX_STACK_BYTES
        assert sum(len(v or b"") for _n, v in message.headers()) < 64_000
