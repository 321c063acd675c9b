"""consumers.handlers.email_bytes: a directly written message is the email package's, bytewise.

Every property compares, for one event and sender, the email package's path alone
(`message_data(..., direct=False)`, the handler before the fast path), the direct writer
alone (`message_bytes`, which may decline with None) and `message_data` as the handler calls
it: the writer, when it accepts, gives the package's bytes, and the handler's verdict (the
bytes and Message-ID, or the exception and its text) is always the package path's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import PermanentError
from consumers.handlers import email as email_handler
from consumers.handlers.email import direct_agrees, message_data
from consumers.handlers.email_bytes import body_bytes, message_bytes, plain_sender
from schemas.events import EmailPayload, Event
from schemas.samples import sample_events

SENDER = "qchem-events@localhost"
SENDERS = [
    SENDER,
    "a@b",
    "q." + "x" * 60 + "@example.com",  # From line of 85 characters: folded by the package
    "Q-Chem <q@x.test>",  # a display name: not plain
    "q\u00e9@x.test",  # non-ASCII: SMTPUTF8
    "",
]
Outcome = tuple[str, Any]

# Letters that make the package's choices differ: spaces at line ends, "=" (quoted-printable
# escapes, encoded-word openers), dots, every line break str.splitlines knows (bytes split
# only at CR/LF), other controls, Latin-1, wide and astral characters, a lone surrogate.
TRICKY = (
    ' \t=?.:<>@,;"\\()[]\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00\x7f'
    "\xa0\xe9\u4e2d\U0001f600\ud800"
)
letters = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.sampled_from(TRICKY),
    st.characters(),
)
printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
ascii_words = st.text(printable, min_size=0, max_size=90)
atext = st.text(st.sampled_from("abcXYZ019!#$%&'*+/=?^_`{|}~-"), min_size=1, max_size=70)
label = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
addresses = st.builds(
    lambda local, labels: f"{'.'.join(local)}@{'.'.join(labels)}",
    st.lists(atext, min_size=1, max_size=3),
    st.lists(label, min_size=1, max_size=4),
)
recipients = st.one_of(
    addresses,
    st.sampled_from(["ops@example.com", "a@b, c@d", '"x" <a@b>', "a@b\r\nBcc: c@d", ""]),
    st.text(letters, max_size=40),
)
subjects = st.one_of(ascii_words, st.text(letters, max_size=100))
# Lines of every length around the 78-byte limit, joined by every kind of line break.
body_lines = st.lists(st.one_of(ascii_words, st.text(letters, max_size=200)), max_size=25)
bodies = st.one_of(
    st.builds(
        lambda lines, seps: "".join(line + seps[i % len(seps)] for i, line in enumerate(lines)),
        body_lines,
        st.lists(st.sampled_from(["\n", "\r\n", "\r", "\n\n", "", "\u2028", "\x85"]), min_size=1),
    ),
    st.text(letters, max_size=400),
)
event_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.text(letters, max_size=40),
)
zones = st.sampled_from(
    [
        UTC,
        timezone(timedelta(0)),
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=8)),
        timezone(timedelta(seconds=30)),
    ]
)
moments = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(timezones=st.one_of(zones, st.none())),
)


def email_event(to: str, subject: str, body: str, event_id: str, occurred_at: datetime) -> Event:
    return Event(
        event_id=event_id,
        event_type="Email",
        occurred_at=occurred_at,
        producer="test",
        schema_version=1,
        key=to,
        payload=EmailPayload(to=to, subject=subject, body=body),
    )


def outcome(sender: str, event: Event, direct: bool) -> Outcome:
    try:
        return ("sent", message_data(sender, event, direct=direct))
    except Exception as exc:  # the verdict, whatever it is, must be the same
        return (type(exc).__name__, str(exc))


def assert_same(sender: str, event: Event) -> bytes | None:
    """The handler's verdict is the package path's; returns what the writer wrote, if any."""
    expected = outcome(sender, event, direct=False)
    assert outcome(sender, event, direct=plain_sender(sender)) == expected
    payload = event.payload
    if expected[0] != "sent" or not plain_sender(sender):
        return None  # refused before the writer (or the writer is off for this sender)
    written = message_bytes(
        sender, payload.to, payload.subject, payload.body, event.event_id, event.occurred_at
    )
    if written is not None:
        assert written == expected[1][0]
    return written


ORDINARY: dict[str, Any] = {
    "sender": SENDER,
    "to": "user7@example.com",
    "subject": "CHEM-00042 is now banned",
    "body": "Hello user7,\n\nThe status of CHEM-00042 changed.\n\n-- Q-Chem",
    "event_id": str(uuid.UUID(int=7, version=4)),
    "occurred_at": datetime(2026, 12, 3, 19, 24, 46, 827000, tzinfo=UTC),
}
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "sender": st.sampled_from(SENDERS),
    "to": recipients,
    "subject": subjects,
    "body": bodies,
    "event_id": event_ids,
    "occurred_at": moments,
}


def check(sender: str, to: str, subject: str, body: str, **envelope: Any) -> bytes | None:
    return assert_same(sender, email_event(to, subject, body, **envelope))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(FIELDS)))
def test_one_field_at_a_time_of_an_ordinary_email(data: st.DataObject, name: str) -> None:
    """Every other field ordinary: the writer's own condition on this field decides."""
    check(**{**ORDINARY, name: data.draw(FIELDS[name], label=name)})


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**FIELDS)
def test_any_fields_together(
    sender: str, to: str, subject: str, body: str, event_id: str, occurred_at: datetime
) -> None:
    check(sender, to, subject, body, event_id=event_id, occurred_at=occurred_at)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    to=addresses,
    subject=ascii_words,
    body=bodies,
    event_id=st.uuids().map(str),
    occurred_at=st.datetimes(timezones=st.just(UTC)),
)
def test_ordinary_emails_are_written_directly_and_equal(
    to: str, subject: str, body: str, event_id: str, occurred_at: datetime
) -> None:
    """Mostly inside the writer's forms, where the comparison matters most."""
    written = check(SENDER, to, subject, body, event_id=event_id, occurred_at=occurred_at)
    fits = 0 < len(subject) <= 69 and len(to) <= 74 and occurred_at.year >= 1000
    if fits and body_bytes(body) is not None:
        assert written is not None  # the writer declines nothing it should take


