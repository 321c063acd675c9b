"""Set-based handlers (issue 13): `apply_batch` leaves the database exactly as `apply` called
on each event in order would - checked on random batches against real PostgreSQL."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.errors import PermanentError
from common.settings import Settings
from consumers.handlers import ChemicalStatusHandler, ReportHandler
from schemas.events import Event
from tests.integration.handlers.test_handlers import T0, report_event, status_event


def _state(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        current = conn.execute(
            text(
                "SELECT chemical_id, cas_number, status, regulation, status_occurred_at, "
                "status_event_id FROM chemicals ORDER BY chemical_id"
            )
        ).all()
        history = conn.execute(
            text(
                "SELECT chemical_id, status, occurred_at, event_id, applied "
                "FROM chemical_status_history ORDER BY id"
            )
        ).all()
    return {"chemicals": [tuple(r) for r in current], "history": [tuple(r) for r in history]}


def _reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE chemicals, chemical_status_history RESTART IDENTITY"))


def _random_batch(rng: random.Random, size: int) -> list[Event]:
    """Few chemicals, few distinct times (ties broken by event id), CAS numbers sometimes."""
    events = []
    for _ in range(size):
        chemical = f"C-{rng.randrange(4)}"
        at = T0 + timedelta(milliseconds=rng.choice([0, 0, 1, 5, 1000, -3]))
        cas = rng.choice([None, None, f"{rng.randrange(100)}-00-0"])
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        events.append(
            status_event(
                chemical, rng.choice(["A", "B", "C"]), at, event_id=event_id, cas_number=cas
            )
        )
    return events


@pytest.mark.parametrize("seed", range(12))
def test_chemical_status_batch_equals_one_by_one(
    db_engine: Engine, settings: Settings, seed: int
) -> None:
    rng = random.Random(seed)
    handler = ChemicalStatusHandler(settings)
    before = _random_batch(rng, rng.randrange(0, 5))  # a state in place already
    batch = _random_batch(rng, rng.randrange(1, 30))

    for event in before + batch:
        with db_engine.begin() as conn:
            handler.apply(conn, event, None)
    one_by_one = _state(db_engine)

    _reset(db_engine)
    for event in before:
        with db_engine.begin() as conn:
            handler.apply(conn, event, None)
    with db_engine.begin() as conn:
        handler.apply_batch(conn, batch)
    assert _state(db_engine) == one_by_one


def test_chemical_status_batch_keeps_a_known_cas_and_flags_the_superseded(
    db_engine: Engine, settings: Settings
) -> None:
    handler = ChemicalStatusHandler(settings)
    first = status_event("C-1", "APPROVED", T0, cas_number="50-00-0")
    newer = status_event("C-1", "BANNED", T0 + timedelta(seconds=1))
    late = status_event("C-1", "RESTRICTED", T0 - timedelta(seconds=1))
    with db_engine.begin() as conn:
        handler.apply_batch(conn, [first, newer, late])
    state = _state(db_engine)
    assert state["chemicals"] == [
        ("C-1", "50-00-0", "BANNED", "REACH", newer.occurred_at, newer.event_id)
    ]
    assert [(h[3], h[4]) for h in state["history"]] == [
        (first.event_id, True),
        (newer.event_id, True),
        (late.event_id, False),
    ]


def _reports(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        query = "SELECT report_id, report_type, requested_by, event_id, content FROM reports"
        return [tuple(r) for r in conn.execute(text(query + " ORDER BY report_id")).all()]


def test_report_batch_equals_one_by_one_with_a_replay_among_them(
    db_engine: Engine, settings: Settings
) -> None:
    handler = ReportHandler(settings)
    events = [
        report_event(f"R-{i}", "inventory", {"n": str(i)}, event_id=str(uuid.uuid4()))
        for i in range(5)
    ]
    summary = report_event("R-sum", parameters={"regulation": "REACH"}, event_id=str(uuid.uuid4()))
    with db_engine.begin() as conn:
        ChemicalStatusHandler(settings).apply_batch(conn, [status_event("C-1", "APPROVED")])
    for event in [*events, summary]:
        with db_engine.begin() as conn:
            handler.apply(conn, event, None)
    one_by_one = _reports(db_engine)

    with db_engine.begin() as conn:
        conn.execute(text("TRUNCATE reports"))
    with db_engine.begin() as conn:
        handler.apply_batch(conn, events[:2])
    with db_engine.begin() as conn:  # events[1] again: a replay, a no-op as in `apply`
        handler.apply_batch(conn, [*events[1:], summary])
    assert _reports(db_engine) == one_by_one


def test_report_batch_raises_on_a_taken_report_id_as_apply_does(
    db_engine: Engine, settings: Settings
) -> None:
    handler = ReportHandler(settings)
    first = report_event("R-1", event_id=str(uuid.uuid4()))
    clash = report_event("R-1", event_id=str(uuid.uuid4()))  # the same report id
    with pytest.raises(PermanentError, match="conflicts with report R-1"), db_engine.begin() as c:
        handler.apply_batch(c, [first, clash])
    assert _reports(db_engine) == []  # the writer then writes them one at a time
