"""The Email handler's reused SMTP connections, against the real (aiosmtpd) dev server.

Connections are counted at the server. What a server does to a connection is done for real:
it closes idle ones (with or without a 421 first), hangs up after taking a message's data,
answers DATA with a 4xx.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from common.errors import DependencyDownError, TransientError
from common.settings import Settings
from consumers.handlers import EmailHandler
from devtools.devservers import SmtpSink
from schemas.events import EmailPayload, Event
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import wait_for_scalar
from tests.support.kafka import produce_events

pytestmark = pytest.mark.integration

IDLE_TIMEOUT_NOTICE = "421 4.4.2 qchem-smtp-sink Error: timeout exceeded"


def email_event(n: int = 0) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        event_type="Email",
        occurred_at=datetime(2024, 5, 1, 12, 0, n, tzinfo=UTC),
        producer="test",
        schema_version=1,
        key=f"k{n}",
        payload=EmailPayload(to="ops@example.com", subject=f"Message {n}", body="Hello.\n"),
    )


def sent_once(sink: SmtpSink, events: list[Event]) -> bool:
    return sink.count_by_event_id() == once(*events)


def once(*events: Event) -> dict[str | None, int]:
    return {e.event_id: 1 for e in events}


def seen(sink: SmtpSink, handler: EmailHandler) -> tuple[dict[str | None, int], int, int]:
    """Copies of each message at the server, connections it accepted, connections replaced."""
    return dict(sink.count_by_event_id()), sink.connections, handler.connections_replaced


@pytest.fixture
def handler(handler_settings: Settings) -> EmailHandler:
    return EmailHandler(handler_settings)


@pytest.fixture
def first(handler: EmailHandler) -> Event:
    """A message `handler` has sent: its connection now waits in the pool."""
    event = email_event(1)
    handler.perform(event)
    return event


def test_messages_through_one_handler_share_one_connection(
    handler: EmailHandler, smtp_sink: SmtpSink
) -> None:
    events = [email_event(n) for n in range(25)]
    for event in events:
        handler.perform(event)

    assert sent_once(smtp_sink, events)
    assert smtp_sink.connections == 1
    assert smtp_sink.open_connections == 1
    assert smtp_sink.quits == 0  # no QUIT between messages
    handler.close()
    assert smtp_sink.wait_open_connections(0, timeout=5)
    assert smtp_sink.quits == 1


def test_concurrent_senders_keep_one_connection_each_at_most(
    handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    handler = EmailHandler(handler_settings.model_copy(update={"concurrency": 4}))
    events = [[email_event(n) for n in range(10)] for _ in range(4)]
    threads = [
        threading.Thread(target=lambda batch=batch: [handler.perform(e) for e in batch])
        for batch in events
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sent_once(smtp_sink, [e for batch in events for e in batch])
    assert 1 <= smtp_sink.connections <= 4
    handler.close()
    assert smtp_sink.wait_open_connections(0, timeout=5)


@pytest.mark.parametrize("notice", [None, IDLE_TIMEOUT_NOTICE], ids=["silent", "421"])
def test_a_connection_the_server_dropped_while_idle_is_replaced_and_sent_once(
    handler: EmailHandler, smtp_sink: SmtpSink, first: Event, notice: str | None
) -> None:
    second = email_event(2)
    # The server ends the idle session (its idle timeout, a restart): the handler's pooled
    # connection is now dead, and the handler only finds out at its next command.
    assert smtp_sink.drop_connections(notice) == 1

    sent = handler.perform(second)  # no error: nothing was sent on the dead connection

    assert sent.message_id == f"<{second.event_id}@qchem-events>"
    assert smtp_sink.wait_for(2, timeout=5)
    assert seen(smtp_sink, handler) == (once(first, second), 2, 1)


def test_a_dead_pooled_connection_and_a_down_server_is_dependency_down(
    handler: EmailHandler, smtp_sink: SmtpSink, first: Event
) -> None:
    second = email_event(2)
    smtp_sink.stop()  # drops the pooled connection and closes the port

    # The fresh connection is tried once, and its failure is what the runtime sees.
    with pytest.raises(DependencyDownError) as raised:
        handler.perform(second)
    assert raised.value.dependency == "smtp"

    smtp_sink.start()
    handler.perform(second)
    assert sent_once(smtp_sink, [first, second])


def test_a_hang_up_after_data_is_raised_and_never_resent(
    handler: EmailHandler, smtp_sink: SmtpSink, first: Event
) -> None:
    second = email_event(2)
    smtp_sink.hang_up_after_data(1)  # the server takes the message, then drops the line

    with pytest.raises(DependencyDownError) as raised:
        handler.perform(second)
    assert raised.value.dependency == "smtp"

    # The server has the message once: sending it again on a fresh connection, as a dropped
    # idle connection is, would have delivered it twice.
    assert seen(smtp_sink, handler) == (once(first, second), 1, 0)


def test_a_4xx_after_data_on_a_reused_connection_is_transient_and_not_resent(
    handler: EmailHandler, smtp_sink: SmtpSink, first: Event
) -> None:
    second = email_event(2)
    smtp_sink.fail_next(1, code=451)

    with pytest.raises(TransientError, match="451"):
        handler.perform(second)

    assert smtp_sink.rejected == 1
    assert sent_once(smtp_sink, [first])
    # The failed transaction's connection is not reused: the retry opens a new one.
    handler.perform(second)
    assert sent_once(smtp_sink, [first, second])
    assert smtp_sink.connections == 2


def test_idle_connections_are_closed_after_smtp_idle_s(
    handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    handler = EmailHandler(handler_settings.model_copy(update={"smtp_idle_s": 0.5}))
    handler.perform(email_event(1))
    sent_at = time.monotonic()
    assert smtp_sink.open_connections == 1

    assert smtp_sink.wait_open_connections(0, timeout=5)
    assert time.monotonic() - sent_at >= 0.45  # not before the setting (clock granularity)
    assert smtp_sink.quits == 1  # closed politely, by the handler

    handler.perform(email_event(2))  # a new connection, nothing replaced
    assert smtp_sink.connections == 2
    assert handler.connections_replaced == 0


def test_smtp_idle_s_zero_opens_a_connection_per_message(
    handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    handler = EmailHandler(handler_settings.model_copy(update={"smtp_idle_s": 0}))
    events = [email_event(n) for n in range(3)]
    for event in events:
        handler.perform(event)
    assert smtp_sink.wait_open_connections(0, timeout=5)
    assert sent_once(smtp_sink, events)
    assert (smtp_sink.connections, smtp_sink.quits) == (3, 3)


def test_probe_uses_its_own_connection_and_leaves_the_pool_alone(
    handler: EmailHandler, smtp_sink: SmtpSink
) -> None:
    handler.perform(email_event(1))
    handler.probe()
    assert smtp_sink.connections == 2
    assert smtp_sink.wait_open_connections(1, timeout=5)  # the probe's is closed (QUIT)
    handler.perform(email_event(2))
    assert smtp_sink.connections == 2


def test_the_runtime_closes_the_pooled_connections_when_it_stops(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email",)})
    events = sample_events("Email", 40)
    with running_app(settings):
        produce_events(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.email", events)
        wait_for_scalar(
            db_engine, "SELECT count(*) FROM event_records", 40, timeout=60, message="40 records"
        )
        assert smtp_sink.open_connections >= 1  # still open: SMTP_IDLE_S is 10 s
    assert smtp_sink.wait_open_connections(0, timeout=5)
    assert sent_once(smtp_sink, events)
    assert smtp_sink.connections <= settings.concurrency
    assert smtp_sink.quits == smtp_sink.connections