@pytest.mark.parametrize("length", range(64, 80))
def test_header_lines_around_the_folding_limit(length: int) -> None:
    """78 characters a line: one more and the package folds (or writes otherwise)."""
    address = "u" * 40 + "@" + "d" * (length - 45) + ".com"
    assert len(address) == length
    subject = "s " * (length // 2) + "s" * (length % 2)
    for changed in ({"to": address}, {"sender": address}, {"subject": subject}):
        check(**{**ORDINARY, **changed})


@pytest.mark.parametrize(
    "changed",
    [
        {"subject": ""},  # the package writes "Subject:" with no space
        {"subject": " "},
        {"subject": "  two  spaces  "},
        {"subject": "=?not an encoded word"},
        {"body": ""},
        {"body": "\ud800"},  # UTF-8 cannot encode it: the package's error, not the writer's
        {"event_id": str(uuid.UUID(int=7, version=4)).upper()},
        {"occurred_at": datetime(99, 1, 1, tzinfo=UTC)},  # read back as 1999
        {"occurred_at": datetime(999, 1, 1, tzinfo=UTC)},
        {"occurred_at": datetime(1000, 1, 1, tzinfo=UTC)},
        {"occurred_at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)},
        {"occurred_at": datetime(2026, 1, 1)},  # naive: "-0000"
        {"occurred_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-8)))},
        {"occurred_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30)))},
    ],
)
def test_edge_fields(changed: dict[str, Any]) -> None:
    check(**{**ORDINARY, **changed})


@pytest.mark.parametrize(
    ("body", "cte"),
    [
        ("", "7bit"),
        ("Hello,\n\n.leading dot\r\nbye", "7bit"),
        ("Caf\u00e9\n", "8bit"),
        ("x" * 79, "quoted-printable"),
        ("trailing space " + "x" * 80 + " \n= sign", "quoted-printable"),
        ("\u4e2d" * 40, "base64"),
        ("\u4e2d" * 40 + "\n" + "ok\n" * 12, "base64"),
        ("x" * 68 + "\u00e9" * 7, "quoted-printable"),  # a tie (113 each): quoted-printable
        ("x" * 79 + "\n" * 10 + "\u4e2d" * 200, "quoted-printable"),  # 11th line not sniffed
        ("x" * 79 + "\n" * 9 + "\u4e2d" * 200, "base64"),
    ],
)
def test_every_transfer_encoding_is_written_as_the_package_writes_it(body: str, cte: str) -> None:
    event = email_event("ops@example.com", "Hi", body, str(uuid.uuid4()), datetime.now(UTC))
    written = assert_same(SENDER, event)
    assert written is not None
    assert f"\r\nContent-Transfer-Encoding: {cte}\r\n".encode() in written


def test_every_sample_email_is_written_directly() -> None:
    for event in sample_events("Email", 300):
        assert assert_same(SENDER, event) is not None


@pytest.mark.parametrize(
    ("to", "subject", "why"),
    [
        ("a@b, c@d", "Hi", "exactly one plain address"),
        ("ops@example.com", "Hi\r\nBcc: evil@evil.test", "control character"),
        ("ops@example.com", "=?utf-8?q?a=0D=0Ab?=", "encoded word"),
    ],
)
def test_injection_attempts_are_refused_before_any_writing(to: str, subject: str, why: str) -> None:
    event = email_event(to, subject, "body", str(uuid.uuid4()), datetime.now(UTC))
    with pytest.raises(PermanentError, match=why):
        message_data(SENDER, event, direct=True)


def test_the_direct_path_is_on_only_where_it_agrees_with_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler's start-up check: a Python whose email package wrote otherwise (here: a
    writer made to differ) gets every message built by the package."""
    assert direct_agrees(SENDER)
    assert not direct_agrees("Q-Chem <q@x.test>")
    monkeypatch.setattr(email_handler, "message_bytes", lambda *fields: b"other bytes")
    assert not direct_agrees(SENDER)
