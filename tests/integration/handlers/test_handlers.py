"""The four handlers against the real PostgreSQL and real SMTP / HTTP servers.

No mocks: every failure below is produced the way production meets it (a closed port, a
4xx reply, a slow response, a row lock held by another connection).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg2.errors import LockNotAvailable
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from common.errors import DependencyDownError, PermanentError, TransientError
from common.settings import Settings
from consumers.handlers import (
    HANDLER_TYPES,
    ChemicalLookupHandler,
    ChemicalStatusHandler,
    EmailHandler,
    ReportHandler,
    build_handler,
)
from devtools.devservers import ChemicalApiServer, SmtpSink, chemical_record
from schemas.events import (
    ChemicalLookupPayload,
    ChemicalStatusPayload,
    EmailPayload,
    Event,
    ReportPayload,
)
from storage.db import make_engine
from storage.models import chemical_lookups, chemical_status_history, chemicals, reports

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def make_event(
    payload: Any,
    *,
    occurred_at: datetime = T0,
    event_id: str | None = None,
) -> Event:
    event_type = {
        ChemicalStatusPayload: "ChemicalStatus",
        EmailPayload: "Email",
        ReportPayload: "Report",
        ChemicalLookupPayload: "ChemicalLookup",
    }[type(payload)]
    key = getattr(payload, "chemical_id", None) or getattr(payload, "report_id", None) or "k"
    return Event(
        event_id=event_id or str(uuid.uuid4()),
        event_type=event_type,
        occurred_at=occurred_at,
        producer="test",
        schema_version=1,
        key=key,
        payload=payload,
    )


def status_event(
    chemical_id: str,
    status: str,
    occurred_at: datetime = T0,
    *,
    event_id: str | None = None,
    regulation: str = "REACH",
    cas_number: str | None = None,
) -> Event:
    payload = ChemicalStatusPayload(chemical_id, status, regulation, cas_number)
    return make_event(payload, occurred_at=occurred_at, event_id=event_id)


def apply(engine: Engine, handler: Any, event: Event, performed: Any = None) -> None:
    with engine.begin() as conn:
        handler.apply(conn, event, performed)


def rows(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query).mappings())


# --- registry --------------------------------------------------------------------------


def test_build_handler_covers_every_event_type(settings: Settings) -> None:
    assert set(HANDLER_TYPES) == set(settings.event_types)
    for event_type in HANDLER_TYPES:
        handler = build_handler(event_type, settings)
        assert handler.event_type == event_type
    assert build_handler("Email", settings).dependency == "smtp"
    assert build_handler("ChemicalLookup", settings).dependency == "chemical_api"
    assert build_handler("ChemicalStatus", settings).dependency is None
    assert build_handler("Report", settings).dependency is None
    with pytest.raises(ValueError, match="Nope"):
        build_handler("Nope", settings)


# --- ChemicalStatus --------------------------------------------------------------------


def test_status_first_event_inserts_chemical_and_history(
    db_engine: Engine, settings: Settings
) -> None:
    handler = ChemicalStatusHandler(settings)
    event = status_event("C-1", "APPROVED", cas_number="50-00-0")
    handler.perform(event)  # database-only: nothing to do outside the transaction

    apply(db_engine, handler, event)

    [row] = rows(db_engine, select(chemicals))
    assert row["chemical_id"] == "C-1"
    assert row["status"] == "APPROVED"
    assert row["cas_number"] == "50-00-0"
    assert row["status_occurred_at"] == T0
    assert row["status_event_id"] == event.event_id
    [history] = rows(db_engine, select(chemical_status_history))
    assert history["applied"] is True
    assert history["event_id"] == event.event_id


def test_status_older_event_never_overwrites_newer(db_engine: Engine, settings: Settings) -> None:
    handler = ChemicalStatusHandler(settings)
    newer = status_event("C-1", "BANNED", T0 + timedelta(minutes=5))
    older = status_event("C-1", "APPROVED", T0)  # late, or replayed from the DLQ

    apply(db_engine, handler, newer)
    apply(db_engine, handler, older)

    [row] = rows(db_engine, select(chemicals))
    assert row["status"] == "BANNED"
    assert row["status_event_id"] == newer.event_id
    history = rows(db_engine, select(chemical_status_history).order_by("id"))
    assert [(h["event_id"], h["status"], h["applied"]) for h in history] == [
        (newer.event_id, "BANNED", True),
        (older.event_id, "APPROVED", False),
    ]


def test_status_newer_event_overwrites_and_keeps_known_cas(
    db_engine: Engine, settings: Settings
) -> None:
    handler = ChemicalStatusHandler(settings)
    apply(db_engine, handler, status_event("C-1", "APPROVED", T0, cas_number="50-00-0"))
    later = status_event("C-1", "RESTRICTED", T0 + timedelta(milliseconds=1), regulation="TSCA")
    apply(db_engine, handler, later)

    [row] = rows(db_engine, select(chemicals))
    assert (row["status"], row["regulation"], row["cas_number"]) == (
        "RESTRICTED",
        "TSCA",
        "50-00-0",
    )
    assert [h["applied"] for h in rows(db_engine, select(chemical_status_history))] == [
        True,
        True,
    ]


@pytest.mark.parametrize("order", ["low-first", "high-first"])
def test_status_same_time_tie_broken_by_event_id(
    db_engine: Engine, settings: Settings, order: str
) -> None:
    handler = ChemicalStatusHandler(settings)
    low = status_event("C-1", "APPROVED", event_id="00000000-0000-4000-8000-000000000001")
    high = status_event("C-1", "BANNED", event_id="ffffffff-0000-4000-8000-000000000001")
    events = [low, high] if order == "low-first" else [high, low]

    for event in events:
        apply(db_engine, handler, event)

    [row] = rows(db_engine, select(chemicals))
    assert row["status_event_id"] == high.event_id  # same winner whatever the order
    history = rows(db_engine, select(chemical_status_history))
    applied = {h["event_id"]: h["applied"] for h in history}
    assert applied == {high.event_id: True, low.event_id: order == "low-first"}


def test_status_row_lock_surfaces_as_lock_timeout(db_engine: Engine, settings: Settings) -> None:
    handler = ChemicalStatusHandler(settings)
    apply(db_engine, handler, status_event("C-1", "APPROVED", T0))
    short_lock = make_engine(settings.model_copy(update={"db_lock_timeout_ms": 200}), pool_size=1)
    try:
        with db_engine.connect() as holder:
            holder.execute(text("SELECT 1 FROM chemicals WHERE chemical_id = 'C-1' FOR UPDATE"))
            started = time.monotonic()
            with pytest.raises(OperationalError) as raised, short_lock.begin() as conn:
                handler.apply(conn, status_event("C-1", "BANNED", T0 + timedelta(days=1)), None)
            elapsed = time.monotonic() - started
            holder.rollback()
    finally:
        short_lock.dispose()

    assert isinstance(raised.value.orig, LockNotAvailable)
    assert raised.value.orig.pgcode == "55P03"
    assert 0.15 <= elapsed < 2.0, elapsed
    # Nothing of the failed attempt survives: the retry will find the row as it was.
    [row] = rows(db_engine, select(chemicals))
    assert row["status"] == "APPROVED"
    assert len(rows(db_engine, select(chemical_status_history))) == 1


# --- Email -----------------------------------------------------------------------------


def email_event(subject: str = "Status change: C-1", to: str = "ops@example.com") -> Event:
    return make_event(EmailPayload(to=to, subject=subject, body="C-1 is now BANNED.\n"))


def test_email_arrives_with_event_id_headers(
    db_engine: Engine, handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    handler = EmailHandler(handler_settings)
    event = email_event()

    sent = handler.perform(event)
    apply(db_engine, handler, event, sent)

    assert smtp_sink.wait_for(1, timeout=5)
    [message] = smtp_sink.messages
    assert message.message_id == f"<{event.event_id}@qchem-events>"
    assert event.event_id in (message.message_id or "")
    assert message.event_id == event.event_id
    assert message.to == ("ops@example.com",)
    assert message.mail_from == handler_settings.smtp_sender
    assert message.subject == "Status change: C-1"
    assert message.body == "C-1 is now BANNED.\n"
    assert sent.message_id == message.message_id
    assert sent.refused == {}
    assert smtp_sink.count_by_event_id() == {event.event_id: 1}


def test_email_sent_twice_is_visible_as_duplicate(
    handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    handler = EmailHandler(handler_settings)
    event = email_event()
    handler.perform(event)
    handler.perform(event)  # e.g. the process died before the commit

    assert smtp_sink.wait_for(2, timeout=5)
    assert smtp_sink.count_by_event_id() == {event.event_id: 2}
    first, second = smtp_sink.messages
    assert (first.message_id, first.subject) == (second.message_id, second.subject)


# SMTP down, then back: test_a_dependency_down_is_dependency_down_then_recovers (below).


def test_email_4xx_reply_is_transient(handler_settings: Settings, smtp_sink: SmtpSink) -> None:
    handler = EmailHandler(handler_settings)
    event = email_event()
    smtp_sink.fail_next(1, code=451)

    with pytest.raises(TransientError, match="451"):
        handler.perform(event)
    handler.perform(event)  # the retry goes through

    assert smtp_sink.rejected == 1
    assert smtp_sink.count_by_event_id() == {event.event_id: 1}


def test_email_5xx_reply_is_permanent(handler_settings: Settings, smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1, code=554)
    with pytest.raises(PermanentError, match="554"):
        EmailHandler(handler_settings).perform(email_event())
    assert smtp_sink.messages == []


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_email_silent_server_times_out_as_dependency_down(
    handler_settings: Settings, silent_port: int
) -> None:
    handler = EmailHandler(
        handler_settings.model_copy(update={"smtp_port": silent_port, "smtp_timeout_s": 0.3})
    )
    started = time.monotonic()
    with pytest.raises(DependencyDownError) as raised:
        handler.perform(email_event())
    assert raised.value.dependency == "smtp"
    assert time.monotonic() - started < 3


def test_email_header_injection_is_permanent_and_sends_nothing(
    handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    with pytest.raises(PermanentError):
        EmailHandler(handler_settings).perform(email_event(subject="hi\r\nBcc: all@example.com"))
    with pytest.raises(PermanentError):
        EmailHandler(handler_settings).perform(email_event(to=""))
    assert smtp_sink.messages == []


# --- ChemicalLookup --------------------------------------------------------------------


def lookup_event(chemical_id: str = "C-42") -> Event:
    return make_event(ChemicalLookupPayload(chemical_id=chemical_id))


def test_lookup_fetches_and_stores_data(
    db_engine: Engine, handler_settings: Settings, chemical_api: ChemicalApiServer
) -> None:
    handler = ChemicalLookupHandler(handler_settings)
    event = lookup_event("C-42")

    data = handler.perform(event)
    apply(db_engine, handler, event, data)
    apply(db_engine, handler, event, data)  # applied again: still one row

    assert data == chemical_record("C-42")
    assert data["source"] == "qchem-dev-api"
    [row] = rows(db_engine, select(chemical_lookups))
    assert (row["chemical_id"], row["event_id"], row["data"]) == ("C-42", event.event_id, data)
    assert [path for _, path in chemical_api.requests] == ["/chemicals/C-42"]
    assert chemical_api.event_ids == [event.event_id]


def test_lookup_id_is_one_path_segment(
    handler_settings: Settings, chemical_api: ChemicalApiServer
) -> None:
    data = ChemicalLookupHandler(handler_settings).perform(lookup_event("a/b c"))
    assert data["chemical_id"] == "a/b c"
    assert chemical_api.requests[0][1] == "/chemicals/a%2Fb%20c"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_lookup_5xx_and_429_are_transient(
    handler_settings: Settings, chemical_api: ChemicalApiServer, status: int
) -> None:
    handler = ChemicalLookupHandler(handler_settings)
    chemical_api.fail_next(1, status=status)
    with pytest.raises(TransientError, match=str(status)):
        handler.perform(lookup_event())
    assert handler.perform(lookup_event())["chemical_id"] == "C-42"


def test_lookup_error500_mode_is_transient(
    handler_settings: Settings, chemical_api: ChemicalApiServer
) -> None:
    chemical_api.set_mode("error500")
    handler = ChemicalLookupHandler(handler_settings)
    for _ in range(3):
        with pytest.raises(TransientError):
            handler.perform(lookup_event())
    assert chemical_api.request_count == 3


def test_lookup_unknown_chemical_is_permanent(
    handler_settings: Settings, chemical_api: ChemicalApiServer
) -> None:
    handler = ChemicalLookupHandler(handler_settings)
    with pytest.raises(PermanentError, match="404"):
        handler.perform(lookup_event("UNKNOWN-1"))
    chemical_api.fail_next(1, status=400)
    with pytest.raises(PermanentError, match="400"):
        handler.perform(lookup_event())


# Each handler with a dependency: the fixture serving it, an event for it, and whether the
# effect of one event happened (the server, the event, what perform returned).
DEPENDENT: dict[str, tuple[type[Any], str, Callable[[], Event], Callable[..., bool]]] = {
    "smtp": (
        EmailHandler,
        "smtp_sink",
        email_event,
        lambda sink, event, _result: (
            sink.wait_for(1, timeout=5) and sink.count_by_event_id() == {event.event_id: 1}
        ),
    ),
    "chemical_api": (
        ChemicalLookupHandler,
        "chemical_api",
        lookup_event,
        lambda _api, _event, result: result["chemical_id"] == "C-42",
    ),
}


@pytest.mark.parametrize("dependency", list(DEPENDENT))
def test_a_dependency_down_is_dependency_down_then_recovers(
    handler_settings: Settings, request: pytest.FixtureRequest, dependency: str
) -> None:
    handler_type, fixture, new_event, applied = DEPENDENT[dependency]
    server = request.getfixturevalue(fixture)
    handler = handler_type(handler_settings)
    server.stop()
    with pytest.raises(DependencyDownError) as raised:
        handler.perform(new_event())
    assert raised.value.dependency == dependency

    server.start()  # same port
    event = new_event()
    assert applied(server, event, handler.perform(event))


def test_lookup_slow_beyond_timeout_is_dependency_down(
    handler_settings: Settings, chemical_api: ChemicalApiServer
) -> None:
    handler = ChemicalLookupHandler(
        handler_settings.model_copy(update={"chemical_api_timeout_s": 0.3})
    )
    chemical_api.set_mode("slow", delay_s=3)
    started = time.monotonic()
    with pytest.raises(DependencyDownError) as raised:
        handler.perform(lookup_event())
    elapsed = time.monotonic() - started
    assert raised.value.dependency == "chemical_api"
    assert 0.25 <= elapsed < 2, elapsed

    chemical_api.set_mode("slow", delay_s=0.05)  # slow but within the timeout is fine
    assert handler.perform(lookup_event())["chemical_id"] == "C-42"


def test_lookup_non_json_body_is_transient(
    handler_settings: Settings, chemical_api: ChemicalApiServer
) -> None:
    chemical_api.set_mode("invalid-json")
    with pytest.raises(TransientError, match="non-JSON"):
        ChemicalLookupHandler(handler_settings).perform(lookup_event())


# --- Report ----------------------------------------------------------------------------


def report_event(
    report_id: str = "R-1",
    report_type: str = "chemical-status-summary",
    parameters: dict[str, str] | None = None,
    event_id: str = "11111111-2222-4333-8444-555555555555",
) -> Event:
    payload = ReportPayload(report_id, report_type, "alice@example.com", parameters or {})
    return make_event(payload, event_id=event_id)


@pytest.fixture
def seeded_chemicals(db_engine: Engine, settings: Settings) -> None:
    handler = ChemicalStatusHandler(settings)
    for chemical_id, status, regulation in [
        ("C-1", "APPROVED", "REACH"),
        ("C-2", "APPROVED", "REACH"),
        ("C-3", "BANNED", "REACH"),
        ("C-4", "RESTRICTED", "TSCA"),
    ]:
        apply(db_engine, handler, status_event(chemical_id, status, regulation=regulation))


def test_report_status_summary_content(
    db_engine: Engine, settings: Settings, seeded_chemicals: None
) -> None:
    handler = ReportHandler(settings)
    event = report_event()
    handler.perform(event)  # database-only: nothing to do outside the transaction

    apply(db_engine, handler, event)

    [row] = rows(db_engine, select(reports))
    assert (row["report_id"], row["report_type"], row["requested_by"], row["event_id"]) == (
        "R-1",
        "chemical-status-summary",
        "alice@example.com",
        event.event_id,
    )
    assert row["content"] == (
        "# Q-Chem report R-1\n"
        "# type: chemical-status-summary\n"
        "# requested_by: alice@example.com\n"
        "# generated_for: 2024-05-01T12:00:00.123+00:00\n"
        "# event_id: 11111111-2222-4333-8444-555555555555\n"
        "status,count\n"
        "APPROVED,2\n"
        "BANNED,1\n"
        "RESTRICTED,1\n"
        "TOTAL,4\n"
    )


def test_report_status_summary_filtered_by_regulation(
    db_engine: Engine, settings: Settings, seeded_chemicals: None
) -> None:
    apply(db_engine, ReportHandler(settings), report_event(parameters={"regulation": "REACH"}))
    [row] = rows(db_engine, select(reports))
    assert row["content"].endswith(
        "# regulation: REACH\nstatus,count\nAPPROVED,2\nBANNED,1\nTOTAL,3\n"
    )


def test_report_other_type_renders_parameters_deterministically(
    db_engine: Engine, settings: Settings
) -> None:
    handler = ReportHandler(settings)
    params = {"to": "2024-04-30", "from": "2024-04-01", "note": 'has, comma "and" quotes'}
    first = report_event("R-A", "audit-trail", params, event_id=str(uuid.uuid4()))
    again = report_event("R-B", "audit-trail", dict(reversed(params.items())), first.event_id)

    def render(event: Event) -> str:
        with db_engine.connect() as conn:  # never committed: both reports may coexist
            handler.apply(conn, event, None)
            return str(conn.execute(select(reports.c.content)).scalar_one())

    content = render(first)
    content_again = render(again)

    body = content.split("# event_id: ")[1].split("\n", 1)[1]
    assert body == (
        'parameter,value\nfrom,2024-04-01\nnote,"has, comma ""and"" quotes"\nto,2024-04-30\n'
    )
    assert content_again == content.replace("R-A", "R-B")


def test_report_duplicate_id_from_another_event_is_permanent(
    db_engine: Engine, settings: Settings
) -> None:
    handler = ReportHandler(settings)
    original = report_event("R-1", event_id=str(uuid.uuid4()))
    apply(db_engine, handler, original)

    with pytest.raises(PermanentError, match="R-1"):
        apply(db_engine, handler, report_event("R-1", event_id=str(uuid.uuid4())))

    [row] = rows(db_engine, select(reports))
    assert row["event_id"] == original.event_id


def test_report_same_event_applied_twice_is_a_no_op(db_engine: Engine, settings: Settings) -> None:
    handler = ReportHandler(settings)
    event = report_event("R-1", event_id=str(uuid.uuid4()))
    apply(db_engine, handler, event)
    apply(db_engine, handler, event)
    assert len(rows(db_engine, select(reports))) == 1
