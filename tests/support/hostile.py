"""Hypothesis strategies shared by the hostile-input tests."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from consumers.handlers.email import EXPECTED_HEADERS
from devtools.devservers import SmtpSink
from retry_topics import headers as rh
from retry_topics.naming import TopicNames
from schemas.safe_text import ADDR_SPEC, address_problem

# The retry headers a consumer reads, plus one it ignores: hostile values go into these.
RETRY_HEADER_NAMES = st.sampled_from(
    [
        rh.ORIGIN_TOPIC,
        rh.ORIGIN_PARTITION,
        rh.ORIGIN_OFFSET,
        rh.ORIGIN_TIMESTAMP,
        rh.GROUP,
        rh.ATTEMPT,
        rh.DUE,
        rh.FIRST_FAILURE,
        rh.REPLAY_COUNT,
        rh.ERROR_STACK,
        "other",
    ]
)


# --- Mail headers and report lines (issue 17 #2, #4, #8) ---------------------------------------
# Each draws a payload field value that the validator must refuse at once: the record is
# INVALID, never handed to the e-mail or report handler.

_WORDS = st.text("abcdefghijklmnopqrstuvwxyz ", max_size=12)
ADDRESSES = st.from_regex(ADDR_SPEC, fullmatch=True).filter(lambda a: address_problem(a) is None)
_INJECTED = [
    "\r\nBcc: evil@evil.test",
    "\r\nReply-To: attacker@evil.test",
    "\r\n\r\nforged body",
    "\nX-Injected: 1",
    "Invoice",
]


@st.composite
def encoded_word_subjects(draw: st.DrawFn) -> str:
    """A subject carrying an RFC 2047 encoded word, well-formed or a near miss."""
    text = draw(st.sampled_from(_INJECTED)).encode()
    encoding = draw(st.sampled_from("qQbB"))
    if encoding in "qQ":
        body = "".join(chr(b) if chr(b).isalnum() else f"={b:02X}" for b in text)
    else:
        body = base64.b64encode(text).decode()
    charset = draw(st.sampled_from(["utf-8", "UTF-8", "iso-8859-1", "us-ascii", "utf-8*en", "x"]))
    return f"{draw(_WORDS)}=?{charset}?{encoding}?{body}?={draw(_WORDS)}"


@st.composite
def multi_address_tos(draw: st.DrawFn) -> str:
    """A `to` naming several or other addresses: a list, a group, a display name, a comment."""
    a, b = draw(ADDRESSES), draw(ADDRESSES)
    form = draw(st.sampled_from(["list", "group", "quoted", "display", "angle", "comment"]))
    if form == "list":
        return draw(st.sampled_from([",", ";", ", ", " , "])).join([a, b])
    if form == "group":
        return f"{draw(_WORDS).strip() or 'team'}: {a}, {b};"
    if form == "quoted":
        return f'"{a}" <{b}>'
    if form == "display":
        return f"{draw(_WORDS).strip() or 'CEO'} <{b}>"
    if form == "angle":
        return f"<{b}>"
    return f"{a} ({b})"


REPORT_FIELDS = st.sampled_from(
    ["report_id", "report_type", "requested_by", "parameter-key", "parameter-value"]
)
CONTROLS = st.sampled_from(
    ["\n", "\r", "\r\n", "\x1b[2J", "\x1b]0;title\x07", "\t", "\x7f", "\x85", "\u2028", "\x0b"]
)


@st.composite
def with_control(draw: st.DrawFn, value: str) -> str:
    """`value` with a control character (or sequence) inserted somewhere."""
    at = draw(st.integers(0, len(value)))
    return (
        value[:at]
        + draw(CONTROLS)
        + "# generated_for: 1999-01-01" * draw(st.booleans())
        + value[at:]
    )


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def replaced(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    target = doc
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return doc


# category -> the event type whose topic its records go to (ChemicalStatus when absent)
MAIL_AND_REPORT = {
    "encoded-word-subject": "Email",
    "multi-address-to": "Email",
    "report-control-chars": "Report",
}


def mail_and_report_strategies(
    emails: list[dict[str, Any]], reports: list[dict[str, Any]]
) -> dict[str, Any]:
    """category -> strategy of (key, value, headers) for the Email and Report topics."""

    def email_with(path: tuple[str, ...], values: Any) -> Any:
        return st.builds(
            lambda doc, value: (doc["key"].encode(), dumps(replaced(doc, path, value)), None),
            st.sampled_from(emails),
            values,
        )

    @st.composite
    def report_control_chars(draw: Callable[..., Any]) -> Any:
        doc = draw(st.sampled_from(reports))
        field = draw(REPORT_FIELDS)
        if field.startswith("parameter-"):
            name, value = draw(st.sampled_from(sorted(doc["payload"]["parameters"].items())))
            if field == "parameter-key":
                name = draw(with_control(name))
            else:
                value = draw(with_control(value))
            doc = replaced(doc, ("payload", "parameters"), {name: value})
        else:
            doc = replaced(doc, ("payload", field), draw(with_control(doc["payload"][field])))
        return doc["key"].encode(), dumps(doc), None

    return {
        "encoded-word-subject": email_with(("payload", "subject"), encoded_word_subjects()),
        "multi-address-to": email_with(("payload", "to"), multi_address_tos()),
        "report-control-chars": report_control_chars(),
    }


def check_mail_and_reports(
    settings: Settings,
    db_engine: Engine,
    sink: SmtpSink,
    valid: list[Any],
    categories: Counter[Any],
) -> None:
    """Hostile Email and Report records were refused at once (INVALID, no handler), and
    the SMTP server got the valid emails only, each with the expected header lines and one
    recipient."""
    expected = Counter(e.event_type for e in valid)
    for event_type in ("Email", "Report"):
        hostile = sum(n for c, n in categories.items() if MAIL_AND_REPORT.get(c) == event_type)
        with db_engine.connect() as conn:
            statuses: dict[str, int] = dict(
                conn.execute(
                    text(
                        "SELECT status, count(*) FROM event_records WHERE consumer_group = :g "
                        "GROUP BY status"
                    ),
                    {
                        "g": TopicNames(
                            settings.topic_prefix, event_type, settings.retries_for(event_type)
                        ).group
                    },
                ).all()
            )
        assert statuses == {"succeeded": expected[event_type], "invalid": hostile}, event_type
    recipients = {e.payload.to for e in valid if e.event_type == "Email"}
    for message in sink.messages:
        head = message.raw.partition(b"\r\n\r\n")[0].split(b"\r\n")
        lines = [line.split(b":", 1)[0].lower() for line in head if line[:1] not in b" \t"]
        assert sorted(lines) == sorted(EXPECTED_HEADERS), message.raw[:500]
        assert len(message.to) == 1 and message.to[0] in recipients, message.to
    assert len(sink.messages) == expected["Email"]
