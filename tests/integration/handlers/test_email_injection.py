"""Issue 17 #2 and #4: what reaches a real SMTP server, byte for byte, for hostile events.

The events are built directly (not decoded), as a replay tool or a future code path might:
the handler's own check before sending must hold even when the validator was bypassed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from common.errors import PermanentError
from common.settings import Settings
from consumers.handlers import EmailHandler
from devtools.devservers import SmtpSink
from schemas.events import EmailPayload, Event

pytestmark = pytest.mark.integration

ENCODED_WORD_SUBJECTS = [
    "=?utf-8?q?Invoice=0D=0ABcc:_evil@evil.test=0D=0AReply-To:_attacker@evil.test?=",
    "=?utf-8?q?Invoice=0D=0A=0D=0Aattacker_text?=",
    "Invoice =?utf-8?b?DQpCY2M6IGV2aWxAZXZpbC50ZXN0?= due",
]
MULTI_ADDRESS_TO = [
    "victim@example.com, attacker@evil.test",
    "undisclosed: victim@example.com, attacker@evil.test;",
    '"ceo@example.com" <attacker@evil.test>',
]
EXPECTED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"x-event-id",
    b"content-type",
    b"content-transfer-encoding",
    b"mime-version",
]


def email_event(to: str = "ops@example.com", subject: str = "Status change: C-1") -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        event_type="Email",
        occurred_at=datetime(2026, 11, 29, 3, tzinfo=UTC),
        producer="test",
        schema_version=1,
        key="k",
        payload=EmailPayload(to=to, subject=subject, body="C-1 is now BANNED.\n"),
    )


def send(settings: Settings, event: Event) -> str:
    """Why the handler refused `event` ("" when it sent it)."""
    try:
        EmailHandler(settings).perform(event)
    except PermanentError as exc:
        return str(exc)
    return ""


def header_names(raw: bytes) -> list[bytes]:
    head = raw.partition(b"\r\n\r\n")[0]
    return [
        line.split(b":", 1)[0].lower()
        for line in head.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]


@pytest.mark.parametrize("subject", ENCODED_WORD_SUBJECTS)
def test_encoded_word_subject_injects_nothing_at_the_server(
    handler_settings: Settings, smtp_sink: SmtpSink, subject: str
) -> None:
    refused = send(handler_settings, email_event(subject=subject))
    smtp_sink.wait_for(1, timeout=0.5)  # a message, if one was sent, has arrived
    raw = b"".join(m.raw for m in smtp_sink.messages)
    assert b"\r\nBcc:" not in raw and b"\r\nReply-To:" not in raw and b"attacker" not in raw
    assert smtp_sink.messages == []
    assert "encoded word" in refused


@pytest.mark.parametrize("to", MULTI_ADDRESS_TO)
def test_one_to_field_reaches_no_other_address(
    handler_settings: Settings, smtp_sink: SmtpSink, to: str
) -> None:
    refused = send(handler_settings, email_event(to=to))
    smtp_sink.wait_for(1, timeout=0.5)
    assert [m.to for m in smtp_sink.messages] == []
    assert "exactly one plain address" in refused


def test_a_valid_email_has_exactly_the_expected_header_lines_and_one_recipient(
    handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    event = email_event(to="ops@example.com", subject="Caf\u00e9 =? ok ?")  # non-ASCII: encoded
    EmailHandler(handler_settings).perform(event)
    assert smtp_sink.wait_for(1, timeout=5)
    [message] = smtp_sink.messages
    assert message.to == ("ops@example.com",)
    assert sorted(header_names(message.raw)) == sorted(EXPECTED_HEADERS)
    assert message.subject == "Caf\u00e9 =? ok ?"
    assert b"\r\nTo: ops@example.com\r\n" in message.raw
